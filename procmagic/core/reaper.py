"""The reaper and the registry of procmagic's children: every exit recorded once, in one place.

Only procmagic's own children are ever reaped, each by its pid (``wait4(pid)``), never with
``waitpid(-1)``: that would steal the children of subprocess, multiprocessing or any other
library in the same process. There is no SIGCHLD handler, for the same reason.

How a child gets reaped, cheapest first:
- every event loop attached with :func:`watch` (several may be, each on its own thread) gets a
  reader on the child's pidfd, which fires once at exit; whichever loop sees it first reaps, so
  a child is reaped promptly even while another thread is busy;
- ``join()``, ``wait()``, ``poll()`` and every ``start()`` reap whatever has finished;
- where ``pidfd_open`` is missing (Linux < 5.3, or blocked by seccomp) the same calls poll with
  ``WNOHANG``, and an attached loop polls every 50 ms while children live.

Whoever reaps, the status is recorded once (under a lock), with the wall time from the fork to
the moment the exit was seen, and then, outside the lock and on the reaping thread: the
``Process``'s done callbacks (exactly once each, see ``Process.add_done_callback``) and the
registry's ``"reaped"`` listeners. Both run on whichever thread reaped: hand over to your own
loop (``call_soon_threadsafe``) before doing anything thread-bound.
"""

from __future__ import annotations

import collections
import os
import select
import sys
import threading
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any, Callable, Deque

from . import timing
from . import watcher as _watcher
from .loop_watch import LoopWatching, _close, _Watch
from .record import ChildRecord
from .status import ExitStatus, status_from_wait4

if TYPE_CHECKING:
    from .process import Process

__all__ = ["Registry", "registry", "wait", "watch", "pidfd_supported", "children", "reaped", "procs", "get",
           "group_alive", "open_pidfd", "set_queue_cleanup"]

Listener = Callable[[str, "Process", "ExitStatus | None"], None]

_pidfd_ok: bool | None = None
#: ``fn(pid)``: remove the SysV queues a reaped child left (queue_registry sets it). A hook, not
#: a listener: it is called only for a child that may have made one (``ChildRecord.made_queue``),
#: so the reap of any other child calls nothing at all for queues.
_queue_cleanup: Callable[[int], None] | None = None
_P_PIDFD: int | None = getattr(os, "P_PIDFD", None)  # waitid() on a pidfd: Linux 5.4+
_EXITED_NOWAIT = os.WEXITED | os.WNOWAIT


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
    if not (_pidfd_ok or _pidfd_ok is None and pidfd_supported()):
        return None
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined,no-any-return]
    except OSError:
        return None


