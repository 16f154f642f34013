"""The IPython extension: ``%%spawn``, ``%procs``, ``%kill``, ``%wait`` and ``%forkcheck``.

A thin layer over the core and the kernel integration: parse options (``UsageError`` with the
usage line on bad input), build a spawn, run it in the foreground or the background.
"""

from __future__ import annotations

import dataclasses
import keyword
import signal as _signal
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Float, Int, TraitError, Unicode, validate

from .core import guard
from .core.errors import ForkRefused
from .core.process import Process
from .core import ladder as core_ladder
from .core.reaper import registry
from .core.signals import signal_number
from .kernel.cell import check_syntax, current_cell_number
from .kernel.queue_check import queue_warning
from .kernel.context import Context, context_for
from .kernel.integration import Integration
from .kernel import spawn as spawn_mod
from .kernel.spawn import Settings, Spawn, SpawnOptions
from .kernel.terminal import drain_terminal
from .magic_options import check_name, queue_key, timeout_option, usage

__all__ = ["ProcMagics", "load", "unload"]

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
    result_limit = Int(4 * 1024**3, help="Bytes one child's --result value may take once serialised; past it the cell says so and binds nothing.").tag(config=True)
    show_status = Unicode("all", help="Which exit statuses to show when children end: all, failures or none.").tag(config=True)
    log_limit = Int(64 * 1024 * 1024, help="Characters one spawn's log of capped output may hold; past it the cell says so and the rest is not kept.").tag(config=True)
    history = Int(1000, help="Finished children kept, with their spawns, for %procs, %wait and procmagic.get(); the oldest spawns are dropped past it.").tag(config=True)

    # Validators raise TraitError: %config then refuses the value and keeps the old one
    # (traitlets rolls a held change back on TraitError only; a ValueError left it stored).
    @validate("output_cap", "log_limit")
    def _check_cap(self, proposal: Any) -> int:
        if proposal["value"] < 1024:
            raise TraitError(f"{proposal['trait'].name} must be at least 1024 characters, got {proposal['value']}")
        return proposal["value"]  # type: ignore[no-any-return]

    @validate("result_limit")
    def _check_result_limit(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"result_limit must be a positive number of bytes, got {proposal['value']}")
        return proposal["value"]  # type: ignore[no-any-return]

    @validate("flush_interval", "interrupt_grace", "term_grace", "drain_timeout")
    def _check_seconds(self, proposal: Any) -> float:
        value = proposal["value"]
        if not 0 <= value < float("inf"):  # also refuses nan, which compares false with anything
            raise TraitError(f"{proposal['trait'].name} must be a finite number of seconds >= 0, got {value}")
        return proposal["value"]  # type: ignore[no-any-return]

    @validate("history")
    def _check_history(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TraitError(f"history must be a number of children >= 0, got {proposal['value']}")
        return proposal["value"]  # type: ignore[no-any-return]

    @validate("show_status")
    def _check_show(self, proposal: Any) -> str:
        if proposal["value"] not in ("all", "failures", "none"):
            raise TraitError(f"show_status must be 'all', 'failures' or 'none', got {proposal['value']!r}")
        return proposal["value"]  # type: ignore[no-any-return]

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.ctx: Context = context_for(shell)
        self.integration = Integration(shell, self.ctx, self.settings)

    def settings(self) -> Settings:
        """The kernel layer's settings, read from these traits (the one place defaults live)."""
        return Settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Settings)})

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
    @argument("--pdb", action="store_true",
              help="Open a debugger in the cell at an uncaught exception in the child, before it exits (as %%pdb on).")
    @argument("--result", metavar="VAR",
              help="When the spawn ends, bind the value of the child's last expression to VAR (a list in worker order with -n).")
    @argument("--engines", metavar="TARGETS",
              help="Fork on ipyparallel engines instead: all, a count N (the first N) or ids 0,2,5 (pip install 'procmagic[engines]').")
    @argument("--view", metavar="VAR", help="With --engines: the ipyparallel Client, DirectView or Cluster to use (default: ipyparallel.Client()).")
    @argument("--push", metavar="NAMES", help="With --engines: notebook variables to send to the engines first, a,b (cloudpickle).")
    @cell_magic
    def spawn(self, line: str, cell: str) -> None:
        """Run the cell's body in a child forked from the kernel, with the notebook's variables
        as they are now. In the body, ``proc`` is the child's own Process.

        Without --bg the cell waits for the children, forwarding the notebook's interrupt
        (SIGINT, then SIGTERM and SIGKILL after grace periods). Output lands in this cell, also
        with --bg while other cells run.
        """
        options = self._parse(line)
        engines = self._engine_options(line, options)
        source = check_syntax(self.shell, cell)
        if engines is not None:
            from .engines import spawn_on_engines

            from .engines.targets import TargetError

            try:
                spawn_on_engines(self.shell, self.ctx, self.settings(), options, engines, source,
                                 current_cell_number(self.shell))
            except TargetError as exc:
                raise UsageError(str(exc)) from None
            return
        if options.queue is not None and options.queue != -1:
            warning = queue_warning(options.queue)
            if warning:
                print(warning, file=sys.stderr, flush=True)
        spawn = self.integration.new_spawn(options, source)
        panel = self._show_panel(spawn)
        try:
            self.integration.launch(spawn, source, current_cell_number(self.shell), on_failure=panel and panel.fail)
        except ForkRefused as exc:
            raise ForkRefused(_with_hints(str(exc)), exc.census) from None

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
            raise UsageError(f"{exc}\n{usage(self.spawn)}") from None
        def bad(text: str) -> UsageError:
            return UsageError(f"{text}\n{usage(self.spawn)}")
        pipe = None if args.pipe.lower() == "none" else args.pipe.lower()
        if pipe not in (None, "stream", "dgram"):
            raise bad(f"--pipe must be stream, dgram or none, not {args.pipe!r}")
        if args.n < 1 or args.n > 1024:
            raise bad(f"-n must be from 1 to 1024 children, got {args.n}")
        timeout = timeout_option(args.timeout, self.spawn)
        try:
            sig = signal_number(args.signal_on_interrupt, "--signal-on-interrupt")
        except (TypeError, ValueError) as exc:
            raise bad(str(exc)) from None
        if sig in (0,):
            raise bad("--signal-on-interrupt must be a real signal, not 0")
        queue = None
        if args.queue is not None:
            queue = -1 if args.queue == "private" else queue_key(args.queue, bad)
        for flag, value in (("--out", args.out), ("--result", args.result)):
            if value is not None and (not value.isidentifier() or keyword.iskeyword(value)):
                raise bad(f"{flag} must name a Python variable (an identifier, not a keyword), not {value!r}")
        if args.name is not None:
            check_name(args.name, bad)
        return SpawnOptions(redirect=args.redirect, bg=args.bg, name=args.name, pipe=pipe, n=args.n, queue=queue,
                            timeout=timeout, signal_on_interrupt=sig, force=args.force, out=args.out,
                            result=args.result, pdb=args.pdb)

    def _engine_options(self, line: str, options: SpawnOptions) -> Any:
        """--engines, --view and --push (procmagic/engines), or None for a local spawn."""
        args = parse_argstring(self.spawn, line)
        def bad(text: str) -> UsageError:
            return UsageError(f"{text}\n{usage(self.spawn)}")
        if args.engines is None:
            for flag in ("view", "push"):
                if getattr(args, flag) is not None:
                    raise bad(f"--{flag} goes with --engines (it names what to use on ipyparallel engines)")
            return None
        from . import engines

        try:
            targets = engines.parse_targets(args.engines)
        except ValueError as exc:
            raise bad(str(exc)) from None
        if options.out:
            raise bad("--out binds local Process objects: it does not go with --engines (see %procs for remote children)")
        if getattr(options, "pdb", False):
            raise bad("--pdb does not go with --engines: a remote child has no way to the notebook's stdin")
        if args.view is not None and not args.view.isidentifier():
            raise bad(f"--view must name a Python variable, not {args.view!r}")
        push = [n.strip() for n in (args.push or "").split(",") if n.strip()]
        if args.push is not None and (not push or not all(n.isidentifier() for n in push)):
            raise bad(f"--push takes variable names separated by commas (a,b), not {args.push!r}")
        try:
            engines.targets.require_ipyparallel()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
        return engines.EngineOptions(targets, args.view, push)

    # -- line magics ---------------------------------------------------------------------------
    @line_magic
    def forkcheck(self, line: str) -> None:
        """Show the threaded-fork guard's census of live threads and its verdict."""
        if line.strip():
            raise UsageError(f"%forkcheck takes no arguments, not {line.strip()!r}")
        census = guard.census()
        print(census)
        if not census.ok:
            print(_with_hints(census.refusal()))

    @line_magic
    def procs(self, line: str) -> None:
        """The live dashboard of procmagic's children: processes, queue traffic, alarms and reaped
        exit statuses (newest first). In a terminal, the same four parts as text tables."""
        if line.strip():
            raise UsageError(f"%procs takes no arguments, not {line.strip()!r} (procmagic.get(NAME) shows one child)")
        drain_terminal()
        registry.reap_ready()
        spawns, children = spawn_mod.dropped()
        if children:
            print(f"{children} older finished {'child' if children == 1 else 'children'} ({spawns} "
                  f"{'spawn' if spawns == 1 else 'spawns'}) dropped from the history; ProcMagics.history "
                  f"keeps the newest {self.history}")
        from .widgets import show_dashboard

        show_dashboard(self.ctx)  # children on ipyparallel engines too, once --engines was used

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
            raise UsageError(f"{exc}\n{usage(self.kill)}") from None
        name = _signal.Signals(sig).name if sig else "signal 0"
        remote, targets = _remote_targets(args.target)
        if remote:
            from .engines import kill as kill_remote

            print("\n".join(kill_remote(remote, sig)))
        for proc in _select(targets, live_only=True) if targets else []:
            who = f"{proc.name} (id {proc.id}, pid {proc.pid})"
            if sig in _STOPPING and proc.exitstatus is None:
                proc.mark_stop_reason("kill")
            if proc.kill(sig):
                print(f"sent {name} to {who}")
            elif proc.pid is not None and sig and core_ladder.signal_group(proc.pid, sig):
                # its process group still has members (a grandchild): a group id is never
                # reused while it has members, so this reaches only what the child left
                print(f"sent {name} to what {who} left running in its process group (it has ended)")
            else:
                print(f"{name} not sent to {who}: it has already ended")
        if "all" in targets and sig:
            for pgid in registry.leftover_groups():
                if core_ladder.signal_group(pgid, sig):
                    print(f"sent {name} to process group {pgid}, left running by an ended child")

    @magic_arguments()
    @argument("--timeout", type=str, default=None, metavar="SECONDS", help="Give up after SECONDS.")
    @argument("target", nargs="*", help="Child id, name, or 'all' (the default: every live child).")
    @line_magic
    def wait(self, line: str) -> Any:
        """Wait for children to end (all by default) and show their exit statuses."""
        args = parse_argstring(self.wait, line)
        timeout = timeout_option(args.timeout, self.wait)
        # with no target, or 'all': the children still running or still draining output (the
        # others showed their status already); a named child is waited for, or its status
        # shown, whatever its state
        remote, targets = _remote_targets(args.target or ["all"])
        procs = _select(targets, live_only=True) if targets else []
        if not args.target or "all" in args.target:  # and those whose output is still draining
            procs += [p for p in self.integration.draining() if p not in procs]
        if remote:
            from .engines import processes_text, wait as wait_remote

            ended, still = wait_remote(remote, timeout)
            for child in still:
                print(f"{child.name} (engine {child.engine}, id {child.key}, pid {child.pid}) still running after {timeout} s")
            if ended:
                print(processes_text(ended))
            if not procs:
                return None
        if not procs:
            print("no live procmagic children to wait for")
            return None
        statuses, running = self.integration.wait(procs, timeout)
        if not self.ctx.terminal:  # the final panels and late output once more, from this cell:
            from .widgets import settle  # nbclient (papermill, nbconvert) files them while it runs

            settle(procs)
        for proc in running:
            print(f"{proc.name} (id {proc.id}, pid {proc.pid}) still running after {timeout} s")
        if statuses:
            from .widgets.tables import reaped_text

            print(reaped_text(statuses, limit=len(statuses)))
        return None


