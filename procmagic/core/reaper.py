"""The reaper and the registry of procmagic's children.

Only procmagic's own children are ever reaped, each by its pid (``wait4(pid)``), never with
``waitpid(-1)``: that would steal the children of subprocess, multiprocessing or any other
library in the same process. There is no SIGCHLD handler, for the same reason.

How a child gets reaped, cheapest first:
- an event loop attached with :func:`watch` gets a reader on the child's pidfd, which fires once
  at exit (the kernel integration attaches the kernel's loop, so children never linger as
  zombies in a notebook);
- ``join()``, ``wait()`` and every ``start()`` reap whatever has finished;
- where ``pidfd_open`` is missing (Linux < 5.3, or blocked by seccomp) the same calls poll with
  ``WNOHANG``, and an attached loop polls every 50 ms while children live.

The registry is observable: later layers ``subscribe`` to ``started`` and ``reaped`` events.
"""

from __future__ import annotations

import collections
import os
import select
import sys
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any, Callable, Deque

from .status import ExitStatus, status_from_wait4

if TYPE_CHECKING:
    from .process import Process

__all__ = ["Registry", "registry", "wait", "watch", "pidfd_supported", "children", "reaped", "procs", "get"]

Listener = Callable[[str, "Process", "ExitStatus | None"], None]

_pidfd_ok: bool | None = None


def pidfd_supported() -> bool:
    """Whether ``os.pidfd_open`` works here (probed once: seccomp can forbid it)."""
    global _pidfd_ok
    if _pidfd_ok is None:
        try:
            fd = os.pidfd_open(os.getpid())  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            _pidfd_ok = False
        else:
            os.close(fd)
            _pidfd_ok = True
    return _pidfd_ok


def open_pidfd(pid: int) -> int | None:
    if not pidfd_supported():
        return None
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined,no-any-return]
    except OSError:
        return None


