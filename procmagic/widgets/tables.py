"""The same facts as text tables: terminal IPython's ``%procs``, and the text/plain fallback of
every panel and dashboard (frontends without a widget manager, nbconvert, saved notebooks).
No ipywidgets here."""

from __future__ import annotations

import time
from typing import Any

from ..core.process import Process
from ..core.reaper import registry
from ..core.status import ExitStatus
from ..text import table
from .facts import (AlarmFacts, ProcFacts, QueueFacts, Sampler, alarm_facts, fmt_ago, fmt_bytes, fmt_interval,
                    how_short, is_failure, proc_facts, recent_procs, fmt_runtime)

__all__ = ["processes_text", "queues_text", "alarms_text", "reaped_text", "dashboard_text", "spawn_text", "late_text"]


def processes_text(facts: list[ProcFacts]) -> str:
    if not facts:
        return "no live procmagic children"
    rows = []
    for f in facts:
        if f.status is None:
            cpu = "-" if f.cpu_s is None else f"{f.cpu_s:.2f} s"
            rows.append([str(f.id), f.name, str(f.pid or "-"), f.state, fmt_runtime(f.runtime), cpu, fmt_bytes(f.rss),
                         str(f.ticks) if (f.alarm or f.ticks) else "-", f.spawn, ""])
        else:
            s = f.status
            rows.append([str(f.id), f.name, str(f.pid or "-"), f.state, f"{s.wall_time:.2f} s", f"{s.cpu_time:.2f} s",
                         fmt_bytes(s.max_rss), str(f.ticks) if (f.alarm or f.ticks) else "-", f.spawn, how_short(s)])
    if all(f.status is not None for f in facts):  # every one ended: the columns are its exit status's
        return table(["id", "name", "pid", "state", "wall", "cpu", "peak rss", "ticks", "spawn", "exit"], rows)
    return table(["id", "name", "pid", "state", "runtime", "cpu", "rss", "ticks", "spawn", "exit"], rows)


def queues_text(queues: list[QueueFacts]) -> str:
    if not queues:
        return "no procmagic queues"
    rows = []
    for q in queues:
        if q.error:
            rows.append([str(q.id), "private" if q.key == 0 else f"{q.key:#x}", "?", "-", "-", "-", "-", q.error])
            continue
        rows.append([str(q.id), "private" if q.key == 0 else f"{q.key:#x}", str(q.messages), fmt_bytes(q.bytes),
                     fmt_bytes(q.capacity), q.last_sender, q.last_receiver,
                     ", ".join(f"{u.who}: {u.pushes} pushed, {u.pops} popped" for u in q.users[:4])
                     + (f", +{len(q.users) - 4}" if len(q.users) > 4 else "")])
    return table(["queue", "key", "msgs", "bytes", "capacity", "last sender", "last receiver", "traffic"], rows)


def alarms_text(alarms: list[AlarmFacts]) -> str:
    if not alarms:
        return "no interval timers"
    rows = [[str(a.id), a.name, str(a.pid or "-"), a.state, a.timer, fmt_interval(a.interval_us), str(a.ticks),
             fmt_ago(a.last_tick)] for a in alarms]
    return table(["id", "name", "pid", "state", "timer", "interval", "ticks", "last tick"], rows)


def reaped_text(statuses: list[ExitStatus], failures_only: bool = False, limit: int = 20) -> str:
    chosen = [s for s in reversed(statuses) if not failures_only or is_failure(s)][:limit]
    if not chosen:
        return "no failures" if failures_only else "no reaped children yet"
    rows = [[str(s.id), s.name or "-", str(s.pid), s.how, "yes" if s.core_dumped else "", f"{s.wall_time:.2f} s",
             f"{s.cpu_time:.2f} s", fmt_bytes(s.max_rss)] for s in chosen]
    return table(["id", "name", "pid", "ended", "core", "wall", "cpu", "peak rss"], rows)


def dashboard_text(sampler: Sampler | None = None, queues: list[QueueFacts] | None = None,
                   failures_only: bool = False) -> str:
    """The four parts of ``%procs`` as text: processes, queue traffic, alarms, reaped exit statuses."""
    from .facts import QueueWatch

    if _main_thread():  # reaping elsewhere would run the registry's listeners on that thread
        registry.reap_ready()
    sampler = sampler or Sampler()
    now = time.monotonic()
    live = registry.live()
    queues = QueueWatch().sample(now) if queues is None else queues
    reaped = registry.reaped()
    failed = sum(1 for s in reaped if is_failure(s))
    parts = [
        f"processes ({len(live)} live)", processes_text([proc_facts(p, sampler, now) for p in live]), "",
        *_remote_part(),
        f"queue traffic ({len(queues)} {'queue' if len(queues) == 1 else 'queues'})", queues_text(queues), "",
        "alarms", alarms_text(alarm_facts(recent_procs(live), None, now)), "",
        f"reaped exit statuses, newest first ({len(reaped)} reaped, {failed} failed)"
        + (" - failures only" if failures_only else ""),
        reaped_text(reaped, failures_only),
    ]
    return "\n".join(parts)


def spawn_text(spawn: Any, sampler: Sampler | None = None) -> str:
    """One spawn: a line about it, then a row per child."""
    procs: list[Process] = list(spawn.procs)
    now = time.monotonic()
    facts = [proc_facts(p, sampler, now) for p in procs]
    head = f"{spawn.name} (spawn #{spawn.number})"
    if not procs:
        return f"{head}: starting {spawn.options.n} {'child' if spawn.options.n == 1 else 'children'}"
    return head + "\n" + processes_text(facts)


def late_text(name: str, output: list[tuple[str, str]], displays: int = 0) -> str:
    """A ``--bg`` spawn's complete output, as text (see render.late_html)."""
    text = "".join(t for _, t in output)
    more = f", and {displays} rich outputs that only a live view shows" if displays else ""
    return f"[procmagic] {name}: its complete output (the cell ended before the spawn){more}:\n{text}"


def _remote_part() -> list[str]:
    """Children on ipyparallel engines, once ``--engines`` was used: a heading, a table, a gap."""
    import sys

    engines = sys.modules.get("procmagic.engines")
    if engines is None or not engines.remote_spawns():
        return []
    children = [c for s in engines.remote_spawns() for c in s.children]
    live = sum(1 for c in children if c.live)
    return [f"processes on engines ({live} running)", engines.processes_text(), ""]


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
