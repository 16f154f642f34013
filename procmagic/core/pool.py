"""Worker pools: swoole's ``Process\\Pool`` and ``Process\\Manager`` over procmagic's Process.

A :class:`Pool` forks ``n`` workers with ids ``0..n-1`` and keeps them running: a worker that
exits is forked again, after a back-off (swoole respawns at once, which turns a worker that
crashes at start into a fork storm). The parent drives the pool from a blocking loop, ``start()``
or ``wait()``, that sleeps in ``poll`` on the workers' pidfds and a control pipe: procmagic
starts no thread.

Callbacks, with swoole's event names for :meth:`Pool.on`:

================  =====================  ==========  ===========================================
keyword           ``on(...)`` name       runs in     called as
================  =====================  ==========  ===========================================
``target``        ``"workerStart"``      the worker  ``target(pool, worker_id)``: the worker's body
``on_message``    ``"message"``          the worker  ``on_message(pool, data)`` for each message
``on_worker_stop``  ``"workerStop"``     the worker  ``on_worker_stop(pool, worker_id)``, at its end
``on_start``      ``"start"``            the parent  ``on_start(pool)`` once every worker is forked
``on_worker_exit``  ``"workerExit"``     the parent  ``on_worker_exit(pool, worker_id, status)``
``on_stop``       ``"stop"``             the parent  ``on_stop(pool)`` when the pool has stopped
================  =====================  ==========  ===========================================

Messages (``ipc``): ``"queue"`` gives the pool one SysV queue: ``send(worker_id, data)`` types a
message for that worker (orient), or, with ``mode="balance"``, ``send(None, data)`` lets any idle
worker take it; a message sent while its worker is being respawned waits in the queue for the new
one. ``"pipe"`` sends over each worker's own pipe (parent to worker only). ``None``: no messages.

Stopping: ``shutdown(timeout)`` sends SIGTERM to every worker, waits up to ``timeout`` seconds,
then SIGKILLs what is left; every worker is reaped, the queue freed, the control pipe closed, on
every path (errors and KeyboardInterrupt included). In a worker, SIGTERM raises
:class:`WorkerStop` (a SystemExit, so ``except Exception`` does not swallow it) in the target or
while waiting for a message; a message being handled is finished first. A worker may call
``pool.shutdown()`` (a request to the parent) or ``pool.detach()``: it leaves the pool, which
forks a replacement at once, and becomes the caller's (``pool.detached``; join it).
"""

from __future__ import annotations

import errno
import numbers
import os
import select
import signal as _signal
import struct
import time
from typing import Any, Callable

from . import queue as _queue
from .errors import NoQueue, ProcessStateError
from .process import Process
from .reaper import registry
from .status import ExitStatus

__all__ = ["Pool", "Manager", "WorkerStop", "PIPE_MESSAGE_MAX"]

#: The largest message ``send()`` takes on a pipe pool (a queue pool: kernel.msgmax).
PIPE_MESSAGE_MAX = 65536
_MAX_WORKERS = 4096
_STABLE = 1.0  # a worker that lived this long resets its back-off
_CTRL = struct.Struct("=cii")  # op, worker id, pid: 9 bytes, written atomically
_EVENTS = {
    "start": "on_start", "stop": "on_stop", "workerstart": "target", "workerstop": "on_worker_stop",
    "message": "on_message", "workerexit": "on_worker_exit",
}


class WorkerStop(SystemExit):
    """Raised in a worker by the pool's SIGTERM: the pool is shutting down."""

    def __init__(self) -> None:
        super().__init__(0)


def _callable_or_none(value: Any, name: str) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {value!r}")
    return value


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or float(value) < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


