"""The watcher: nothing procmagic started outlives this process, even one killed with SIGKILL.

``PR_SET_PDEATHSIG`` kills each child when its parent dies, but only the child: what the child
started (``subprocess.Popen(["sleep", "300"])``) would be orphaned and live on. Every child leads
its own process group, and its descendants stay in that group unless they leave it on purpose
(``setsid``, ``setpgid``). So one small watcher process per parent holds the groups' ids:

- it is started at the first fork, by ``subprocess`` (fork + exec: no fork-safety question), and
  detaches (a shell starts it in the background and exits), so it is never this process's
  child and never shows among its children;
- it reads a pipe whose write end only this process holds (close-on-exec, and closed in every
  process forked from here), one line per event: ``+PGID`` when a child starts, ``-PGID`` once
  its group is empty;
- at end of file (this process exited or was killed, whatever the way), it stops every group
  still registered: SIGTERM, a grace period (:data:`GRACE`), then SIGKILL. Before signalling it
  checks that the group still has a member in this process's session, so a process group id
  recycled by a stranger long after is never hit.

Limits: a descendant that leaves its group (``setsid``, a daemon's double fork) escapes the
watcher; while its child is alive it is still found below it (each child is a subreaper, see
child.py) and stopped by the stop ladder. If the watcher cannot start (no ``sh`` or Python
executable, a seccomp profile), procmagic works without it and ``watcher_pid()`` is None.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

from . import timing

__all__ = ["ensure", "track", "untrack", "watcher_pid", "GRACE"]

#: Seconds between SIGTERM and SIGKILL when the watcher stops what this process left behind.
GRACE = 2.0

#: The watcher's program: a plain script, run by path (it never imports procmagic).
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watcher_main.py")

_write_fd: int | None = None
_ready_fd: int | None = None  # the watcher writes its pid here once it runs (read on demand)
_pid: int | None = None
_owner: int | None = None  # the pid that started it (a forked child starts its own)
_broken = False  # the watcher could not be started here: do not try at every fork


def watcher_pid(timeout: float = 10.0) -> int | None:
    """The pid of this process's watcher (waiting up to ``timeout`` s for it to say so), None
    before the first fork or if it could not start."""
    global _ready_fd, _pid
    if _owner != os.getpid():
        return None
    if _pid is None and _ready_fd is not None:
        text = _read_all(_ready_fd, timeout)
        os.close(_ready_fd)
        _ready_fd = None
        _pid = int(text) if text.isdigit() else None
    return _pid


def ensure() -> bool:
    """Start the watcher if this process has none yet; True when one was started. Called by
    ``Process.start()`` before it forks (never inside the fork's critical section). It costs a
    ``/bin/sh`` (a few ms) once per process: the watcher itself starts in the background, and
    what is written to it meanwhile waits in the pipe."""
    global _write_fd, _ready_fd, _owner, _broken
    if _owner == os.getpid() and _write_fd is not None:
        return True
    if _broken:
        return False
    _forget()
    try:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    except OSError:
        return False
    try:
        # sh starts the watcher in the background and exits at once: the watcher is re-parented
        # away from us and never counted among our children. Its own session keeps it out of
        # the signals aimed at our process group (a kernel's interrupt, a shell's Ctrl-C).
        command = '"$0" -I -S "$1" "$2" "$3" "$4" "$5" </dev/null >/dev/null 2>&1 &'
        shell = subprocess.Popen(
            ["/bin/sh", "-c", command, sys.executable, _SCRIPT, str(read_fd), repr(GRACE), str(os.getsid(0)),
             str(ready_w)],
            pass_fds=(read_fd, ready_w), start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
        )
        code = shell.wait()
    except (OSError, subprocess.SubprocessError):
        code = -1
    os.close(read_fd)  # the watcher holds it now (or nobody: then writes fail and we stop)
    os.close(ready_w)
    if code != 0 or not sys.executable:
        for fd in (write_fd, ready_r):
            os.close(fd)
        _broken = True
        return False
    os.set_blocking(write_fd, False)
    _write_fd, _ready_fd, _owner = write_fd, ready_r, os.getpid()
    return True


def _read_all(fd: int, timeout: float) -> str:
    """What the watcher wrote on ``fd`` until it closed it (bounded)."""
    chunks: list[bytes] = []
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = timing.deadline_after(timeout)
    while True:
        if not poller.poll(timing.poll_ms(deadline)):
            return ""
        data = os.read(fd, 64)
        if not data:
            return b"".join(chunks).decode("ascii", "replace").strip()
        chunks.append(data)


def _send(line: bytes) -> None:
    fd = _write_fd
    if fd is None or _owner != os.getpid():
        return
    try:
        os.write(fd, line)
    except BlockingIOError:
        pass  # the watcher is stuck: this group goes unwatched rather than block a fork
    except OSError:  # nobody reads (the watcher died, or never started): the next ensure() retries
        _forget()


def track(pgid: int) -> None:
    """A child leading group ``pgid`` was forked (fork.py calls this, signals blocked)."""
    _send(b"+%d\n" % pgid)


def untrack(pgid: int) -> None:
    """Group ``pgid`` is empty: the watcher forgets it (its id may be reused from now on)."""
    _send(b"-%d\n" % pgid)


def _forget() -> None:
    global _write_fd, _ready_fd, _pid, _owner
    fds = (_write_fd, _ready_fd)
    _write_fd, _ready_fd, _pid, _owner = None, None, None, None
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


# Every process forked from here (procmagic's children, multiprocessing's, a bare os.fork)
# closes its copy of the write end: only this process's death may end the watcher's input.
os.register_at_fork(after_in_child=_forget)