def _close(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


class Registry:
    """procmagic's children: live ones by pid, reaped ones as ExitStatus, newest last."""

    HISTORY = 1000

    def __init__(self) -> None:
        self._live: dict[int, Process] = {}
        self._reaped: Deque[ExitStatus] = collections.deque(maxlen=self.HISTORY)
        self._unclaimed: Deque[ExitStatus] = collections.deque(maxlen=self.HISTORY)
        self._listeners: list[Listener] = []
        # Every child by id while anything else keeps its Process alive (a spawn record, a user
        # variable): lookups by id or name, without extending any Process's life.
        self._known: "weakref.WeakValueDictionary[int, Process]" = weakref.WeakValueDictionary()
        self._loop: Any = None
        self._poll_handle: Any = None

    # -- observation ---------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, process, status)`` on ``"started"`` and ``"reaped"``."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {listener!r}")
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, event: str, proc: Process, status: ExitStatus | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, proc, status)
            except Exception:  # a broken observer must not break reaping
                traceback.print_exc(file=sys.__stderr__)

    def live(self) -> list[Process]:
        return list(self._live.values())

    def reaped(self) -> list[ExitStatus]:
        return list(self._reaped)

    # -- lifecycle -----------------------------------------------------------------------------
    def known(self) -> list[Process]:
        """Live children and reaped ones still referenced somewhere, by id."""
        return [self._known[k] for k in sorted(self._known.keys()) if k in self._known]

    def find(self, key: int | str) -> "Process | list[Process]":
        """A child by id (int or digits) or by name; a name shared by workers ("job" for "job/0",
        "job/1", ...) gives the list of them."""
        procs = self.known()
        if isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit()):
            number = int(key)
            for proc in procs:
                if proc.id == number:
                    return proc
            raise KeyError(f"no procmagic child with id {number}; known ids: {[p.id for p in procs]}")
        if not isinstance(key, str):
            raise TypeError(f"key must be an id (int) or a name (str), not {key!r}")
        exact = [p for p in procs if p._name == key]
        if len(exact) == 1:
            return exact[0]
        group = exact or [p for p in procs if p._name and p._name.startswith(key + "/")]
        if group:
            return group
        raise KeyError(f"no procmagic child named {key!r}; known names: {sorted({str(p.name) for p in procs})}")

    def add(self, proc: Process) -> None:
        self._known[proc.id] = proc
        self._live[proc.pid] = proc  # type: ignore[index]
        if self._loop is not None:
            self._watch_one(proc)
        self._emit("started", proc, None)

    def reap(self, proc: Process, timeout: float | None = None) -> ExitStatus | None:
        """Wait up to ``timeout`` seconds (None: forever) for ``proc`` and reap it."""
        if proc._status is not None:
            return proc._status
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        pidfd = proc._pidfd
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
            if not poller.poll(ms):
                return None
            return self._try_reap(proc, block=True)
        delay = 0.0005
        while True:  # fallback without pidfd: poll with a growing pause
            status = self._try_reap(proc, block=False)
            if status is not None:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return None
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 2, 0.05)

    def reap_ready(self) -> list[ExitStatus]:
        """Reap, without blocking, every child that has finished."""
        done = []
        for proc in list(self._live.values()):
            status = self._try_reap(proc, block=False)
            if status is not None:
                done.append(status)
        return done

    def wait(self, blocking: bool = True, timeout: float | None = None) -> ExitStatus | None:
        """The next finished child not yet reported by ``wait()`` or ``join()``; see module docs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.reap_ready()
            if self._unclaimed:
                return self._unclaimed.popleft()
            if not blocking or not self._live:
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            pidfds = [p._pidfd for p in self._live.values() if p._pidfd is not None]
            if len(pidfds) == len(self._live):
                poller = select.poll()
                for fd in pidfds:
                    poller.register(fd, select.POLLIN)
                poller.poll(None if remaining is None else max(1, int(remaining * 1000)))
            else:
                time.sleep(0.005 if remaining is None else min(0.005, remaining))

    def _try_reap(self, proc: Process, block: bool) -> ExitStatus | None:
        if proc._status is not None:
            return proc._status
        try:
            pid, status, rusage = os.wait4(proc.pid, 0 if block else os.WNOHANG)  # type: ignore[arg-type]
        except ChildProcessError:
            # Someone else reaped it (a waitpid(-1) elsewhere, or SIGCHLD set to SIG_IGN).
            return self._finish(proc, None, None)
        if pid == 0:
            return None
        return self._finish(proc, status, rusage)

    def _finish(self, proc: Process, raw: int | None, rusage: object) -> ExitStatus:
        exec_error = _read_exec_error(proc)
        wall = time.monotonic() - proc._started_at
        if raw is None:
            status = ExitStatus(pid=proc.pid or 0, id=proc.id, code=None, signal=None, wall_time=wall,
                                name=proc._name, timed_out=proc._timed_out, exec_error=exec_error)
        else:
            status = status_from_wait4(proc.pid or 0, proc.id, raw, rusage, wall, proc._name,
                                       proc._timed_out, exec_error)
        self._unwatch_one(proc)
        _close(proc._pidfd)
        proc._pidfd = None
        proc._status = status
        self._live.pop(proc.pid, None)  # type: ignore[arg-type]
        self._reaped.append(status)
        if not proc._claimed:
            self._unclaimed.append(status)
        proc._on_reaped()
        self._emit("reaped", proc, status)
        return status

    def claim(self, proc: Process) -> None:
        """``join()`` reported this child: ``wait()`` must not report it again."""
        proc._claimed = True
        status = proc._status
        if status is not None:
            try:
                self._unclaimed.remove(status)
            except ValueError:
                pass

    # -- event loops ---------------------------------------------------------------------------
    def watch(self, loop: Any) -> Callable[[], None]:
        """Reap children from an asyncio loop as they exit; returns a function that stops it.

        Call it from the loop's own thread. procmagic's kernel integration does this with the
        kernel's loop, so a notebook never shows zombies.
        """
        if self._loop is not None and self._loop is not loop:
            self.unwatch()
        self._loop = loop
        for proc in list(self._live.values()):
            self._watch_one(proc)
        self.reap_ready()
        return self.unwatch

    def unwatch(self) -> None:
        for proc in list(self._live.values()):
            self._unwatch_one(proc)
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None
        self._loop = None

    def _watch_one(self, proc: Process) -> None:
        if proc._pidfd is None:
            if self._poll_handle is None:
                self._poll_handle = self._loop.call_later(0.05, self._poll_tick)
            return
        try:
            self._loop.add_reader(proc._pidfd, self._on_pidfd, proc)
            proc._watched = True
        except (RuntimeError, ValueError, OSError):  # loop closed: join()/wait() still reap
            pass

    def _unwatch_one(self, proc: Process) -> None:
        if proc._watched and self._loop is not None and proc._pidfd is not None:
            try:
                self._loop.remove_reader(proc._pidfd)
            except (RuntimeError, ValueError, OSError):
                pass
        proc._watched = False

    def _on_pidfd(self, proc: Process) -> None:
        if proc._status is None:
            self._try_reap(proc, block=False)

    def _poll_tick(self) -> None:
        self._poll_handle = None
        self.reap_ready()
        if self._loop is not None and any(p._pidfd is None for p in self._live.values()):
            self._poll_handle = self._loop.call_later(0.05, self._poll_tick)

    # -- fork ----------------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        # The parent's children are not ours: drop them, their pidfds, listeners and the loop.
        for proc in self._live.values():
            _close(proc._pidfd)
            proc._pidfd = None
            _close(proc._errpipe)
            proc._errpipe = None
            proc._watched = False
        self._live.clear()
        self._known = weakref.WeakValueDictionary()
        self._reaped.clear()
        self._unclaimed.clear()
        self._listeners.clear()
        self._loop = None
        self._poll_handle = None


def _read_exec_error(proc: Process) -> OSError | None:
    fd = proc._errpipe
    if fd is None:
        return None
    proc._errpipe = None
    try:
        data = os.read(fd, 4096)
    except OSError:
        data = b""
    finally:
        _close(fd)
    if not data:
        return None
    # "errno:path:strerror", as the child wrote it (see child.exec_in_child)
    errno_text, _, rest = data.decode("utf-8", "replace").partition(":")
    path, _, strerror = rest.partition(":")
    try:
        number = int(errno_text)
    except ValueError:
        number = 0
    err = OSError(number, strerror or os.strerror(number), path)
    return err


registry = Registry()
os.register_at_fork(after_in_child=registry._after_fork_in_child)


def wait(blocking: bool = True, timeout: float | None = None) -> ExitStatus | None:
    """Reap the next of procmagic's children to finish, and return its ExitStatus.

    Only procmagic's own children are waited for (never ``waitpid(-1)``). Each finished child
    is reported once, by ``wait()`` or by its ``join()``. Returns None when none is left to
    report, or when ``blocking=False`` and none has finished yet.
    """
    return registry.wait(blocking=blocking, timeout=timeout)


def watch(loop: Any) -> Callable[[], None]:
    """Reap children from ``loop`` (an asyncio loop) as they exit. See :meth:`Registry.watch`."""
    return registry.watch(loop)


def children() -> list[Process]:
    """procmagic's live (not yet reaped) children, oldest first."""
    return registry.live()


def procs() -> list[Process]:
    """procmagic's children by id: live ones, and reaped ones that something still references."""
    return registry.known()


def get(key: int | str) -> "Process | list[Process]":
    """A child by id or name (a worker group's name gives the list); KeyError when unknown."""
    return registry.find(key)


def reaped() -> list[ExitStatus]:
    """Exit statuses of reaped children, oldest first (the last 1000)."""
    return registry.reaped()
