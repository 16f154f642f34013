"""Signals and alarms: ``kill``, ``signal`` and ``alarm`` with swoole_process's semantics.

Handlers installed here are ordinary Python signal handlers, wrapped so that alarm ticks are
counted in the process's shared counter slot (the widgets show them) without any extra
system call.
"""

from __future__ import annotations

import errno
import inspect
import numbers
import os
import signal as _signal
import threading
from typing import Any, Callable, Mapping, Union

from . import counters

__all__ = ["kill", "signal", "alarm", "reserve_signal", "signal_number", "SignalLike", "child_handlers",
           "action_for"]

SignalLike = Union[int, str, _signal.Signals]

_RESERVED: dict[int, str] = {
    _signal.SIGKILL: "SIGKILL can never be caught, blocked or ignored (a kernel rule)",
    _signal.SIGSTOP: "SIGSTOP can never be caught, blocked or ignored (a kernel rule)",
    _signal.SIGCHLD: (
        "procmagic reaps its children by pid and needs SIGCHLD at its default: a handler that "
        "calls waitpid(-1), or SIG_IGN, would steal or discard their exit statuses"
    ),
}

_TIMERS = {
    _signal.ITIMER_REAL: _signal.SIGALRM,
    _signal.ITIMER_VIRTUAL: _signal.SIGVTALRM,
    _signal.ITIMER_PROF: _signal.SIGPROF,
}
_TIMER_NAMES = {"real": _signal.ITIMER_REAL, "virtual": _signal.ITIMER_VIRTUAL, "prof": _signal.ITIMER_PROF}
_TICK_SIGNALS = frozenset(_TIMERS.values())


def reserve_signal(signo: SignalLike, reason: str) -> Callable[[], None]:
    """Refuse ``signal(signo, ...)`` with ``reason``; returns a function that lifts it."""
    sig = signal_number(signo)
    previous = _RESERVED.get(sig)
    _RESERVED[sig] = reason

    def lift() -> None:
        if previous is None:
            _RESERVED.pop(sig, None)
        else:
            _RESERVED[sig] = previous

    return lift


