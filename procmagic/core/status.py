"""ExitStatus: how a child ended, with its resource usage (from ``wait4``)."""

from __future__ import annotations

import os
import signal as _signal
from dataclasses import dataclass, field

__all__ = ["ExitStatus", "status_from_wait4", "format_size"]


def format_size(nbytes: float) -> str:
    """A size in bytes, the one way procmagic writes sizes everywhere (status lines, ``%procs``,
    the panel, ``repr``): binary units labelled ``B``, ``KB``, ``MB``, ``GB`` (1 KB = 1024 B, as
    ``ps``, ``top`` and the kernel report memory), one decimal above bytes: ``"44.1 MB"``."""
    n = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # unreachable: GB ends the loop


@dataclass(frozen=True)
class ExitStatus:
    """How one procmagic child ended.

    Exactly one of ``code`` (a normal exit) and ``signal`` (killed by a signal) is set.
    ``returncode`` folds them the way :mod:`subprocess` does (negative for a signal).
    """

    pid: int
    id: int
    code: int | None
    signal: _signal.Signals | None
    core_dumped: bool = False
    wall_time: float = 0.0
    user_time: float = 0.0
    system_time: float = 0.0
    max_rss: int = 0  # bytes
    name: str | None = None
    timed_out: bool = False  # stop_reason == "timeout"
    exec_error: OSError | None = field(default=None, compare=False)
    #: Why procmagic stopped it, when it did (``Process.mark_stop_reason``): "timeout",
    #: "interrupt", "kill", "stop", "shutdown"...; None when it ended by itself.
    stop_reason: str | None = None

    @property
    def returncode(self) -> int:
        if self.signal is not None:
            return -int(self.signal)
        return self.code if self.code is not None else 0

    @property
    def cpu_time(self) -> float:
        return self.user_time + self.system_time

    @property
    def ok(self) -> bool:
        """True when the child exited with code 0."""
        return self.code == 0 and self.signal is None

    @property
    def how(self) -> str:
        """A short phrase: ``exited 0``, ``killed by SIGKILL`` (plus core dump, time-out)."""
        if self.signal is None and self.code is None:
            return "status unknown (reaped outside procmagic)"
        if self.signal is not None:
            # a real-time signal has no name in signal.Signals: _signal_of kept the number
            text = f"killed by {getattr(self.signal, 'name', f'signal {int(self.signal)}')}"
            if self.core_dumped:
                text += " (core dumped)"
        else:
            text = f"exited {self.code}"
        if self.timed_out:
            text += ", timed out"
        if self.exec_error is not None:
            text += f", exec failed: {self.exec_error.strerror}"
        return text

    def __repr__(self) -> str:
        name = f"name={self.name!r}, " if self.name else ""
        return (
            f"ExitStatus({name}id={self.id}, pid={self.pid}, {self.how} after {self.wall_time:.2f} s, "
            f"cpu {self.cpu_time:.2f} s, peak rss {format_size(self.max_rss)})"
        )


def _signal_of(number: int) -> _signal.Signals:
    try:
        return _signal.Signals(number)
    except ValueError:  # a real-time signal Python has no name for
        return number  # type: ignore[return-value]


def status_from_wait4(
    pid: int,
    proc_id: int,
    status: int,
    rusage: object,
    wall_time: float,
    name: str | None = None,
    timed_out: bool = False,
    exec_error: OSError | None = None,
    stop_reason: str | None = None,
) -> ExitStatus:
    """Build an ExitStatus from what ``os.wait4`` returned."""
    if os.WIFSIGNALED(status):
        code, sig, core = None, _signal_of(os.WTERMSIG(status)), os.WCOREDUMP(status)
    else:
        code, sig, core = os.WEXITSTATUS(status), None, False
    return ExitStatus(
        pid=pid,
        id=proc_id,
        code=code,
        signal=sig,
        core_dumped=bool(core),
        wall_time=wall_time,
        user_time=getattr(rusage, "ru_utime", 0.0),
        system_time=getattr(rusage, "ru_stime", 0.0),
        max_rss=getattr(rusage, "ru_maxrss", 0) * 1024,  # Linux reports KiB
        name=name,
        timed_out=timed_out,
        exec_error=exec_error,
        stop_reason=stop_reason,
    )
