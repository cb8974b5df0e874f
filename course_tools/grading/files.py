"""Files a student controls, handled by the grader without trusting them: submissions in, deliverables out.

* :func:`discover_submissions` lists the class (and what it skipped, with the reason);
* :func:`report_names` gives every student a unique folder name that is safe on any file system;
* :func:`copy_submission` copies a folder or extracts a zip into a fresh scratch folder: regular files
  only (no links, devices or fifos), under a size cap, without paths that escape, and without the files
  that would shadow a course module (``course_utils/``, ``torch.py``...), which it reports;
* :func:`tree_digest` fingerprints the originals, checked again at the end of the run;
* :func:`read_untrusted` reads a file the student's code may have tampered with: no symbolic link at
  any level, a regular file with one name, at most ``max_bytes``; :func:`image_problem` checks that a
  ``.png``/``.gif`` really is one.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import zipfile
from functools import lru_cache
from pathlib import Path, PurePosixPath

__all__ = ["MAX_SUBMISSION_BYTES", "IGNORED_NAMES", "discover_submissions", "report_names", "shadowing_names",
           "copy_submission", "tree_digest", "list_files", "find_notebook", "read_untrusted", "image_problem"]

MAX_SUBMISSION_BYTES = 500 * 2**20
IGNORED_NAMES = {".ipynb_checkpoints", "__MACOSX", ".DS_Store", "__pycache__"}
_MAGIC = {".png": (b"\x89PNG\r\n\x1a\n",), ".gif": (b"GIF87a", b"GIF89a")}
_MODULE_SUFFIXES = (".py", ".pyc", ".pyw", ".so", ".pyd")


def discover_submissions(folder: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """``([(student, path)], [(entry, why skipped)])`` for the folders and ``.zip`` files in ``folder``, by name."""
    found: dict[str, Path] = {}
    skipped: list[tuple[str, str]] = []
    for p in sorted(Path(folder).iterdir()):
        if p.name in IGNORED_NAMES:
            continue
        if p.name.startswith("."):
            skipped.append((p.name, "hidden (the name starts with a dot)"))
        elif p.is_symlink():
            skipped.append((p.name, "a symbolic link, not a folder or .zip"))
        elif p.is_dir():
            if any(q.suffix == ".ipynb" for q in p.rglob("*") if not IGNORED_NAMES & set(q.relative_to(p).parts)):
                found[p.name] = p
            else:
                skipped.append((p.name, "no notebook (.ipynb) inside"))
        elif p.suffix.lower() == ".zip" and p.is_file():
            found[p.stem if p.stem not in found and not (p.parent / p.stem).is_dir() else p.name] = p
        else:
            skipped.append((p.name, "not a folder or .zip"))
    return sorted(found.items()), skipped


def report_names(students: list[str]) -> dict[str, str]:
    """A unique, safe folder name per student (``a b`` -> ``a_b``; a clash, even by case, gets ``-2``, ``-3``).

    The class files of the report folder (``grades.csv``, ``skipped.csv``) are never a student's name.
    """
    taken = {"grades.csv", "skipped.csv"}
    out = {}
    for student in students:
        base = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in student).lstrip(".")[:80]
        base = base or "_"
        name, k = base, 1
        while name.lower() in taken:
            k += 1
            name = f"{base}-{k}"
        taken.add(name.lower())
        out[student] = name
    return out


@lru_cache(maxsize=1)
def shadowing_names() -> frozenset[str]:
    """Top-level module names a submission may not provide: the standard library, installed packages, the course."""
    from importlib.metadata import packages_distributions

    return frozenset(sys.stdlib_module_names) | frozenset(packages_distributions()) | {
        "course_utils", "course_tools", "sitecustomize", "usercustomize"}


def _shadows(name: str) -> bool:
    """Whether a file called ``name`` would import as a module the course needs (``torch.py``, ``json.so``...)."""
    return name.endswith(_MODULE_SUFFIXES) and name.split(".")[0] in shadowing_names()


def _package_dirs(root: Path) -> set[tuple[str, ...]]:
    """Relative parts of the folders under ``root`` that are packages named like a module they would shadow."""
    names = shadowing_names()
    return {d.relative_to(root).parts for d in root.rglob("*") if d.name in names and d.is_dir()
            and not d.is_symlink() and any((d / f"__init__{s}").exists() for s in (".py", ".pyc"))}


def _drop_shadowing(root: Path) -> list[str]:
    """Remove what would shadow a course module from the copy in ``root``; their names, for the report."""
    removed = []
    for parts in sorted(_package_dirs(root), key=len):
        path = root.joinpath(*parts)
        if path.exists():
            shutil.rmtree(path)
            removed.append("/".join(parts) + "/")
    for path in sorted(root.rglob("*")):
        if path.is_file() and _shadows(path.name):
            path.unlink()
            removed.append("/".join(path.relative_to(root).parts))
    return removed


def _copy_folder(source: Path, dest: Path) -> list[str]:
    notes, total = [], 0
    for dirpath, dirnames, filenames in os.walk(source):            # never follows links
        rel = Path(dirpath).relative_to(source)
        dirnames[:] = [d for d in dirnames if d not in IGNORED_NAMES and not os.path.islink(os.path.join(dirpath, d))]
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if name in IGNORED_NAMES:
                continue
            src = Path(dirpath) / name
            st = os.lstat(src)
            if not stat.S_ISREG(st.st_mode):
                notes.append(f"left out {rel / name}: not a regular file")
                continue
            total += st.st_size
            if total > MAX_SUBMISSION_BYTES:
                raise ValueError(f"{source.name} holds more than {MAX_SUBMISSION_BYTES >> 20} MiB")
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f, open(dest / rel / name, "wb") as out:
                out.write(f.read(MAX_SUBMISSION_BYTES + 1))
    return notes


def _extract_zip(source: Path, dest: Path) -> list[str]:
    notes = []
    try:
        with zipfile.ZipFile(source) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if sum(i.file_size for i in infos) > MAX_SUBMISSION_BYTES:
                raise ValueError(f"{source.name} unpacks to more than {MAX_SUBMISSION_BYTES >> 20} MiB")
            dest.mkdir(parents=True)
            for info in infos:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if not parts or parts[0] == "/" or ".." in parts or IGNORED_NAMES & set(parts):
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    notes.append(f"left out {'/'.join(parts)}: a symbolic link")
                    continue
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    dst.write(src.read(MAX_SUBMISSION_BYTES + 1))
    except zipfile.BadZipFile as e:
        raise ValueError(f"{source.name} is not a valid zip file ({e})") from None
    return notes


def copy_submission(source: Path, dest: Path) -> list[str]:
    """Copy a student's folder or zip into the new folder ``dest``; notes on what was left out.

    ``ValueError`` when the submission cannot be read (not a zip, too large).
    """
    source = Path(source)
    if source.is_dir():
        dest.mkdir(parents=True)
        notes = _copy_folder(source, dest)
    else:
        notes = _extract_zip(source, dest)
    shadow = _drop_shadowing(dest)
    if shadow:
        notes.append("left out (they would replace course or library modules): " + ", ".join(shadow[:10]))
    return notes


def tree_digest(path: Path) -> str:
    """SHA-256 over every entry under ``path`` (a folder or a file): names, kinds, contents; links not followed."""
    h = hashlib.sha256()
    path = Path(path)
    entries = [path] if not path.is_dir() or path.is_symlink() else sorted(path.rglob("*"))
    for p in entries:
        st = os.lstat(p)
        h.update(f"{p.relative_to(path) if p != path else p.name}\0{stat.S_IFMT(st.st_mode)}\0".encode())
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        elif stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(p).encode(errors="replace"))
    return h.hexdigest()


def list_files(folder: Path) -> set[str]:
    """Relative paths of every non-directory under ``folder`` (links not followed)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        out |= {str(rel / n) for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]}
    return out


