"""The reaper and registry: wait(), reporting each status once, dropped Processes, event loops,
subscribers, ExitStatus, and no zombies or fds left after many forks."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import resource
import signal
import subprocess
import time

import psutil
import pytest

import procmagic
from procmagic import ExitStatus, Process
from procmagic.core import reaper
from procmagic.core.reaper import registry
from procmagic.core.status import format_size, status_from_wait4

from .helpers import WAIT, proc_state, wait_until

from ..conftest import open_fds


def noop(proc: Process) -> None:
    pass


def sleeper(proc: Process) -> None:
    time.sleep(WAIT * 3)


def wait_for_parent(proc: Process) -> None:
    proc.read(timeout=WAIT)


def _zombie(pid: int) -> bool:
    return proc_state(pid) == "Z"


# -- wait() ------------------------------------------------------------------------------------
def test_wait_reaps_only_procmagic_children(spawn, fresh_wait):
    other = subprocess.Popen(["sh", "-c", "exit 3"])
    wait_until(lambda: _zombie(other.pid), what="the subprocess to finish")  # ripe for waitpid(-1)
    p = spawn(noop, pipe=None)
    pid = p.start()
    status = procmagic.wait(timeout=WAIT)
    assert status is not None and status.pid == pid and status.code == 0
    assert procmagic.wait(blocking=False) is None  # nothing else of ours
    assert _zombie(other.pid)  # not stolen
    assert other.wait(timeout=WAIT) == 3  # Popen still gets its own status


def test_wait_leaves_multiprocessing_children_alone(spawn, fresh_wait):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=os._exit, args=(4,))
    child.start()
    wait_until(lambda: _zombie(child.pid), what="the multiprocessing child to finish")  # type: ignore[arg-type]
    p = spawn(noop, pipe=None)
    p.start()
    assert procmagic.wait(timeout=WAIT).pid == p.pid  # type: ignore[union-attr]
    child.join(WAIT)
    assert child.exitcode == 4
    child.close()


def test_wait_with_no_children_returns_none(fresh_wait):
    started = time.monotonic()
    assert procmagic.wait() is None
    assert procmagic.wait(blocking=False) is None
    assert time.monotonic() - started < WAIT


def test_wait_non_blocking_returns_none_while_children_run(spawn, fresh_wait):
    p = spawn(wait_for_parent)
    pid = p.start()
    assert procmagic.wait(blocking=False) is None
    assert procmagic.wait(timeout=0.1) is None  # blocking, bounded
    p.write(b"go")
    status = procmagic.wait(timeout=WAIT)
    assert status is not None and status.pid == pid


def test_wait_reports_every_child_once(spawn, fresh_wait):
    procs = [spawn(noop, pipe=None) for _ in range(3)]
    pids = {p.start() for p in procs}
    seen = {procmagic.wait(timeout=WAIT).pid for _ in range(3)}  # type: ignore[union-attr]
    assert seen == pids
    assert procmagic.wait() is None


def test_a_status_reported_by_join_is_not_reported_by_wait(spawn, fresh_wait):
    p = spawn(noop, pipe=None)
    p.start()
    p.join(timeout=WAIT)
    assert procmagic.wait(blocking=False) is None


def test_a_status_reported_by_wait_is_still_returned_by_join(spawn, fresh_wait):
    p = spawn(noop, pipe=None)
    p.start()
    status = procmagic.wait(timeout=WAIT)
    assert p.join(timeout=WAIT) is status
    assert procmagic.wait(blocking=False) is None


def test_join_of_a_child_reaped_by_someone_else_does_not_hang(spawn, fresh_wait):
    p = spawn(noop, pipe=None)
    pid = p.start()
    os.waitpid(pid, 0)  # another library's waitpid steals the status
    status = p.join(timeout=WAIT)
    assert status.code is None and status.signal is None
    assert status.how == "status unknown (reaped outside procmagic)"


# -- dropped Processes -------------------------------------------------------------------------
def test_dropped_processes_are_reaped_by_reap_ready(fresh_wait):
    gate_r, gate_w = os.pipe()  # the children exit together, once every one has started

    def gated(proc: Process) -> None:
        os.close(gate_w)
        os.read(gate_r, 1)

    try:
        pids = [Process(gated, pipe=None).start() for _ in range(5)]
    finally:
        os.close(gate_w)
        os.close(gate_r)
    gc.collect()
    wait_until(lambda: all(_zombie(pid) for pid in pids), what="five exits")
    reaped = registry.reap_ready()
    assert sorted(s.pid for s in reaped) == sorted(pids)
    assert all(proc_state(pid) is None for pid in pids)
    assert {s.pid for s in procmagic.reaped()} >= set(pids)


def test_dropped_processes_are_reaped_by_the_next_start(spawn, fresh_wait):
    dropped = Process(noop, pipe=None).start()
    wait_until(lambda: _zombie(dropped), what="the exit")
    p = spawn(noop, pipe=None)
    p.start()
    assert proc_state(dropped) is None
    p.join(timeout=WAIT)


@pytest.mark.parametrize("loop, thread, match", [
    (3, None, r"watch\(\) takes an asyncio event loop \(with add_reader, .*\), not 3: pass asyncio.get_running_loop\(\)"),
    (None, None, r"watch\(\) takes an asyncio event loop .*, not None"),
    ("new", "main", "thread must be the loop's thread ident"),
])
def test_watch_refuses_what_is_not_a_loop_and_every_fork_still_works(loop, thread, match, spawn):
    import asyncio

    real = asyncio.new_event_loop() if loop == "new" else None
    try:
        with pytest.raises(TypeError, match=match):
            procmagic.watch(real if real is not None else loop, thread=thread)
        p = spawn(noop, pipe=None)
        p.start()  # nothing half-registered breaks the next fork
        assert p.join(timeout=WAIT).ok
    finally:
        if real is not None:
            real.close()


def test_wait_refuses_bad_arguments():
    with pytest.raises(TypeError, match="blocking must be True or False, not 'no'"):
        procmagic.wait(blocking="no")
    with pytest.raises(ValueError, match="timeout must be >= 0 seconds"):
        procmagic.wait(timeout=-1)


def test_watch_reaps_dropped_processes_from_an_event_loop(fresh_wait):
    loop = asyncio.new_event_loop()
    reaped = loop.create_future()

    def on_event(event: str, proc: Process, status: ExitStatus | None) -> None:
        if event == "reaped" and not reaped.done():
            reaped.set_result(status)

    before = Process(wait_for_parent)  # started before watch(): watched too
    before.start()
    stop = procmagic.watch(loop)
    unsubscribe = registry.subscribe(on_event)
    try:
        pid = Process(noop, pipe=None).start()  # dropped at once
        status = loop.run_until_complete(asyncio.wait_for(reaped, WAIT))
        assert status.pid == pid
        assert proc_state(pid) is None and not any(p.pid == pid for p in procmagic.children())
        assert before in registry.watched_by(loop)  # its pidfd has a reader on the loop
        later = loop.create_future()
        unsubscribe()
        unsubscribe = registry.subscribe(lambda e, p, s: e == "reaped" and not later.done() and later.set_result(s))
        before.write(b"go")
        assert loop.run_until_complete(asyncio.wait_for(later, WAIT)).pid == before.pid
    finally:
        unsubscribe()
        stop()
        loop.close()
        before.close()
    assert registry.watched_by(loop) == []


def test_watch_without_pidfd_polls(monkeypatch, fresh_wait):
    """The documented fallback where pidfd_open is missing or blocked by seccomp."""
    monkeypatch.setattr(reaper, "_pidfd_ok", False)
    loop = asyncio.new_event_loop()
    stop = procmagic.watch(loop)
    try:
        pid = Process(noop, pipe=None).start()

        async def until_reaped() -> None:
            while any(p.pid == pid for p in procmagic.children()):
                await asyncio.sleep(0.01)

        loop.run_until_complete(asyncio.wait_for(until_reaped(), WAIT))
        assert proc_state(pid) is None
    finally:
        stop()
        loop.close()


def test_join_wait_and_read_without_pidfd(spawn, monkeypatch, fresh_wait):
    monkeypatch.setattr(reaper, "_pidfd_ok", False)
    p = spawn(wait_for_parent)
    p.start()
    assert p.exit_fd is None
    with pytest.raises(TimeoutError):
        p.join(timeout=0.1)
    assert procmagic.wait(timeout=0.1) is None
    p.write(b"go")
    assert p.join(timeout=WAIT).code == 0
    assert p.read(timeout=WAIT) == b""
    q = spawn(noop, pipe=None)
    q.start()
    assert procmagic.wait(timeout=WAIT).pid == q.pid  # type: ignore[union-attr]


# -- the registry ------------------------------------------------------------------------------
def test_subscribe_sees_started_and_reaped(spawn):
    events: list[tuple[str, int, ExitStatus | None]] = []
    unsubscribe = registry.subscribe(lambda event, proc, status: events.append((event, proc.id, status)))
    try:
        p = spawn(noop, pipe=None)
        p.start()
        assert p in procmagic.children()
        status = p.join(timeout=WAIT)
    finally:
        unsubscribe()
    assert events == [("started", p.id, None), ("reaped", p.id, status)]
    assert p not in procmagic.children()
    assert procmagic.reaped()[-1] is status


def test_a_broken_subscriber_does_not_break_reaping(spawn, capfd):
    def broken(event: str, proc: Process, status: ExitStatus | None) -> None:
        raise RuntimeError("broken subscriber")

    unsubscribe = registry.subscribe(broken)
    try:
        p = spawn(noop, pipe=None)
        p.start()
        assert p.join(timeout=WAIT).code == 0
    finally:
        unsubscribe()
    assert capfd.readouterr().err.count("RuntimeError: broken subscriber") == 2


def test_subscribe_refuses_a_non_callable():
    with pytest.raises(TypeError, match="listener must be callable"):
        registry.subscribe("print")  # type: ignore[arg-type]


# -- ExitStatus --------------------------------------------------------------------------------
def test_exit_status_of_a_busy_child(spawn):
    def busy(proc: Process) -> None:
        data = b"x" * (64 << 20)  # 64 MB written, so resident
        started = time.process_time()
        while time.process_time() - started < 0.3:
            pass
        del data

    p = spawn(busy, pipe=None)
    pid = p.start()
    status = p.join(timeout=WAIT)
    assert status.pid == pid and status.id == p.id
    assert status.code == 0 and status.signal is None and status.ok
    assert status.core_dumped is False
    assert status.cpu_time >= 0.25 and status.user_time > 0
    assert status.cpu_time == status.user_time + status.system_time
    assert status.max_rss >= 64 << 20
    assert 0.25 <= status.wall_time < WAIT
    text = repr(status)
    assert re.fullmatch(
        rf"ExitStatus\(id={p.id}, pid={pid}, exited 0 after \d+\.\d\d s, cpu \d+\.\d\d s, peak rss \d+\.\d MB\)", text
    ), text


def test_exit_status_of_a_killed_child(spawn):
    p = spawn(sleeper, pipe=None)
    pid = p.start()
    p.kill(signal.SIGKILL)
    status = p.join(timeout=WAIT)
    assert status.signal is signal.SIGKILL and isinstance(status.signal, signal.Signals)
    assert status.code is None and status.returncode == -9 and not status.ok
    assert re.fullmatch(rf"ExitStatus\(id={p.id}, pid={pid}, killed by SIGKILL after \d+\.\d\d s, .*\)", repr(status))


def test_exit_status_of_an_abort_without_core(spawn):
    def abort(proc: Process) -> None:
        import faulthandler

        faulthandler.disable()  # pytest's, inherited: it would print a traceback first
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.abort()

    p = spawn(abort, pipe=None)
    p.start()
    status = p.join(timeout=WAIT)
    assert status.signal == signal.SIGABRT and status.core_dumped is False


def test_exit_status_of_a_real_time_signal(spawn):
    p = spawn(sleeper, pipe=None)
    p.start()
    sig = signal.SIGRTMIN + 2
    p.kill(sig)
    status = p.join(timeout=WAIT)
    assert int(status.signal) == sig  # type: ignore[arg-type]
    assert f"killed by signal {sig} after" in repr(status)
    assert f"killed by signal {sig} pipe=None" in repr(p)


def test_exit_status_core_dumped_from_a_wait_status():
    raw = 0x80 | int(signal.SIGABRT)  # WCOREDUMP set
    status = status_from_wait4(4121, 3, raw, None, 1.2)
    assert status.core_dumped and status.signal == signal.SIGABRT
    assert repr(status) == "ExitStatus(id=3, pid=4121, killed by SIGABRT (core dumped) after 1.20 s, cpu 0.00 s, peak rss 0 B)"


def test_exit_status_repr_matches_the_documented_form():
    usage = resource.struct_rusage((0.75, 0.2) + (48_000,) + (0,) * 13)
    status = status_from_wait4(4121, 3, 0, usage, 1.2)
    assert repr(status) == "ExitStatus(id=3, pid=4121, exited 0 after 1.20 s, cpu 0.95 s, peak rss 46.9 MB)"
    assert status.max_rss == 48_000 * 1024
    assert format_size(status.max_rss) == "46.9 MB"  # the one unit, as the panel and the status line


def test_format_size_is_the_one_unit():
    assert [format_size(n) for n in (0, 1023, 1024, 46_200_000, 3 * 2**30)] == [
        "0 B", "1023 B", "1.0 KB", "44.1 MB", "3.0 GB"]


# -- many forks --------------------------------------------------------------------------------
@pytest.mark.slow
def test_200_forks_leave_no_zombies_and_no_fds(fresh_wait):
    before = open_fds()
    for batch in range(10):
        procs = [Process(noop) for _ in range(20)]
        for p in procs:
            p.start()
        for i, p in enumerate(procs):
            if i % 2:
                p.join(timeout=WAIT)
                p.close()
        del procs, p  # half of them dropped without join: start() and wait() reap those
    while procmagic.wait(timeout=WAIT) is not None:
        pass
    gc.collect()
    assert procmagic.children() == []
    zombies = [c.pid for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]
    assert zombies == []
    assert open_fds() == before
