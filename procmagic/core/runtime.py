"""procmagic's private files: a per-user runtime directory, a directory per process, and files
that nobody else can plant, read or redirect.

/tmp is shared with every local user. Anything written under a predictable name there can be
pre-empted: a symlink planted at the name makes the writer overwrite a file of the attacker's
choosing (``spawn-1-1.log -> ~/.bashrc``), a file or directory squatting at the name makes the
writer fail. So:

- The base directory is ``$XDG_RUNTIME_DIR/procmagic`` where ``XDG_RUNTIME_DIR`` is set (systemd
  makes it per user, 0700), else ``<tempdir>/procmagic-<uid>``. It is created 0700 and then
  verified with ``lstat``: a directory (not a symlink), owned by this user, mode 0700 (one of
  this user's that nobody else could write into, such as a 0755 left by an older procmagic, is
  tightened to 0700 first). A base that fails the check is never written into; procmagic uses a fresh ``mkdtemp`` directory instead
  (an unpredictable name, created 0700 by the kernel) and says so once on stderr.
- Each process that writes files gets ``<base>/<pid>.<start ticks>`` (0700): the start time
  makes the name unique even when a pid is reused. It is removed at the process's normal exit;
  those of dead processes are swept when the next one is created.
- Files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600: never an existing
  file, never through a symlink. When a name is taken, the next free ``name-N`` is used.

Plain Python: no IPython import (the queue registry and the kernel's logs both use it).
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import stat as _stat
import sys
import tempfile
from typing import IO

__all__ = ["runtime_dir", "process_dir", "create_private", "open_private", "verify_private_dir",
           "sweep_stale", "remove_process_dir", "UnsafeDirectory", "start_ticks"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_base: str | None = None
_proc_dir: str | None = None
_proc_pid: int | None = None
_atexit_pid: int | None = None
_warned = False


class UnsafeDirectory(OSError):
    """A directory procmagic was to write into is not private to this user."""


def verify_private_dir(path: str) -> None:
    """Raise :class:`UnsafeDirectory` unless ``path`` is a real directory (not a symlink) owned
    by this user with mode 0700 (nobody else may list, enter or plant anything in it)."""
    st = os.lstat(path)
    uid = os.geteuid()
    if _stat.S_ISLNK(st.st_mode):
        raise UnsafeDirectory(f"{path} is a symlink, not a directory of this user's own")
    if not _stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory")
    if st.st_uid != uid:
        raise UnsafeDirectory(f"{path} belongs to uid {st.st_uid}, not to this user (uid {uid})")
    if _stat.S_IMODE(st.st_mode) != 0o700:
        raise UnsafeDirectory(f"{path} has mode {_stat.S_IMODE(st.st_mode):04o}, not 0700")


def _make_private_dir(path: str) -> str:
    """Create ``path`` 0700 unless it exists, then verify it (UnsafeDirectory, OSError).

    A directory of this user's own that others may read but never write (0755, as the first
    procmagic made them) is tightened to 0700: nobody else could have planted anything in it.
    One others may write into is never used."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        _tighten(path)
    verify_private_dir(path)
    return path


def _tighten(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return  # a symlink, not a directory, ...: verify_private_dir says which
    try:
        st = os.fstat(fd)
        mode = _stat.S_IMODE(st.st_mode)
        if st.st_uid == os.geteuid() and mode != 0o700 and not mode & 0o022:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _candidate() -> str:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "procmagic")
    return os.path.join(tempfile.gettempdir(), f"procmagic-{os.geteuid()}")


def runtime_dir() -> str:
    """This user's private base directory (see the module's docs); made on first use."""
    global _base, _warned
    if _base is not None and os.path.isdir(_base):
        return _base
    path = _candidate()
    try:
        _base = _make_private_dir(path)
    except OSError as exc:
        _base = tempfile.mkdtemp(prefix=f"procmagic-{os.geteuid()}-")  # 0700, a name nobody can guess
        atexit.register(_remove_fallback, _base, os.getpid())
        if not _warned:
            _warned = True
            print(f"procmagic: not using {path} ({exc.strerror if not isinstance(exc, UnsafeDirectory) else exc}); "
                  f"private files go to {_base} instead", file=sys.__stderr__)
    return _base


