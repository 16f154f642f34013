"""A spawn: the children one ``%%spawn`` cell started, their output router, and their fate.

This module builds the children (one ``Process`` each, plus the channel and fd sockets of the
kernel integration), starts them and records the spawn where the widgets and ``%procs`` find
it. ``foreground.py`` or ``background.py`` (``terminal.py`` in terminal IPython) then runs it.
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import os
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Deque

from ..core import ladder as core_ladder
from ..core.child import close_in_children
from ..core.process import Process
from ..core.status import ExitStatus, format_size
from .channel import make_channel
from .child_setup import SpawnWiring, attach_wiring, prepare_parent
from .context import Context
from .router import Router, roomy

__all__ = ["Settings", "SpawnOptions", "Spawn", "spawns", "subscribe", "spawn_of", "retain", "dropped"]


@dataclass(frozen=True)
class Settings:
    """The configuration a spawn runs with, built from ``ProcMagics``' traits (where the
    defaults, their help and their validation live: never repeated here)."""

    output_cap: int
    flush_interval: float
    interrupt_grace: float
    term_grace: float
    drain_timeout: float
    log_dir: str
    log_limit: int
    show_status: str
    history: int
    result_limit: int


@dataclass
class SpawnOptions:
    redirect: bool = False
    bg: bool = False
    name: str | None = None
    pipe: str | None = "dgram"
    n: int = 1
    queue: int | None = None  # None: no queue; -1: a private queue; else the key
    timeout: float | None = None
    signal_on_interrupt: int = 2
    force: bool = False
    out: str | None = None
    result: str | None = None  # --result VAR (see result.py)
    pdb: bool = False  # --pdb: a post-mortem debugger in the child (see debug.py)


_numbers = itertools.count(1)
# Running spawns, and finished ones up to Settings.history children (see retain()). Each
# spawn holds its children's Process objects: dropping it releases them, and _by_proc forgets
# them by itself (its values are weak).
_history: Deque["Spawn"] = collections.deque()
_by_proc: "weakref.WeakValueDictionary[int, Spawn]" = weakref.WeakValueDictionary()
_dropped = {"spawns": 0, "children": 0}
# The finished spawns still in _history, by spawn number (oldest first), and their children's
# count: retain() drops the oldest without walking the whole history. (It walked it at every
# spawn's end: with the default history of 1,000, ~2 ms of copy-on-write faults per spawn.)
_finished: list[tuple[int, "Spawn"]] = []
_kept = {"children": 0}
_listeners: list[Callable[[str, "Spawn", Any], None]] = []


def subscribe(listener: Callable[[str, "Spawn", Any], None]) -> Callable[[], None]:
    """``listener(event, spawn, detail)`` on ``"started"``, ``"status"``, ``"ending"`` (all
    output published, ``finished`` not yet set) and ``"finished"``."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def emit(event: str, spawn: "Spawn", detail: Any = None) -> None:
    for listener in list(_listeners):
        try:
            listener(event, spawn, detail)
        except Exception:
            import traceback

            traceback.print_exc(file=sys.__stderr__)


def spawns() -> list["Spawn"]:
    """The running spawns and the newest finished ones (``ProcMagics.history``), oldest first."""
    return list(_history)


def retain(history: int, finished: "Spawn | None" = None) -> None:
    """Count ``finished`` (a spawn that just ended) among the kept ones, then drop the oldest
    finished spawns until they hold at most ``history`` children (running spawns are always
    kept)."""
    if finished is not None:
        heapq.heappush(_finished, (finished.number, finished))
        _kept["children"] += len(finished.procs)
    while _finished and _kept["children"] > history:
        _, spawn = heapq.heappop(_finished)
        _kept["children"] -= len(spawn.procs)
        try:
            _history.remove(spawn)  # the oldest ones: near the left end
        except ValueError:
            continue
        _dropped["spawns"] += 1
        _dropped["children"] += len(spawn.procs)
        spawn.router.forget_listeners()  # it ended long ago: freed when the last view of it goes


def dropped() -> tuple[int, int]:
    """How many finished spawns, and children in them, were dropped from the history so far."""
    return _dropped["spawns"], _dropped["children"]


def spawn_of(proc: Process) -> "Spawn | None":
    return _by_proc.get(proc.id)


def _log_name(name: str, number: int) -> str:
    """The spawn's log file name: its name with path separators replaced, kept short."""
    return f"{name.replace('/', '_').replace(os.sep, '_')[:100]}-{number}.log"