def set_queue_cleanup(fn: Callable[[int], None] | None) -> None:
    global _queue_cleanup
    _queue_cleanup = fn


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` still has a member (zombies count until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Registry(LoopWatching):
    """procmagic's children: live ones by pid, reaped ones as ExitStatus, newest last."""

    HISTORY = 1000

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._live: dict[int, ChildRecord] = {}
        self._reaped: Deque[ExitStatus] = collections.deque(maxlen=self.HISTORY)
        self._unclaimed: Deque[ExitStatus] = collections.deque(maxlen=self.HISTORY)
        self._listeners: list[Listener] = []
        # Every child by id while anything else keeps its Process alive (a spawn record, a user
        # variable): lookups by id or name, without extending any Process's life. Plain weak
        # references, dropped once dead by known() and when the dict doubles: a
        # WeakValueDictionary builds a KeyedRef in Python at every store (~25 copy-on-write
        # faults per spawn).
        self._known: "dict[int, weakref.ref[Process]]" = {}
        self._known_prune_at = 64
        self._watches: list[_Watch] = []
        # Process groups of reaped children that still have members (a grandchild started in
        # the background): stopped by the ladder with their spawn, at shutdown, or by the
        # watcher if this process dies.
        self._leftovers: set[int] = set()

    # -- observation ---------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, process, status)`` on ``"started"`` and ``"reaped"``.

        ``"reaped"`` runs on the thread that reaped (see the module docs). To never miss one
        child's end, prefer ``Process.add_done_callback`` before ``start()``.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {listener!r}")
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, event: str, proc: "Process", status: ExitStatus | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, proc, status)
            except Exception:  # a broken observer must not break reaping
                traceback.print_exc(file=sys.__stderr__)

    def live(self) -> list["Process"]:
        return [r.process for r in list(self._live.values())]

    def reaped(self) -> list[ExitStatus]:
        return list(self._reaped)

    def known(self) -> list["Process"]:
        """Live children and reaped ones still referenced somewhere, by id."""
        known = {k: ref() for k, ref in list(self._known.items())}
        return [p for p in (known[k] for k in sorted(known)) if p is not None]

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
        exact = [p for p in procs if p.given_name == key]
        if len(exact) == 1:
            return exact[0]
        group = exact or [p for p in procs if p.given_name and p.given_name.startswith(key + "/")]
        if group:
            return group
        raise KeyError(f"no procmagic child named {key!r}; known names: {sorted({str(p.name) for p in procs})}")

    # -- registration (fork.py) ----------------------------------------------------------------
    def add(self, record: ChildRecord) -> None:
        """Register a child the instant it is forked (signals still blocked: dict stores only)."""
        self._live[record.pid] = record
        proc = record.owner  # the Process itself until the reap
        known = self._known
        known[proc.id] = weakref.ref(proc)
        if len(known) >= self._known_prune_at:
            # Only forks store here (the main thread's): the dead go, a new dict replaces the old.
            self._known = known = {k: ref for k, ref in known.items() if ref() is not None}
            self._known_prune_at = max(64, 2 * len(known))

    def watch_record(self, record: ChildRecord) -> None:
        """Give every attached loop a reader on the new child's pidfd (or start polling)."""
        with self._lock:
            for w in self._watches:
                self._watch_one(w, record)

    def announce(self, record: ChildRecord) -> None:
        """Tell the listeners a child started (after the parent's signals are unblocked)."""
        self._emit("started", record.owner, None)  # not yet reaped: owner is the Process

    # -- reaping -------------------------------------------------------------------------------
    def poll(self, proc: "Process | ChildRecord", *, claim: bool = False) -> ExitStatus | None:
        """Reap ``proc``'s child if it has exited (never blocks); its status, else None.
        ``claim``: the caller reports the status itself (``join()``), so ``wait()`` must not,
        if this call is the one that reaps it."""
        record = proc if type(proc) is ChildRecord else _record_of(proc)
        with self._lock:
            if record.status is not None:
                return record.status
            try:
                pid, raw, rusage = os.wait4(record.pid, os.WNOHANG)
            except ChildProcessError:
                # Someone else reaped it (a waitpid(-1) elsewhere, or SIGCHLD set to SIG_IGN).
                pid, raw, rusage = record.pid, None, None
            if pid == 0:
                return None
            if claim:
                record.claimed = True
            status = self._record_exit(record, raw, rusage)
        self._after_exit(record, status)
        return status

    def reap(self, proc: "Process | ChildRecord", timeout: float | None = None, *,
             claim: bool = False) -> ExitStatus | None:
        """Wait up to ``timeout`` seconds (None: forever) for ``proc``'s child and reap it
        (``claim`` as for :meth:`poll`)."""
        record = proc if type(proc) is ChildRecord else _record_of(proc)
        if timeout is None and _P_PIDFD is not None and record.status is None:
            # No time-out: one blocking waitid on the pidfd that leaves the child waitable
            # (WNOWAIT), then the reap under the lock as always. No poll object, no deadline
            # arithmetic and one wait4 fewer than the loop below (a child ending while another
            # thread reaps it ends the waitid with ECHILD; poll() then returns its status).
            pidfd = self.hold(record)
            if pidfd is not None:
                try:
                    os.waitid(_P_PIDFD, pidfd, _EXITED_NOWAIT)
                except ChildProcessError:
                    pass
                except OSError:  # a kernel without P_PIDFD waitid (5.3): the loop below
                    pass
                finally:
                    self.release(record)
        status = self.poll(record, claim=claim)
        if status is not None or timeout == 0:
            return status
        deadline = timing.deadline_after(timeout)
        pidfd = self.hold(record)
        try:
            if pidfd is not None:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                while True:
                    poller.poll(timing.poll_ms(deadline))
                    status = self.poll(record, claim=claim)
                    if status is not None or (deadline is not None and time.monotonic() >= deadline):
                        return status
            delay = 0.0005
            while True:  # fallback without pidfd: poll with a growing pause
                status = self.poll(record, claim=claim)
                if status is not None:
                    return status
                left = timing.remaining(deadline)
                if left == 0:
                    return None
                time.sleep(delay if left is None else min(delay, left))
                delay = min(delay * 2, 0.05)
        finally:
            self.release(record)

    def leftover_groups(self) -> list[int]:
        """Process groups of reaped children that still have members, oldest first."""
        for pgid in list(self._leftovers):
            if not group_alive(pgid):
                self._leftovers.discard(pgid)
                _watcher.untrack(pgid)
        return sorted(self._leftovers)

    def reap_ready(self) -> list[ExitStatus]:
        """Reap, without blocking, every child that has finished."""
        if self._leftovers:
            self.leftover_groups()
        done = []
        for record in list(self._live.values()):
            status = self.poll(record)
            if status is not None:
                done.append(status)
        return done

    def wait(self, blocking: bool = True, timeout: float | None = None) -> ExitStatus | None:
        """The next finished child not yet reported by ``wait()`` or ``join()``; see module docs."""
        if not isinstance(blocking, bool):
            raise TypeError(f"blocking must be True or False, not {blocking!r}")
        deadline = timing.deadline_after(timing.seconds(timeout))
        while True:
            self.reap_ready()
            with self._lock:
                if self._unclaimed:
                    return self._unclaimed.popleft()
            if not blocking or not self._live:
                return None
            left = timing.remaining(deadline)
            if left == 0:
                return None
            records = list(self._live.values())
            fds = [fd for fd in (self.hold(r) for r in records) if fd is not None]
            try:
                if len(fds) == len(records):
                    poller = select.poll()
                    for fd in fds:
                        poller.register(fd, select.POLLIN)
                    poller.poll(timing.poll_ms(deadline))
                else:
                    time.sleep(0.005 if left is None else min(0.005, left))
            finally:
                for r in records:
                    self.release(r)

    def _record_exit(self, record: ChildRecord, raw: int | None, rusage: object) -> ExitStatus:
        """Under the lock: the one place an exit is recorded."""
        proc = record.process
        if record.exited_at is None:
            record.exited_at = time.monotonic()
            marked = proc._exit_mark(record)
            if marked is not None and record.started_at <= marked < record.exited_at:
                record.exited_at = marked  # reaped late: the child said when it really ended
        exec_error = record.take_exec_error() if record.errpipe is not None else None
        wall = record.exited_at - record.started_at
        name = proc._name  # given_name, without a property call
        timed_out = record.stop_reason == "timeout"
        if raw is None:
            status = ExitStatus(pid=record.pid, id=proc.id, code=None, signal=None, wall_time=wall, name=name,
                                timed_out=timed_out, exec_error=exec_error, stop_reason=record.stop_reason)
        else:
            status = status_from_wait4(record.pid, proc.id, raw, rusage, wall, name, timed_out, exec_error,
                                       stop_reason=record.stop_reason)
        record.status = status
        self._live.pop(record.pid, None)
        self._reaped.append(status)
        if not record.claimed:
            self._unclaimed.append(status)
        return status

    def _after_exit(self, record: ChildRecord, status: ExitStatus) -> None:
        """Outside the lock, on the reaping thread: release the pidfd, tell everyone, once."""
        self._unwatch_record(record)
        if group_alive(record.pgid):
            self._leftovers.add(record.pgid)
        else:
            _watcher.untrack(record.pgid)
        proc = record.process
        proc._on_reaped(record)  # reads the child's counters slot: made_queue, among others
        if record.made_queue is not False and _queue_cleanup is not None and status.pid:
            try:
                _queue_cleanup(status.pid)
            except Exception:  # a failed cleanup must not break reaping
                traceback.print_exc(file=sys.__stderr__)
        if self._listeners:
            self._emit("reaped", proc, status)
        callbacks, record.callbacks = record.callbacks, []
        for callback in callbacks:
            try:
                callback(status)
            except Exception:  # one broken observer must not keep the others from hearing
                traceback.print_exc(file=sys.__stderr__)
        record.let_go()

    def claim(self, proc: "Process | ChildRecord") -> None:
        """``join()`` reported this child: ``wait()`` must not report it again."""
        record = proc if type(proc) is ChildRecord else _record_of(proc)
        with self._lock:
            record.claimed = True
            if record.status is not None:
                try:
                    self._unclaimed.remove(record.status)
                except ValueError:
                    pass

    # -- fork ----------------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        # The parent's children are not ours: drop them, their pidfds, listeners and loops.
        # The lock may have been held by another thread at the fork: a new one.
        self._lock = threading.RLock()
        for record in self._live.values():
            _close(record.pidfd)
            record.pidfd = None
            _close(record.errpipe)
            record.errpipe = None
        # Fresh containers; the parent's are kept, untouched: emptying or freeing them would
        # write to every status and weak reference they hold (a thousand after a while), one
        # copy-on-write fault each, in every child (measured: ~100-700 faults, up to ~2 ms).
        _inherited.append((self._live, self._known, self._reaped, self._unclaimed))
        self._live = {}
        self._known = {}
        self._reaped = collections.deque(maxlen=self.HISTORY)
        self._unclaimed = collections.deque(maxlen=self.HISTORY)
        self._listeners.clear()
        self._watches = []
        self._leftovers = set()


def _record_of(proc: "Process | ChildRecord") -> ChildRecord:
    if isinstance(proc, ChildRecord):
        return proc
    record = proc._record
    if record is None:
        from .errors import ProcessStateError

        raise ProcessStateError(f"process {proc.id} was never started: nothing to reap")
    return record


_inherited: list[Any] = []  # in a child: the parent's registry containers (see _after_fork_in_child)
registry = Registry()
os.register_at_fork(after_in_child=registry._after_fork_in_child)


def wait(blocking: bool = True, timeout: float | None = None) -> ExitStatus | None:
    """Reap the next of procmagic's children to finish, and return its ExitStatus.

    Only procmagic's own children are waited for (never ``waitpid(-1)``). Each finished child
    is reported once, by ``wait()`` or by its ``join()``. Returns None when none is left to
    report, or when ``blocking=False`` and none has finished yet.
    """
    return registry.wait(blocking=blocking, timeout=timeout)


def watch(loop: Any, *, thread: int | None = None) -> Callable[[], None]:
    """Reap children from ``loop`` (an asyncio loop) as they exit. See :meth:`Registry.watch`."""
    return registry.watch(loop, thread=thread)


def children() -> list["Process"]:
    """procmagic's live (not yet reaped) children, oldest first."""
    return registry.live()


def procs() -> list["Process"]:
    """procmagic's children by id: live ones, and reaped ones that something still references."""
    return registry.known()


def get(key: int | str) -> "Process | list[Process]":
    """A child by id or name (a worker group's name gives the list); KeyError when unknown."""
    return registry.find(key)


def reaped() -> list[ExitStatus]:
    """Exit statuses of reaped children, oldest first (the last 1000)."""
    return registry.reaped()
