"""``Process``: swoole_process in Python. The only place in procmagic that calls ``os.fork``."""

from __future__ import annotations

import itertools
import numbers
import os
import signal as _signal
import socket
import sys
import time
import warnings
import weakref
from typing import Any, Callable, Iterable, Mapping

from . import affinity as _affinity
from . import child as _child
from . import counters as _counters
from . import guard as _guard
from . import pipe as _pipe
from .errors import NoPipe, ProcessStateError
from .reaper import open_pidfd, registry
from .signals import SignalLike, signal_number
from .status import ExitStatus

__all__ = ["Process", "ProcessName", "ForkWarning"]


class ForkWarning(RuntimeWarning):
    """Forking was forced past the guard: the child may deadlock on a lock a thread held."""


class ProcessName(str):
    """A process's name. It is a ``str``; calling it, ``proc.name("title")``, renames the process
    (``setproctitle`` in the child, as swoole's ``name()`` does)."""

    _proc: "weakref.ReferenceType[Process]"

    def __new__(cls, value: str, proc: "Process") -> "ProcessName":
        self = super().__new__(cls, value)
        self._proc = weakref.ref(proc)
        return self

    def __call__(self, title: str) -> None:
        proc = self._proc()
        if proc is None:
            raise ProcessStateError("this Process no longer exists")
        proc.set_name(title)


_ids = itertools.count(1)
_MAX_ID = 2**31 - 2  # 2**31 - 1 types messages for the parent in orient-mode queues
_all: "weakref.WeakSet[Process]" = weakref.WeakSet()


def _next_id() -> int:
    # Ids are small and unique among this process's children; they type orient-mode queue
    # messages, so they must be >= 1.
    global _ids
    n = next(_ids)
    if n > _MAX_ID:
        _ids = itertools.count(1)
        n = next(_ids)
    return n


def _reset_ids_in_child() -> None:
    global _ids
    _ids = itertools.count(1)


os.register_at_fork(after_in_child=_reset_ids_in_child)


def _timeout_value(timeout: Any, what: str = "timeout") -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"{what} must be a number of seconds or None, not {timeout!r}")
    if timeout < 0:
        raise ValueError(f"{what} must be >= 0 seconds (or None to wait forever), got {timeout}")
    return float(timeout)