class Pool:
    """``n`` workers that are kept running; see the module documentation.

    >>> pool = Pool(4, ipc="queue", on_message=lambda pool, data: print(pool.worker_id, data))
    >>> pool.start(block=False)  # doctest: +SKIP
    >>> pool.send(2, b"job")  # doctest: +SKIP
    >>> pool.shutdown(timeout=5)  # doctest: +SKIP
    """

    def __init__(self, n: int, target: Callable[["Pool", int], Any] | None = None, ipc: str | None = None, *,
                 mode: str = "orient", key: int | None = None, capacity: int | None = None,
                 respawn: bool = True, backoff: float = 0.1, max_backoff: float = 5.0, name: str = "pool",
                 on_start: Callable[..., Any] | None = None, on_stop: Callable[..., Any] | None = None,
                 on_message: Callable[..., Any] | None = None, on_worker_stop: Callable[..., Any] | None = None,
                 on_worker_exit: Callable[..., Any] | None = None) -> None:
        count: Any = n  # checked as Any: the numbers ABCs are lost on a type checker
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 1 <= int(count) <= _MAX_WORKERS:
            raise ValueError(f"n must be a number of workers from 1 to {_MAX_WORKERS}, not {n!r}")
        if ipc not in ("queue", "pipe", None):
            raise ValueError(f"unknown ipc {ipc!r}: use 'queue' (a SysV message queue), 'pipe' (each worker's "
                             "own pipe) or None (no messages)")
        if mode not in ("orient", "balance"):
            raise ValueError(f"unknown mode {mode!r}: use 'orient' (send to one worker) or 'balance' (any worker)")
        if ipc != "queue" and (key is not None or capacity is not None or mode != "orient"):
            raise ValueError(f"key, capacity and mode configure the pool's queue: they need ipc='queue', not {ipc!r}")
        if not isinstance(respawn, bool):
            raise TypeError(f"respawn must be True or False, not {respawn!r}")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty str, not {name!r}")
        self.n = int(n)
        self.ipc = ipc
        self.mode = mode
        self.key = key
        self.capacity = capacity
        self.respawn = respawn
        self.backoff = _seconds(backoff, "backoff")
        self.max_backoff = _seconds(max_backoff, "max_backoff")
        if self.max_backoff < self.backoff:
            raise ValueError(f"max_backoff ({max_backoff}) must be >= backoff ({backoff})")
        self.name = name
        self.target = _callable_or_none(target, "target")
        self.on_start = _callable_or_none(on_start, "on_start")
        self.on_stop = _callable_or_none(on_stop, "on_stop")
        self.on_message = _callable_or_none(on_message, "on_message")
        self.on_worker_stop = _callable_or_none(on_worker_stop, "on_worker_stop")
        self.on_worker_exit = _callable_or_none(on_worker_exit, "on_worker_exit")
        # the parent's side
        self._state = "new"
        self._pid = os.getpid()
        self._slots: list[Process | None] = [None] * self.n
        self._owner: dict[int, int] = {}  # id(Process) -> worker id, for the workers of this pool
        self._started_at = [0.0] * self.n
        self._streak = [0] * self.n
        self._due: dict[int, float] = {}  # worker id -> when to fork it again (monotonic)
        self._exits: list[tuple[Process, ExitStatus]] = []
        self._statuses: list[tuple[int, ExitStatus]] = []
        self._spawned = 0
        self.detached: list[Process] = []
        self.queue: Any = None
        self._ctrl_r: int | None = None
        self._ctrl_w: int | None = None
        self._ctrl_buf = b""
        self._stop_asked = False
        self._ready: set[int] = set()  # pids of workers whose SIGTERM handler is in place
        self._unsubscribe: Callable[[], None] | None = None
        # a worker's side
        self.worker_id: int | None = None
        self.process: Process | None = None
        self._stopping = False
        self._interruptible = False
        self._left = False

    # -- configuration -------------------------------------------------------------------------
    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Set a callback by swoole's event name: start, stop, workerStart, workerStop, message,
        or workerExit (case and underscores ignored)."""
        if self._state != "new":
            raise ProcessStateError(f"set callbacks before start(): pool {self.name!r} is {self._state}")
        attr = _EVENTS.get(str(event).replace("_", "").lower())
        if attr is None:
            raise ValueError(f"unknown event {event!r}: use one of start, stop, workerStart, workerStop, message, "
                             "workerExit")
        setattr(self, attr, _callable_or_none(callback, f"the {event} callback"))

    def __repr__(self) -> str:
        live = sum(p is not None for p in self._slots)
        return f"<procmagic Pool {self.name!r} {self._state} workers={live}/{self.n} ipc={self.ipc}>"

    @property
    def stopping(self) -> bool:
        """True once the pool shuts down (in a worker: once it got SIGTERM)."""
        return self._stopping or self._state in ("stopping", "stopped")

    @property
    def workers(self) -> dict[int, Process]:
        """The running workers by id (the parent's view)."""
        return {i: p for i, p in enumerate(self._slots) if p is not None}

    @property
    def statuses(self) -> list[tuple[int, ExitStatus]]:
        """(worker id, ExitStatus) of every worker that exited, oldest first (detached ones aside)."""
        return list(self._statuses)

    def get_process(self, worker_id: int | None = None) -> Process:
        """A worker's Process: in a worker, its own by default; in the parent, worker ``worker_id``'s."""
        if worker_id is None and self.process is not None:
            return self.process
        wid = self._check_worker(worker_id)
        if self.process is not None and wid == self.worker_id:
            return self.process  # swoole's getProcess($workerId) in that worker (its bug #2652)
        proc = self._slots[wid]
        if proc is None:
            raise ProcessStateError(f"worker {wid} of pool {self.name!r} is not running")
        return proc

    # -- the parent ----------------------------------------------------------------------------
    def start(self, block: bool = True) -> None:
        """Fork the workers and call ``on_start``; with ``block`` (swoole's way), supervise them
        until the pool stops. ``block=False`` returns at once: supervise with :meth:`wait`."""
        if self.worker_id is not None:
            raise ProcessStateError("start() is for the parent; this is a worker of the pool")
        if os.getpid() != self._pid:
            raise ProcessStateError(f"pool {self.name!r} was made by pid {self._pid}; make a new Pool here")
        if self._state != "new":
            raise ProcessStateError(f"pool {self.name!r} was started already ({self._state}); make a new Pool")
        if self.target is None and self.on_message is None:
            raise ValueError("nothing for the workers to run: give a target, or ipc= with an on_message callback")
        if self.on_message is not None and self.ipc is None:
            raise ValueError("on_message needs messages: ipc='queue' or ipc='pipe'")
        self._state = "running"
        try:
            self._ctrl_r, self._ctrl_w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(self._ctrl_r, False)
            if self.ipc == "queue":
                self.queue = _queue.attach(None, key=self.key, mode=self.mode, capacity=self.capacity)
            self._unsubscribe = registry.subscribe(self._on_registry_event)
            for wid in range(self.n):
                self._spawn(wid)
            if self.on_start is not None:
                self.on_start(self)
            if block:
                self._supervise(None)
        except BaseException:
            self._abort()
            raise

    def wait(self, timeout: float | None = None) -> bool:
        """Supervise the workers (respawns, callbacks, requests) until the pool stops, or for
        ``timeout`` seconds. Returns True once the pool has stopped."""
        self._require_parent("wait")
        if timeout is not None:
            timeout = _seconds(timeout, "timeout")
        if self._state == "stopped":
            return True
        try:
            return self._supervise(None if timeout is None else time.monotonic() + timeout)
        except BaseException:
            self._abort()
            raise

    def send(self, worker_id: int | None, data: bytes | str) -> None:
        """Send ``data`` to worker ``worker_id``'s ``on_message`` (None: any worker, in a
        ``mode="balance"`` queue pool)."""
        if self.ipc is None:
            raise ProcessStateError(f"pool {self.name!r} has ipc=None: make it with ipc='queue' or ipc='pipe' to send")
        if self.worker_id is None:
            self._require_parent("send")
        if self._state == "stopped" and self.worker_id is None:
            raise ProcessStateError(f"pool {self.name!r} has stopped")
        if self.ipc == "queue":
            queue = self.queue
            if self.mode == "balance":
                if worker_id is not None:
                    raise ValueError(f"send({worker_id}, ...) names a worker, but in mode='balance' any worker takes "
                                     "any message: send(None, data), or make the pool with mode='orient'")
                queue.push(data)
            else:
                queue.push(data, to=self._check_worker(worker_id) + 1)
            return
        if self.worker_id is not None:
            raise ProcessStateError("a pipe pool sends from the parent to a worker only; use ipc='queue' "
                                    "for workers to message each other")
        wid = self._check_worker(worker_id)
        self._handle_exits()
        proc = self._slots[wid]
        if proc is None:
            raise ProcessStateError(f"worker {wid} of pool {self.name!r} is not running (it is being respawned, "
                                    "or the pool stopped): a pipe message has nowhere to wait; use ipc='queue'")
        if isinstance(data, str):
            data = data.encode()
        if len(data) > PIPE_MESSAGE_MAX:
            raise ValueError(f"the message is {len(data)} bytes, larger than the {PIPE_MESSAGE_MAX} bytes a pipe pool "
                             "carries in one message")
        try:
            proc.write(data)
        except (BrokenPipeError, ConnectionResetError):
            raise ProcessStateError(f"worker {wid} of pool {self.name!r} has exited") from None

    def shutdown(self, timeout: float = 5.0) -> dict[int, ExitStatus]:
        """Stop the pool: SIGTERM every worker, SIGKILL after ``timeout`` seconds, reap all, free
        the queue, then ``on_stop``. Returns each worker id's last ExitStatus.

        In a worker, asks the parent to shut the pool down, and returns at once.
        """
        if self.worker_id is not None:
            self._tell(b"S")
            return {}
        grace = _seconds(timeout, "timeout")
        if self._state == "new":
            return {}  # never started: nothing to stop
        self._require_parent("shutdown")
        if self._state == "running":
            self._stop(grace)
        return self._last_statuses()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.worker_id is None and os.getpid() == self._pid and self._state == "running":
            self.shutdown()

    # -- the parent's machinery ----------------------------------------------------------------
    def _require_parent(self, what: str) -> None:
        if self.worker_id is not None:
            raise ProcessStateError(f"{what}() is for the parent; this is worker {self.worker_id}")
        if os.getpid() != self._pid:
            raise ProcessStateError(f"{what}(): pool {self.name!r} belongs to pid {self._pid}, not {os.getpid()}")
        if self._state == "new":
            raise ProcessStateError(f"pool {self.name!r} was never started: call start() before {what}()")

    def _check_worker(self, worker_id: Any) -> int:
        if isinstance(worker_id, bool) or not isinstance(worker_id, numbers.Integral):
            raise TypeError(f"worker_id must be an int from 0 to {self.n - 1}, not {worker_id!r}")
        wid = int(worker_id)
        if not 0 <= wid < self.n:
            raise ValueError(f"worker_id must be from 0 to {self.n - 1} (pool {self.name!r} has {self.n}), got {wid}")
        return wid

    def _spawn(self, wid: int) -> None:
        proc = Process(self._worker_entry, pipe="dgram" if self.ipc == "pipe" else None, name=f"{self.name}-{wid}")
        proc.worker = wid
        self._owner[id(proc)] = wid
        self._due.pop(wid, None)
        try:
            proc.start()
        except BaseException:
            self._owner.pop(id(proc), None)
            proc.close()
            raise
        self._slots[wid] = proc
        self._started_at[wid] = time.monotonic()
        self._spawned += 1

    def _on_registry_event(self, event: str, proc: Process, status: ExitStatus | None) -> None:
        if event == "reaped" and status is not None and id(proc) in self._owner:
            self._exits.append((proc, status))  # handled by the loop: never fork from a listener

    def _handle_exits(self) -> None:
        while self._exits:
            proc, status = self._exits.pop(0)
            wid = self._owner.pop(id(proc), None)
            registry.claim(proc)  # reported here (on_worker_exit, statuses), not by procmagic.wait()
            self._ready.discard(status.pid)
            proc.close()
            if wid is None or self._slots[wid] is not proc:
                continue  # a detached worker: the caller's
            self._slots[wid] = None
            self._statuses.append((wid, status))
            if self._state == "running" and self.respawn:
                quick = time.monotonic() - self._started_at[wid] < _STABLE
                delay = min(self.max_backoff, self.backoff * 2 ** self._streak[wid])
                self._streak[wid] = self._streak[wid] + 1 if quick else 0
                self._due[wid] = time.monotonic() + delay
            if self.on_worker_exit is not None:
                self.on_worker_exit(self, wid, status)

    def _read_ctrl(self) -> None:
        if self._ctrl_r is None:
            return
        while True:
            try:
                chunk = os.read(self._ctrl_r, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._ctrl_buf += chunk
        size = _CTRL.size
        while len(self._ctrl_buf) >= size:
            op, wid, pid = _CTRL.unpack_from(self._ctrl_buf)
            self._ctrl_buf = self._ctrl_buf[size:]
            if op == b"R":
                self._ready.add(pid)
            elif op == b"S":
                self._stop_asked = True
            elif op == b"D" and 0 <= wid < self.n:
                proc = self._slots[wid]
                if proc is not None and proc.pid == pid:
                    self._slots[wid] = None
                    self._owner.pop(id(proc), None)
                    self.detached.append(proc)
                    if self._state == "running":
                        self._due[wid] = time.monotonic()  # replaced at once, as in swoole

    def _step(self) -> None:
        """One round of supervision: requests, exits, due respawns, the end."""
        self._read_ctrl()
        self._handle_exits()
        if self._state != "running":
            return
        if self._stop_asked:
            self._stop(5.0)
            return
        now = time.monotonic()
        for wid, when in sorted(self._due.items()):
            if when <= now and self._state == "running":
                self._spawn(wid)
        if not self._due and all(p is None for p in self._slots):
            self._finish()  # respawn=False and every worker is done

    def _supervise(self, deadline: float | None) -> bool:
        while True:
            self._step()
            if self._state != "running":
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            waits = [w - now for w in self._due.values()]
            if deadline is not None:
                waits.append(deadline - now)
            poller = select.poll()
            if self._ctrl_r is not None:
                poller.register(self._ctrl_r, select.POLLIN)
            no_pidfd = False
            for proc in self._slots:
                if proc is not None:
                    if proc._pidfd is not None:
                        poller.register(proc._pidfd, select.POLLIN)
                    else:
                        no_pidfd = True
            if no_pidfd:
                waits.append(0.05)  # no pidfd here: poll for exits
            ms = None if not waits else max(0, int(min(waits) * 1000 + 0.999))
            poller.poll(ms)
            registry.reap_ready()

    def _stop(self, grace: float) -> None:
        self._state = "stopping"
        self._due.clear()
        live = [p for p in self._slots if p is not None]
        end = time.monotonic() + grace
        self._terminate(live, end)
        for proc in live:
            if registry.reap(proc, max(0.0, end - time.monotonic())) is None:
                proc.kill(_signal.SIGKILL)
                registry.reap(proc, None)
        try:
            self._handle_exits()
        finally:
            self._finish()

    def _terminate(self, live: list[Process], end: float) -> None:
        """SIGTERM each worker once it has its handler in place (it says so on the control
        pipe): a SIGTERM sent while it is still starting would kill it outright, and its
        on_worker_stop would never run. Waits for that until ``end`` at most."""
        waiting = list(live)
        while waiting:
            self._read_ctrl()
            for proc in list(waiting):
                if proc.exitstatus is not None or proc.pid in self._ready or time.monotonic() >= end:
                    waiting.remove(proc)
                    if proc.exitstatus is None:
                        proc.kill(_signal.SIGTERM)
            if not waiting:
                return
            poller = select.poll()
            if self._ctrl_r is not None:
                poller.register(self._ctrl_r, select.POLLIN)
            for proc in waiting:
                if proc._pidfd is not None:
                    poller.register(proc._pidfd, select.POLLIN)
            poller.poll(max(1, min(50, int((end - time.monotonic()) * 1000))))
            registry.reap_ready()

    def _finish(self) -> None:
        """Release everything the pool holds, then on_stop."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        self._due.clear()
        try:
            if self.queue is not None and not self.queue.freed:
                self.queue.free()
        finally:
            for fd in (self._ctrl_r, self._ctrl_w):
                if fd is not None:
                    os.close(fd)
            self._ctrl_r = self._ctrl_w = None
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
        if self.on_stop is not None:
            self.on_stop(self)

    def _abort(self) -> None:
        """An error or an interrupt in the parent: stop everything quietly (the caller re-raises
        the error, which is the one to report: no more callbacks)."""
        if self._state == "stopped":
            return
        self.on_worker_exit = self.on_stop = None
        try:
            self._stop(1.0)
        except BaseException:
            for proc in self._slots:
                if proc is not None and proc.exitstatus is None:
                    try:
                        proc.kill(_signal.SIGKILL)
                        registry.reap(proc, None)
                    except Exception:
                        pass
            self._finish()

    def _last_statuses(self) -> dict[int, ExitStatus]:
        return {wid: status for wid, status in self._statuses}

    # -- a worker ------------------------------------------------------------------------------
    def _tell(self, op: bytes) -> None:
        if self._ctrl_w is None or self.process is None:
            return
        try:
            os.write(self._ctrl_w, _CTRL.pack(op, self.worker_id or 0, os.getpid()))
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def detach(self) -> None:
        """Leave the pool (in a worker): the parent forks a replacement at once and no longer
        stops, respawns or reports this process; it stops taking messages. Its Process is in
        the parent's ``pool.detached``."""
        if self.worker_id is None:
            raise ProcessStateError("detach() is for a worker, inside the pool's target or callbacks")
        if not self._left:
            self._left = True
            self._tell(b"D")

    def _on_sigterm(self, signo: int, frame: Any) -> None:
        self._stopping = True
        if self._interruptible:
            self._interruptible = False
            raise WorkerStop()

    def _worker_entry(self, proc: Process) -> int:
        wid = proc.worker
        assert wid is not None
        self.worker_id, self.process = wid, proc
        # The parent's bookkeeping means nothing here.
        self._slots = [None] * self.n
        self._owner.clear()
        self._exits.clear()
        self._due.clear()
        self.detached = []
        self._unsubscribe = None
        if self._ctrl_r is not None:
            os.close(self._ctrl_r)
            self._ctrl_r = None
        if self.queue is not None:  # this worker's own handle: it pops what is sent to its id
            self.queue = self.queue.view(me=wid + 1, mode=self.mode)
        self._interruptible = True  # before the handler: a SIGTERM from now on raises WorkerStop
        _signal.signal(_signal.SIGTERM, self._on_sigterm)
        self._tell(b"R")
        code: Any = 0
        try:
            try:
                if self.target is not None:
                    code = self.target(self, wid)
                if self.on_message is not None:
                    self._serve()
            finally:
                self._interruptible = False
                if self.on_worker_stop is not None:
                    self.on_worker_stop(self, wid)
        except WorkerStop:
            code = 0
        return code if isinstance(code, int) else 0

    def _serve(self) -> None:
        """The message loop: SIGTERM interrupts the wait, never a message being handled."""
        on_message = self.on_message
        assert on_message is not None
        queue, proc = self.queue, self.process
        assert proc is not None
        while True:
            self._interruptible = True
            if self._stopping or self._left:  # (a SIGTERM that came while not interruptible)
                return
            try:
                if queue is not None:
                    data = queue.pop()
                else:
                    data = proc.read(PIPE_MESSAGE_MAX)
            except NoQueue:
                return  # the pool freed its queue: it is stopping
            finally:
                self._interruptible = False
            if not data:
                return  # the parent closed the pipe
            on_message(self, data)


class Manager:
    """swoole's ``Process\\Manager``: each function added runs in its own worker of one Pool.

    ``func(pool, worker_id)`` is the worker's body; worker ids follow the order of ``add``.
    Other keyword arguments (``ipc``, ``respawn``, ``backoff``, callbacks, ...) go to the Pool.

    >>> pm = Manager()
    >>> pm.add(lambda pool, wid: print("one")); pm.add_batch(2, lambda pool, wid: print("two", wid))
    >>> pm.start()  # doctest: +SKIP
    """

    def __init__(self, ipc: str | None = None, **pool_options: Any) -> None:
        if "target" in pool_options or "n" in pool_options:
            raise TypeError("a Manager's workers are the functions given to add() and add_batch(), not target= or n=")
        self.ipc = ipc
        self.options = pool_options
        self._funcs: list[Callable[[Pool, int], Any]] = []
        self.pool: Pool | None = None

    def add(self, func: Callable[[Pool, int], Any]) -> int:
        """Run ``func(pool, worker_id)`` in a worker of its own; returns that worker's id."""
        if self.pool is not None:
            raise ProcessStateError("add() before start(): the manager's pool is running")
        if not callable(func):
            raise TypeError(f"func must be callable as func(pool, worker_id), not {func!r}")
        self._funcs.append(func)
        return len(self._funcs) - 1

    def add_batch(self, n: int, func: Callable[[Pool, int], Any]) -> list[int]:
        """Run ``func`` in ``n`` workers; returns their ids."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) < 1:
            raise ValueError(f"n must be a number of workers >= 1, not {n!r}")
        return [self.add(func) for _ in range(int(n))]

    def _run(self, pool: Pool, worker_id: int) -> Any:
        return self._funcs[worker_id](pool, worker_id)

    def start(self, block: bool = True) -> Pool:
        """Start one Pool running every function added; see :meth:`Pool.start`."""
        if self.pool is not None:
            raise ProcessStateError("this Manager was started already; make a new one")
        if not self._funcs:
            raise ValueError("nothing to start: add() or add_batch() a function first")
        pool = Pool(len(self._funcs), self._run, self.ipc, **self.options)
        self.pool = pool
        pool.start(block=block)
        return pool

    def _started(self) -> Pool:
        if self.pool is None:
            raise ProcessStateError("the Manager was never started: call start() first")
        return self.pool

    def wait(self, timeout: float | None = None) -> bool:
        return self._started().wait(timeout)

    def send(self, worker_id: int | None, data: bytes | str) -> None:
        self._started().send(worker_id, data)

    def shutdown(self, timeout: float = 5.0) -> dict[int, ExitStatus]:
        return self._started().shutdown(timeout)
