"""A debugger from the cell: ``breakpoint()``, ``pdb.set_trace()`` and IPython's ``set_trace()``
in a spawned child, and ``%%spawn --pdb`` (a post-mortem at an uncaught exception).

A debugger command travels like any line of input (see ``stdin.py``): the debugger's prompt
(``ipdb> ``) goes to the kernel in a prompt frame, the kernel asks the frontend with an
``input_request`` (foreground) or holds it for the panel (``--bg``, shown as "in debugger"),
and the answer comes back on the same socket. What the debugger prints is the child's stdout,
so it lands in the spawning cell. The child's ``sys.breakpointhook`` is replaced: in a kernel
it points at debugpy, which a forked child can never reach.
"""

from __future__ import annotations

import os
import pdb
import sys
from typing import Any

from ..core.process import Process

__all__ = ["install_debugger", "is_debugger_prompt", "child_io"]

def is_debugger_prompt(prompt: str) -> bool:
    """Whether a prompt is a debugger's (``ipdb> ``, ``(Pdb) ``): the panel shows "in debugger"."""
    return "ipdb>" in prompt or "(Pdb)" in prompt


_child_pdb: Any = None


def _debugger_class() -> Any:
    """The child's debugger: IPython's, where an interrupt ends the program being debugged.

    IPython's debuggers catch KeyboardInterrupt: ``Pdb`` prints it and prompts again,
    ``InterruptiblePdb`` leaves the debugger and lets the program run on. In a child, the
    notebook's interrupt should stop the program, as it stops any foreground spawn: this one
    leaves the debugger and raises the KeyboardInterrupt into the debugged code.
    """
    global _child_pdb
    if _child_pdb is not None:
        return _child_pdb
    try:
        from IPython.core.debugger import InterruptiblePdb
    except ImportError:
        return pdb.Pdb

    class ChildPdb(InterruptiblePdb):  # type: ignore[misc,valid-type]
        _interrupted = False

        def cmdloop(self, intro: Any = None) -> Any:
            try:
                return super().cmdloop(intro)
            except KeyboardInterrupt:
                self._interrupted = True
                raise

        def interaction(self, frame: Any, tb_or_exc: Any) -> None:
            self._interrupted = False
            super().interaction(frame, tb_or_exc)  # swallows the KeyboardInterrupt
            if self._interrupted:
                raise KeyboardInterrupt

    _child_pdb = ChildPdb
    return ChildPdb


def install_debugger(proc: Process, shell: Any, post_mortem: bool) -> None:
    """In the child, before the body runs: ``breakpoint()`` and ``--pdb`` open a debugger that
    reads and writes like the rest of the child (through the relay in a kernel, the terminal in
    terminal IPython)."""
    cls = _debugger_class()

    def breakpointhook(*args: Any, **kwargs: Any) -> None:
        if os.environ.get("PYTHONBREAKPOINT") == "0":
            return  # breakpoints switched off, as Python's own hook honours it
        cls().set_trace(sys._getframe(1))

    sys.breakpointhook = breakpointhook
    try:  # IPython's set_trace() makes a debugger of this module-level name
        import IPython.core.debugger as ipython_debugger

        ipython_debugger.Pdb = cls  # type: ignore[misc]
    except ImportError:
        pass
    if shell is not None:
        # the child's own copy of the class: terminal IPython's prompt_toolkit debugger would
        # fight the parent for the terminal
        type(shell).debugger_cls = property(lambda self: cls)
        if post_mortem:
            shell.call_pdb = True  # as %pdb on: IPython opens the debugger at an uncaught exception


def child_io(target: Any, shell: Any, relay: bool, post_mortem: bool, collector: Any = None) -> Any:
    """Wrap a spawn's target (made by ``cell.make_target``): in the child, the stdin relay (in a
    kernel), the debugger, and ``--result``'s channel (``collector``) before the body runs."""
    from .stdin import install_relay

    # Built here, once per kernel, not in every child: a class made in a fresh child costs it
    # ~0.3 ms of copy-on-write faults before the body runs.
    _debugger_class()

    def run_with_io(proc: Process) -> Any:
        if collector is not None:
            collector.claim(proc)
        if relay:
            install_relay(proc)
        install_debugger(proc, shell, post_mortem)
        return target(proc)

    return run_with_io
