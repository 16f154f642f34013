"""procmagic: fork safely from a Jupyter kernel, see what children do, and control them.

``import procmagic`` never imports IPython: the core works in a plain script. ``%load_ext
procmagic`` adds the magics (``%%spawn``, ``%procs``, ``%kill``, ``%wait``, ``%forkcheck``).
"""

from __future__ import annotations

import signal as _signal_module
import sys as _sys
from typing import Any

from .core import (
    Census,
    ExitStatus,
    ForkRefused,
    ForkWarning,
    NoPipe,
    NoQueue,
    Process,
    ProcessStateError,
    ProcmagicError,
    QueueEmpty,
    QueueFull,
    alarm,
    allow_threads,
    census,
    children,
    get,
    procs,
    kill,
    reaped,
    wait,
    watch,
)
from .core import signal as _install_handler
from .core.call import call as _call, call_async, wait_async
from .core.call import map as _map
from .core.pool import Manager, Pool
from .core.values import ChildError, NoResult, RemoteTraceback, ResultChannel
from .core.queue import queues, sweep_queues

__version__ = "0.1.0"


def call(fn: Any, *args: Any, view: Any = None, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` in a forked child and return its value
    (:func:`procmagic.core.call.call`). With ``view=`` (an ipyparallel Client, DirectView or
    Cluster), the child is forked on the view's first engine (``pip install 'procmagic[engines]'``);
    ``fn``, its globals and the arguments travel there with cloudpickle."""
    if view is None:
        return _call(fn, *args, **kwargs)
    from .engines.values import call_on_engines

    return call_on_engines(view, fn, args, kwargs)


def map(fn: Any, iterable: Any, workers: int | None = None, *, chunksize: int | None = None,  # noqa: A001
        view: Any = None) -> list[Any]:
    """``[fn(x) for x in iterable]`` computed by forked children, in order
    (:func:`procmagic.core.call.map`). With ``view=``, the items are split into one block per
    engine of the view, and each engine maps its block with ``workers`` children forked there."""
    if view is None:
        return _map(fn, iterable, workers, chunksize=chunksize)
    from .engines.values import map_on_engines

    return map_on_engines(view, fn, iterable, workers, chunksize)



class _SignalFunction:
    """``procmagic.signal``: call it to install a handler, ``signal(SIGALRM, handler)``; read it
    like the :mod:`signal` module, ``signal.SIGTERM``, so ``from procmagic import signal`` does
    not hide the constants."""

    __doc__ = _install_handler.__doc__

    def __call__(self, signo: Any, handler: Any) -> Any:
        return _install_handler(signo, handler)

    def __getattr__(self, name: str) -> Any:
        return getattr(_signal_module, name)

    def __repr__(self) -> str:
        return "<function procmagic.signal(signo, handler); also the signal module's constants>"


signal = _SignalFunction()

if "ipykernel" in _sys.modules:
    # Imported inside a Jupyter kernel: its own threads are harmless to the guard even before
    # %load_ext procmagic (which adds the rest: output routing, child hygiene, cleanup).
    from .kernel import threads as _kernel_threads

    _kernel_threads.declare()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext procmagic``."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext procmagic``."""
    from .magics import unload

    unload(ipython)


__all__ = [
    "Process", "ExitStatus", "Census", "ForkRefused", "ForkWarning", "NoPipe", "NoQueue",
    "ProcessStateError", "ProcmagicError", "QueueEmpty", "QueueFull", "alarm", "allow_threads",
    "census", "children", "get", "procs", "kill", "reaped", "signal", "wait", "watch", "__version__",
    "Pool", "Manager", "queues", "sweep_queues",
    "call", "call_async", "wait_async", "ResultChannel", "NoResult", "ChildError", "RemoteTraceback",
]
# procmagic.map is public too, but kept out of __all__: "from procmagic import *" must not hide
# the builtin map.
