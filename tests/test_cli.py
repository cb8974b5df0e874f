"""``python -m course_tools``: the command line and its ``run`` command (course_tools.run)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_tools.__main__ import main as cli_main
from course_tools.run import select_notebooks
from course_utils.paths import project_root

ROOT = project_root()


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "course_tools", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (kernels still start as subprocesses); returns (code, stdout, stderr)."""
    code = cli_main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _write(path: Path, *sources: str) -> None:
    nb = new_notebook(cells=[new_markdown_cell("# test")] + [new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def nb_dir(tmp_path: Path) -> Path:
    d = tmp_path / "notebooks"
    d.mkdir()
    _write(d / "00_fails.ipynb", "x = 1", "y = 2", "raise ValueError('boom in cell three')", "print('never')")
    _write(d / "01_works.ipynb",
           "import os\nprint(os.environ['COURSE_PROFILE'])\nprint(os.environ['COURSE_OUTPUT'])",
           "print(os.getcwd())")
    _write(d / "02_quick.ipynb", "import os\nprint(os.environ['COURSE_PROFILE'])")
    return d


def test_no_command_prints_help(capsys):
    code, out, _ = _main(capsys)
    assert code == 2 and all(f"    {c} " in out for c in ("run", "generate", "release", "grade"))


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["frobnicate"])
    assert exit_info.value.code == 2 and "invalid choice: 'frobnicate'" in capsys.readouterr().err


def _imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def test_course_utils_never_imports_course_tools():
    """The teaching package stands alone: course_tools imports course_utils, never the reverse."""
    offenders = [f"{p.name} imports {name}" for p in sorted((ROOT / "course_utils").glob("*.py"))
                 for name in _imported_modules(p) if name.split(".")[0] == "course_tools"]
    assert not offenders, offenders


def test_no_package_module_edits_sys_path():
    """Imports resolve through the installed packages (and PYTHONPATH for subprocesses), never sys.path edits."""
    sources = sorted((ROOT / "course_utils").glob("*.py")) + sorted((ROOT / "course_tools").rglob("*.py"))
    offenders = [str(p.relative_to(ROOT)) for p in sources if "sys.path" in p.read_text(encoding="utf-8")]
    assert len(sources) > 10 and not offenders, offenders


def test_unknown_profile():
    """Through ``python -m`` for real: a clear message and a non-zero exit status, no traceback."""
    r = _cli("run", "--profile", "nope")
    assert r.returncode != 0
    assert "unknown profile 'nope'" in r.stderr and "smoke, cpu, full" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_profile_in_process(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "bogus")     # the default comes from the environment
    code, _, err = _main(capsys, "run")
    assert code == 2 and "unknown profile 'bogus'" in err and "smoke, cpu, full" in err


def test_unknown_notebook_pattern(nb_dir, capsys):
    code, _, err = _main(capsys, "run", "--profile", "smoke", "--notebooks-dir", str(nb_dir), "99_*")
    assert code == 2
    assert "99_*" in err and "00_fails.ipynb" in err


def test_select_notebooks(nb_dir):
    names = lambda pats: [p.name for p in select_notebooks(nb_dir, pats)]   # noqa: E731
    assert names([]) == ["00_fails.ipynb", "01_works.ipynb", "02_quick.ipynb"]
    assert names(["02_quick.ipynb", "00"]) == ["00_fails.ipynb", "02_quick.ipynb"]     # name order kept
    assert names(["0[12]_*"]) == ["01_works.ipynb", "02_quick.ipynb"]
    assert names(["notebooks/01_works"]) == ["01_works.ipynb"]
    with pytest.raises(ValueError, match="available: 00_fails.ipynb"):
        select_notebooks(nb_dir, ["zz"])


def test_run_reports_failure_and_runs_the_rest(nb_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = _main(capsys, "run", "--profile", "smoke", "--notebooks-dir", str(nb_dir), "--out", str(out),
                              "--timeout", "120", "00_*", "01_*")
    assert code == 1, stdout + err
    fail_line = next(ln for ln in stdout.splitlines() if ln.startswith("00_fails.ipynb"))
    assert "failed" in fail_line and "cell 3" in fail_line and "ValueError: boom in cell three" in fail_line
    ok_line = next(ln for ln in stdout.splitlines() if ln.startswith("01_works.ipynb"))
    assert " ok " in ok_line

    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["profile"] == "smoke" and summary["failed"] == ["00_fails.ipynb"]
    by_name = {n["notebook"]: n for n in summary["notebooks"]}
    assert by_name["00_fails.ipynb"]["cell"] == 3 and by_name["01_works.ipynb"]["status"] == "ok"
    assert all(n["seconds"] > 0 for n in summary["notebooks"])

    executed = nbformat.read(out / "notebooks" / "01_works.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert printed.split() == ["smoke", str(out.resolve()), str(nb_dir)]   # runs inside the notebook folder
    failed = nbformat.read(out / "notebooks" / "00_fails.ipynb", as_version=4)
    assert failed.cells[3].outputs[0]["ename"] == "ValueError"   # the executed copy shows the error


def test_run_subset_passes(nb_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = _main(capsys, "run", "--profile", "cpu", "--notebooks-dir", str(nb_dir), "--out", str(out),
                              "02_quick.ipynb")
    assert code == 0, stdout + err
    assert "00_fails" not in stdout and "01_works" not in stdout
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["profile"] == "cpu" and [n["notebook"] for n in summary["notebooks"]] == ["02_quick.ipynb"]
    executed = nbformat.read(out / "notebooks" / "02_quick.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"].strip() == "cpu"


def test_unreadable_notebook_is_reported(tmp_path, capsys):
    d = tmp_path / "nbs"
    d.mkdir()
    (d / "00_broken.ipynb").write_text("{ not json")
    code, stdout, _ = _main(capsys, "run", "--notebooks-dir", str(d), "--out", str(tmp_path / "out"), "--profile", "smoke")
    assert code == 1
    line = next(ln for ln in stdout.splitlines() if ln.startswith("00_broken.ipynb"))
    assert "failed" in line and "cell" not in line and "Error" in line
