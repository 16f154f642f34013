"""``Process``: swoole_process in Python, and its front door.

The only fork in procmagic is in ``fork.py`` (the parent's critical section and the child's
trampoline); the child's setup is in ``child.py``; this module is the object users hold: its
identity, its lifecycle (start, join, poll, kill, stop) and the documented extension points the
kernel integration uses instead of reaching inside:

- ``Process(..., child_setup=fn)``: ``fn(process)`` runs in the child after the core's reset,
  before the target;
- ``give_to_child(sock)``: an end of a channel of yours that the child keeps (closed here right
  after the fork, and in every other child); ``child.close_in_children(sock)`` for ends that
  stay here;
- ``add_done_callback(fn)``: ``fn(status)`` exactly once, even when the child is reaped by a
  sibling's ``start()`` or by another thread's loop, or immediately when it is already reaped;
- ``mark_stop_reason(reason)``: why procmagic stopped it, shown in ``ExitStatus.stop_reason``;
- ``claim_reader(reason)``, ``inherited_streams``, ``exit_fd``/``hold_exit_fd()``, ``poll()``.

The pipe and queue methods live in ``process_io.py``, name/affinity/priority in
``process_sched.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal as _signal
import socket
import _socket
from typing import Any, Callable, Iterator, Mapping

from . import child as _child
from . import counters as _counters
from . import guard as _guard
from . import ladder as _ladder
from . import pipe as _pipe
from . import timing
from .errors import ForkWarning, ProcessStateError
from .fork import fork_child
from .process_child import ChildSideMixin, add_process
from .process_io import PipeMixin, QueueMixin
from .process_sched import ProcessName, SchedulingMixin, next_id, preload_title
from .record import ChildRecord, DoneCallback
from .reaper import registry
from .signals import SignalLike, child_handlers, signal_number
from .status import ExitStatus

__all__ = ["Process", "ProcessName", "ForkWarning"]

#: The C close of a socket: our own end of a pipe, dropped at once (never made into a file),
#: needs none of ``socket.close``'s two Python calls.
_close_socket = _socket.socket.close


class Process(ChildSideMixin, PipeMixin, QueueMixin, SchedulingMixin):
    """A child process forked from this one, with swoole_process's reach.

    ``target(process)`` runs in the child; its return value is the exit code (None -> 0).
    ``pipe`` is ``"stream"``, ``"dgram"`` (message boundaries kept) or None. ``redirect=True``
    forces a stream pipe and puts the child's fds 0, 1 and 2 on it: ``write()`` feeds the
    child's stdin and ``read()`` returns everything it prints, C code and subprocesses included.
    ``child_setup(process)``, if given, runs in the child after procmagic's own reset and just
    before ``target``.

    >>> p = Process(lambda proc: proc.write(b"hi"), pipe="dgram")
    >>> p.start()  # doctest: +SKIP
    >>> p.read(), p.join().code  # doctest: +SKIP
    (b'hi', 0)
    """

    def __init__(self, target: Callable[["Process"], Any], redirect: bool = False, pipe: Any = "dgram", *,
                 name: str | None = None, signals: Mapping[Any, Any] | None = None,
                 child_setup: Callable[["Process"], Any] | None = None) -> None:
        if not callable(target):
            raise TypeError(
                f"target must be callable (it runs in the child as target(process)), not "
                f"{type(target).__name__} {target!r}"
            )
        if not isinstance(redirect, bool):
            raise TypeError(f"redirect must be True or False, not {redirect!r}")
        if child_setup is not None and not callable(child_setup):
            raise TypeError(f"child_setup must be callable (it runs in the child as child_setup(process)) or None, "
                            f"not {child_setup!r}")
        kind = pipe if pipe == "dgram" or pipe == "stream" else _pipe.pipe_kind(pipe)
        if redirect:
            kind = "stream"  # as swoole does: stdio is a byte stream
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name must be a non-empty str, not {name!r}")
        self._signals = child_handlers(signals) if signals is not None else {}
        self._target = target
        self._child_setup = child_setup
        self._redirect = redirect
        self._kind = kind
        self.id = next_id()
        self._name = name
        self._sock: socket.socket | None = None
        self._child_sock: socket.socket | None = None
        self._child_ends: list[socket.socket] = []  # give_to_child(): kept by the child only
        if kind is not None:
            self._sock, self._child_sock = _pipe.make_pair(kind)
        self._record: ChildRecord | None = None
        self._done_callbacks: list[DoneCallback] = []  # added before start(): the next run's
        self._parent_pid = os.getpid()
        self._in_child = False
        self._own_pid = 0  # in the child: its pid
        self._errpipe_w: int | None = None  # in the child: where an exec() failure is written
        self._timeout: float | None = None
        self._blocking = True
        self._counters: _counters.Counters | None = None
        self._affinity: list[int] | None = None
        self._priority: int | None = None
        self._queue: Any = None
        self.worker: int | None = None  # the worker index with %%spawn -n / Pool
        self._inherited_streams: tuple[Any, Any, Any] = (None, None, None)  # the child's, before rebinding
        self._reader_claim: str | None = None  # claim_reader(): procmagic itself reads the pipe
        add_process(self)

    # -- identity ------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The child's pid (None before start); in the child, its own."""
        if self._in_child:
            return self._own_pid
        return self._record.pid if self._record is not None else None

    @property
    def redirect(self) -> bool:
        return self._redirect

    @property
    def exitstatus(self) -> ExitStatus | None:
        """How the child ended, once reaped (None before)."""
        return self._record.status if self._record is not None and not self._in_child else None

    @property
    def started_at(self) -> float | None:
        """When the child was forked, in ``time.monotonic()`` seconds (None before start)."""
        return self._record.started_at if self._record is not None else None

    @property
    def stop_reason(self) -> str | None:
        """Why procmagic stopped the child (see ``mark_stop_reason``); None if it was not."""
        return self._record.stop_reason if self._record is not None else None

    @property
    def inherited_streams(self) -> tuple[Any, Any, Any]:
        """In the child: the ``sys.stdin/stdout/stderr`` it inherited, before procmagic bound
        fresh ones over fds 0-2 (for a ``child_setup`` that neutralises stale references)."""
        return self._inherited_streams

    @property
    def exit_fd(self) -> int | None:
        """The child's pidfd: readable once it has exited (then ``poll()`` reaps it). None before
        start, once reaped, in the child, or where pidfds are missing. Polled from a thread other
        than the one that reaps, use ``hold_exit_fd()``: the fd is closed at the reap."""
        return self._exit_fd()

    @contextlib.contextmanager
    def hold_exit_fd(self) -> Iterator[int | None]:
        """``with p.hold_exit_fd() as fd:`` keeps the pidfd open (its number never reused) while
        you poll it, even if another thread reaps the child meanwhile."""
        record = self._record
        if record is None or self._in_child:
            yield None
            return
        fd = registry.hold(record)
        try:
            yield fd
        finally:
            if fd is not None:
                registry.release(record)

    @property
    def counters(self) -> dict[str, int]:
        """The child's traffic counters (queue pushes/pops, alarm ticks), read from shared memory."""
        slot, record = self._counters, self._record
        if slot is not None and (record is None or record.counts is None):
            try:
                return slot.snapshot()
            except Exception:  # released by a reap on another thread between two reads
                pass
        return _counters.decode(record.counts if record is not None else None)

    def __repr__(self) -> str:
        status = self.exitstatus
        state = "not started" if self.pid is None else status.how if status is not None else "running"
        pid = f" pid={self.pid}" if self.pid else ""
        return f"<Process id={self.id} name={str(self.name)!r}{pid} {state} pipe={self._kind}{' redirect' if self._redirect else ''}>"

    # -- extension points ----------------------------------------------------------------------
    def give_to_child(self, sock: socket.socket) -> None:
        """Hand ``sock`` (your end of a channel to this child) over at ``start()``: the child
        keeps it open, this process closes it right after the fork, every other child closes
        its copy. Before start only; ``close()`` before start closes it too."""
        if not isinstance(sock, socket.socket):
            raise TypeError(f"give_to_child() takes a socket.socket, not {type(sock).__name__} {sock!r}")
        if self._in_child or self.pid is not None and self.exitstatus is None:
            raise ProcessStateError("give_to_child() hands a socket over at start(): call it before start()")
        self._child_ends.append(sock)

    def add_done_callback(self, fn: DoneCallback) -> None:
        """Call ``fn(status)`` exactly once when the child is reaped, on the reaping thread;
        at once if it is already reaped. Added before ``start()``, it is the next run's."""
        if not callable(fn):
            raise TypeError(f"a done callback must be callable as fn(status), not {fn!r}")
        if self._in_child:
            raise ProcessStateError("add_done_callback() is for the parent; this is the child itself")
        record = self._record
        if record is None:
            self._done_callbacks.append(fn)
            return
        with registry._lock:
            if record.status is None:
                record.callbacks.append(fn)
                return
        fn(record.status)

    def mark_stop_reason(self, reason: str) -> bool:
        """Record why procmagic is stopping the child ("timeout", "interrupt", "kill", ...), for
        ``ExitStatus.stop_reason`` (and ``timed_out`` for "timeout"). The first reason stands;
        returns False when one was already marked or the child is already reaped."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"reason must be a non-empty str like 'timeout', not {reason!r}")
        self._require_parent("mark_stop_reason")
        record = self._record
        assert record is not None
        with registry._lock:
            if record.status is not None or record.stop_reason is not None:
                return False
            record.stop_reason = reason
            return True

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, *, force: bool = False) -> int:
        """Fork; the child runs ``target(self)``. Returns the child's pid.

        The threaded-fork guard runs first and raises ``ForkRefused`` when a thread outside its
        allow-list is alive (``force=True`` forks anyway, with a warning). The child is
        registered before this process can take any signal again: an interrupt during
        ``start()`` never loses it (``pid`` is set and the registry reaps it).
        """
        if not isinstance(force, bool):
            raise TypeError(f"force must be True (fork despite live threads) or False, not {force!r}")
        if self._in_child:
            raise ProcessStateError("start() was called inside this process's own child; it is already running")
        if os.getpid() != self._parent_pid:
            raise ProcessStateError(
                f"this Process was created by pid {self._parent_pid}; create a new Process here to fork from pid {os.getpid()}"
            )
        if self._record is not None:
            if self._record.status is None and self.poll() is None:
                raise ProcessStateError(
                    f"process {self.id} (pid {self.pid}) was already started and is still running; "
                    "join() or kill() it first, or create a new Process"
                )
            self._reset_for_restart()
            add_process(self)  # again: its new pipe is for this run's child only
        census = _guard.check(force)
        if registry._live or registry._leftovers:
            registry.reap_ready()
        if self._name:
            preload_title()  # importing setproctitle in every child costs ~1.5 ms each
        _child.flush_std()  # or the child prints the parent's pending text again
        self._counters = _counters.allocate()
        try:
            record = fork_child(self, None if not census.threads or census.ok else ForkWarning(census.forced()))
        except BaseException:
            if self._record is None:  # nothing was forked
                _counters.release(self._counters)
                self._counters = None
            raise
        return record.pid

    def _attach_record(self, record: ChildRecord) -> None:
        """fork.py, in the parent right after the fork (signals blocked): this run's record;
        the child's ends of the pipes are closed here at once."""
        self._record = record
        record.callbacks.extend(self._done_callbacks)
        self._done_callbacks = []
        self._close_child_ends()

    def _close_child_ends(self) -> None:
        sock = self._child_sock
        if sock is not None:
            self._child_sock = None
            try:
                _close_socket(sock)
            except OSError:
                pass
        if self._child_ends:
            ends, self._child_ends = self._child_ends, []
            for sock in ends:
                try:
                    sock.close()
                except OSError:
                    pass

    def _reset_for_restart(self) -> None:
        self._record = None
        self._reader_claim = None
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._make_pipe()

    def _make_pipe(self) -> None:
        if self._kind is not None:
            self._sock, self._child_sock = _pipe.make_pair(self._kind)

    def _exit_mark(self, record: ChildRecord) -> float | None:
        """At the reap (registry's lock held): copy this run's counters slot onto ``record``;
        when the child marked its own exit there (see counters.EXITED_NS), None if it did not."""
        slot = self._counters
        if slot is None or record is not self._record:
            return None
        record.counts = slot.raw()
        return _counters.marks(record.counts)[0]

    def _on_reaped(self, record: ChildRecord) -> None:
        """The registry reaped this run's child (any thread): the record keeps the final counters."""
        slot = self._counters
        if slot is not None and record is self._record:
            if record.counts is None:  # not copied by _exit_mark: copy it now, before the slot goes back
                self._exit_mark(record)
            self._counters = None
            _counters.release(slot)
        if record is self._record:
            self._forget_if_done()

    def _require_parent(self, what: str) -> None:
        if self._record is None and not self._in_child:
            raise ProcessStateError(f"process {self.id} was never started: call start() before {what}()")
        if self._in_child:
            raise ProcessStateError(f"{what}() is for the parent; this is the child itself (use exit() to end it)")
        if os.getpid() != self._parent_pid:
            raise ProcessStateError(f"{what}(): process {self.id} is a child of pid {self._parent_pid}, not of this process")

    def _exit_fd(self) -> int | None:
        return None if self._in_child or self._record is None else self._record.pidfd

    def poll(self) -> ExitStatus | None:
        """Reap the child if it has exited, without waiting: its ExitStatus, else None."""
        if self._record is None or self._in_child or os.getpid() != self._parent_pid:
            return None
        return registry.poll(self._record)

    def is_alive(self) -> bool:
        if self._in_child:
            return True
        if self._record is None or self._record.status is not None or os.getpid() != self._parent_pid:
            return False
        return self.poll() is None

    def join(self, timeout: float | None = None) -> ExitStatus:
        """Wait for the child to end and return its ExitStatus (TimeoutError after ``timeout`` s).

        If the child's ``exec()`` failed, raises that OSError (its ``exit_status`` attribute holds
        the status).
        """
        self._require_parent("join")
        record = self._record
        assert record is not None
        seconds = timing.seconds(timeout) if timeout is not None else None
        status = registry.reap(record, seconds, claim=True)
        if status is None:
            raise TimeoutError(
                f"process {self.id} (pid {record.pid}) is still running after {seconds} s; "
                "join() again, or kill() it"
            )
        if not record.claimed:  # reaped elsewhere (a loop, wait(), a sibling's start())
            registry.claim(record)
        if status.exec_error is not None:
            err = status.exec_error
            err.exit_status = status  # type: ignore[attr-defined]
            raise err
        return status

    async def wait_async(self, timeout: float | None = None) -> ExitStatus:
        """``join()`` for ``await``: the running event loop watches the child's pidfd, so a
        notebook's loop keeps serving meanwhile (see :mod:`procmagic.core.call`)."""
        from .call import wait_async

        return await wait_async(self, timeout)

    @property
    def result(self) -> Any:
        """The value the child sent back on a result channel (``procmagic.call``,
        ``%%spawn --result``), once it ended; raises the child's exception or why there is none
        (see :mod:`procmagic.core.values`)."""
        from .values import result_of

        return result_of(self)

    def kill(self, sig: SignalLike = _signal.SIGTERM, *, group: bool = True) -> bool:
        """Send ``sig`` to the child (and, with ``group``, its whole process group).

        Returns False when the child was already reaped: its pid may belong to someone else now,
        so it is never signalled.
        """
        number = signal_number(sig)
        if self._in_child:
            os.kill(os.getpid(), number)
            return True
        self._require_parent("kill")
        record = self._record
        assert record is not None
        if record.status is not None:
            return False
        try:
            if group:
                try:
                    os.killpg(record.pgid, number)
                    return True
                except ProcessLookupError:
                    pass  # the group is gone already (a zombie leader): signal the pid alone
            with self.hold_exit_fd() as pidfd:
                if pidfd is not None:
                    _signal.pidfd_send_signal(pidfd, number)
                elif record.status is None:
                    os.kill(record.pid, number)
        except ProcessLookupError:
            return False
        return True

    def stop(self, grace: float = 2.0, sig: SignalLike = _signal.SIGTERM) -> ExitStatus:
        """Send ``sig`` (SIGTERM) to the child's group, wait up to ``grace`` seconds, then SIGKILL;
        returns the status. What is left of its process group is stopped the same way."""
        self._require_parent("stop")
        grace = timing.seconds(grace, "grace") or 0.0
        record = self._record
        assert record is not None
        _ladder.stop([self], [(sig, grace), (_signal.SIGKILL, None)], reason="stop")
        registry.claim(record)
        assert record.status is not None
        return record.status

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._record is not None and not self._in_child and os.getpid() == self._parent_pid:
            self.stop(grace=1.0)
        self.close()
