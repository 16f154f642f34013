"""Text tables for terminals and frontends without widgets: ``%procs`` and exit statuses."""

from __future__ import annotations

import time
from typing import Any, Iterable

from .core.process import Process
from .core.status import ExitStatus

__all__ = ["process_table", "status_table"]


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    rows = list(rows)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def _facts(proc: Process) -> tuple[str, str]:
    try:
        import psutil

        p = psutil.Process(proc.pid)
        with p.oneshot():
            cpu = p.cpu_times()
            return f"{cpu.user + cpu.system:.2f} s", f"{p.memory_info().rss / 1e6:.0f} MB"
    except Exception:
        return "-", "-"


def process_table(live: list[Process], spawn_of: Any = None) -> str:
    """Live children: id, name, pid, state, runtime, CPU, memory, spawn."""
    if not live:
        return "no live procmagic children"
    now = time.monotonic()
    rows = []
    for proc in live:
        cpu, rss = _facts(proc)
        spawn = spawn_of(proc) if spawn_of else None
        rows.append([str(proc.id), str(proc.name), str(proc.pid), "running", f"{now - proc._started_at:.1f} s",
                     cpu, rss, f"#{spawn.number}" if spawn else "-"])
    return _table(["id", "name", "pid", "state", "runtime", "cpu", "rss", "spawn"], rows)


def status_table(statuses: list[ExitStatus]) -> str:
    """Reaped children, newest first."""
    if not statuses:
        return "no reaped children yet"
    rows = []
    for s in reversed(statuses):
        rows.append([str(s.id), s.name or "-", str(s.pid), s.how, f"{s.wall_time:.2f} s", f"{s.cpu_time:.2f} s",
                     f"{s.max_rss / 1e6:.0f} MB"])
    return _table(["id", "name", "pid", "ended", "wall", "cpu", "peak rss"], rows)