def _sweep_fallbacks() -> None:
    """Fallback directories of dead processes (a SIGKILLed kernel never removed its own): sweep
    the dead process directories in each one of this user's, then remove it if it is empty."""
    tmp = tempfile.gettempdir()
    prefix = f"procmagic-{os.geteuid()}-"
    try:
        names = [n for n in os.listdir(tmp) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        path = os.path.join(tmp, name)
        if path == _base:
            continue
        try:
            verify_private_dir(path)
        except OSError:
            continue  # not ours, or not private: never touched
        sweep_stale(path)
        _rmdir_if_empty(path)


def _rmdir_if_empty(path: str) -> None:
    """Remove ``path`` when nothing of ours is left in it (an empty queue-record directory
    does not count: a record left in it keeps both)."""
    for leftover in (os.path.join(path, "queues"), path):
        try:
            os.rmdir(leftover)
        except OSError:
            pass


def _remove_fallback(path: str, pid: int) -> None:
    if os.getpid() == pid:
        remove_process_dir()  # registered later, so it would run after this: run it now
        _rmdir_if_empty(path)


def start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _dir_name(pid: int) -> str:
    return f"{pid}.{start_ticks(pid) or 0}"


def process_dir() -> str:
    """This process's own directory in the runtime directory, removed at its normal exit; the
    directories of dead processes are swept when it is made."""
    global _proc_dir, _proc_pid, _atexit_pid
    pid = os.getpid()
    if _proc_dir is not None and _proc_pid == pid and os.path.isdir(_proc_dir):
        return _proc_dir
    base = runtime_dir()
    sweep_stale(base)
    _sweep_fallbacks()
    path = os.path.join(base, _dir_name(pid))
    try:
        _make_private_dir(path)
    except UnsafeDirectory:  # only this user can write in base: a leftover of ours; start afresh
        _remove_tree(path)
        _make_private_dir(path)
    if _atexit_pid != pid:
        atexit.register(remove_process_dir)
        _atexit_pid = pid
    _proc_dir, _proc_pid = path, pid
    return path


def _remove_tree(path: str) -> None:
    try:
        st = os.lstat(path)
    except OSError:
        return
    if _stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)  # rmtree never follows symlinks inside
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def remove_process_dir() -> None:
    """Remove this process's directory and what is in it (atexit; a fork's child has none)."""
    global _proc_dir, _proc_pid
    if _proc_dir is not None and _proc_pid == os.getpid():
        _remove_tree(_proc_dir)
        _proc_dir = _proc_pid = None


def sweep_stale(base: str | None = None) -> list[str]:
    """Remove the process directories in ``base`` whose process is gone (pid and start time;
    a bare ``<pid>``, as the first procmagic named them, when no process has that pid); returns
    their paths. Names procmagic did not make are left alone."""
    base = base or runtime_dir()
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        pid_text, dot, ticks_text = name.partition(".")
        if not pid_text.isdigit() or (dot and not ticks_text.isdigit()):
            continue
        ticks = start_ticks(int(pid_text))
        if ticks is not None and (not dot or ticks == int(ticks_text)):
            continue  # alive (for a bare <pid>, the first procmagic's layout: any process of that pid)
        path = os.path.join(base, name)
        _remove_tree(path)
        removed.append(path)
    return removed


def create_private(directory: str, name: str, tries: int = 100) -> tuple[str, int]:
    """Create a new file ``name`` (or ``name-N`` before its extension when taken) in
    ``directory``: exclusively, never through a symlink, mode 0600. Returns (path, fd)."""
    stem, ext = os.path.splitext(name)
    for n in range(tries):
        path = os.path.join(directory, name if n == 0 else f"{stem}-{n}{ext}")
        try:
            return path, os.open(path, _FLAGS, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink at the name: never followed, try the next
                continue
            raise
    raise FileExistsError(errno.EEXIST, f"no free name for {name} in {directory} after {tries} tries")


def open_private(directory: str, name: str, mode: str = "w", **kwargs: object) -> tuple[str, IO[str]]:
    """:func:`create_private` as an open file object (text by default)."""
    path, fd = create_private(directory, name)
    try:
        return path, os.fdopen(fd, mode, **kwargs)  # type: ignore[call-overload, no-any-return]
    except BaseException:
        os.close(fd)
        raise


def _after_fork_in_child() -> None:
    global _proc_dir, _proc_pid
    _proc_dir = _proc_pid = None  # a child makes its own when it needs one


os.register_at_fork(after_in_child=_after_fork_in_child)
