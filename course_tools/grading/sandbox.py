"""Where a student's code runs: the grader's side of the sandbox (the privileged part is ``launcher.py``).

:func:`choose` picks the strongest mode this machine offers, checked by running a probe (modes are
described in ``launcher.py`` and ``grading/README.md``): as root ``namespace``, else ``uid``; without
root ``bwrap`` (bubblewrap on the PATH), else ``process``. Each student gets a :class:`Box`: a fresh
scratch folder with ``home``/``work``/``output`` (the only places it may write, owned by its own uid
in the root modes) and ``spec`` (inputs the grader writes, read-only to the student). Every command
of that student then runs through :meth:`Sandbox.popen` and ends with :meth:`Sandbox.stop`, which
kills whatever the student left running.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["MODES", "UID_BASE", "UID_BLOCK", "SandboxUnavailable", "Limits", "Box", "Sandbox", "choose",
           "claim_uid_block", "guard_grading_process"]

MODES = ("namespace", "uid", "bwrap", "process")
UID_BASE = 1_900_000_000       # dedicated uids and gids (no /etc/passwd entry needed) start here
UID_BLOCK = 65536              # each run claims a block of uids: student k gets block start + k
_BLOCKS = (2**31 - 1 - UID_BASE) // UID_BLOCK
_BWRAP_UID = 1000              # the student's uid inside bubblewrap's user namespace
_SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36


class SandboxUnavailable(RuntimeError):
    """The requested sandbox mode cannot run on this machine (the message says why)."""


@dataclass
class Limits:
    """Resource limits of every process a student starts (``setrlimit``; memory and CPU are per process).

    Memory is ``RLIMIT_DATA`` (heap and private writable mappings), not the address space: torch alone
    reserves about 3 GiB of address space it never uses.
    """

    cpu_s: int = 900
    memory_mb: int = 4096
    file_mb: int = 256
    nofile: int = 1024
    nproc: int = 256            # processes of the dedicated uid (root modes only)
    tmp_mb: int = 256           # the private /tmp (namespace mode)

    def describe(self, dedicated_uid: bool) -> str:
        return (f"{self.cpu_s} s CPU, {self.memory_mb} MiB of memory and {self.file_mb} MiB per file per process"
                + (f", {self.nproc} processes" if dedicated_uid else ""))


@dataclass
class Box:
    """One student's scratch: ``root`` holds ``home``, ``work``, ``output`` (writable) and ``spec`` (read-only)."""

    root: Path
    uid: int | None = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def spec(self) -> Path:
        return self.root / "spec"

    def create(self) -> None:
        """Make the folders (``work`` must already hold the submission) and hand the writable ones to the uid."""
        self.root.chmod(0o711)
        for d in (self.home / "tmp", self.output, self.work, self.spec):
            d.mkdir(parents=True, exist_ok=True)
        self.spec.chmod(0o755)
        if self.uid is None:
            return
        for top in (self.home, self.work, self.output):
            for dirpath, dirnames, filenames in os.walk(top):
                for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
                    os.chown(name, self.uid, self.uid, follow_symlinks=False)
            top.chmod(0o700)


_claimed: list[int] = []       # this process's uid block (one per process, whatever the number of runs)
_subreaper: list[int] = []     # pids that called guard_grading_process (a forked child is not one)


