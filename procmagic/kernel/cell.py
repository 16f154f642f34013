"""Running a cell's body in the child, through the child's copy of the IPython shell.

The child runs ``shell.run_cell`` on the body the parent already transformed and compiled, so
``%time``, ``!cmd``, the last expression's display, ``display()``, matplotlib's inline figures
and IPython's formatted tracebacks behave as in any cell; the kernel integration has pointed
the shell's display machinery at procmagic's channel beforehand.
"""

from __future__ import annotations

import contextlib
import signal as _signal
import sys
from typing import Any, Callable

from ..core.child import ExecFailed, die_by, exit_code_of
from ..core.process import Process

__all__ = ["make_target", "check_syntax", "current_cell_number"]


def check_syntax(shell: Any, cell: str) -> str:
    """Transform the cell as IPython would and compile it: a SyntaxError is raised here, in
    the parent, before anything forks."""
    source = shell.transform_cell(cell)
    import ast

    ast.parse(source, filename="<%%spawn cell>")
    return source  # type: ignore[no-any-return]


def current_cell_number(shell: Any) -> int:
    """The spawning cell's number (IPython counts the next cell already while one runs)."""
    running = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    number = getattr(running, "execution_count", None)
    return int(number) if isinstance(number, int) else max(1, int(shell.execution_count) - 1)


def _no_tee(channel: str) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def make_target(shell: Any, source: str, cell_number: int | None = None,
                on_result: Callable[[Process, Any], None] | None = None) -> Any:
    """The child's target: run the body in the child's shell. ``on_result(proc, execution)``
    gets IPython's ExecutionResult once the body has run (``--result``)."""
    def run_cell_in_child(proc: Process) -> int:
        shell.user_ns["proc"] = proc
        original_showtraceback = shell.showtraceback

        def showtraceback(*args: Any, **kwargs: Any) -> None:
            kind, error = sys.exc_info()[:2]
            if kind is SystemExit:
                return  # sys.exit(n) in the body is the child's exit code, not an error
            if isinstance(error, ExecFailed):  # one line, as a failed exec outside a cell says it
                print(f"procmagic: exec failed: {error}", file=sys.stderr, flush=True)
                return
            original_showtraceback(*args, **kwargs)

        shell.showtraceback = showtraceback
        # The parent transformed the body already (check_syntax): doing it again here costs the
        # child ~1 ms for nothing.
        shell.transform_cell = lambda cell: cell
        if cell_number is not None:  # tracebacks say "Cell In[N]" of the spawning cell, not N+1
            cache = shell.compile.cache
            shell.compile.cache = lambda code, number=0, raw_code=None: cache(code, cell_number, raw_code)
        if callable(getattr(shell, "_tee", None)):
            # IPython 9's run_cell wraps sys.stdout.write and sys.stderr.write to keep every
            # piece written in the history's outputs: in a child that is a Python call per
            # write (print() costs ~2.5x a plain file's) and a copy in memory of all it ever
            # prints. The child's history is thrown away when it exits: skip it.
            shell._tee = _no_tee
        result = shell.run_cell(source, store_history=False, silent=False)
        if on_result is not None:
            on_result(proc, result)
        error = result.error_before_exec or result.error_in_exec
        if error is None:
            return 0
        if isinstance(error, SystemExit):
            return exit_code_of(error.code)
        if isinstance(error, KeyboardInterrupt):
            return die_by(_signal.SIGINT)
        if isinstance(error, ExecFailed):
            return 127  # the shell's code for a program that could not be run
        return 1

    return run_cell_in_child
