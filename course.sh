#!/usr/bin/env bash
# The course's two commands. Each sets up what it needs on a fresh machine:
# a virtual environment in .venv with the project installed (skipped when the active Python,
# e.g. the conda env from environment.yml, already has everything).
#
#   ./course.sh run  [--profile smoke|cpu|full] [NOTEBOOK...]   execute every notebook in order
#   ./course.sh test [PYTEST ARGS...]                           unit tests + strict nbval (smoke)
#   ./course.sh <any course_tools command>                     generate, release, grade, gradescope
set -euo pipefail
cd "$(dirname "$0")"

venv="${COURSE_VENV:-.venv}"
stamp="$venv/.course-installed"
want="$(cat pyproject.toml | cksum | cut -d' ' -f1)"

if [ -n "${CONDA_PREFIX:-}" ] && python -c "import torch, torchvision, nbval, course_utils, course_tools" 2>/dev/null; then
    py=python
else
    if [ ! -x "$venv/bin/python" ]; then
        echo "[course] creating virtual environment in $venv" >&2
        python3 -m venv "$venv"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "[course] installing the course and its dependencies into $venv (once; a few minutes)" >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v "^WARNING: Location" >&2 || true
        "$venv/bin/python" -c "import torch, torchvision, nbval, course_utils, course_tools" \
            || { echo "[course] installation failed; see the pip output above" >&2; exit 1; }
        echo "$want" > "$stamp"
    fi
    py="$venv/bin/python"
fi

cmd="${1:-help}"
shift || true
case "$cmd" in
    test) COURSE_PROFILE=smoke exec "$py" -m pytest "$@" ;;
    help|-h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) exec "$py" -m course_tools "$cmd" "$@" ;;
esac