def signal_number(value: Any, what: str = "signal") -> int:
    """A signal number from an int, a ``signal.Signals`` or a name (``"SIGTERM"``, ``"term"``)."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a signal number or name, not {value!r}")
    if isinstance(value, str):
        name = value.strip().upper()
        if name.isdigit():
            return signal_number(int(name), what)
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return int(_signal.Signals[name])
        except KeyError:
            raise ValueError(
                f"unknown {what} name {value!r}; use a name such as 'SIGTERM' or 'TERM', or a "
                f"number from 1 to {_signal.NSIG - 1}"
            ) from None
    if not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be a signal number or name, not {type(value).__name__} {value!r}")
    number = int(value)
    if not 0 <= number < _signal.NSIG:
        raise ValueError(f"{what} number must be from 1 to {_signal.NSIG - 1} (or 0 to probe), got {number}")
    return number


def _name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def kill(pid: Any, sig: SignalLike = _signal.SIGTERM) -> bool:
    """Send ``sig`` to ``pid`` (or to a :class:`Process`); True when it was sent.

    As in swoole, signal 0 probes: a missing process answers False quietly. Any other failure
    raises, with the errno's message and the pid.
    """
    from .process import Process

    if isinstance(pid, Process):
        return pid.kill(sig)
    if isinstance(pid, bool) or not isinstance(pid, numbers.Integral):
        raise TypeError(f"pid must be an int (or a procmagic Process), not {pid!r}")
    pid = int(pid)
    if pid <= 0:
        raise ValueError(
            f"pid must be a positive process id, got {pid}: 0 and negative values address process "
            "groups (0 is this kernel's own group); use Process.kill() to signal a child's group"
        )
    number = signal_number(sig)
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        if number == 0:
            return False
        raise ProcessLookupError(errno.ESRCH, f"no process {pid} to send {_name(number)} to") from None
    except PermissionError:
        if number == 0:
            return True  # it exists, it is merely not ours
        raise PermissionError(errno.EPERM, f"not allowed to send {_name(number)} to pid {pid}") from None
    return True


class _Handler:
    """Wraps a user handler: counts alarm ticks, and calls it as (signum) or (signum, frame)."""

    __slots__ = ("user", "takes_frame", "counts")

    def __init__(self, user: Callable[..., Any], sig: int) -> None:
        self.user = user
        self.takes_frame = _takes_two(user)
        self.counts = sig in _TICK_SIGNALS

    def __call__(self, signum: int, frame: Any) -> None:
        if self.counts:
            counters.for_this_process().record_tick()
        if self.takes_frame:
            self.user(signum, frame)
        else:
            self.user(signum)


def _takes_two(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True  # builtins: assume Python's (signum, frame)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def action_for(sig: int, handler: Any) -> Any:
    """What ``signal.signal`` gets for ``handler``: None is the default (for SIGINT, Python's
    KeyboardInterrupt), SIG_IGN and SIG_DFL stay, a callable is wrapped (alarm ticks counted)."""
    if handler is None:
        return _signal.default_int_handler if sig == _signal.SIGINT else _signal.SIG_DFL
    if handler is _signal.SIG_IGN or handler is _signal.SIG_DFL:
        return handler
    if isinstance(handler, int) and not isinstance(handler, bool) and handler in (0, 1):
        return _signal.Handlers(handler)
    if callable(handler):
        return _Handler(handler, sig)
    raise TypeError(f"handler must be callable, None (restore the default) or signal.SIG_IGN, not {handler!r}")


def signal(signo: SignalLike, handler: Any) -> Any:
    """Install ``handler`` for ``signo``; returns the previous handler.

    ``handler`` is a callable taking ``(signum)`` or ``(signum, frame)``; ``None`` removes the
    handler and restores the default (for SIGINT, Python's KeyboardInterrupt); ``signal.SIG_IGN``
    ignores the signal. A second registration replaces the first. SIGKILL, SIGSTOP and the
    signals procmagic relies on are refused with the reason.
    """
    sig = signal_number(signo)
    if sig == 0:
        raise ValueError("signal 0 is a probe for kill(), not a signal a handler can receive")
    if sig in _RESERVED:
        raise ValueError(f"cannot install a handler for {_name(sig)}: {_RESERVED[sig]}")
    action = action_for(sig, handler)
    if threading.current_thread() is not threading.main_thread():
        raise ValueError(
            f"signal handlers can only be installed from the main thread; this is "
            f"{threading.current_thread().name!r}"
        )
    previous = _signal.signal(sig, action)
    return previous.user if isinstance(previous, _Handler) else previous


def _timer_number(which: Any) -> int:
    if isinstance(which, str):
        key = which.strip().lower().removeprefix("itimer_")
        if key in _TIMER_NAMES:
            return _TIMER_NAMES[key]
    elif isinstance(which, numbers.Integral) and not isinstance(which, bool) and int(which) in _TIMERS:
        return int(which)
    raise ValueError(
        f"unknown alarm type {which!r}: use signal.ITIMER_REAL (wall clock, SIGALRM), "
        "signal.ITIMER_VIRTUAL (user CPU, SIGVTALRM) or signal.ITIMER_PROF (user+system CPU, SIGPROF)"
    )


def alarm(usec: Any, which: Any = _signal.ITIMER_REAL) -> None:
    """A repeating interval timer of ``usec`` microseconds, like swoole's ``alarm`` (setitimer).

    ``usec <= 0`` clears the timer. Install a handler for its signal first (SIGALRM for
    ITIMER_REAL): at its default action the first tick would terminate the process.
    """
    if isinstance(usec, bool) or not isinstance(usec, numbers.Real):
        raise TypeError(f"usec must be a number of microseconds, not {usec!r}")
    kind = _timer_number(which)
    sig = _TIMERS[kind]
    slot = counters.for_this_process()
    if usec <= 0:
        _signal.setitimer(kind, 0)
        slot.set(counters.ALARM_WHICH, 0)
        slot.set(counters.ALARM_INTERVAL_US, 0)
        return
    current = _signal.getsignal(sig)
    if current in (_signal.SIG_DFL, None):
        raise ValueError(
            f"no handler for {_name(sig)}: at its default action the first tick of this alarm "
            f"would terminate the process. Install one first: procmagic.signal({_name(sig)}, handler)"
        )
    seconds = float(usec) / 1e6
    _signal.setitimer(kind, seconds, seconds)
    slot.set(counters.ALARM_WHICH, kind + 1)
    slot.set(counters.ALARM_INTERVAL_US, int(float(usec)))


def child_handlers(signals: Mapping[Any, Any] | None) -> dict[int, Any]:
    """Validate ``signals=`` (signal -> handler, None or SIG_IGN) in the parent, before any fork."""
    if signals is None:
        return {}
    if not isinstance(signals, Mapping):
        raise TypeError(f"signals must be a mapping of signal to handler, like {{signal.SIGUSR1: on_usr1}}, not {signals!r}")
    out = {}
    for signo, handler in signals.items():
        sig = signal_number(signo)
        if sig in (0, _signal.SIGKILL, _signal.SIGSTOP):
            raise ValueError(f"signals: {signo!r} cannot have a handler (SIGKILL and SIGSTOP never reach one; 0 is a probe)")
        if not (handler is None or handler in (_signal.SIG_IGN, _signal.SIG_DFL) or callable(handler)):
            raise TypeError(f"signals: the handler for {signo!r} must be callable, None or signal.SIG_IGN, not {handler!r}")
        out[sig] = handler
    return out