class Spawn:
    """The children of one ``%%spawn`` cell."""

    def __init__(self, ctx: Context, options: SpawnOptions, cell: str, settings: Settings) -> None:
        self.number = next(_numbers)
        self.ctx = ctx
        self.options = options
        self.settings = settings
        self.cell = cell
        self.name = options.name or f"spawn-{self.number}"
        self.header = ctx.header()
        self.publish = ctx.publisher(self.header)
        self.procs: list[Process] = []
        self.statuses: dict[int, ExitStatus] = {}
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.timed_out = False
        self.interrupted = False
        self.finished = threading.Event()
        self.log_path: str | None = None
        self.driver: Any = None  # set by attach(): who runs the spawn once it started
        self.queue: Any = None
        self._lock = threading.Lock()  # children's ends arrive on the thread that reaped them
        self._ended: dict[int, ExitStatus] = {}
        # the log goes to this kernel's private directory (core.runtime) unless log_dir is set
        self.router = Router(self.publish, label_workers=options.n > 1, cap=settings.output_cap,
                             interval=settings.flush_interval, log_dir=settings.log_dir or None,
                             log_name=_log_name(self.name, self.number), log_limit=settings.log_limit)
        self.router.on_bad_source = self.stop_worker  # a child that sent bad frames is stopped

    @property
    def done(self) -> bool:
        return self.finished.is_set()

    def __repr__(self) -> str:
        state = "finished" if self.done else "running"
        return f"<Spawn #{self.number} {self.name!r} {len(self.procs)} children {state}>"

    # -- building and starting -----------------------------------------------------------------
    def start(self, target: Callable[[Process], Any]) -> None:
        """Create and start every child; on any failure, stop the started ones and clean up."""
        opts = self.options
        kernel = not self.ctx.terminal
        if kernel:
            prepare_parent(self.ctx.kernel)  # the kernel's sockets as they are now, for the children
        wirings: list[tuple[Process, SpawnWiring, Any, Any]] = []
        try:
            for i in range(opts.n):
                name = self.name if opts.n == 1 else f"{self.name}/{i}"
                # A redirected child writes its output straight into its pipe: give it room
                # while the router paces its reads.
                proc = Process(target, redirect=opts.redirect, pipe=opts.pipe, name=name,
                               child_setup=_roomy_pipe if opts.redirect else None)
                proc.worker = i
                # subscribed before the fork: whoever reaps the child (a sibling's start(), the
                # IOPub loop, a join()), its end reaches this spawn's driver exactly once
                proc.add_done_callback(functools.partial(self._child_ended, proc))
                ch_parent = ch_child = fd_parent = fd_child = None
                if kernel:
                    ch_parent, ch_child = make_channel()
                    if not opts.redirect:
                        fd_parent, fd_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                for sock in (ch_child, fd_child):
                    if sock is not None:
                        roomy(sock)  # the router paces its reads: let the child write meanwhile
                        proc.give_to_child(sock)  # closed here at the fork, and in every other child
                for sock in (ch_parent, fd_parent):
                    if sock is not None:
                        close_in_children(sock)  # the kernel's side: no child may hold it open
                wiring = SpawnWiring(ch_child, fd_child, self.cell, i)
                attach_wiring(proc, wiring)
                wirings.append((proc, wiring, ch_parent, fd_parent))
                self.procs.append(proc)
            if opts.queue is not None:
                self._attach_queue()
            for proc, wiring, ch_parent, fd_parent in wirings:
                proc.start(force=opts.force)
                wiring.channel = wiring.fdout = None  # closed here by the fork: the child's now
                if opts.redirect:
                    sock = proc.claim_reader(
                        f"the pipe of {proc.name!r} is read by procmagic, which streams it into the cell "
                        "(%%spawn --redirect); use write() to feed the child's stdin"
                    )
                    self.router.add(sock, framed=False, worker=proc.worker, name="stdout", owned=False)
                if fd_parent is not None:
                    self.router.add(fd_parent, framed=False, worker=proc.worker, name="stdout")
                if ch_parent is not None:
                    self.router.add(ch_parent, framed=True, worker=proc.worker)
                _by_proc[proc.id] = self
        except BaseException:
            self._abort(wirings)
            raise
        _history.append(self)
        emit("started", self)

    def _child_ended(self, proc: Process, status: ExitStatus) -> None:
        """A child was reaped (on the reaping thread): tell the driver, or keep it for attach()."""
        with self._lock:
            self._ended[proc.id] = status
            driver = self.driver
        if driver is not None:
            driver.child_reaped(proc, status)

    def attach(self, driver: Any) -> None:
        """Hand the started spawn to ``driver`` (``child_reaped(proc, status)`` for each child's
        end), with the ends that came before it existed: none is lost, none told twice."""
        with self._lock:
            self.driver = driver
            ended = [(p, self._ended[p.id]) for p in self.procs if p.id in self._ended]
        for proc, status in ended:
            driver.child_reaped(proc, status)

    def _attach_queue(self) -> None:
        key = None if self.options.queue == -1 else self.options.queue
        first = self.procs[0]
        self.queue = first.use_queue(key=key)
        for proc in self.procs[1:]:
            proc.use_queue(key=self.queue)

    def _abort(self, wirings: list[tuple[Process, SpawnWiring, Any, Any]]) -> None:
        for proc in self.procs:
            if proc.pid is not None and proc.exitstatus is None:
                try:
                    proc.stop(grace=self.settings.term_grace)
                except Exception:
                    pass
        for proc, wiring, ch_parent, fd_parent in wirings:
            for sock in (ch_parent, fd_parent):
                if sock is not None and sock.fileno() >= 0 and sock.fileno() not in self.router.sources:
                    sock.close()
            proc.close()  # before start, the ends given to the child go too
        for fd in list(self.router.sources):
            self.router.close_source(fd)
        if self.queue is not None:
            try:
                self.queue.free()
            except Exception:
                pass

    # -- ending --------------------------------------------------------------------------------
    def status_line(self, proc: Process, status: ExitStatus) -> str:
        return (f"[procmagic] {proc.name} (id {status.id}, pid {status.pid}) {status.how} after "
                f"{status.wall_time:.2f} s, cpu {status.cpu_time:.2f} s, peak rss {format_size(status.max_rss)}\n")

    def stop_worker(self, worker: int | None) -> None:
        """Stop the child of ``worker`` (None: every child) without blocking, through the core's
        stop ladder: SIGTERM to its group now, SIGKILL after ``term_grace`` if it is still
        running (the ladder's next step is taken on the output loop)."""
        procs = [p for p in self.procs if worker is None or getattr(p, "worker", None) == worker]
        stopping = core_ladder.Ladder(procs, core_ladder.TERMINATE(self.settings.term_grace), reason="bad data")
        stopping.advance()
        loop = self.ctx.output_loop()
        if loop is not None and stopping.deadline is not None:
            # a moment past the deadline, so that the one tick() escalates
            loop.call_soon_threadsafe(loop.call_later, self.settings.term_grace + 0.01, stopping.tick)

    def record(self, proc: Process, status: ExitStatus) -> None:
        self.statuses[proc.id] = status
        emit("status", self, (proc, status))

    def finish(self) -> None:
        """Close the router (flushing everything), show exit statuses, release what is left."""
        if self.finished.is_set():
            return
        router = self.router
        for fd in list(router.sources):
            router.close_source(fd)
            router.sources.pop(fd, None)
        self.log_path = router.close()
        show = self.settings.show_status
        for proc in self.procs:
            status = self.statuses.get(proc.id) or proc.exitstatus
            if status is None or show == "none" or (show == "failures" and status.ok):
                continue
            router.add_notice(self.status_line(proc, status), name="stdout" if status.ok else "stderr")
        for proc in self.procs:
            if proc.redirect:
                proc.close()  # end of file was read: nothing more can come, nothing can be written
            elif self.options.out is None:
                proc.close_if_drained()  # unless it left messages the notebook may still read()
            # With --out the notebook holds the Process and may be reading its pipe right now, on
            # the main thread, while a --bg spawn finishes on the IOPub thread's loop: the pipe
            # stays open for it (read() gives b"" at its end) until the handle is closed or dropped.
        if self.queue is not None and self.options.queue == -1:
            # A private queue dies with its spawn, unless messages are left for the notebook to
            # pop(): then it lives until free_queue() or the kernel's shutdown.
            try:
                if self.queue.stat().messages == 0:
                    self.queue.free()
            except Exception:
                pass
        self.finished_at = time.time()
        emit("ending", self)  # before anyone waiting on `finished` wakes (--result binds here)
        self.finished.set()
        emit("finished", self)
        retain(self.settings.history, self)


def _roomy_pipe(proc: Process) -> None:
    """In a redirected child: a large send buffer on its end of the pipe (see router.roomy)."""
    sock = proc.pipe_socket
    if sock is not None:
        roomy(sock)
