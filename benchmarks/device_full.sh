#!/usr/bin/env bash
# The full profile on a lent GPU machine, in one prepared command per device call.
#
# Here, once:   bash ../shared/tools/device-wheels.sh diffusers   # wheels for nbval (+ the peer UNet) in .whl/
# Then call the device tool with carry [".whl"] and, e.g. (10 minutes a call at most; a fresh
# machine each time unless it is still warm, so a later call re-trains what an earlier one made):
#   bash benchmarks/device_full.sh run 00 01 02 03 04 05 06 07   # the notebooks in full, timed; then export checkpoints
#   bash benchmarks/device_full.sh nbval 04 05                   # strict nbval of those notebooks in full
#   bash benchmarks/device_full.sh bench                         # benchmarks/run.py --profile full -> BENCHMARKS.md
# Steps can be chained in one call: `bash benchmarks/device_full.sh run && bash benchmarks/device_full.sh bench`.
# Each step packs what it made into $OUT/full.tar.gz (checkpoints, manifest, executed notebooks,
# BENCHMARKS.md, logs); unpack it here with `tar xzf <files_at>/full.tar.gz` and commit what belongs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 COURSE_PROFILE=full COURSE_OUTPUT="$PWD/outputs/run-full"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"      # course_utils and course_tools without installing them
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
out="${OUT:-outputs/device}"
mkdir -p "$out" "$COURSE_OUTPUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
step="${1:-}"; shift || true
start=$(date +%s)
case "$step" in
    run)
        python3 -m course_tools run --profile full --out "$COURSE_OUTPUT" "$@" 2>&1 | tee "$out/run.log" || true
        python3 benchmarks/pretrain.py --profile full --export-only "$COURSE_OUTPUT" 2>&1 | tee "$out/export.log" ;;
    nbval)
        nbs=(); for n in "$@"; do nbs+=(notebooks/"$n"_*.ipynb); done
        [ ${#nbs[@]} -gt 0 ] || nbs=(notebooks/*.ipynb)
        # strict, as in CI: the committed outputs are compared cell by cell (conftest honours COURSE_PROFILE)
        python3 -m pytest "${nbs[@]}" 2>&1 | tee "$out/nbval.log" || true ;;
    bench) python3 benchmarks/run.py --profile full 2>&1 | tee "$out/bench.log" ;;
    *) echo "usage: $0 run [NN ...] | nbval [NN ...] | bench" >&2; exit 2 ;;
esac
echo "$step took $(( $(date +%s) - start )) s" | tee -a "$out/times.txt"
tar czf "$out/full.tar.gz" --ignore-failed-read data/checkpoints BENCHMARKS.md "$COURSE_OUTPUT"/notebooks \
    "$COURSE_OUTPUT"/run_summary.json "$out"/*.log "$out"/times.txt 2>/dev/null || true
ls -la "$out"
