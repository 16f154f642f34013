"""procmagic's core: plain Python, no IPython. Forking, pipes, signals, the guard and the reaper."""

from .errors import ForkRefused, NoPipe, NoQueue, ProcessStateError, ProcmagicError, QueueEmpty, QueueFull
from .guard import Census, allow_threads, census
from .process import ForkWarning, Process
from .reaper import children, get, procs, reaped, registry, wait, watch
from .signals import alarm, kill, signal
from .status import ExitStatus

__all__ = [
    "Process", "ExitStatus", "ForkRefused", "ForkWarning", "NoPipe", "NoQueue", "ProcessStateError",
    "ProcmagicError", "QueueEmpty", "QueueFull", "Census", "allow_threads", "census", "children",
    "reaped", "registry", "procs", "get", "wait", "watch", "alarm", "kill", "signal",
]
