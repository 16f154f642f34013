"""The threads a Jupyter kernel always has, declared to the threaded-fork guard.

They never run in a forked child and hold no lock the child needs (DESIGN.md §4). They are
matched by the module of the thread's class or of the function it runs, so pyzmq's
garbage-collector thread, started late, is known too. Importing this module imports nothing
from IPython.
"""

from __future__ import annotations

from typing import Callable

from ..core import guard

__all__ = ["KERNEL_THREAD_MODULES", "declare"]

KERNEL_THREAD_MODULES = {
    "ipykernel": "ipykernel's own thread (IOPub, heartbeat, control, shell channel, output capture, parent poller)",
    "zmq": "a pyzmq thread (its garbage collector)",
    # %%spawn --engines: an ipyparallel Client in the kernel runs its zmq I/O loop on its own
    # thread; a child never uses the client (nor its sockets), as it never uses the kernel's.
    "ipyparallel": "ipyparallel's client thread (its zmq I/O loop)",
    "IPython.core.history": "IPython's history-saving thread",
    "debugpy": "the debugger's thread",
    "_pydevd_bundle": "the debugger's thread",
    "_pydev_bundle": "the debugger's thread",
    "pydevd": "the debugger's thread",
}

_declared: list[Callable[[], None]] = []


def declare() -> Callable[[], None]:
    """Allow the kernel's threads (once); returns a function that withdraws them."""
    if not _declared:
        for module, reason in KERNEL_THREAD_MODULES.items():
            _declared.append(guard.allow_threads(module, reason))

    def withdraw() -> None:
        while _declared:
            _declared.pop()()

    return withdraw
