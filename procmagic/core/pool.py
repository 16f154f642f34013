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
worker take it; each worker's own Process carries that queue (``proc.push``/``proc.pop``). A
message sent while its worker is being respawned waits in the queue for the new one. ``"pipe"``
gives every worker an inbox on the pool's message bus (:mod:`procmagic.core.pool_bus`): the parent
and the workers send messages of any size to any worker. ``None``: no messages.

Status, with swoole's meanings: ``master_pid`` (the supervising process), ``running``; in a
worker ``worker_id``, ``worker_pid``, ``worker_running`` (False from ``on_worker_stop`` on) and
``stopping`` (True once the pool's SIGTERM reached it: it stays False when the worker put its own
SIGTERM handler in place).

Stopping: ``shutdown(timeout)`` sends SIGTERM to every worker, waits up to ``timeout`` seconds,
then SIGKILLs what is left; every worker is reaped, the queue freed, the control pipe closed, on
every path (errors and KeyboardInterrupt included). While the pool runs, SIGTERM to its process
stops it the same way (``max_wait_time`` seconds of grace) and SIGINT (KeyboardInterrupt) too,
callbacks included; SIGUSR1 (or ``reload()``) restarts the workers one at a time. In a worker, SIGTERM raises
:class:`WorkerStop` (a SystemExit, so ``except Exception`` does not swallow it) in the target or
while waiting for a message; a message being handled is finished first. A worker may call
``pool.shutdown()`` (a request to the parent) or ``pool.detach()``: it leaves the pool, which
forks a replacement at once, and becomes the caller's (``pool.detached``; join it).
"""

from __future__ import annotations

import math
import numbers
import os
import time
from typing import Any, Callable

from . import pool_bus as _pool_bus
from . import queue as _queue
from . import queue_limits as _queue_limits
from .errors import ProcessStateError
from .pool_bus import WorkerPeer
from .pool_supervisor import ReloadError, ReloadWarning, _Supervisor
from .pool_worker import WorkerStop, _WorkerSide
from .process import Process
from .reaper import registry
from .status import ExitStatus

__all__ = ["Pool", "Manager", "WorkerStop", "WorkerPeer", "ReloadError", "ReloadWarning"]

_MAX_WORKERS = 4096
_EVENTS = {
    "start": "on_start", "stop": "on_stop", "workerstart": "target", "workerstop": "on_worker_stop",
    "message": "on_message", "workerexit": "on_worker_exit",
}


def _callable_or_none(value: Any, name: str) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {value!r}")
    return value


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < math.inf:
        raise ValueError(f"{name} must be a number of seconds >= 0 (finite), not {value!r}")
    return float(value)


class Pool(_Supervisor, _WorkerSide):
    """``n`` workers that are kept running; see the module documentation.

    >>> pool = Pool(4, ipc="queue", on_message=lambda pool, data: print(pool.worker_id, data))
    >>> pool.start(block=False)  # doctest: +SKIP
    >>> pool.send(2, b"job")  # doctest: +SKIP
    >>> pool.shutdown(timeout=5)  # doctest: +SKIP
    """

    def __init__(self, n: int, target: Callable[["Pool", int], Any] | None = None, ipc: str | None = None, *,
                 mode: str = "orient", key: int | None = None, capacity: int | None = None,
                 respawn: bool = True, backoff: float = 0.1, max_backoff: float = 5.0, name: str = "pool",
                 max_wait_time: float = 5.0,
                 on_start: Callable[..., Any] | None = None, on_stop: Callable[..., Any] | None = None,
                 on_message: Callable[..., Any] | None = None, on_worker_stop: Callable[..., Any] | None = None,
                 on_worker_exit: Callable[..., Any] | None = None) -> None:
        count: Any = n  # checked as Any: the numbers ABCs are lost on a type checker
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 1 <= int(count) <= _MAX_WORKERS:
            raise ValueError(f"n must be a number of workers from 1 to {_MAX_WORKERS}, not {n!r}")
        if ipc not in ("queue", "pipe", None):
            raise ValueError(f"unknown ipc {ipc!r}: use 'queue' (a SysV message queue), 'pipe' (the pool's "
                             "message bus: messages of any size to any worker) or None (no messages)")
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
        self.key = _queue._check_key(key)  # refused here, not once the workers are forked
        self.capacity = _queue_limits.check_capacity(capacity)
        self.respawn = respawn
        self.backoff = _seconds(backoff, "backoff")
        self.max_backoff = _seconds(max_backoff, "max_backoff")
        if self.max_backoff < self.backoff:
            raise ValueError(f"max_backoff ({max_backoff}) must be >= backoff ({backoff})")
        self.name = name
        self.max_wait_time = _seconds(max_wait_time, "max_wait_time")
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
        self._reload_asked = False
        self._reloading: set[int] = set()  # worker ids a reload stops: not respawned meanwhile
        self._supervising = 0  # > 0 while a loop of ours runs: signals are left to it
        self._saved_handlers: dict[int, Any] = {}
        self._previous: dict[int, Any] = {}
        self._ready: set[int] = set()  # pids of workers whose SIGTERM handler is in place
        self._unsubscribe: Callable[[], None] | None = None
        self._bus: _pool_bus.Bus | None = None
        self._pids: _pool_bus.PidTable | None = None
        #: The pid of the process supervising the pool (swoole's ``master_pid``); None before start().
        self.master_pid: int | None = None
        # a worker's side
        self.worker_id: int | None = None
        self.worker_pid: int | None = None
        self.worker_running = False
        self.process: Process | None = None
        self._inbox: _pool_bus.Inbox | None = None
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
        """True once the pool shuts down. In a worker: once the pool's SIGTERM reached it (a
        worker that installed its own SIGTERM handler never sees it True, as in swoole)."""
        if self.worker_id is not None:
            return self._stopping
        return self._state in ("stopping", "stopped")

    @property
    def running(self) -> bool:
        """In the parent: the pool was started and has not stopped. In a worker: ``worker_running``."""
        if self.worker_id is not None:
            return self.worker_running
        return self._state == "running"

    @property
    def workers(self) -> dict[int, Process]:
        """The running workers by id (the parent's view)."""
        return {i: p for i, p in enumerate(self._slots) if p is not None}

    @property
    def statuses(self) -> list[tuple[int, ExitStatus]]:
        """(worker id, ExitStatus) of every worker that exited, oldest first (detached ones aside)."""
        return list(self._statuses)

    def get_process(self, worker_id: int | None = None) -> Any:
        """A worker's Process: in a worker, its own by default (also by its own id); in the
        parent, worker ``worker_id``'s. In a worker, another worker's id gives a
        :class:`WorkerPeer`, whose ``write(data)`` sends to that worker."""
        if worker_id is None and self.process is not None:
            return self.process
        wid = self._check_worker(worker_id)
        if self.worker_id is not None:
            if wid == self.worker_id:
                return self.process  # swoole's getProcess($workerId) in that worker (its bug #2652)
            assert self._pids is not None
            return WorkerPeer(wid, self._pids, self.send)
        proc = self._slots[wid]
        if proc is None:
            raise ProcessStateError(f"worker {wid} of pool {self.name!r} is not running")
        return proc

    # -- the parent ----------------------------------------------------------------------------
    def start(self, block: bool = True) -> None:
        """Fork the workers and call ``on_start``; with ``block`` (swoole's way), supervise them
        until the pool stops. ``block=False`` returns at once: supervise with :meth:`wait`."""
        if not isinstance(block, bool):
            raise TypeError(f"block must be True (supervise until the pool stops) or False (return at once), "
                            f"not {block!r}")
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
        self.master_pid = os.getpid()
        with self._stopped_on_error():
            self._ctrl_r, self._ctrl_w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(self._ctrl_r, False)
            if self.ipc == "queue":
                self.queue = _queue.attach(None, key=self.key, mode=self.mode, capacity=self.capacity)
            elif self.ipc == "pipe":
                self._bus = _pool_bus.Bus(self.n)
            self._pids = _pool_bus.PidTable(self.n)
            self._unsubscribe = registry.subscribe(self._on_registry_event)
            # A SIGTERM or SIGUSR1 from here on is a request to the loop (a worker may send one
            # before its own slot is even filled in): the first _step acts on it.
            self._supervising += 1
            try:
                self._install_signals()
                for wid in range(self.n):
                    self._spawn(wid)
                if self.on_start is not None:
                    self.on_start(self)
            finally:
                self._supervising -= 1
            if block:
                self._supervise(None)
            else:
                self._step()

    def wait(self, timeout: float | None = None) -> bool:
        """Supervise the workers (respawns, callbacks, requests) until the pool stops, or for
        ``timeout`` seconds. Returns True once the pool has stopped."""
        self._require_parent("wait")
        if timeout is not None:
            timeout = _seconds(timeout, "timeout")
        if self._state == "stopped":
            return True
        with self._stopped_on_error():
            return self._supervise(None if timeout is None else time.monotonic() + timeout)

    def send(self, worker_id: int | None, data: bytes | str) -> None:
        """Send ``data`` to worker ``worker_id``'s ``on_message`` (None: any worker, in a
        ``mode="balance"`` queue pool), from the parent or from a worker. A queue pool carries
        up to kernel.msgmax bytes a message; a pipe pool's bus any size. Waits while the queue
        or the worker's inbox is full (for an inbox, the parent supervises the pool meanwhile,
        so a worker being respawned gets to read it)."""
        if self.ipc is None:
            raise ProcessStateError(f"pool {self.name!r} has ipc=None: make it with ipc='queue' or ipc='pipe' to send")
        if self.worker_id is None:
            self._require_parent("send")
        if self._state == "stopped" and self.worker_id is None:
            raise ProcessStateError(f"pool {self.name!r} has stopped")
        if worker_id is None and (self.ipc, self.mode) != ("queue", "balance"):
            how = "ipc='pipe'" if self.ipc == "pipe" else "mode='orient'"
            raise TypeError(f"send(None, ...) (any worker) needs a pool made with ipc='queue', mode='balance'; "
                            f"this one has {how}: name a worker id from 0 to {self.n - 1}")
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):  # named here: the user called send(), not push()
            raise TypeError(f"send() takes bytes or str, not {type(data).__name__} {data!r:.60}; "
                            "encode other values first (str(x), json.dumps(x), pickle.dumps(x))")
        if not data:
            raise ValueError("send() refuses empty data: a message must hold at least 1 byte")
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
        wid = self._check_worker(worker_id)
        assert self._bus is not None
        if self.worker_id is None:
            self._bus.send(wid, bytes(data), self._wait_writable)
        else:
            inbox = self._inbox
            self._bus.send(wid, bytes(data), lambda sock: _pool_bus.wait_writable(sock, inbox))

    def shutdown(self, timeout: float | None = None) -> dict[int, ExitStatus]:
        """Stop the pool: SIGTERM every worker, SIGKILL after ``timeout`` seconds (default
        ``max_wait_time``, as a SIGTERM to the pool's process), reap all, free the queue, then
        ``on_stop``. Returns each worker id's last ExitStatus.

        In a worker, asks the parent to shut the pool down, and returns at once.
        """
        if self.worker_id is not None:
            self._tell(b"S")
            return {}
        grace = self.max_wait_time if timeout is None else _seconds(timeout, "timeout")
        if self._state == "new":
            return {}  # never started: nothing to stop
        self._require_parent("shutdown")
        if self._state == "running":
            self._stop(grace)
        return self._last_statuses()

    def reload(self, timeout: float | None = None) -> list[int]:
        """Restart every worker, one at a time (swoole's ``reload()``, also SIGUSR1 to the pool's
        process): stop worker 0 (SIGTERM, ``timeout`` seconds, SIGKILL), fork its replacement,
        wait until it is ready (its SIGTERM handler in place, about to run ``target``), then
        worker 1, and so on. Returns the ids restarted.

        A replacement that fails to fork, ends before it is ready, or is not ready within
        ``timeout`` seconds stops the reload with :class:`ReloadError`; the workers not reached
        yet keep running, and the pool goes on (a failed worker is respawned after its back-off).
        ``timeout`` defaults to ``max_wait_time``. In a worker, asks the parent to reload.
        """
        if self.worker_id is not None:
            self._tell(b"L")
            return []
        seconds = self.max_wait_time if timeout is None else _seconds(timeout, "timeout")
        self._require_parent("reload")
        if self._state != "running":
            raise ProcessStateError(f"pool {self.name!r} is {self._state}: only a running pool reloads")
        try:
            return self._reload(seconds)
        except KeyboardInterrupt:
            self._interrupted()
            raise
        finally:
            if self._state == "running":
                self._read_ctrl()  # a SIGTERM that came meanwhile
                if self._stop_asked:
                    self._stop(self.max_wait_time)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.worker_id is None and os.getpid() == self._pid and self._state == "running":
            self.shutdown()

    def _forget_parent_state(self) -> None:
        """In a new worker: the parent's bookkeeping means nothing here."""
        self._slots = [None] * self.n
        self._owner.clear()
        self._exits.clear()
        self._due.clear()
        self.detached = []
        self._unsubscribe = None
        self._saved_handlers = {}
        self._previous = {}

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

    def _last_statuses(self) -> dict[int, ExitStatus]:
        return {wid: status for wid, status in self._statuses}



from .manager import Manager  # noqa: E402  (Manager builds on Pool)
