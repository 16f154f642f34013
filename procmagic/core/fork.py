"""The fork: the plan, the parent's critical section and the child's trampoline.

This is the dangerous part of procmagic, kept small enough to read in one sitting (as CPython
keeps ``multiprocessing/popen_fork.py``).

The parent:
1. blocks every signal in this thread (a signal that arrives meanwhile waits);
2. forks;
3. creates the child's record (pid, process group, pidfd, error pipe, start time), registers it
   and closes the child's ends of its pipes: all before any signal handler can run again. Other
   threads may still take a process-directed signal and ask the main thread to run its Python
   handler at the next bytecode, so steps 2-3 also register the child in an ``except``
   clause: a KeyboardInterrupt anywhere after the fork leaves a registered child behind, never a
   lost one;
4. restores the signal mask (a pending KeyboardInterrupt is raised here, after the record
   exists), then announces the child to the registry's observers.

The child runs :func:`_trampoline`: everything inside ``try/finally: os._exit``, so it can never
return into the caller's code, whatever is raised, even by a signal handler (3.11/3.12 can let
such an exception escape an inner ``try/except``).

``set_fault_hook`` is a test hook: it is called in the parent at each point of
:data:`POINTS`, and may raise or send a signal there, so tests can interrupt the fork path at
every step deterministically.
"""

from __future__ import annotations

import _signal as _csignal
import os
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from . import child as _child
from . import counters as _counters
from . import watcher as _watcher
from .child import close_in_children
from .reaper import open_pidfd, registry
from .record import ChildRecord

if TYPE_CHECKING:
    from .process import Process

__all__ = ["fork_child", "close_in_children", "set_fault_hook", "POINTS"]

#: Where the fault hook is called, in order, in the parent.
POINTS = ("blocked", "forked", "registered", "unblocked")
_ALL_SIGNALS = _csignal.valid_signals()
_FORK_WARNS = sys.version_info >= (3, 12)  # os.fork() warns about threads from 3.12 on
_fault_hook: Callable[[str], Any] | None = None


def set_fault_hook(hook: Callable[[str], Any] | None) -> None:
    """Tests only: call ``hook(point)`` at each of :data:`POINTS` in the parent (None removes it)."""
    global _fault_hook
    _fault_hook = hook


def fork_child(proc: "Process", warning: Warning | None = None) -> ChildRecord:
    """Fork ``proc``'s child and return its registered record (the parent's side).

    ``warning`` (a ForkWarning when the guard was overridden) is issued at the fork; otherwise
    Python 3.12+'s warning about the kernel's native threads is silenced, as the guard has
    checked the Python ones. Raises OSError when the fork fails (nothing was started).
    """
    _watcher.ensure()  # at the first fork: a subprocess, so never inside the critical section
    err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    parent_pid = os.getpid()
    try:
        # Reading the mask first runs any handler already pending: an interrupt raised here
        # leaves nothing forked.
        old_mask = _csignal.pthread_sigmask(_csignal.SIG_BLOCK, ())
    except BaseException:
        os.close(err_r)
        os.close(err_w)
        raise
    pid = -1
    record: ChildRecord | None = None
    started = 0.0
    try:
        # The same steps twice: the fork returns into this frame either way, so that ``pid``
        # is set here before any handler can run (a helper's return value could be lost to an
        # interrupt). Before 3.12 os.fork() never warns: no warning filters to copy and restore
        # (which also resets every module's warning registry), not even a null context manager
        # (two Python calls, each a page written after the previous fork).
        if warning is None and not _FORK_WARNS:
            # Blocked until the child has its own handlers (child.py unblocks them) and until
            # the parent has registered it.
            _csignal.pthread_sigmask(_csignal.SIG_BLOCK, _ALL_SIGNALS)
            if _fault_hook is not None:
                _fault_hook("blocked")
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:
                _trampoline(proc, parent_pid, err_r, err_w)
        else:
            with warnings.catch_warnings():
                if warning is not None:
                    warnings.simplefilter("always", DeprecationWarning)
                    warnings.warn(warning, stacklevel=3)
                else:
                    warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks",
                                            category=DeprecationWarning)
                _csignal.pthread_sigmask(_csignal.SIG_BLOCK, _ALL_SIGNALS)
                if _fault_hook is not None:
                    _fault_hook("blocked")
                started = time.monotonic()
                pid = os.fork()
                if pid == 0:
                    _trampoline(proc, parent_pid, err_r, err_w)
        if _fault_hook is not None:
            _fault_hook("forked")
        record = _register(proc, pid, started, err_r)
        if _fault_hook is not None:
            _fault_hook("registered")
    except OSError as exc:
        if pid > 0:  # an error after the fork: the child exists, so it is registered all the same
            if record is None:
                record = _register(proc, pid, started, err_r)
            raise
        os.close(err_r)
        raise OSError(exc.errno, f"fork() failed, nothing was started: {exc.strerror} "
                      "(too many processes, or not enough memory)") from None
    except BaseException:
        if pid > 0 and record is None:
            record = _register(proc, pid, started, err_r)
        elif pid <= 0:
            os.close(err_r)
        raise
    finally:
        if pid != 0:
            os.close(err_w)
            try:
                _csignal.pthread_sigmask(_csignal.SIG_SETMASK, old_mask)  # pending signals arrive here
            finally:
                if record is not None and registry._listeners:
                    registry.announce(record)
    if _fault_hook is not None:
        _fault_hook("unblocked")
    assert record is not None  # pid > 0 here: registered in the try or in an except clause
    return record


def _register(proc: "Process", pid: int, started: float, err_r: int) -> ChildRecord:
    """The parent's first steps after the fork: record, register, release the child's ends."""
    record = ChildRecord(proc, pid, started, err_r, None, pid)  # owner, pid, started_at, errpipe, pidfd, pgid
    registry.add(record)
    _watcher.track(pid)  # its group is stopped by the watcher if this process dies
    proc._attach_record(record)
    try:
        os.setpgid(pid, pid)  # also done by the child: whoever runs first wins the race
    except OSError:
        pass
    record.pidfd = open_pidfd(pid)
    if registry._watches:
        registry.watch_record(record)
    return record


def _trampoline(proc: "Process", parent_pid: int, err_r: int, err_w: int) -> NoReturn:
    """The child's whole life. Whatever happens inside, it ends in ``os._exit``."""
    code = 1
    try:
        os.close(err_r)
        code = _child.bootstrap(proc, parent_pid, err_w)
    finally:
        try:
            _child.flush_std()
        finally:
            try:
                _counters.for_this_process().mark_exit()  # the parent's wall time ends here
            finally:
                os._exit(code)
