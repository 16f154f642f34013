"""``%%spawn --result VAR``: the value of the child's last expression, bound in the notebook.

How a value travels: each child gets a result channel (``core.values.ResultChannel``, made
before the fork). When the cell body has run, the child pickles the value of its last
expression (the value the cell displays) with cloudpickle and sends it, large data as pickle
protocol 5 buffers; over ``ProcMagics.result_limit`` it sends only its size. The channel's
parent end is one more source of the spawn's router, read by the same driver as the output (in
pieces of at most 4 MB per read, so a background spawn does not hold up the IOPub thread):
a buffer is received straight into the memory the value keeps. When the spawn ends, VAR is
bound (a list in worker order with ``-n``) and the ``--out`` handles' ``.result`` hold the
values; a failure binds nothing and the cell says why. With ``-n``, when some workers fail, VAR
is not bound at all; the values of those that succeeded stay readable as
``procmagic.get(NAME)[i].result`` (the cell shows the exact call).
"""

from __future__ import annotations

from typing import Any, Callable

from ..core.process import Process
from ..core.status import ExitStatus
from ..core.values import Outcome, ResultChannel, claim_in_child, record
from . import spawn as spawn_mod

__all__ = ["ResultCollector"]

_READ_SLICE = 4 * 1024 * 1024


class ResultCollector:
    """The result channels of one spawn: made before its children fork, read by its router,
    bound into the notebook when it finishes."""

    def __init__(self, spawn: spawn_mod.Spawn, var: str, shell: Any) -> None:
        self.spawn = spawn
        self.var = var
        self.shell = shell
        self.limit = limit = spawn.settings.result_limit
        self.channels = [ResultChannel(limit) for _ in range(spawn.options.n)]
        self.bound = False
        self._unsubscribe = spawn_mod.subscribe(self._on_spawn)

    # -- the child's side ------------------------------------------------------------------------
    def claim(self, proc: Process) -> None:
        """In the child, first: close the siblings' channel ends (``send_from_child`` sends the
        value once the body has run, as ``cell.make_target``'s ``on_result``)."""
        claim_in_child(self.channels[proc.worker or 0])

    def send_from_child(self, proc: Process, execution: Any) -> None:
        """In the child, once the body has run: send the last expression's value, or why not."""
        channel = self.channels[proc.worker or 0]
        error = execution.error_before_exec or execution.error_in_exec
        try:
            if error is not None:
                channel.send_error(error)
            else:
                channel.send(execution.result)
        except OSError:
            pass  # the kernel went away
        finally:
            channel.child.close()  # end of file: the value is complete

    # -- the parent's side -----------------------------------------------------------------------
    def after_start(self) -> None:
        """In the kernel, once every child started: read each channel as a router source."""
        router = self.spawn.router
        for channel in self.channels:
            channel.parent_side()
            router.add(channel.parent, framed=False, name="result", owned=False, handler=_reader(channel))

    def abort(self) -> None:
        """The spawn failed to start: release everything."""
        self._unsubscribe()
        for channel in self.channels:
            channel.close()

    def _on_spawn(self, event: str, spawn: Any, detail: Any) -> None:
        if spawn is not self.spawn or event != "ending":
            return
        self._unsubscribe()
        try:
            self._bind()
        except Exception as exc:  # never let a value break the spawn's ending
            self.spawn.router.add_notice(f"[procmagic] --result {self.var}: nothing bound: {exc}\n")
        finally:
            for channel in self.channels:
                channel.close()

    def _outcome(self, proc: Process, channel: ResultChannel) -> Outcome:
        status: ExitStatus | None = self.spawn.statuses.get(proc.id) or proc.exitstatus
        try:
            return channel.finish(status)
        finally:
            channel.receiver.messages.clear()  # the value is loaded: its received bytes go

    def _bind(self) -> None:
        procs = self.spawn.procs
        outcomes = [self._outcome(p, ch) for p, ch in zip(procs, self.channels)]
        keep = bool(self.spawn.options.out) or not all(o.ok for o in outcomes)
        if keep:
            for proc, outcome in zip(procs, outcomes):
                record(proc, outcome)
        failed = [(p, o) for p, o in zip(procs, outcomes) if not o.ok]
        if not failed:
            values = [o.value for o in outcomes]
            self.shell.user_ns[self.var] = values[0] if self.spawn.options.n == 1 else values
            self.bound = True
            return
        lines = []
        for proc, outcome in failed:
            who = "the child" if len(procs) == 1 else f"worker {proc.worker}"
            lines.append(f"[procmagic] --result {self.var}: {who} sent no value: {_why(outcome)}")
        if len(procs) == 1:
            lines.append(f"[procmagic] --result {self.var}: nothing was bound")
        else:
            good = [p.worker for p, o in zip(procs, outcomes) if o.ok]
            lines.append(f"[procmagic] --result {self.var}: nothing was bound, as {len(failed)} of {len(procs)} workers "
                         "failed" + (f"; the values of workers {good} are in procmagic.get({self.spawn.name!r})[i].result"
                                     if good else ""))
        self.spawn.router.add_notice("\n".join(lines) + "\n")


def _reader(channel: ResultChannel) -> Callable[[], bool]:
    """Read what is there, at most a slice per call (the driver calls again while readable)."""
    return lambda: channel.read(_READ_SLICE)


def _why(outcome: Outcome) -> str:
    error = outcome.error
    if outcome.reason == "exception" and error is not None:
        if isinstance(error, SystemExit):
            return f"it called sys.exit({error.code!r})"
        text = str(error).splitlines()[0] if str(error) else ""
        name = type(error).__name__
        if name == "ChildError":
            return f"it raised {text}"
        return f"it raised {name}" + (f": {text}" if text else "")
    status = getattr(error, "status", None)
    if outcome.reason == "timed out" and status is not None:
        how = status.how.replace(", timed out", "")
        return f"it timed out (--timeout) and {how.replace('killed', 'was killed')}"
    return str(error).replace("the child's value", "its value").replace("the child ", "it ")

