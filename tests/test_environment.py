"""pyproject.toml and environment.yml list the same packages with the same version ranges."""
from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from course_utils.paths import project_root

ROOT = project_root()
CONDA_TO_PIP = {"pytorch": "torch"}   # conda-forge name -> PyPI name


def _norm(spec: str) -> str:
    return ",".join(sorted(s.strip() for s in spec.replace(" ", "").split(",") if s.strip()))


def _split(line: str) -> tuple[str, str]:
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", line.strip())
    assert m, f"cannot parse requirement {line!r}"
    return m.group(1).lower().replace("_", "-"), _norm(m.group(2))


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def pip_deps() -> dict[str, str]:
    return dict(_split(r) for r in pyproject()["project"]["dependencies"])


def conda_deps() -> dict[str, str]:
    """The ``- name spec`` lines under ``dependencies:`` (a nested ``- pip:`` list is not expected)."""
    deps, inside = {}, False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line.startswith((" ", "-")):
            inside = line.startswith("dependencies:")
            continue
        if inside:
            item = line.strip()
            assert item.startswith("- ") and not item.endswith(":"), f"unexpected line in environment.yml: {raw!r}"
            name, spec = _split(item[2:])
            deps[CONDA_TO_PIP.get(name, name)] = spec
    return deps


def test_same_packages_and_ranges():
    pip, conda = pip_deps(), conda_deps()
    python = conda.pop("python", None)
    conda.pop("pip", None)
    assert set(pip) == set(conda), f"only in pyproject: {set(pip) - set(conda)}; only in environment.yml: {set(conda) - set(pip)}"
    for name in pip:
        assert pip[name] == conda[name], f"{name}: pyproject {pip[name]!r} vs environment.yml {conda[name]!r}"
    assert python == _norm(pyproject()["project"]["requires-python"])


def test_parser_sees_torch():
    assert "torch" in conda_deps() and "pytorch" not in conda_deps()
    assert pip_deps()["torch"].startswith("<") or ">=" in pip_deps()["torch"]


@pytest.mark.parametrize("name", ["torch", "numpy", "matplotlib", "pillow", "tqdm", "ipywidgets", "nbval", "pytest"])
def test_installed_versions_in_range(name):
    spec = pyproject()["project"]["dependencies"]
    req = next(Requirement(r) for r in spec if Requirement(r).name.lower() == name)
    version = Version(metadata.version(name).split("+")[0])
    assert version in req.specifier, f"installed {name} {version} is outside {req.specifier}"