def claim_uid_block() -> int:
    """The first uid of a block no other grading process on this machine uses (held until this process exits).

    Runs at the same time must not share uids: cleaning up one student kills every process of its uid.
    The claim is an ``flock`` on a file in the temp folder, released by the kernel when the process ends.
    """
    if _claimed:
        return _claimed[0]
    folder = Path(tempfile.gettempdir()) / "course-grade-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SandboxUnavailable(f"{folder} must be a folder of the grader's user that only it can write")
    start = os.getpid() % _BLOCKS
    for k in (start + i for i in range(_BLOCKS)):
        fd = os.open(folder / str(k % _BLOCKS), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _claimed.append(UID_BASE + (k % _BLOCKS) * UID_BLOCK)    # fd left open: the lock lives with us
        return _claimed[0]
    raise SandboxUnavailable("every block of dedicated uids is in use")


def guard_grading_process() -> None:
    """For a process that grades one student: die with its parent, adopt the student's orphaned processes
    (so :meth:`Sandbox.stop` can kill them), and refuse ptrace."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    _subreaper.append(os.getpid())


def _proc_field(pid: str, key: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            return next((ln.split()[1] for ln in f if ln.startswith(key)), None)
    except OSError:
        return None


def _pids(key: str, value: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _proc_field(p, key) == str(value)]


def _kill_children() -> None:
    """Kill and reap every child of this process (orphans of a student re-parented to this subreaper)."""
    for _ in range(100):
        children = _pids("PPid:", os.getpid())
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _kill_uid(uid: int) -> None:
    """Kill every process of ``uid`` (``kill(-1)`` from a helper that runs as that uid), until none is left."""
    for _ in range(100):
        if not _pids("Uid:", uid):
            return
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.02)


class Sandbox:
    """One sandbox mode, with the folders the student must never see (``secrets``)."""

    def __init__(self, mode: str, secrets: list[Path], limits: Limits | None = None, notes: list[str] | None = None,
                 uid_base: int = UID_BASE):
        if mode not in MODES:
            raise ValueError(f"unknown sandbox mode {mode!r}; one of {', '.join(MODES)}")
        self.mode, self.limits, self.uid_base = mode, limits or Limits(), uid_base
        self.secrets = [Path(os.path.realpath(s)) for s in secrets]
        self.notes = list(notes or [])     # why stronger modes were not used, what stays readable

    @property
    def dedicated_uid(self) -> bool:
        return self.mode in ("namespace", "uid")

    def describe(self) -> str:
        """One paragraph for the reports: the mechanism, the limits, and what it does not protect."""
        what = {
            "namespace": "Linux namespaces (mount, pid, network, ipc, uts): a read-only view of the system and the "
                         "course code only, the student's own scratch writable, no network, a dedicated uid per "
                         "student, every process killed with the namespace",
            "uid": "a dedicated uid per student in a new session (no namespaces): files are protected by their "
                   "permissions only, every process of that uid is killed at the end",
            "bwrap": "bubblewrap (user, mount, pid, network, ipc namespaces, no capabilities): a read-only view of "
                     "the system and the course code only, the student's own scratch writable, no network, every "
                     "process killed with the namespace",
            "process": "a separate process as the grader's own user, in a new session, with a minimal environment: "
                       "the student's code can read and write whatever the grader's user can",
        }[self.mode]
        notes = "".join(f" {n}." for n in self.notes)
        return f"sandbox {self.mode}: {what}; limits: {self.limits.describe(self.dedicated_uid)}.{notes}"

    def box(self, root: Path, slot: int) -> Box:
        """A new box in the empty folder ``root`` for the student numbered ``slot`` in this run."""
        if slot >= UID_BLOCK:
            raise ValueError(f"at most {UID_BLOCK} students per run")
        return Box(Path(root), self.uid_base + slot if self.dedicated_uid else None)

    def env(self, box: Box, **extra: str) -> dict[str, str]:
        """The whole environment of a student's command (nothing of the grader's, but ``COURSE_DATA``)."""
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(box.home),
               "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8", "TMPDIR": str(box.home / "tmp"),
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "JUPYTER_PLATFORM_DIRS": "1",
               "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        if os.environ.get("COURSE_DATA"):
            env["COURSE_DATA"] = os.environ["COURSE_DATA"]
        env.update(extra)
        return env

    # ------------------------------------------------------------------ what the student sees

    def _exposed(self, box: Box) -> list[tuple[str, str, str]]:
        """``(kind, target, source)`` read-only and writable views, for the namespace and bwrap modes."""
        import course_tools
        import course_utils
        from course_utils.paths import data_dir

        views: list[tuple[str, str, str]] = []
        for top in _SYSTEM:
            if os.path.islink(top):
                views.append(("symlink", top, os.readlink(top)))
            elif os.path.isdir(top):
                views.append(("ro", top, top))
        code = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable),
                *site.getsitepackages(), os.path.dirname(course_utils.__file__),
                os.path.dirname(course_tools.__file__), str(data_dir())]
        for path in dict.fromkeys(os.path.abspath(p) for p in code if os.path.exists(p)):
            real = os.path.realpath(path)
            for target in dict.fromkeys((path, real)):
                views.append(("ro", target, real))
        views += [("rw", str(box.home), str(box.home)), ("rw", str(box.work), str(box.work)),
                  ("rw", str(box.output), str(box.output)), ("ro", str(box.spec), str(box.spec))]
        for kind, _, source in views:
            leak = next((s for s in self.secrets if kind != "symlink" and
                         (s == Path(source) or Path(source) in s.parents)), None)
            if leak is not None and not str(source).startswith(str(box.root)):
                raise SandboxUnavailable(f"showing {source} to students would show {leak}")
        return views

    def _mounts(self, box: Box) -> list[list[str]]:
        views = self._exposed(box)
        views += [("tmpfs", "/tmp", f"mode=1777,size={self.limits.tmp_mb}m"), ("dev", "/dev", ""),
                  ("proc", "/proc", ""), ("sysfs", "/sys", "")]
        ordered, seen = [], []
        for kind, target, source in sorted(views, key=lambda v: (len(Path(v[1]).parts), v[1])):
            covered = any(target == s or target.startswith(s.rstrip("/") + "/") for s in seen)
            if kind == "ro" and source == target and covered:
                continue
            if kind == "ro" and source == target:
                seen.append(target)
            ordered.append([kind, target, source])
        return ordered

    def _bwrap(self, box: Box, cwd: Path) -> list[str]:
        args = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session", "--unshare-all",
                "--unshare-user", "--uid", str(_BWRAP_UID), "--gid", str(_BWRAP_UID), "--cap-drop", "ALL",
                "--tmpfs", "/tmp", "--dev", "/dev", "--proc", "/proc", "--ro-bind", "/sys", "/sys"]
        for kind, target, source in sorted(self._exposed(box), key=lambda v: (len(Path(v[1]).parts), v[1])):
            flag = {"symlink": "--symlink", "ro": "--ro-bind", "rw": "--bind"}[kind]
            args += [flag, source, target]
        return args + ["--chdir", str(cwd), "--"]

    # ------------------------------------------------------------------ running

    def popen(self, argv: list[str], box: Box, cwd: Path, env: dict[str, str],
              stdout: int = subprocess.DEVNULL, stderr: int = subprocess.DEVNULL) -> subprocess.Popen:
        """Start ``argv`` in ``cwd`` inside ``box`` (through the launcher); finish it with :meth:`stop`."""
        limits = {k: v for k, v in asdict(self.limits).items() if k != "tmp_mb"}
        if not self.dedicated_uid:
            limits.pop("nproc")     # RLIMIT_NPROC counts every process of the grader's own user
        limits["core"] = 0
        config = {"mode": self.mode, "argv": argv, "cwd": str(cwd), "env": env, "limits": limits,
                  "uid": box.uid, "gid": box.uid}
        if self.mode == "namespace":
            newroot = box.root / ".root"
            newroot.mkdir(mode=0o700, exist_ok=True)
            config |= {"newroot": str(newroot), "mounts": self._mounts(box)}
        elif self.mode == "bwrap":
            config["bwrap"] = self._bwrap(box, cwd)
        return subprocess.Popen([sys.executable, "-I", "-m", "course_tools.grading.launcher", json.dumps(config)],
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd="/",
                                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, start_new_session=True)

    def stop(self, proc: subprocess.Popen, box: Box, grace: float = 5.0) -> int:
        """End ``proc`` and everything the student started with it; returns its exit status (``Popen.returncode``)."""
        if proc.poll() is None:
            proc.terminate()    # the launcher kills the command (and, in namespace mode, the whole namespace)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.dedicated_uid:
            _kill_uid(box.uid)
        elif os.getpid() in _subreaper:     # orphans of the student are ours: none of them is legitimate
            _kill_children()
        return proc.returncode

    def run(self, argv: list[str], box: Box, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, bool]:
        """Run ``argv`` to the end or ``timeout`` seconds; ``(exit status, timed out)``."""
        proc = self.popen(argv, box, cwd, env)
        try:
            proc.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        return self.stop(proc, box), timed_out

    def probe(self, scratch: Path) -> None:
        """Run a tiny command in this mode; :class:`SandboxUnavailable` with the reason if it fails."""
        root = Path(tempfile.mkdtemp(prefix="probe-", dir=scratch))
        box = self.box(root, 0)
        try:
            (root / "work").mkdir()
            box.create()
            proc = self.popen([sys.executable, "-I", "-c", "import os; print(os.getuid(), os.getcwd())"], box,
                              box.work, self.env(box), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.stop(proc, box)
                raise SandboxUnavailable("the probe did not finish in 60 s") from None
            self.stop(proc, box)
            uid = box.uid if box.uid is not None else _BWRAP_UID if self.mode == "bwrap" else os.getuid()
            want = f"{uid} {box.work}"
            got = out.decode(errors="replace").strip()
            if proc.returncode != 0 or got != want:
                last = (err.decode(errors="replace").strip().splitlines() or [got or "no output"])[-1]
                raise SandboxUnavailable(f"the probe failed ({last[:200]})")
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def readable_secrets(self) -> list[Path]:
        """The secrets a dedicated uid could read (uid mode relies on file permissions alone)."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(self.uid_base)
                os.setuid(self.uid_base)
                hits = [str(s) for s in self.secrets if os.access(s, os.R_OK)]
                os.write(w, json.dumps(hits).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        return [Path(p) for p in json.loads(data or b"[]")]


def _static_reason(mode: str) -> str | None:
    if not sys.platform.startswith("linux") and mode != "process":
        return "needs Linux"
    if mode in ("namespace", "uid") and os.geteuid() != 0:
        return "needs root"
    if mode == "bwrap" and shutil.which("bwrap") is None:
        return "bwrap is not installed"
    return None


def choose(requested: str, secrets: list[Path], scratch: Path, limits: Limits | None = None) -> Sandbox:
    """The sandbox to grade with: ``requested`` (a mode, or ``auto`` for the strongest that works here).

    Raises :class:`SandboxUnavailable` when an explicitly requested mode cannot run.
    """
    candidates = list(MODES) if requested == "auto" else [requested]
    if requested == "auto" and os.geteuid() == 0:
        candidates.remove("bwrap")   # as root, the namespace mode gives the same with a dedicated uid
    notes: list[str] = []
    uid_base = None
    for mode in candidates:
        try:
            why = _static_reason(mode)
            if why:
                raise SandboxUnavailable(why)
            if mode in ("namespace", "uid") and uid_base is None:
                uid_base = claim_uid_block()
            sandbox = Sandbox(mode, secrets, limits, notes, uid_base or UID_BASE)
            if mode == "namespace":
                sandbox._mounts(Box(Path(scratch) / "x"))      # refuses a layout that would show a secret
            sandbox.probe(Path(scratch))
        except (SandboxUnavailable, OSError) as e:
            if requested != "auto":
                raise SandboxUnavailable(f"sandbox {mode} unavailable: {e}") from None
            notes.append(f"{mode} unavailable: {e}")
            continue
        if mode == "uid":
            readable = sandbox.readable_secrets()
            if readable:
                sandbox.notes.append("readable by students (make them private: chmod o-rwx): "
                                     + ", ".join(map(str, readable)))
        return sandbox
    raise SandboxUnavailable("no sandbox mode works")  # pragma: no cover - process always does
