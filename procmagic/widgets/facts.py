"""What the panels, the dashboard and the text tables show, read from what the core records.

No ipywidgets here: the terminal's text tables use this module too. Everything is read, never
duplicated: states from ``Process`` and ``ExitStatus``, CPU and memory from psutil (sampled, at
most once a second per child), alarm ticks and queue counts from the shared counters, queue
depth from ``Queue.stat()`` (``stat_queue``).
"""

from __future__ import annotations

import collections
import os
import signal as _signal
import time
from dataclasses import dataclass, field
from typing import Any, Deque, Iterable

import psutil

from ..core.process import Process
from ..core.reaper import registry
from ..core.status import ExitStatus, format_size
from ..kernel import spawn as spawn_mod
from ..kernel.stdin import waiting as stdin_waiting

__all__ = [
    "STATES", "state_of", "runtime_of", "how_short", "Sampler", "ProcFacts", "proc_facts", "AlarmFacts",
    "alarm_facts", "QueueFacts", "QueueWatch", "QueueUser", "is_failure", "recent_procs", "state_of_status",
    "counters_of", "signal_name", "fmt_runtime", "fmt_interval", "fmt_bytes", "fmt_ago",
]

#: The states a child is shown in.
STATES = ("starting", "running", "waiting for input", "in debugger", "exited", "killed", "timed out")
LIVE_STATES = ("running", "waiting for input", "in debugger")
_TIMERS = {1: "real", 2: "virtual", 3: "prof"}  # counters' alarm_which is ITIMER_* + 1


def state_of(proc: Process) -> str:
    """starting (not forked yet), running (or waiting for input, or in debugger, at a prompt of
    a ``--bg`` child), exited, killed (by a signal) or timed out."""
    status = proc.exitstatus
    if proc.pid is None:
        return "starting"
    if status is None:
        prompt = stdin_waiting(proc)
        if prompt is not None:
            return "in debugger" if prompt.debugger else "waiting for input"
        return "running"
    return state_of_status(status)


def state_of_status(status: ExitStatus) -> str:
    if status.timed_out:
        return "timed out"
    return "killed" if status.signal is not None else "exited"


def is_failure(status: ExitStatus) -> bool:
    """Anything but exit code 0 (a signal, a non-zero code, a time-out, a failed exec)."""
    return not status.ok or status.timed_out or status.exec_error is not None


def how_short(status: ExitStatus) -> str:
    """``exit 0``, ``exit 3``, ``SIGKILL``, ``SIGSEGV, core dumped``."""
    if status.signal is not None:
        text = getattr(status.signal, "name", f"signal {int(status.signal)}")
        if status.core_dumped:
            text += ", core dumped"
    elif status.code is not None:
        text = f"exit {status.code}"
    else:
        text = "unknown"
    if status.exec_error is not None:
        text += f", exec failed: {status.exec_error.strerror}"
    return text


def runtime_of(proc: Process, now: float | None = None) -> float:
    """Seconds since the fork; the wall time once reaped."""
    status = proc.exitstatus
    if status is not None:
        return status.wall_time
    started = proc.started_at
    if started is None:
        return 0.0
    return (time.monotonic() if now is None else now) - started


def counters_of(proc: Process) -> dict[str, int]:
    return proc.counters  # the core keeps the final counts once the slot is released


