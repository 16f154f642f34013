"""Exceptions raised by procmagic.

Every message says the rule that was broken, the value that broke it, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ProcmagicError",
    "ForkRefused",
    "ForkWarning",
    "ProcessStateError",
    "NoPipe",
    "QueueEmpty",
    "QueueFull",
    "NoQueue",
]


class ProcmagicError(Exception):
    """Base class of procmagic's own exceptions."""

    def _render_traceback_(self) -> list[str]:
        # IPython's hook for custom rendering: the message says everything, so a notebook shows
        # it without pages of procmagic's internal frames.
        lines = str(self).splitlines() or [""]
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {lines[0]}", *lines[1:]]


class ForkRefused(ProcmagicError, RuntimeError):
    """The threaded-fork guard refused to fork; ``census`` holds what it saw."""

    def __init__(self, message: str, census: object = None) -> None:
        super().__init__(message)
        self.census = census


class ForkWarning(RuntimeWarning):
    """Forking was forced past the guard: the child may deadlock on a lock a thread held."""


class ProcessStateError(ProcmagicError, RuntimeError):
    """A method was called in a state where it cannot work (start twice, join before start, ...)."""


class NoPipe(ProcmagicError, ValueError):
    """read/write on a Process made with ``pipe=None`` or whose pipe was closed."""


class NoQueue(ProcmagicError, ValueError):
    """push/pop on a Process that has no queue (call ``use_queue()`` first)."""


class QueueEmpty(ProcmagicError):
    """A non-blocking pop found no message."""


class QueueFull(ProcmagicError):
    """A non-blocking push found the queue full."""
