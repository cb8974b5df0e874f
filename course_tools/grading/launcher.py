"""Start one command in a sandbox: ``python -I -m course_tools.grading.launcher CONFIG_JSON`` (stdlib only).

``sandbox.py`` (the grader's side) builds the config and starts this module; it runs with the grader's
rights, sets the sandbox up, forks, and the child drops its rights and ``exec``s the student's command.
Modes (``config["mode"]``):

namespace  (root) new mount, pid, network, ipc and uts namespaces; a read-only root built of the
           system and course folders the config lists, a fresh ``/tmp``, ``/dev``, ``/proc`` and the
           student's writable folders; ``chroot`` into it; the first child is the namespace's init
           (the whole namespace dies with it) and runs the command as a dedicated uid/gid.
uid        (root) no namespaces: the command runs as the dedicated uid/gid in a new session.
bwrap      the child execs bubblewrap with the arguments in ``config["bwrap"]`` (its own namespaces).
process    the command runs as the grader's user in a new session.

Every mode sets ``PR_SET_NO_NEW_PRIVS`` (but bwrap, which sets it itself), the parent-death signal
(the command dies with the launcher) and the resource limits of ``config["limits"]``. SIGTERM makes
the launcher kill the command, and the launcher dies with the grading process that started it; its
own exit status mirrors the command's (exit code or signal).
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys

__all__ = ["main"]

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
_DEVICES = ("null", "zero", "full", "random", "urandom")
_LIMITS = {"cpu_s": resource.RLIMIT_CPU, "memory_mb": resource.RLIMIT_DATA, "file_mb": resource.RLIMIT_FSIZE,
           "nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC, "core": resource.RLIMIT_CORE}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           f"prctl {option}")


def _touch(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a"):
        pass


def _bind(source: str, dest: str, flags: int | None) -> None:
    if os.path.isdir(source):
        os.makedirs(dest, exist_ok=True)
    else:
        _touch(dest)
    _mount(source, dest, None, MS_BIND | MS_REC)
    if flags is not None:
        _mount(None, dest, None, MS_REMOUNT | MS_BIND | flags)


def _dev(dest: str) -> None:
    os.makedirs(dest, exist_ok=True)
    _mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m")
    for name in _DEVICES:
        _bind(f"/dev/{name}", f"{dest}/{name}", None)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dest}/{name}")
    os.makedirs(f"{dest}/shm")
    _mount("tmpfs", f"{dest}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")


def _build_root(newroot: str, mounts: list[list[str]]) -> None:
    """Mount a tmpfs on ``newroot`` and fill it as ``mounts`` says (``[kind, target, source or options]``)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", newroot, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m")
    for kind, target, source in mounts:
        dest = newroot + target
        if kind == "symlink":
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.symlink(source, dest)
        elif kind in ("ro", "rw"):
            _bind(source, dest, MS_NOSUID | MS_NODEV | (MS_RDONLY if kind == "ro" else 0))
        elif kind == "tmpfs":
            os.makedirs(dest, exist_ok=True)
            _mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NODEV, source)
        elif kind == "dev":
            _dev(dest)
        elif kind == "sysfs":
            os.makedirs(dest, exist_ok=True)
            _mount("sysfs", dest, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "proc":
            os.makedirs(dest, exist_ok=True)   # mounted by the init, inside the new pid namespace
        else:
            raise ValueError(f"unknown mount kind {kind!r}")
    _mount(None, newroot, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _loopback_up() -> None:
    """Bring ``lo`` up in the new network namespace (a notebook's kernel talks to its client over it)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, siocgifflags, struct.pack("16sh22x", b"lo", 0)))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh22x", b"lo", flags | iff_up))


def _enter_namespaces(config: dict) -> None:
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _build_root(config["newroot"], config["mounts"])
    _loopback_up()
    socket.sethostname("sandbox")


def _drop_rights(config: dict) -> None:
    """Become the dedicated uid (when there is one); the command then dies with its parent."""
    if config.get("uid") is not None:
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
    if config["mode"] != "bwrap":
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _exec(config: dict) -> None:
    """In the command's process: resource limits, then exec (never returns)."""
    for key, value in config["limits"].items():
        scale = 2**20 if key.endswith("_mb") else 1
        resource.setrlimit(_LIMITS[key], (value * scale, value * scale))
    argv = config["bwrap"] + config["argv"] if config["mode"] == "bwrap" else config["argv"]
    os.execve(argv[0], argv, config["env"])


def _init(config: dict, status_w: int) -> None:
    """PID 1 of the new pid namespace: run the command, reap orphans, report the command's status."""
    root = config["newroot"]
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chroot(root)
    os.chdir(config["cwd"])
    _drop_rights(config)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        os.close(status_w)
        _exec(config)
    while True:
        done, status = os.wait()
        if done == pid:
            os.write(status_w, str(status).encode())
            os._exit(0)   # the kernel kills what is left in the namespace


def _child(config: dict, status_w: int) -> None:
    if config["mode"] == "namespace":
        _init(config, status_w)
    os.close(status_w)
    os.setsid()
    os.chdir(config["cwd"])
    _drop_rights(config)
    _exec(config)


def _mirror(status: int) -> int:
    """Exit like a process that ended with wait ``status``."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 125


def main(argv: list[str]) -> int:
    """Run the command of the config ``argv[0]`` (JSON) in its sandbox; exit as it did."""
    config = json.loads(argv[0])
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)     # the grading process that started us died: so do we
    if config["mode"] == "namespace":
        _enter_namespaces(config)
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(status_r)
            _child(config, status_w)
        except BaseException as e:
            os.write(2, f"sandbox: {type(e).__name__}: {e}\n".encode())
        os._exit(126)
    os.close(status_w)

    def stop(signum, frame):
        for kill in (os.kill, os.killpg):  # the init of the namespace, else the command's session
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    _, status = os.waitpid(pid, 0)
    reported = os.read(status_r, 64)
    if config["mode"] == "namespace" and os.WIFEXITED(status) and reported:
        status = int(reported)
    return _mirror(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