def _remote_targets(targets: list[str]) -> tuple[list[Any], list[str]]:
    """Split %kill / %wait targets: children on engines (procmagic/engines, once used), and the
    rest for the local registry. 'all' goes to both."""
    if "procmagic.engines" not in sys.modules:
        return [], targets
    from . import engines

    remote: list[Any] = []
    local: list[str] = []
    for target in targets:
        found = engines.live() if target == "all" else engines.find(target)
        if target == "all" or not found:
            local.append(target)
        for child in found or []:
            if child not in remote:
                remote.append(child)
    if local == ["all"] and remote and not registry.live():
        local = []  # only remote children are running: nothing local to add
    return remote, local


_STOPPING = {_signal.SIGTERM, _signal.SIGKILL, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT}


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
    magics.integration.install()
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    _instance = magics


def unload(ipython: Any) -> None:
    global _instance
    if _instance is None:
        return
    _instance.integration.uninstall()
    for kind in ("line", "cell"):
        table = ipython.magics_manager.magics[kind]
        for name in ("spawn", "procs", "kill", "wait", "forkcheck"):
            if table.get(name) is not None and getattr(table[name], "__self__", None) is _instance:
                del table[name]
    ipython.magics_manager.registry.pop("ProcMagics", None)
    if _instance in ipython.configurables:
        ipython.configurables.remove(_instance)
    _instance = None
