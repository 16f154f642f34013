"""The IPython extension: ``%%spawn``, ``%procs``, ``%kill``, ``%wait`` and ``%forkcheck``.

A thin layer over the core and the kernel integration: parse options (``UsageError`` with the
usage line on bad input), build a spawn, run it in the foreground or the background.
"""

from __future__ import annotations

import atexit
import os
import signal as _signal
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Float, Int, Unicode, validate

from .core import child as core_child
from .core import guard
from .core.errors import ForkRefused
from .core.process import Process
from .core.reaper import registry
from .core.signals import reserve_signal, signal_number
from .kernel import child_setup, spawn as spawn_mod, threads
from .kernel.cell import check_syntax, current_cell_number, make_target
from .kernel.context import Context, context_for
from .kernel.drivers import BackgroundDriver, run_foreground
from .kernel.spawn import Settings, Spawn, SpawnOptions
from .text import status_table

__all__ = ["ProcMagics", "load", "unload"]

def _timeout_option(value: str | None, magic: Any) -> float | None:
    """--timeout SECONDS: a positive number, else UsageError with the magic's usage line."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0 or number != number or number == float("inf"):
        raise UsageError(f"--timeout must be a positive number of seconds, not {value!r}\n{_usage(magic)}")
    return number


@magics_class
class ProcMagics(Magics):
    """procmagic's magics. Defaults are set with ``%config ProcMagics.<option> = value``."""

    shell: Any  # always set: the extension is loaded into a live shell

    output_cap = Int(4 * 1024 * 1024, help="Characters of output one spawn sends to the notebook; the rest is kept in a log file.").tag(config=True)
    flush_interval = Float(0.05, help="Seconds between two output messages of one spawn while it prints continuously.").tag(config=True)
    interrupt_grace = Float(2.0, help="Seconds between forwarding an interrupt and sending SIGTERM.").tag(config=True)
    term_grace = Float(2.0, help="Seconds between SIGTERM and SIGKILL (interrupts, --timeout, shutdown).").tag(config=True)
    drain_timeout = Float(2.0, help="Seconds to keep reading output after the children exited (descendants may hold the pipe).").tag(config=True)
    log_dir = Unicode("", help="Where logs of capped output go (default: a per-kernel folder in the temp dir).").tag(config=True)
    show_status = Unicode("all", help="Which exit statuses to show when children end: all, failures or none.").tag(config=True)

    @validate("output_cap")
    def _check_cap(self, proposal: Any) -> int:
        if proposal["value"] < 1024:
            raise ValueError(f"output_cap must be at least 1024 characters, got {proposal['value']}")
        return proposal["value"]  # type: ignore[no-any-return]

    @validate("flush_interval", "interrupt_grace", "term_grace", "drain_timeout")
    def _check_seconds(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise ValueError(f"{proposal['trait'].name} must be >= 0 seconds, got {proposal['value']}")
        return proposal["value"]  # type: ignore[no-any-return]

    @validate("show_status")
    def _check_show(self, proposal: Any) -> str:
        if proposal["value"] not in ("all", "failures", "none"):
            raise ValueError(f"show_status must be 'all', 'failures' or 'none', got {proposal['value']!r}")
        return proposal["value"]  # type: ignore[no-any-return]

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.ctx: Context = context_for(shell)
        self._cleanups: list[Any] = []

    def settings(self) -> Settings:
        return Settings(output_cap=self.output_cap, flush_interval=self.flush_interval,
                        interrupt_grace=self.interrupt_grace, term_grace=self.term_grace,
                        drain_timeout=self.drain_timeout, log_dir=self.log_dir, show_status=self.show_status)

    # -- %%spawn -------------------------------------------------------------------------------
    @magic_arguments()
    @argument("--redirect", action="store_true",
              help="Put the child's fds 0, 1 and 2 on its pipe: C-level output, os.system and subprocesses reach the cell; write() feeds its stdin.")
    @argument("--bg", action="store_true", help="Return at once; output keeps streaming into this cell.")
    @argument("--name", help="Name of the child (workers get NAME/0, NAME/1, ...).")
    @argument("--pipe", default="dgram", help="The pipe between notebook and child: stream, dgram (default) or none.")
    @argument("-n", type=int, default=1, help="Run N children with the same body; proc.worker is each one's index.")
    @argument("--queue", nargs="?", const="private", default=None, metavar="KEY",
              help="Give the children a shared SysV message queue (proc.push/pop); KEY names a system-wide queue.")
    @argument("--timeout", type=str, default=None, metavar="SECONDS",
              help="SIGTERM the children after SECONDS, SIGKILL after ProcMagics.term_grace more.")
    @argument("--signal-on-interrupt", default="SIGINT", metavar="SIG",
              help="Signal sent to the children when the cell is interrupted (default SIGINT).")
    @argument("--force", action="store_true", help="Fork even though the threaded-fork guard refuses (a warning shows).")
    @argument("--out", metavar="VAR", help="Bind the child's Process (a list with -n) to VAR in the notebook.")
    @cell_magic
    def spawn(self, line: str, cell: str) -> None:
        """Run the cell's body in a child forked from the kernel, with the notebook's variables
        as they are now. In the body, ``proc`` is the child's own Process.

        Without --bg the cell waits for the children, forwarding the notebook's interrupt
        (SIGINT, then SIGTERM and SIGKILL after grace periods). Output lands in this cell, also
        with --bg while other cells run.
        """
        options = self._parse(line)
        source = check_syntax(self.shell, cell)
        spawn = Spawn(self.ctx, options, source, self.settings())
        panel = self._show_panel(spawn)
        try:
            spawn.start(make_target(self.shell, source, current_cell_number(self.shell)))
        except BaseException as exc:
            if panel is not None:
                panel.fail(exc)
            if isinstance(exc, ForkRefused):
                raise ForkRefused(_with_hints(str(exc)), exc.census) from None
            raise
        if options.out:
            self.shell.user_ns[options.out] = spawn.procs[0] if options.n == 1 else list(spawn.procs)
        if options.bg:
            loop = self.ctx.output_loop()
            if loop is None:  # a terminal: the output is drained around each cell
                spawn.driver = _TerminalBackground(spawn)
            else:
                spawn.driver = BackgroundDriver(spawn, loop)
                spawn.driver.start()
            return
        run_foreground(spawn)

    def _show_panel(self, spawn: Spawn) -> Any:
        """The live panel shown above a spawn's output (the widgets layer; none in a terminal)."""
        if self.ctx.terminal:
            return None
        from .widgets import show_panel

        return show_panel(spawn)

    def _parse(self, line: str) -> SpawnOptions:
        try:
            args = parse_argstring(self.spawn, line)
        except UsageError as exc:
            raise UsageError(f"{exc}\n{_usage(self.spawn)}") from None
        def bad(text: str) -> UsageError:
            return UsageError(f"{text}\n{_usage(self.spawn)}")
        pipe = None if args.pipe.lower() == "none" else args.pipe.lower()
        if pipe not in (None, "stream", "dgram"):
            raise bad(f"--pipe must be stream, dgram or none, not {args.pipe!r}")
        if args.n < 1 or args.n > 1024:
            raise bad(f"-n must be from 1 to 1024 children, got {args.n}")
        timeout = _timeout_option(args.timeout, self.spawn)
        try:
            sig = signal_number(args.signal_on_interrupt, "--signal-on-interrupt")
        except (TypeError, ValueError) as exc:
            raise bad(str(exc)) from None
        if sig in (0,):
            raise bad("--signal-on-interrupt must be a real signal, not 0")
        queue = None
        if args.queue is not None:
            if args.queue == "private":
                queue = -1
            else:
                try:
                    queue = int(args.queue, 0)
                except ValueError:
                    raise bad(f"--queue KEY must be an integer key (decimal or 0x hex), not {args.queue!r}") from None
                if queue <= 0:
                    raise bad(f"--queue KEY must be a positive integer, got {queue}")
        if args.out is not None and not args.out.isidentifier():
            raise bad(f"--out must name a Python variable, not {args.out!r}")
        if args.name is not None and (not args.name.strip() or args.name.isdigit()):
            raise bad(f"--name must be a non-empty name that is not a number (numbers are ids), got {args.name!r}")
        return SpawnOptions(redirect=args.redirect, bg=args.bg, name=args.name, pipe=pipe, n=args.n, queue=queue,
                            timeout=timeout, signal_on_interrupt=sig, force=args.force, out=args.out)

    # -- line magics ---------------------------------------------------------------------------
    @line_magic
    def forkcheck(self, line: str) -> None:
        """Show the threaded-fork guard's census of live threads and its verdict."""
        census = guard.census()
        print(census)
        if not census.ok:
            print(_with_hints(census.refusal()))

    @line_magic
    def procs(self, line: str) -> None:
        """The live dashboard of procmagic's children: processes, queue traffic, alarms and reaped
        exit statuses (newest first). In a terminal, the same four parts as text tables."""
        _drain_terminal()
        registry.reap_ready()
        from .widgets import show_dashboard

        show_dashboard(self.ctx)

    @magic_arguments()
    @argument("-s", "--signal", default="SIGTERM", help="Signal to send (name or number; default SIGTERM).")
    @argument("target", nargs="+", help="Child id, name, or 'all'.")
    @line_magic
    def kill(self, line: str) -> None:
        """Send a signal to children (to each one's whole process group)."""
        args = parse_argstring(self.kill, line)
        try:
            sig = signal_number(args.signal, "-s")
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{exc}\n{_usage(self.kill)}") from None
        for proc in _select(args.target, live_only=True):
            sent = proc.kill(sig)
            print(f"{'sent' if sent else 'not sent (already ended)'} {_signal.Signals(sig).name if sig else 0} to {proc.name} (id {proc.id}, pid {proc.pid})")

    @magic_arguments()
    @argument("--timeout", type=str, default=None, metavar="SECONDS", help="Give up after SECONDS.")
    @argument("target", nargs="*", help="Child id, name, or 'all' (the default: every live child).")
    @line_magic
    def wait(self, line: str) -> Any:
        """Wait for children to end (all by default) and show their exit statuses."""
        args = parse_argstring(self.wait, line)
        timeout = _timeout_option(args.timeout, self.wait)
        # with no target, or 'all': the children still running or still draining output (the
        # others showed their status already); a named child is waited for, or its status
        # shown, whatever its state
        procs = _select(args.target or ["all"], live_only=True)
        if not args.target or "all" in args.target:  # and those whose output is still draining
            procs += [p for p in registry.known() if p not in procs and p.pid is not None and _draining(p)]
        if not procs:
            print("no live procmagic children to wait for")
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        statuses: list[Any] = []
        for proc in procs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                statuses.append(proc.join(left))
            except TimeoutError:
                print(f"{proc.name} (id {proc.id}, pid {proc.pid}) still running after {timeout} s")
            except OSError as exc:  # the child's exec() failed: still a status to show
                statuses.append(getattr(exc, "exit_status", None))
        seen = set()
        for proc in procs:  # let background output drain, so it is complete in its cell
            spawn = spawn_mod.spawn_of(proc)
            if spawn is not None and spawn.number not in seen and proc.exitstatus is not None:
                seen.add(spawn.number)
                if isinstance(spawn.driver, _TerminalBackground):
                    spawn.driver.drain()
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                spawn.finished.wait(5.0 if left is None else min(5.0, left))
        statuses = [s for s in statuses if s is not None]
        if statuses:
            print(status_table(statuses))
        return None

    # -- lifecycle -----------------------------------------------------------------------------
    def install(self) -> None:
        threads.declare()  # kept after unload: the kernel's threads stay harmless
        lift_sigint: Any = None
        if self.ctx.kernel is not None:
            lift_sigint = reserve_signal(
                _signal.SIGINT, "the kernel receives the notebook's interrupt as SIGINT; a handler here would "
                "break the interrupt button (install it inside a child instead)")
            self._cleanups.append(lift_sigint)
            cached = child_setup.kernel_fds(self.ctx.kernel)
        else:
            cached = []
        kernel, shell = self.ctx.kernel, self.shell

        def hook(proc: Process) -> None:
            if lift_sigint is not None:
                lift_sigint()  # a child may handle SIGINT: it is its own
            spawn_mod.close_others_in_child(proc)
            child_setup.setup_child(proc, kernel, shell, self._fds_to_close)

        self._cached_fds = cached
        self._fds_to_close: list[int] = []
        self._cleanups.append(core_child.add_child_hook(hook))
        self._cleanups.append(registry.subscribe(self._on_registry))
        loop = self.ctx.main_loop()
        if loop is not None:
            self._cleanups.append(registry.watch(loop))
        self.shell.events.register("pre_run_cell", self._pre_run_cell)
        self._cleanups.append(lambda: self.shell.events.unregister("pre_run_cell", self._pre_run_cell))
        if self.ctx.terminal:
            self.shell.events.register("post_run_cell", self._post_run_cell)
            self._cleanups.append(lambda: self.shell.events.unregister("post_run_cell", self._post_run_cell))
        atexit.register(self.shutdown)
        self._cleanups.append(lambda: atexit.unregister(self.shutdown))

    def _pre_run_cell(self, *args: Any) -> None:
        # Checked again before every cell (cheap fstat): fds the kernel closed are never closed
        # in a child by number, where the number may by now be someone else's.
        self._fds_to_close = child_setup.live_kernel_fds(self._cached_fds)
        _drain_terminal()

    def _post_run_cell(self, *args: Any) -> None:
        _drain_terminal()

    def _on_registry(self, event: str, proc: Process, status: Any) -> None:
        if event != "reaped":
            return
        spawn = spawn_mod.spawn_of(proc)
        if spawn is not None and isinstance(spawn.driver, BackgroundDriver):
            spawn.driver.child_reaped(proc, status)
        elif spawn is not None and isinstance(spawn.driver, _TerminalBackground):
            spawn.driver.child_reaped(proc, status)

    def shutdown(self) -> None:
        """Stop and reap every child (SIGTERM, then SIGKILL after term_grace); free queues."""
        if os.getpid() != getattr(self, "_pid", os.getpid()):
            return
        live = registry.live()
        for proc in live:
            proc.kill(_signal.SIGTERM)
        deadline = time.monotonic() + self.term_grace
        for proc in live:
            if registry.reap(proc, max(0.0, deadline - time.monotonic())) is None:
                proc.kill(_signal.SIGKILL)
                registry.reap(proc, None)
        for spawn in spawn_mod.spawns():
            if spawn.queue is not None:
                try:
                    spawn.queue.free()
                except Exception:
                    pass

    def uninstall(self) -> None:
        self.shutdown()
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception:
                pass


class _TerminalBackground:
    """Terminal IPython has no loop to read from while the prompt waits: background output is
    drained before and after each cell, and by ``%wait`` / ``%procs``."""

    active: list["_TerminalBackground"] = []

    def __init__(self, spawn: Spawn) -> None:
        self.spawn = spawn
        self.reaped: set[int] = set()
        _TerminalBackground.active.append(self)

    def child_reaped(self, proc: Process, status: Any) -> None:
        self.reaped.add(proc.id)
        self.spawn.record(proc, status)

    def drain(self) -> None:
        router = self.spawn.router
        for fd in list(router.sources):
            while fd in router.sources:
                import select

                if not select.select([fd], [], [], 0)[0]:
                    break
                if not router.on_readable(fd):
                    router.close_source(fd)
        router.flush()
        registry.reap_ready()
        if len(self.reaped) == len(self.spawn.procs):
            self.spawn.finish()
            if self in _TerminalBackground.active:
                _TerminalBackground.active.remove(self)


def _drain_terminal() -> None:
    for driver in list(_TerminalBackground.active):
        driver.drain()


def _draining(proc: Process) -> bool:
    spawn = spawn_mod.spawn_of(proc)
    return spawn is not None and not spawn.done


def _select(targets: list[str], live_only: bool) -> list[Process]:
    if any(t == "all" for t in targets):
        return registry.live() if live_only else [p for p in registry.known() if p.pid is not None]
    out: list[Process] = []
    for target in targets:
        try:
            found = registry.find(target)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
        for proc in found if isinstance(found, list) else [found]:
            if proc not in out:
                out.append(proc)
    return out


def _usage(magic: Any) -> str:
    parser = getattr(magic, "parser", None)
    if parser is None:
        return ""
    # IPython's formatter starts usage with "::" (reST); show it the way argparse would
    lines = [line.strip() for line in parser.format_usage().replace("::", "").strip().splitlines()]
    return "usage: " + " ".join(line for line in lines if line)


def _with_hints(message: str) -> str:
    if "run_forever" in message:
        message += ("\nThe thread running asyncio's run_forever is most likely the event loop that the "
                    "first %%script or %%bash cell starts; it lives as long as the kernel: restart the kernel "
                    "(and avoid %%script before forking), or use --force.")
    if "ThreadPoolExecutor" in message:
        message += "\nA ThreadPoolExecutor keeps its worker threads until shutdown(): call executor.shutdown(wait=True)."
    return message


_instance: ProcMagics | None = None


def load(ipython: Any) -> None:
    global _instance
    if _instance is not None:
        return
    magics = ProcMagics(ipython)
    magics._pid = os.getpid()  # type: ignore[attr-defined]
    magics.install()
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    _instance = magics


def unload(ipython: Any) -> None:
    global _instance
    if _instance is None:
        return
    _instance.uninstall()
    for kind in ("line", "cell"):
        table = ipython.magics_manager.magics[kind]
        for name in ("spawn", "procs", "kill", "wait", "forkcheck"):
            if table.get(name) is not None and getattr(table[name], "__self__", None) is _instance:
                del table[name]
    ipython.magics_manager.registry.pop("ProcMagics", None)
    if _instance in ipython.configurables:
        ipython.configurables.remove(_instance)
    _instance = None
