"""The parent's side of :class:`procmagic.core.pool.Pool`: forking, supervising, stopping, reloading.

Supervision is a loop the caller drives (``start()`` or ``wait()``): it sleeps in ``poll`` on the
workers' pidfds and the control pipe, respawns exited workers after their back-off, and acts on
requests: a worker's ``shutdown()`` or ``detach()``, and the signals the pool handles while it runs
(SIGTERM: stop the pool; SIGUSR1: reload it). A signal that comes while nobody supervises (a
``block=False`` pool between two ``wait()`` calls) is acted on in its handler at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal as _signal
import threading
import time
import warnings
from typing import Any, Callable, Iterator

from . import ladder as _ladder
from . import pool_bus as _pool_bus
from .errors import ProcessStateError, ProcmagicError
from .pool_worker import CTRL
from .process import Process
from .reaper import registry
from .status import ExitStatus

__all__ = ["ReloadError", "ReloadWarning"]

_STABLE = 1.0  # a worker that lived this long resets its back-off
_HANDLED = (_signal.SIGTERM, _signal.SIGUSR1)


class ReloadError(ProcmagicError):
    """A worker did not start during ``reload()``: the reload stopped there."""


class ReloadWarning(RuntimeWarning):
    """A reload asked by SIGUSR1 stopped: a worker did not start (the pool goes on)."""


class _Supervisor:
    """The parent's half of a Pool (a mixin: the Pool's state lives in the Pool)."""

    n: int
    ipc: str | None
    name: str
    respawn: bool
    backoff: float
    max_backoff: float
    max_wait_time: float
    queue: Any
    on_worker_exit: Callable[..., Any] | None
    on_stop: Callable[..., Any] | None
    detached: list[Process]
    _state: str
    _slots: list[Process | None]
    _owner: dict[int, int]
    _started_at: list[float]
    _streak: list[int]
    _due: dict[int, float]
    _exits: list[tuple[Process, ExitStatus]]
    _statuses: list[tuple[int, ExitStatus]]
    _spawned: int
    _ctrl_r: int | None
    _ctrl_w: int | None
    _ctrl_buf: bytes
    _stop_asked: bool
    _reload_asked: bool
    _reloading: set[int]
    _supervising: int
    _ready: set[int]
    _unsubscribe: Callable[[], None] | None
    _saved_handlers: dict[int, Any]
    _previous: dict[int, Any]  # the handlers this pool replaced, kept after it stopped
    _bus: _pool_bus.Bus | None
    _pids: _pool_bus.PidTable | None

    _worker_entry: Callable[[Process], int]  # the worker's side (pool_worker)

    # -- forking and exits ---------------------------------------------------------------------
    def _spawn(self, wid: int) -> Process:
        proc = Process(self._worker_entry, pipe=None, name=f"{self.name}-{wid}")
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
        if self._pids is not None:
            self._pids[wid] = proc.pid
        self._started_at[wid] = time.monotonic()
        self._spawned += 1
        return proc

    def _on_registry_event(self, event: str, proc: Process, status: ExitStatus | None) -> None:
        if event == "reaped" and status is not None and id(proc) in self._owner:
            self._exits.append((proc, status))  # handled by the loop: never fork from a listener

    def _handle_exits(self) -> None:
        while self._exits:
            proc, status = self._exits.pop(0)
            wid = self._owner.pop(id(proc), None)
            if wid is None:
                continue  # handled already (a stop took it before the reaping thread's event), or detached
            registry.claim(proc)  # reported here (on_worker_exit, statuses), not by procmagic.wait()
            self._ready.discard(status.pid)
            proc.close()
            if self._slots[wid] is not proc:
                continue
            self._slots[wid] = None
            if self._pids is not None:
                self._pids[wid] = None
            self._statuses.append((wid, status))
            if self._state == "running" and self.respawn and wid not in self._reloading:
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
        size = CTRL.size
        while len(self._ctrl_buf) >= size:
            op, wid, pid = CTRL.unpack_from(self._ctrl_buf)
            self._ctrl_buf = self._ctrl_buf[size:]
            if op == b"R":
                self._ready.add(pid)
            elif op == b"S":
                self._stop_asked = True
            elif op == b"L":
                self._reload_asked = True
            elif op == b"D" and 0 <= wid < self.n:
                proc = self._slots[wid]
                if proc is not None and proc.pid == pid:
                    self._slots[wid] = None
                    self._owner.pop(id(proc), None)
                    self.detached.append(proc)
                    if self._state == "running":
                        self._due[wid] = time.monotonic()  # replaced at once, as in swoole

    def _post(self, op: bytes) -> None:
        """A request to our own loop (from a signal handler): wakes its poll."""
        if self._ctrl_w is not None:
            os.write(self._ctrl_w, CTRL.pack(op, -1, os.getpid()))

    # -- the loop ------------------------------------------------------------------------------
    def _step(self) -> None:
        """One round of supervision: requests, exits, due respawns, the end."""
        self._read_ctrl()
        self._handle_exits()
        if self._state != "running":
            return
        if self._reload_asked and not self._stop_asked:
            self._reload_asked = False
            try:
                self._reload(self.max_wait_time)
            except ReloadError as exc:
                warnings.warn(ReloadWarning(f"SIGUSR1: {exc}"), stacklevel=2)
        if self._stop_asked:  # (also one read from the control pipe during that reload)
            self._stop(self.max_wait_time)
            return
        now = time.monotonic()
        for wid, when in sorted(self._due.items()):
            if when <= now and self._state == "running":
                self._spawn(wid)
        if not self._due and all(p is None for p in self._slots):
            self._finish()  # respawn=False and every worker is done

    def _poller(self, procs: list[Process]) -> tuple[Any, bool]:
        poller = select.poll()
        if self._ctrl_r is not None:
            poller.register(self._ctrl_r, select.POLLIN)
        no_pidfd = False
        for proc in procs:
            fd = proc.exit_fd  # None where pidfds are missing
            if fd is not None:
                poller.register(fd, select.POLLIN)
            else:
                no_pidfd = True
        return poller, no_pidfd

    def _supervise(self, deadline: float | None) -> bool:
        self._supervising += 1
        try:
            while True:
                self._step()
                if self._state != "running":
                    return True
                if self._stop_asked or self._reload_asked:
                    continue  # a request read while the last step ran: no waiting for it
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                waits = [w - now for w in self._due.values()]
                if deadline is not None:
                    waits.append(deadline - now)
                poller, no_pidfd = self._poller([p for p in self._slots if p is not None])
                if no_pidfd:
                    waits.append(0.05)  # no pidfd here: poll for exits
                poller.poll(None if not waits else max(0, int(min(waits) * 1000 + 0.999)))
                registry.reap_ready()
        finally:
            self._supervising -= 1

    def _wait_writable(self, sock: Any) -> None:
        """The parent's wait while a worker's inbox is full: supervise meanwhile (the worker may
        have to be respawned to read it)."""
        poller, _ = self._poller([p for p in self._slots if p is not None])
        poller.register(sock, select.POLLOUT)
        self._supervising += 1  # a SIGTERM now is a request to the _step below
        try:
            poller.poll(50)
            registry.reap_ready()
            self._step()
        finally:
            self._supervising -= 1
        if self._state != "running":
            raise ProcessStateError(f"pool {self.name!r} stopped while a message waited to be sent")

    # -- stopping ------------------------------------------------------------------------------
    def _stop(self, grace: float) -> None:
        self._state = "stopping"
        self._due.clear()
        try:
            self._stop_workers([p for p in self._slots if p is not None], grace)
            self._handle_exits()
        finally:
            self._finish()

    def _stop_workers(self, live: list[Process], grace: float) -> None:
        """The core's stop ladder (SIGTERM to each worker's group, ``grace`` seconds, SIGKILL,
        reap), once every worker can take a SIGTERM (waiting up to ``grace`` seconds for that):
        one sent while a worker is still starting would kill it outright, and its on_worker_stop
        would never run. The two waits have a budget each: a worker slow to start (a loaded
        machine) still gets its whole grace after the SIGTERM."""
        self._await_handlers(live, time.monotonic() + grace)
        _ladder.stop(live, _ladder.TERMINATE(grace), reason="shutdown")
        # Each is reaped now, but maybe by another thread (a kernel's IOPub loop) whose "reaped"
        # event has not reached _on_registry_event yet: take the exits here, or on_worker_exit
        # would miss them (_handle_exits sees each worker once).
        queued = {id(proc) for proc, _ in self._exits}
        for proc in live:
            if proc.exitstatus is not None and id(proc) in self._owner and id(proc) not in queued:
                self._exits.append((proc, proc.exitstatus))

    def _await_handlers(self, live: list[Process], end: float) -> None:
        """Wait until each worker has its SIGTERM handler in place (it says so on the control
        pipe) or has ended, until ``end`` at most."""
        while True:
            self._read_ctrl()
            waiting = [p for p in live if p.exitstatus is None and p.pid not in self._ready]
            if not waiting or time.monotonic() >= end:
                return
            poller, _ = self._poller(waiting)
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
            if self._bus is not None:
                self._bus.close()
            if self._pids is not None:
                self._pids.close()
                self._pids = None
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            self._restore_signals()
        if self.on_stop is not None:
            self.on_stop(self)

    def _abort(self) -> None:
        """An error in the parent: stop everything quietly (the caller re-raises the error,
        which is the one to report: no more callbacks)."""
        if self._state == "stopped":
            return
        self.on_worker_exit = self.on_stop = None
        self._stop_quietly()

    def _interrupted(self) -> None:
        """KeyboardInterrupt (SIGINT) in the parent: a clean stop, callbacks included; the
        caller re-raises the interrupt."""
        if self._state == "stopped":
            return
        try:
            self._stop(self.max_wait_time)
        except BaseException:
            self.on_worker_exit = self.on_stop = None
            self._stop_quietly()

    @contextlib.contextmanager
    def _stopped_on_error(self) -> Iterator[None]:
        """Around the parent's supervising calls: a KeyboardInterrupt stops the pool cleanly
        (callbacks included), any other error quietly; either propagates."""
        try:
            yield
        except KeyboardInterrupt:
            self._interrupted()
            raise
        except BaseException:
            self._abort()
            raise

    def _stop_quietly(self) -> None:
        try:
            self._stop(1.0)
        except BaseException:
            try:
                left = [p for p in self._slots if p is not None and p.exitstatus is None]
                _ladder.stop(left, [(_signal.SIGKILL, None)], reason="shutdown")
            except Exception:
                pass
            self._finish()

    # -- signals to the pool's process ---------------------------------------------------------
    def _install_signals(self) -> None:
        """SIGTERM stops the pool and SIGUSR1 reloads it, while it runs (swoole's master)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal works only there; such a pool is stopped by its caller
        for sig in _HANDLED:
            self._saved_handlers[sig] = _signal.signal(sig, self._on_signal)
        self._previous = dict(self._saved_handlers)

    def _restore_signals(self) -> None:
        saved, self._saved_handlers = self._saved_handlers, {}
        for sig, handler in saved.items():
            if _signal.getsignal(sig) == self._on_signal:  # unless another pool put its own since
                _signal.signal(sig, handler if handler is not None else _signal.SIG_DFL)

    def _on_signal(self, signo: int, frame: Any) -> None:
        """The handler of every pool running in this process, in the order they started: each
        pool keeps the handler it replaced, so one signal reaches them all. What was there before
        the first of them gets the signal too: a handler of the program's own is called; the
        default disposition applies when no pool in the chain was running any more (a handler
        left in place by pools that stopped out of order): SIGTERM then ends the process."""
        handled = False
        pool: _Supervisor = self
        while True:
            if pool._state == "running":
                pool._act_on(signo)
                handled = True
            previous = pool._previous.get(signo)
            owner = getattr(previous, "__self__", None)
            if isinstance(owner, _Supervisor) and getattr(previous, "__func__", None) is _Supervisor._on_signal:
                pool = owner
                continue
            break
        if callable(previous):
            previous(signo, frame)
        elif not handled and previous in (_signal.SIG_DFL, None):
            _signal.signal(signo, _signal.SIG_DFL)
            os.kill(os.getpid(), signo)

    def _act_on(self, signo: int) -> None:
        if self._supervising:
            self._post(b"S" if signo == _signal.SIGTERM else b"L")  # the loop acts on it
        elif signo == _signal.SIGTERM:
            self._stop(self.max_wait_time)
        else:
            try:
                self._reload(self.max_wait_time)
            except ReloadError as exc:
                warnings.warn(ReloadWarning(f"SIGUSR1: {exc}"), stacklevel=2)

    # -- reload --------------------------------------------------------------------------------
    def _reload(self, timeout: float) -> list[int]:
        """Restart the workers one at a time: stop one (the ladder), fork its replacement, wait
        until it is ready, then the next. Raises ReloadError when a replacement does not start."""
        done: list[int] = []
        self._supervising += 1
        try:
            for wid in range(self.n):
                if self._state != "running":
                    break
                self._reloading.add(wid)
                try:
                    old = self._slots[wid]
                    if old is not None:
                        self._stop_workers([old], timeout)
                        self._handle_exits()
                    try:
                        new = self._spawn(wid)
                    except OSError as exc:
                        self._due[wid] = time.monotonic() + self.backoff
                        raise self._reload_failed(wid, done, f"its fork failed: {exc}") from None
                finally:
                    self._reloading.discard(wid)
                self._await_ready(new, wid, done, time.monotonic() + timeout)
                done.append(wid)
        finally:
            self._supervising -= 1
        return done

    def _await_ready(self, proc: Process, wid: int, done: list[int], deadline: float) -> None:
        while True:
            self._read_ctrl()
            if proc.pid in self._ready:
                return
            registry.reap_ready()
            if proc.exitstatus is not None:
                status = proc.exitstatus
                self._handle_exits()  # on_worker_exit, and its respawn after the back-off
                raise self._reload_failed(wid, done, f"it ended before it was ready ({status})")
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._reload_failed(wid, done, "it was not ready in time (it is left running)")
            poller, _ = self._poller([proc])
            poller.poll(max(1, min(50, int(left * 1000))))

    def _reload_failed(self, wid: int, done: list[int], why: str) -> ReloadError:
        rest = [w for w in range(self.n) if w != wid and w not in done]
        return ReloadError(f"reload of pool {self.name!r} stopped at worker {wid}: {why}; workers {done} were "
                           f"restarted, workers {rest} still run their old processes (fix the cause, then "
                           "reload() again)")