class Sampler:
    """CPU (percent since the previous sample, and seconds) and RSS of live children, from
    psutil. A child is read at most once per ``every`` seconds; readers get the cached sample."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        # proc id -> (when, psutil handle or None, cpu percent, cpu seconds, rss)
        self._cache: dict[int, tuple[float, Any, float | None, float | None, int | None]] = {}
        self.reads = 0

    def get(self, proc: Process, now: float | None = None) -> tuple[float | None, float | None, int | None]:
        """(cpu percent, cpu seconds, rss bytes), None where unknown (not started, or gone)."""
        pid = proc.pid
        if pid is None or proc.exitstatus is not None:
            self._cache.pop(proc.id, None)
            return None, None, None
        now = time.monotonic() if now is None else now
        cached = self._cache.get(proc.id)
        if cached is not None and now - cached[0] < self.every:
            return cached[2], cached[3], cached[4]
        old = cached[1] if cached is not None else None
        sample: tuple[float, Any, float | None, float | None, int | None]
        try:
            handle = old if old is not None and old.pid == pid else psutil.Process(pid)
            with handle.oneshot():
                pct = handle.cpu_percent(None)  # since this handle's previous call: none on the first
                times = handle.cpu_times()
                rss = handle.memory_info().rss
            sample = (now, handle, pct if handle is old else None, times.user + times.system, int(rss))
        except Exception:  # gone, or a zombie
            sample = (now, None, None, None, None)
        self.reads += 1
        self._cache[proc.id] = sample
        return sample[2], sample[3], sample[4]

    def forget(self, keep: Iterable[int]) -> None:
        """Drop samples of children not in ``keep`` (ids)."""
        keep = set(keep)
        for key in [k for k in self._cache if k not in keep]:
            del self._cache[key]


@dataclass
class ProcFacts:
    """One child, as a panel row, a dashboard row or a table line shows it."""

    id: int
    name: str
    pid: int | None
    worker: int | None
    spawn: str  # "#3" or "-"
    state: str
    runtime: float
    cpu_pct: float | None = None
    cpu_s: float | None = None
    rss: int | None = None
    status: ExitStatus | None = None
    alarm: str = ""  # "real 100 ms" when an interval timer is set
    ticks: int = 0
    pushes: int = 0
    pops: int = 0
    has_queue: bool = False
    redirect: bool = False

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def proc_facts(proc: Process, sampler: Sampler | None = None, now: float | None = None) -> ProcFacts:
    spawn = spawn_mod.spawn_of(proc)
    counts = counters_of(proc)
    which = counts.get("alarm_which", 0)
    alarm = f"{_TIMERS.get(which, '?')} {fmt_interval(counts.get('alarm_interval_us', 0))}" if which else ""
    status = proc.exitstatus
    cpu_pct = cpu_s = rss = None
    if sampler is not None and status is None:
        cpu_pct, cpu_s, rss = sampler.get(proc, now)
    if status is not None:
        cpu_s, rss = status.cpu_time, status.max_rss
    return ProcFacts(
        id=proc.id, name=str(proc.name), pid=proc.pid, worker=proc.worker, spawn=f"#{spawn.number}" if spawn else "-",
        state=state_of(proc), runtime=runtime_of(proc, now), cpu_pct=cpu_pct, cpu_s=cpu_s, rss=rss, status=status,
        alarm=alarm, ticks=counts.get("alarm_ticks", 0), pushes=counts.get("pushes", 0), pops=counts.get("pops", 0),
        has_queue=proc.queue is not None, redirect=proc.redirect,
    )


def fmt_runtime(seconds: float) -> str:
    """Tenths for the first 10 s, then whole seconds, then minutes: a row's text changes at most
    once a second after the start, so a live table costs few messages."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min"


def fmt_interval(usec: int) -> str:
    if usec <= 0:
        return "-"
    if usec < 1000:
        return f"{usec} us"
    if usec < 1_000_000:
        return f"{usec / 1000:g} ms"
    return f"{usec / 1e6:g} s"


def fmt_bytes(n: int | None) -> str:
    return "-" if n is None else format_size(n)  # the core's one unit (core/status.py)


def fmt_ago(epoch: float | None, now: float | None = None) -> str:
    if not epoch:
        return "-"
    ago = (time.time() if now is None else now) - epoch
    return "now" if ago < 0.5 else f"{ago:.1f} s ago" if ago < 60 else f"{ago / 60:.0f} min ago"


def recent_procs(live: list[Process] | None = None, spawns: int = 10) -> list[Process]:
    """Live children, then the ended children of the last ``spawns`` spawns (a bounded list,
    where ``registry.known()`` may hold thousands)."""
    out = list(registry.live() if live is None else live)
    seen = {p.id for p in out}
    for spawn in spawn_mod.spawns()[-spawns:]:
        for proc in spawn.procs:
            if proc.id not in seen and proc.pid is not None:
                seen.add(proc.id)
                out.append(proc)
    return out


# -- alarms --------------------------------------------------------------------------------------
@dataclass
class AlarmFacts:
    id: int
    name: str
    pid: int | None
    state: str
    timer: str  # real / virtual / prof, or "off" once cleared
    interval_us: int
    ticks: int
    last_tick: float | None  # epoch seconds
    rate: float | None  # ticks per second since the previous look


def alarm_facts(procs: Iterable[Process], previous: dict[int, tuple[float, int]] | None = None,
                now: float | None = None) -> list[AlarmFacts]:
    """Children that have (or had) an interval timer; ``previous`` carries tick counts between
    calls to give a rate."""
    out = []
    now = time.monotonic() if now is None else now
    for proc in procs:
        counts = counters_of(proc)
        which, ticks = counts.get("alarm_which", 0), counts.get("alarm_ticks", 0)
        if not which and not ticks:
            continue
        rate = None
        if previous is not None:
            before = previous.get(proc.id)
            if before is not None and now > before[0]:
                rate = (ticks - before[1]) / (now - before[0])
            if before is None or now - before[0] >= 0.9:
                previous[proc.id] = (now, ticks)
        last = counts.get("last_tick_ns", 0)
        out.append(AlarmFacts(id=proc.id, name=str(proc.name), pid=proc.pid, state=state_of(proc),
                              timer=_TIMERS.get(which, "off"), interval_us=counts.get("alarm_interval_us", 0),
                              ticks=ticks, last_tick=last / 1e9 if last else None, rate=rate))
    return out


# -- queues --------------------------------------------------------------------------------------
@dataclass
class QueueUser:
    who: str  # "name (pid N)" or "notebook"
    live: bool
    pushes: int
    pops: int
    push_rate: float | None
    pop_rate: float | None


