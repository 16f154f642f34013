"""procmagic inside one IPython shell: what ``%load_ext procmagic`` installs and what the kernel's
end undoes.

Installing declares the kernel's threads to the guard, reserves SIGINT for the kernel, adds the
child hook that cuts a child off from the kernel, attaches the reaper to an event loop, and
registers the per-cell events and the shutdown at exit. ``run`` drives a spawn in the
foreground or the background; ``wait`` is ``%wait`` without the printing. ``magics.py`` only
parses options and calls these.
"""

from __future__ import annotations

import atexit
import os
import signal as _signal
import time
from typing import Any, Callable

from ..core import child as core_child
from ..core import ladder as core_ladder
from ..core.process import Process
from ..core.reaper import registry
from ..core.signals import reserve_signal
from ..core.status import ExitStatus
from . import child_setup, spawn as spawn_mod, threads
from .context import Context, guard_iopub_thread
from .background import BackgroundDriver
from .cell import make_target
from .debug import child_io
from .foreground import run_foreground
from .interrupts import InterruptLatch
from .result import ResultCollector
from .spawn import Settings, Spawn
from .stdin import StdinBroker, wants_relay
from .terminal import TerminalBackground, drain_terminal

__all__ = ["Integration"]


class Integration:
    """The kernel-side lifecycle of procmagic in ``shell``; ``settings()`` reads the current
    configuration (ProcMagics' traits) each time it is needed."""

    def __init__(self, shell: Any, ctx: Context, settings: Callable[[], Settings]) -> None:
        self.shell = shell
        self.ctx = ctx
        self.settings = settings
        self._pid = os.getpid()
        self._cleanups: list[Callable[[], Any]] = []
        self._cached_fds: list[tuple[int, int, int]] = []
        self._fds_to_close: list[int] = []

    # -- install and uninstall -----------------------------------------------------------------
    def install(self) -> None:
        threads.declare()  # kept after unload: the kernel's threads stay harmless
        lift_sigint: Any = None
        if self.ctx.kernel is not None:
            lift_sigint = reserve_signal(
                _signal.SIGINT, "the kernel receives the notebook's interrupt as SIGINT; a handler here would "
                "break the interrupt button (install it inside a child instead)")
            self._cleanups.append(lift_sigint)
            self._cleanups.append(guard_iopub_thread(self.ctx.kernel))  # docs/reliability.md
            self._cached_fds = child_setup.kernel_fds(self.ctx.kernel)
        kernel, shell = self.ctx.kernel, self.shell
        kernel_pid = os.getpid()

        def hook(proc: Process) -> None:
            if os.getppid() != kernel_pid:
                # Forked by one of our children (a Pool in a %%spawn body, say): that child cut
                # itself off from the kernel already, and the fd numbers found in the kernel may
                # belong to the child's own files by now (a pool's control pipe).
                return
            if lift_sigint is not None:
                lift_sigint()  # a child may handle SIGINT: it is its own
            child_setup.setup_child(proc, kernel, shell, self._fds_to_close)

        self._cleanups.append(core_child.add_child_hook(hook))
        self._cleanups.append(core_child.set_flush_check(child_setup.stream_needs_flush))
        # Children are reaped on the IOPub thread's loop, which keeps running while a cell
        # blocks (an exit is then reported at once, with its real wall time), and by the
        # foreground driver itself. No thread of procmagic's.
        # One loop, not both: a child reaped on the IOPub thread left its pidfd open until the
        # main loop could drop its reader, i.e. until the running cell ended (a cell spawning
        # 1,000 children in a row held 1,000 pidfds). The main loop reaps only where there is
        # no IOPub loop (terminal IPython).
        loop = self.ctx.main_loop()
        iopub = self.ctx.output_loop()
        iopub_thread = _iopub_thread_ident(self.ctx.kernel)
        if iopub is not None and iopub is not loop and iopub_thread is not None:
            self._cleanups.append(registry.watch(iopub, thread=iopub_thread))
        elif loop is not None:
            self._cleanups.append(registry.watch(loop))
        self._on("pre_run_cell", self._pre_run_cell)
        if self.ctx.terminal:
            self._on("post_run_cell", self._post_run_cell)
        atexit.register(self.shutdown)
        self._cleanups.append(lambda: atexit.unregister(self.shutdown))

    def _on(self, event: str, callback: Callable[..., None]) -> None:
        self.shell.events.register(event, callback)
        self._cleanups.append(lambda: self.shell.events.unregister(event, callback))

    def uninstall(self) -> None:
        self.shutdown()
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception:
                pass

    def _pre_run_cell(self, *args: Any) -> None:
        if os.getpid() != self._pid:
            return  # a child runs its body as a cell too: the kernel's fds are closed there already
        # Checked again before every cell (cheap fstat): fds the kernel closed are never closed
        # in a child by number, where the number may by now be someone else's.
        self._fds_to_close = child_setup.live_kernel_fds(self._cached_fds)
        drain_terminal()

    def _post_run_cell(self, *args: Any) -> None:
        drain_terminal()

    # -- running spawns ------------------------------------------------------------------------
    def new_spawn(self, options: Any, source: str) -> Spawn:
        return Spawn(self.ctx, options, source, self.settings())

    def interrupts(self) -> InterruptLatch:
        """Hold the notebook's interrupts from before a spawn starts until ``run`` returns: a
        KeyboardInterrupt raised between the fork and the wait would leave children behind."""
        return InterruptLatch()

    def launch(self, spawn: Spawn, source: str, cell_number: int | None,
               on_failure: Callable[[BaseException], Any] | None = None) -> None:
        """Start ``spawn``'s children on the cell body ``source`` and run it (``%%spawn``): its
        ``--result`` collector, stdin relay and debugger wrappers, ``--out``, then ``run``.
        Interrupts are held from before the first fork until ``run`` returns; a failed start
        calls ``on_failure(exc)`` (the panel) and raises."""
        options = spawn.options
        with self.interrupts() as latch:
            # --result's channels and the stdin relay are made under the latch: an interrupt
            # before them leaves nothing, one after them reaches the except below
            collector = broker = None
            try:
                relay = wants_relay(self.ctx, options)
                broker = StdinBroker(spawn, self.ctx.kernel) if relay else None
                collector = ResultCollector(spawn, options.result, self.shell) if options.result else None
                target = make_target(self.shell, source, cell_number,
                                     on_result=collector.send_from_child if collector else None)
                target = child_io(target, self.shell, relay, options.pdb, collector)
                spawn.start(target)
                if collector is not None:
                    collector.after_start()
            except BaseException as exc:
                if collector is not None:
                    collector.abort()
                if broker is not None:
                    broker.close()
                if on_failure is not None:
                    on_failure(exc)
                raise
            if options.out:
                self.shell.user_ns[options.out] = spawn.procs[0] if options.n == 1 else list(spawn.procs)
            self.run(spawn, latch)

    def run(self, spawn: Spawn, latch: InterruptLatch) -> None:
        """Drive a started spawn: block until it ends, or hand it to a background driver. An
        interrupt that came while a ``--bg`` spawn started stops it as a foreground one."""
        if not spawn.options.bg or latch.count > latch.taken:
            run_foreground(spawn, latch)
            return
        loop = self.ctx.output_loop()
        if loop is None:  # a terminal: the output is drained around each cell
            spawn.attach(TerminalBackground(spawn))
        else:
            driver = BackgroundDriver(spawn, loop)
            spawn.attach(driver)
            driver.start()

    def wait(self, procs: list[Process], timeout: float | None) -> tuple[list[ExitStatus], list[Process]]:
        """Wait for ``procs`` to end and their spawns' output to drain (``%wait``); returns the
        exit statuses and the children still running when ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        statuses: list[ExitStatus] = []
        running: list[Process] = []
        for proc in procs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                statuses.append(proc.join(left))
            except TimeoutError:
                running.append(proc)
            except OSError as exc:  # the child's exec() failed: still a status to show
                status = getattr(exc, "exit_status", None)
                if status is not None:
                    statuses.append(status)
        seen = set()
        for proc in procs:  # let background output drain, so it is complete in its cell
            spawn = spawn_mod.spawn_of(proc)
            if spawn is not None and spawn.number not in seen and proc.exitstatus is not None:
                seen.add(spawn.number)
                if isinstance(spawn.driver, TerminalBackground):
                    spawn.driver.drain()
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                spawn.finished.wait(5.0 if left is None else min(5.0, left))
        return statuses, running

    def draining(self) -> list[Process]:
        """Children that ended but whose spawn is still publishing their output."""
        return [p for p in registry.known() if p.pid is not None and _draining(p)]

    # -- the end -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every child and what ended ones left in their process groups (the core's stop
        ladder: SIGTERM, then SIGKILL after term_grace), reap them; free the spawns' queues."""
        if os.getpid() != self._pid:
            return
        core_ladder.stop_all(grace=self.settings().term_grace, reason="shutdown")
        for spawn in spawn_mod.spawns():
            if spawn.queue is not None:
                try:
                    spawn.queue.free()
                except Exception:
                    pass


def _iopub_thread_ident(kernel: Any) -> int | None:
    """The ident of the thread running the kernel's IOPub loop (None without one)."""
    runner = getattr(getattr(kernel, "iopub_thread", None), "thread", None)
    ident = getattr(runner, "ident", None)
    return ident if isinstance(ident, int) else None


def _draining(proc: Process) -> bool:
    spawn = spawn_mod.spawn_of(proc)
    return spawn is not None and not spawn.done
