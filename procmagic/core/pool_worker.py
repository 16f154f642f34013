"""A pool worker's side of :class:`procmagic.core.pool.Pool`: its entry point, SIGTERM, the message loop.

The parent forks each worker with :meth:`_WorkerSide._worker_entry` as its Process target. The
worker installs its SIGTERM handler, tells the parent it is ready (on the control pipe), runs the
pool's ``target``, then takes messages for ``on_message`` until the pool stops; ``on_worker_stop``
runs at its end whatever happened.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import struct
from typing import Any, Callable

from . import pool_bus as _pool_bus
from .errors import NoQueue, ProcessStateError
from .process import Process
from .queue_handle import PARENT

__all__ = ["WorkerStop", "CTRL"]

#: A record on the pool's control pipe: op, worker id, pid (9 bytes, written atomically).
CTRL = struct.Struct("=cii")


class WorkerStop(SystemExit):
    """Raised in a worker by the pool's SIGTERM: the pool is shutting down."""

    def __init__(self) -> None:
        super().__init__(0)


class _WorkerSide:
    """The worker's half of a Pool (a mixin: the Pool's state lives in the Pool)."""

    # set by Pool.__init__ / start()
    n: int
    ipc: str | None
    mode: str
    name: str
    queue: Any
    target: Callable[..., Any] | None
    on_message: Callable[..., Any] | None
    on_worker_stop: Callable[..., Any] | None
    detached: list[Process]
    _ctrl_r: int | None
    _ctrl_w: int | None
    _bus: _pool_bus.Bus | None
    _inbox: _pool_bus.Inbox | None
    # a worker's own
    worker_id: int | None
    worker_pid: int | None
    worker_running: bool
    process: Process | None
    _stopping: bool
    _interruptible: bool
    _left: bool

    _forget_parent_state: Callable[[], None]  # the Pool's

    def _tell(self, op: bytes) -> None:
        if self._ctrl_w is None or self.process is None:
            return
        try:
            os.write(self._ctrl_w, CTRL.pack(op, self.worker_id or 0, os.getpid()))
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

    def recv(self) -> bytes:
        """In a worker of a pipe pool: wait for the next message sent to it and return it (what
        ``on_message`` would get next)."""
        if self.worker_id is None or self._inbox is None:
            raise ProcessStateError("recv() is for a worker of a pool made with ipc='pipe'")
        return self._inbox.take()

    def _on_sigterm(self, signo: int, frame: Any) -> None:
        self._stopping = True
        if self._interruptible:
            self._interruptible = False
            raise WorkerStop()

    def _worker_entry(self, proc: Process) -> int:
        wid = proc.worker
        assert wid is not None
        self.worker_id, self.process, self.worker_pid = wid, proc, os.getpid()
        self._forget_parent_state()
        if self._ctrl_r is not None:
            os.close(self._ctrl_r)
            self._ctrl_r = None
        if self.queue is not None:
            # The worker's own Process carries the pool's queue, with the pool's routing: it pops
            # what is sent to this worker (type wid + 1 in orient mode) and pushes to the parent.
            proc.use_queue(self.queue, mode=self.mode, me=wid + 1, peer=PARENT)
            self.queue = proc.queue
        if self._bus is not None:
            self._inbox = self._bus.keep_inbox(wid)
        self._interruptible = True  # before the handler: a SIGTERM from now on raises WorkerStop
        _signal.signal(_signal.SIGTERM, self._on_sigterm)
        self._tell(b"R")
        code: Any = 0
        self.worker_running = True
        try:
            try:
                if self.target is not None:
                    code = self.target(self, wid)
                if self.on_message is not None:
                    self._serve()
            finally:
                self._interruptible = False
                self.worker_running = False  # swoole: workerRunning is false in WorkerStop
                if self.on_worker_stop is not None:
                    self.on_worker_stop(self, wid)
        except WorkerStop:
            code = 0
        return code if isinstance(code, int) else 0

    def _serve(self) -> None:
        """The message loop: SIGTERM interrupts the wait, never a message being handled."""
        on_message = self.on_message
        assert on_message is not None
        queue, inbox = self.queue, self._inbox
        while True:
            self._interruptible = True
            if self._stopping or self._left:  # (a SIGTERM that came while not interruptible)
                return
            try:
                if queue is not None:
                    data = queue.pop()
                elif inbox is not None:
                    data = inbox.take()
                else:
                    return
            except NoQueue:
                return  # the pool freed its queue: it is stopping
            finally:
                self._interruptible = False
            on_message(self, data)