class Process:
    """A child process forked from this one, with swoole_process's reach.

    ``target(process)`` runs in the child; its return value is the exit code (None -> 0).
    ``pipe`` is ``"stream"``, ``"dgram"`` (message boundaries kept) or None. ``redirect=True``
    forces a stream pipe and puts the child's fds 0, 1 and 2 on it: ``write()`` feeds the
    child's stdin and ``read()`` returns everything it prints, C code and subprocesses included.

    >>> p = Process(lambda proc: proc.write(b"hi"), pipe="dgram")
    >>> p.start()  # doctest: +SKIP
    >>> p.read(), p.join().code  # doctest: +SKIP
    (b'hi', 0)
    """

    def __init__(self, target: Callable[["Process"], Any], redirect: bool = False, pipe: Any = "dgram", *,
                 name: str | None = None, signals: Mapping[Any, Any] | None = None) -> None:
        if not callable(target):
            raise TypeError(
                f"target must be callable (it runs in the child as target(process)), not "
                f"{type(target).__name__} {target!r}"
            )
        if not isinstance(redirect, bool):
            raise TypeError(f"redirect must be True or False, not {redirect!r}")
        kind = _pipe.pipe_kind(pipe)
        if redirect:
            kind = "stream"  # as swoole does: stdio is a byte stream
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name must be a non-empty str, not {name!r}")
        self._signals = _child_handlers(signals)
        self._target = target
        self._redirect = redirect
        self._kind = kind
        self.id = _next_id()
        self._name = name
        self._sock: socket.socket | None = None
        self._child_sock: socket.socket | None = None
        self._make_pipe()
        self._pid: int | None = None
        self._parent_pid = os.getpid()
        self._in_child = False
        self._status: ExitStatus | None = None
        self._pidfd: int | None = None
        self._errpipe: int | None = None
        self._errpipe_w: int | None = None
        self._started_at = 0.0
        self._timed_out = False
        self._claimed = False
        self._watched = False
        self._timeout: float | None = None
        self._blocking = True
        self._counters: _counters.Counters | None = None
        self._final_counts: dict[str, int] | None = None
        self._affinity: list[int] | None = None
        self._priority: int | None = None
        self._queue: Any = None
        self.worker: int | None = None  # the worker index with %%spawn -n / Pool
        self._inherited_streams: tuple[Any, Any, Any] = (None, None, None)  # the child's, before rebinding
        self._read_owner: str | None = None  # set when procmagic itself reads the pipe (%%spawn --redirect)
        _all.add(self)

    # -- identity ------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The child's pid (None before start)."""
        return self._pid

    @property
    def pipe(self) -> int | None:
        """This side's pipe fd: the parent's end in the parent, the child's end in the child."""
        return self._sock.fileno() if self._sock is not None and self._sock.fileno() >= 0 else None

    @property
    def pipe_type(self) -> str | None:
        return self._kind

    @property
    def redirect(self) -> bool:
        return self._redirect

    @property
    def name(self) -> ProcessName:
        """The name given at creation (or by ``name(title)``); defaults to ``process-<id>``."""
        return ProcessName(self._name or f"process-{self.id}", self)

    def set_name(self, title: str) -> None:
        """Rename the process: in the child, its title in ``ps``/``top`` too (setproctitle)."""
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"a process name must be a non-empty str, not {title!r}")
        self._name = title
        if self._in_child:
            _set_title(title)

    @property
    def exitstatus(self) -> ExitStatus | None:
        """How the child ended, once reaped (None before)."""
        return self._status

    @property
    def counters(self) -> dict[str, int]:
        """The child's traffic counters (queue pushes/pops, alarm ticks), read from shared memory."""
        if self._final_counts is not None:
            return dict(self._final_counts)
        if self._counters is None:
            return {name: 0 for name in _counters.FIELDS}
        return self._counters.snapshot()

    def __repr__(self) -> str:
        if self._pid is None:
            state = "not started"
        elif self._status is not None:
            state = self._status.how
        else:
            state = "running"
        pid = f" pid={self._pid}" if self._pid else ""
        return f"<Process id={self.id} name={str(self.name)!r}{pid} {state} pipe={self._kind}{' redirect' if self._redirect else ''}>"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, *, force: bool = False) -> int:
        """Fork; the child runs ``target(self)``. Returns the child's pid.

        The threaded-fork guard runs first and raises ``ForkRefused`` when a thread outside its
        allow-list is alive (``force=True`` forks anyway, with a warning).
        """
        if self._in_child:
            raise ProcessStateError("start() was called inside this process's own child; it is already running")
        if os.getpid() != self._parent_pid:
            raise ProcessStateError(
                f"this Process was created by pid {self._parent_pid}; create a new Process here to fork from pid {os.getpid()}"
            )
        if self._pid is not None:
            if self._status is None and not self._reap_now():
                raise ProcessStateError(
                    f"process {self.id} (pid {self._pid}) was already started and is still running; "
                    "join() or kill() it first, or create a new Process"
                )
            self._reset_for_restart()
        census = _guard.check(force)
        registry.reap_ready()
        if self._name:
            _preload_title()  # importing setproctitle in every child costs ~1.5 ms each
        for stream in (sys.stdout, sys.stderr):  # or the child prints the parent's pending text again
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        slot = _counters.allocate()
        # Non-blocking: the parent reads it once the child is reaped, and a grandchild forked
        # without exec may still hold the write end.
        err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        forced = not census.ok
        parent_pid = os.getpid()
        pid = -1
        try:
            with warnings.catch_warnings():
                if forced:
                    warnings.simplefilter("always", DeprecationWarning)
                    warnings.warn(ForkWarning(census.forced()),
                                  stacklevel=2)
                else:
                    # The guard has checked the Python threads; what Python 3.12+ warns about
                    # here is only the kernel's own native threads, which never run in the child.
                    warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
                started = time.monotonic()
                # Signals wait until the child has reset the parent's handlers and installed
                # its own (signals=): one sent right after start() reaches the child's handler
                # instead of killing it (swoole's bug) or running the parent's in the child.
                mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _ALL_SIGNALS)
                try:
                    pid = os.fork()
                finally:
                    if pid != 0:
                        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        except OSError as exc:
            os.close(err_r)
            os.close(err_w)
            _counters.release(slot)
            raise OSError(exc.errno, f"fork() failed, nothing was started: {exc.strerror} "
                          "(too many processes, or not enough memory)") from None
        if pid == 0:
            self._counters = slot
            self._errpipe, self._errpipe_w = None, err_w
            os.close(err_r)
            _child.run(self, parent_pid)  # never returns
        os.close(err_w)
        self._pid = pid
        self._started_at = started
        self._counters = slot
        self._errpipe = err_r
        if self._child_sock is not None:
            self._child_sock.close()
            self._child_sock = None
        try:
            os.setpgid(pid, pid)  # also done by the child: whoever runs first wins the race
        except OSError:
            pass
        self._pidfd = open_pidfd(pid)
        registry.add(self)
        return pid

    def _become_child(self) -> None:
        """First step in the child: own pid, own end of the pipe, nothing of the siblings'."""
        self._in_child = True
        self._pid = os.getpid()
        if self._sock is not None:
            self._sock.close()
        self._sock, self._child_sock = self._child_sock, None
        for other in list(_all):
            if other is not self:
                other._drop_inherited()
        if self._counters is not None:
            _counters.set_for_this_process(self._counters)

    def _drop_inherited(self) -> None:
        # Plain close() of this copy of the fds; never shutdown(), which would reach the parent's.
        for sock in (self._sock, self._child_sock):
            if sock is not None:
                sock.close()
        self._sock = self._child_sock = None

    def _apply_child_settings(self) -> None:
        if self._name:
            _set_title(self._name)
        if self._affinity is not None:
            os.sched_setaffinity(0, self._affinity)
        if self._priority is not None:
            os.setpriority(os.PRIO_PROCESS, 0, self._priority)

    def _reset_for_restart(self) -> None:
        self._status = None
        self._timed_out = False
        self._claimed = False
        self._final_counts = None
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._make_pipe()

    def _make_pipe(self) -> None:
        if self._kind is not None:
            self._sock, self._child_sock = _pipe.make_pair(self._kind)

    def _on_reaped(self) -> None:
        if self._counters is not None:
            self._final_counts = self._counters.snapshot()
            _counters.release(self._counters)
            self._counters = None

    def _reap_now(self) -> bool:
        return registry._try_reap(self, block=False) is not None

    def _require_parent(self, what: str) -> None:
        if self._pid is None:
            raise ProcessStateError(f"process {self.id} was never started: call start() before {what}()")
        if self._in_child:
            raise ProcessStateError(f"{what}() is for the parent; this is the child itself (use exit() to end it)")
        if os.getpid() != self._parent_pid:
            raise ProcessStateError(f"{what}(): process {self.id} is a child of pid {self._parent_pid}, not of this process")

    def is_alive(self) -> bool:
        if self._in_child:
            return True
        if self._pid is None or self._status is not None or os.getpid() != self._parent_pid:
            return False
        return not self._reap_now()

    def join(self, timeout: float | None = None) -> ExitStatus:
        """Wait for the child to end and return its ExitStatus (TimeoutError after ``timeout`` s).

        If the child's ``exec()`` failed, raises that OSError (its ``exit_status`` attribute holds
        the status).
        """
        self._require_parent("join")
        seconds = _timeout_value(timeout)
        status = registry.reap(self, seconds)
        if status is None:
            raise TimeoutError(
                f"process {self.id} (pid {self._pid}) is still running after {seconds} s; "
                "join() again, or kill() it"
            )
        registry.claim(self)
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
        if self._status is not None:
            return False
        pid = self._pid
        assert pid is not None
        try:
            if group:
                try:
                    os.killpg(pid, number)
                    return True
                except ProcessLookupError:
                    pass  # the group is gone already (a zombie leader): signal the pid alone
            if self._pidfd is not None:
                _signal.pidfd_send_signal(self._pidfd, number)
            else:
                os.kill(pid, number)
        except ProcessLookupError:
            return False
        return True

    def stop(self, grace: float = 2.0, sig: SignalLike = _signal.SIGTERM) -> ExitStatus:
        """Send ``sig`` (SIGTERM), wait up to ``grace`` seconds, then SIGKILL; returns the status."""
        self._require_parent("stop")
        grace = _timeout_value(grace, "grace") or 0.0
        if self._status is None:
            self.kill(sig)
            status = registry.reap(self, grace)
            if status is None:
                self.kill(_signal.SIGKILL)
                status = registry.reap(self, None)
            assert status is not None
        registry.claim(self)
        return self._status  # type: ignore[return-value]

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pid is not None and not self._in_child and os.getpid() == self._parent_pid:
            self.stop(grace=1.0)
        self.close()

    # -- the child's side ----------------------------------------------------------------------
    def exit(self, code: int = 0) -> None:
        """End the child now with ``code`` (flushes stdio, then ``os._exit``). Child only."""
        if not self._in_child:
            raise ProcessStateError("exit() ends the child from inside it; from the parent use kill() or stop()")
        if isinstance(code, bool) or not isinstance(code, numbers.Integral) or not 0 <= code <= 255:
            raise ValueError(f"exit code must be an int from 0 to 255, got {code!r}")
        _child.flush_std()
        os._exit(int(code))

    def exec(self, path: str | os.PathLike[str], args: Iterable[str] = (), env: dict[str, str] | None = None) -> None:
        """Replace the child with program ``path`` (searched in PATH when it has no slash).

        ``args`` excludes ``argv[0]``, as in swoole. A failure is raised here and also reaches
        the parent, whose ``join()`` raises the same OSError.
        """
        if not self._in_child:
            raise ProcessStateError("exec() replaces the child's program, so it must be called inside the child (in target)")
        path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise ValueError(f"path must be a non-empty str, not {path!r}")
        if isinstance(args, (str, bytes)):
            raise TypeError(f"args must be a list of str, not a single {type(args).__name__} {args!r}")
        argv = [path, *[os.fspath(a) for a in args]]
        if env is not None and not isinstance(env, dict):
            raise TypeError(f"env must be a dict of str to str or None, not {env!r}")
        _child.flush_std()
        # Programs expect SIGPIPE and SIGXFSZ at their defaults; Python ignores them.
        _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
        _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
        try:
            if env is None:
                os.execvp(path, argv)
            else:
                os.execvpe(path, argv, env)
        except OSError as exc:
            _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
            _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
            if self._errpipe_w is not None:
                try:
                    os.write(self._errpipe_w, f"{exc.errno}:{path}:{exc.strerror}".encode())
                except OSError:
                    pass
            raise _child.ExecFailed(exc.errno, exc.strerror, path) from None

    # -- the pipe ------------------------------------------------------------------------------
    def _exit_fd(self) -> int | None:
        return None if self._in_child else self._pidfd

    def write(self, data: bytes | str) -> int:
        """Write ``data`` (str as UTF-8) to the pipe: one message on a dgram pipe, all of it on a
        stream pipe. Returns the bytes written. Empty data is refused."""
        return _pipe.send(self._sock, data, self._timeout, self._blocking, self._kind == "dgram")

    def read(self, size: int = 8192, timeout: float | None = None) -> bytes:
        """One receive of at most ``size`` bytes (one message on a dgram pipe); b"" at end of file.

        Waits up to ``timeout`` seconds (default: ``set_timeout()``'s, else forever), then raises
        TimeoutError. In the parent, once the child has exited and nothing is left, returns b""
        instead of waiting.
        """
        if self._read_owner is not None and not self._in_child:
            raise ProcessStateError(self._read_owner)
        seconds = _timeout_value(timeout) if timeout is not None else self._timeout
        reaped = self._status is not None and not self._in_child
        return _pipe.recv(self._sock, size, seconds, self._blocking, self._kind == "dgram", self._exit_fd(), reaped)

    def set_blocking(self, blocking: bool = True) -> None:
        """Non-blocking: read() and write() raise BlockingIOError instead of waiting."""
        if not isinstance(blocking, bool):
            raise TypeError(f"blocking must be True or False, not {blocking!r}")
        self._blocking = blocking

    def set_timeout(self, seconds: float | None) -> None:
        """Default time-out of read() and write() in seconds (None: wait forever)."""
        self._timeout = _timeout_value(seconds)

    def close(self, which: str = "both") -> None:
        """Close this side's pipe: ``"read"``, ``"write"`` (the other side reads end of file, e.g. a
        redirected child's stdin) or ``"both"`` (closes the fd)."""
        if which not in ("read", "write", "both"):
            raise ValueError(f"which must be 'read', 'write' or 'both', not {which!r}")
        if which == "both" and self._child_sock is not None:
            self._child_sock.close()  # never started: the end meant for the child goes too
            self._child_sock = None
        sock = self._sock
        if sock is None or sock.fileno() < 0:
            if which == "both":
                return
            raise NoPipe(f"no pipe to close for {which}: this Process has pipe=None, or its pipe was closed")
        if which == "both":
            sock.close()
            self._sock = None
            return
        try:
            sock.shutdown(socket.SHUT_RD if which == "read" else socket.SHUT_WR)
        except OSError:
            pass  # the peer is gone already: nothing left to shut

    # -- the message queue (see queue.py) ------------------------------------------------------
    def use_queue(self, key: int | None = None, mode: str = "balance", nowait: bool = False,
                  capacity: int | None = None, **options: Any) -> Any:
        """Attach a SysV message queue (swoole's useQueue); see :mod:`procmagic.core.queue`."""
        from . import queue as _queue

        self._queue = _queue.attach(self, key=key, mode=mode, nowait=nowait, capacity=capacity, **options)
        return self._queue

    @property
    def queue(self) -> Any:
        """The queue handle ``use_queue()`` attached (a :class:`procmagic.core.queue.Queue`), or None."""
        return self._queue

    def _need_queue(self, what: str) -> Any:
        if self._queue is None:
            from .errors import NoQueue

            raise NoQueue(f"no message queue: call use_queue() before {what}()")
        return self._queue

    # push and pop are the queue handle's own closures (Queue.push/pop): a method forwarding to
    # them would cost two more Python calls per message, a third of its whole cost.
    @property
    def push(self) -> Callable[..., None]:
        """``push(data, *, to=None)``: send one message on the queue (see use_queue)."""
        queue = self._queue
        return self._no_queue("push") if queue is None else queue.push  # type: ignore[no-any-return]

    @property
    def pop(self) -> Callable[..., bytes]:
        """``pop(size=None)``: receive one message from the queue (see use_queue)."""
        queue = self._queue
        return self._no_queue("pop") if queue is None else queue.pop  # type: ignore[no-any-return]

    def _no_queue(self, what: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            self._need_queue(what)

        return refuse

    def stat_queue(self) -> Any:
        """The queue's state: messages and bytes waiting, capacity, last sender and receiver."""
        return self._need_queue("stat_queue").stat()

    def free_queue(self) -> None:
        """Remove the queue from the system."""
        self._need_queue("free_queue").free()

    # -- scheduling ----------------------------------------------------------------------------
    def _sched_pid(self, what: str) -> int | None:
        """0 for this process (in the child), the child's pid, or None before start."""
        if self._in_child:
            return 0
        if self._pid is None:
            return None
        if self._status is not None:
            raise ProcessStateError(f"{what}(): process {self.id} has exited")
        return self._pid

    def set_affinity(self, cpus: Iterable[int]) -> None:
        """Pin the child to these CPUs (before start: applied when it starts). Any CPU this
        process may use can be given, even one outside its own current mask; see
        :mod:`procmagic.core.affinity`."""
        wanted = _affinity.check_cpus(cpus)
        pid = self._sched_pid("set_affinity")
        if pid is None:
            self._affinity = wanted
        else:
            _affinity.apply(pid, wanted)

    def get_affinity(self) -> list[int]:
        pid = self._sched_pid("get_affinity")
        if pid is None:
            return list(self._affinity) if self._affinity is not None else sorted(os.sched_getaffinity(0))
        return sorted(os.sched_getaffinity(pid))

    def set_priority(self, nice: int) -> None:
        """Set the child's nice value, -20 (first) to 19 (last); lowering it needs privilege."""
        if isinstance(nice, bool) or not isinstance(nice, numbers.Integral) or not -20 <= nice <= 19:
            raise ValueError(f"priority must be a nice value from -20 to 19, got {nice!r}")
        pid = self._sched_pid("set_priority")
        if pid is None:
            self._priority = int(nice)
            return
        try:
            os.setpriority(os.PRIO_PROCESS, pid, int(nice))
        except PermissionError:
            raise PermissionError(
                f"not allowed to lower the nice value to {nice}: only a privileged process can"
            ) from None

    def get_priority(self) -> int:
        pid = self._sched_pid("get_priority")
        if pid is None:
            return self._priority if self._priority is not None else os.getpriority(os.PRIO_PROCESS, 0)
        return os.getpriority(os.PRIO_PROCESS, pid)


_ALL_SIGNALS = _signal.valid_signals()


def _child_handlers(signals: Mapping[Any, Any] | None) -> dict[int, Any]:
    """Validate ``signals=`` (signal -> handler, None or SIG_IGN) in the parent, before any fork."""
    if signals is None:
        return {}
    if not isinstance(signals, Mapping):
        raise TypeError(f"signals must be a mapping of signal to handler, like {{signal.SIGUSR1: on_usr1}}, not {signals!r}")
    out = {}
    for signo, handler in signals.items():
        sig = signal_number(signo)
        if sig in (0, _signal.SIGKILL, _signal.SIGSTOP):
            raise ValueError(f"signals: {signo!r} cannot have a handler (SIGKILL and SIGSTOP never reach one; 0 is a probe)")
        if not (handler is None or handler in (_signal.SIG_IGN, _signal.SIG_DFL) or callable(handler)):
            raise TypeError(f"signals: the handler for {signo!r} must be callable, None or signal.SIG_IGN, not {handler!r}")
        out[sig] = handler
    return out


def _preload_title() -> None:
    """Import setproctitle in the parent, once, before forking a named child (the child then
    finds it in ``sys.modules``); a plain script that never names a child never imports it."""
    if "setproctitle" not in sys.modules:
        try:
            import setproctitle  # noqa: F401
        except ImportError:
            pass


def _set_title(title: str) -> None:
    import setproctitle

    setproctitle.setproctitle(title)