@dataclass
class QueueFacts:
    id: int
    key: int
    messages: int
    bytes: int | None
    capacity: int | None
    last_sender: str
    last_send_time: float | None
    last_receiver: str
    last_receive_time: float | None
    users: list[QueueUser] = field(default_factory=list)
    history: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, depth)
    error: str = ""  # why stat_queue() failed, when it did (shown, never hidden)


def _queue_handles(procs: list[Process]) -> dict[int, Any]:
    """Queues this kernel holds a handle on (spawns' ``--queue`` and ``use_queue()`` in the
    notebook), by msqid, freed ones left out."""
    found: dict[int, Any] = {}
    candidates = [s.queue for s in spawn_mod.spawns()] + [p.queue for p in procs]
    for queue in candidates:
        if queue is None or getattr(queue, "freed", False):
            continue
        try:
            found.setdefault(int(queue.id), queue)
        except Exception:
            continue
    return found


def _other_queues(seen: set[int]) -> list[Any]:
    """Queues procmagic created in this process that no handle here reaches any more."""
    try:
        from ..core.queue import queues
    except ImportError:
        return []
    try:
        return [q for q in queues() if getattr(q, "mine", False) and q.id not in seen]
    except Exception:
        return []


class QueueWatch:
    """Samples the queues this kernel uses: depth (kept ``window`` seconds, for the plot) and
    each process's push and pop rates from its counters."""

    def __init__(self, window: float = 60.0, every: float = 0.5) -> None:
        self.window = window
        self.every = every
        self.history: dict[int, Deque[tuple[float, int]]] = {}
        self._counts: dict[tuple[int, int], tuple[float, int, int]] = {}  # (queue, proc id) -> (t, pushes, pops)
        self._last: tuple[float, list[QueueFacts]] | None = None

    def sample(self, now: float | None = None) -> list[QueueFacts]:
        now = time.monotonic() if now is None else now
        if self._last is not None and now - self._last[0] < self.every * 0.8:
            return self._last[1]
        procs = recent_procs()
        names = {p.pid: f"{p.name} (pid {p.pid})" for p in procs if p.pid is not None}
        names[os.getpid()] = "notebook"
        handles = _queue_handles(procs)
        out: list[QueueFacts] = []
        for qid, queue in handles.items():
            try:
                stat = queue.stat()
            except Exception as exc:
                if getattr(queue, "freed", False):  # freed meanwhile
                    continue
                out.append(QueueFacts(id=qid, key=getattr(queue, "key", 0), messages=0, bytes=None, capacity=None,
                                      last_sender="-", last_send_time=None, last_receiver="-", last_receive_time=None,
                                      error=f"stat_queue() failed: {type(exc).__name__}: {exc}"))
                continue
            facts = QueueFacts(
                id=stat.id, key=stat.key, messages=stat.messages, bytes=stat.bytes, capacity=stat.capacity,
                last_sender=_who(stat.last_sender_pid, names), last_send_time=stat.last_send_time,
                last_receiver=_who(stat.last_receiver_pid, names), last_receive_time=stat.last_receive_time)
            for proc in procs:
                q = proc.queue
                if q is not None and _same_queue(q, qid):
                    facts.users.append(self._user(qid, proc, now))
            out.append(facts)
        for info in _other_queues(set(handles)):
            out.append(QueueFacts(id=info.id, key=info.key, messages=info.messages, bytes=info.bytes, capacity=None,
                                  last_sender="-", last_send_time=None, last_receiver="-", last_receive_time=None))
        live_ids = set()
        for facts in out:
            live_ids.add(facts.id)
            hist = self.history.setdefault(facts.id, collections.deque(maxlen=int(self.window / self.every) + 8))
            hist.append((now, facts.messages))
            while hist and now - hist[0][0] > self.window:
                hist.popleft()
            facts.history = list(hist)
        for qid in [q for q in self.history if q not in live_ids]:
            del self.history[qid]
        self._last = (now, out)
        return out

    def _user(self, qid: int, proc: Process, now: float) -> QueueUser:
        counts = counters_of(proc)
        pushes, pops = counts.get("pushes", 0), counts.get("pops", 0)
        key = (qid, proc.id)
        before = self._counts.get(key)
        push_rate = pop_rate = None
        live = proc.exitstatus is None and proc.pid is not None
        if before is not None and now > before[0] and live:
            push_rate = (pushes - before[1]) / (now - before[0])
            pop_rate = (pops - before[2]) / (now - before[0])
        if before is None or now - before[0] >= 0.9:  # rates over about a second
            self._counts[key] = (now, pushes, pops)
        return QueueUser(who=f"{proc.name} (pid {proc.pid})", live=live, pushes=pushes, pops=pops,
                         push_rate=push_rate, pop_rate=pop_rate)


def _same_queue(queue: Any, qid: int) -> bool:
    try:
        return int(queue.id) == qid
    except Exception:
        return False


def _who(pid: int | None, names: dict[int, str]) -> str:
    if not pid:
        return "-"
    return names.get(pid, f"pid {pid}")


def signal_name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