def find_notebook(work: Path, name: str) -> Path | None:
    """The shallowest regular file called ``name`` under ``work`` (the grader's fresh copy)."""
    hits = [Path(d) / name for d, _, files in os.walk(work) if name in files
            and not IGNORED_NAMES & set(Path(d).relative_to(work).parts)]
    hits = [p for p in hits if stat.S_ISREG(os.lstat(p).st_mode)]
    return min(hits, key=lambda p: (len(p.parts), str(p))) if hits else None


def read_untrusted(base: Path, rel: str, max_bytes: int) -> bytes:
    """The bytes of ``base/rel``, a file the student's code could have replaced; ``ValueError`` saying why not.

    Refused: a symbolic link at any level below ``base``, anything but a regular file, a file with
    other names (a hard link), more than ``max_bytes``. ``FileNotFoundError`` when it does not exist.
    """
    parts = Path(rel).parts
    if not parts or ".." in parts or Path(rel).is_absolute():
        raise ValueError(f"bad path {rel!r}")
    flags = os.O_RDONLY | os.O_NOFOLLOW
    fd = os.open(base, flags | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                raise
            except OSError:
                raise ValueError(f"{rel}: {part} is not a folder") from None
            os.close(fd)
            fd = nfd
        try:
            ffd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        except FileNotFoundError:
            raise
        except OSError:
            raise ValueError(f"{rel} is a symbolic link or cannot be opened") from None
    finally:
        os.close(fd)
    with os.fdopen(ffd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{rel} is not a regular file")
        if st.st_nlink != 1:
            raise ValueError(f"{rel} has other names (a hard link)")
        if st.st_size > max_bytes:
            raise ValueError(f"{rel} is larger than {max_bytes >> 20} MiB")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{rel} is larger than {max_bytes >> 20} MiB")
    return data


def image_problem(name: str, data: bytes) -> str | None:
    """Why ``data`` is not the image its name says (``.png``/``.gif``), or None (other suffixes are not checked)."""
    magic = _MAGIC.get(Path(name).suffix.lower())
    if magic is not None and not data.startswith(magic):
        return f"{name} is not a {Path(name).suffix.lower()[1:].upper()} file"
    return None
