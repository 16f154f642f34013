"""Pool and Manager with real workers: ids, callbacks, messages over a queue or pipes, respawn
with back-off, shutdown (SIGTERM then SIGKILL), detach, and cleanup on every error path.

Workers report to the test through a results queue (balance). Every pop in this process runs
under ``deadline()``; the leak fixture checks that each test leaves no worker, fd or queue.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest

from procmagic import Manager, Pool, Process, ProcessStateError, QueueEmpty
from procmagic.core import pool as pool_module
from procmagic.core import queue as pmq

from ..conftest import sysv_queue_ids
from .helpers import deadline
from procmagic.core import queue_registry

WAIT = 20.0


pytestmark = pytest.mark.usefixtures("queue_records")






def take(queue: pmq.Queue, n: int) -> list[str]:
    with deadline():
        return [queue.pop().decode() for _ in range(n)]


def take_while_supervising(pool: Pool, queue: pmq.Queue, n: int) -> list[str]:
    """Pop n reports while the pool is supervised (respawns happen inside wait())."""
    quick = pmq.attach(None, key=queue, nowait=True)
    got: list[str] = []
    end = time.monotonic() + WAIT
    while len(got) < n:
        assert time.monotonic() < end, f"only {got} after {WAIT} s"
        pool.wait(0.02)
        with contextlib.suppress(QueueEmpty):
            while len(got) < n:
                got.append(quick.pop().decode())
    return got


@pytest.fixture
def stop_pools() -> Iterator[list[Pool]]:
    """Pools a failing test left running are shut down before the leak check."""
    pools: list[Pool] = []
    yield pools
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.shutdown(timeout=1)


# -- bad input -----------------------------------------------------------------------------------
def job(pool: Pool, wid: int) -> None:
    pass


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((0, job), {}, ValueError, "n must be a number of workers"),
    ((-1, job), {}, ValueError, "n must be a number of workers"),
    ((True, job), {}, ValueError, "n must be a number of workers"),
    (("3", job), {}, ValueError, "n must be a number of workers"),
    ((5000, job), {}, ValueError, "n must be a number of workers"),
    ((2, "job"), {}, TypeError, "target must be callable"),
    ((2, job, "socket"), {}, ValueError, "unknown ipc 'socket'"),
    ((2, job, "queue"), {"mode": "fifo"}, ValueError, "unknown mode 'fifo'"),
    ((2, job), {"key": 1234}, ValueError, "need ipc='queue'"),
    ((2, job, "pipe"), {"capacity": 4096}, ValueError, "need ipc='queue'"),
    ((2, job), {"mode": "balance"}, ValueError, "need ipc='queue'"),
    ((2, job), {"respawn": "yes"}, TypeError, "respawn must be True or False"),
    ((2, job), {"backoff": -1}, ValueError, "backoff must be a number of seconds"),
    ((2, job), {"max_wait_time": float("nan")}, ValueError, r"max_wait_time must be a number of seconds >= 0 \(finite\)"),
    ((2, job), {"max_wait_time": float("inf")}, ValueError, r"max_wait_time must be a number of seconds >= 0 \(finite\)"),
    ((2, job, "queue"), {"key": "abc"}, TypeError, "key must be an int"),
    ((2, job, "queue"), {"key": 0}, ValueError, "non-zero int"),
    ((2, job, "queue"), {"capacity": 0}, ValueError, "capacity must be from 1"),
    ((2, job), {"backoff": 1, "max_backoff": 0.5}, ValueError, "max_backoff .* must be >= backoff"),
    ((2, job), {"name": ""}, ValueError, "name must be a non-empty str"),
    ((2, job), {"on_start": 1}, TypeError, "on_start must be callable"),
    ((2, job), {"on_message": "x"}, TypeError, "on_message must be callable"),
])
def test_pool_refuses_bad_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        Pool(*args, **kwargs)


def test_pool_refuses_misuse() -> None:
    pool = Pool(2, job)
    with pytest.raises(TypeError, match=r"block must be True \(supervise until the pool stops\) or False"):
        pool.start(block="no")  # type: ignore[arg-type]
    assert not pool.running
    with pytest.raises(ValueError, match="unknown event 'bogus'"):
        pool.on("bogus", job)
    for call in (lambda: pool.send(0, b"x"), pool.wait):
        with pytest.raises(ProcessStateError, match="ipc=None|never started"):
            call()
    with pytest.raises(ProcessStateError, match="detach\\(\\) is for a worker"):
        pool.detach()
    with pytest.raises(ValueError, match="nothing for the workers to run"):
        Pool(2).start()
    with pytest.raises(ValueError, match="on_message needs messages"):
        Pool(2, on_message=job).start()
    assert Pool(2, job).shutdown() == {}  # never started: nothing to stop


def test_send_refuses_bad_workers(stop_pools: list[Pool]) -> None:
    pool = Pool(2, ipc="queue", on_message=lambda pool, data: None)
    stop_pools.append(pool)
    pool.start(block=False)
    with pytest.raises(ProcessStateError, match="started already"):
        pool.start()
    for wid, exc in ((2, ValueError), (-1, ValueError), (True, TypeError), ("0", TypeError)):
        with pytest.raises(exc, match="worker_id must be"):
            pool.send(wid, b"x")
    with pytest.raises(TypeError, match=r"send\(None, ...\) \(any worker\) needs a pool made with ipc='queue', "
                                        r"mode='balance'; this one has mode='orient': name a worker id from 0 to 1"):
        pool.send(None, b"x")
    with pytest.raises(ValueError, match=r"^send\(\) refuses empty data"):  # the user called send(), not push()
        pool.send(0, b"")
    with pytest.raises(TypeError, match=r"^send\(\) takes bytes or str, not float 3.5; encode other values first"):
        pool.send(0, 3.5)
    pool.shutdown(timeout=5)
    with pytest.raises(ProcessStateError, match="has stopped"):
        pool.send(0, b"x")

    balance = Pool(2, ipc="queue", mode="balance", on_message=lambda pool, data: None)
    stop_pools.append(balance)
    balance.start(block=False)
    with pytest.raises(ValueError, match="in mode='balance' any worker takes"):
        balance.send(1, b"x")
    balance.shutdown(timeout=5)

    plain = Pool(1, lambda pool, wid: time.sleep(WAIT))
    stop_pools.append(plain)
    plain.start(block=False)
    with pytest.raises(ProcessStateError, match="ipc=None"):
        plain.send(0, b"x")
    plain.shutdown(timeout=5)


def test_manager_refuses_misuse() -> None:
    with pytest.raises(TypeError, match="not target= or n="):
        Manager(target=job)
    with pytest.raises(TypeError, match=r"unknown Pool option\(s\) \['bogus'\]: a Manager takes ipc and mode, key"):
        Manager(bogus=1)
    with pytest.raises(ValueError, match="unknown ipc 'sysv'"):  # when the Manager is made, not at start()
        Manager(ipc="sysv")
    with pytest.raises(ValueError, match="backoff must be a number of seconds"):
        Manager(backoff=-1)
    manager = Manager()
    with pytest.raises(TypeError, match="func must be callable"):
        manager.add("job")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be a number of workers"):
        manager.add_batch(0, job)
    with pytest.raises(ValueError, match="nothing to start"):
        manager.start()
    with pytest.raises(ProcessStateError, match="never started"):
        manager.wait()


# -- running -------------------------------------------------------------------------------------
def test_workers_have_ids_and_the_parent_sees_every_event(results: pmq.Queue) -> None:
    events: list[Any] = []

    def target(pool: Pool, wid: int) -> int:
        results.push(f"{wid} {pool.worker_id} {pool.get_process().pid == os.getpid()}")
        return wid  # the exit code

    pool = Pool(3, target, respawn=False, name="ids")
    pool.on("start", lambda pool: events.append(("start", sorted(pool.workers))))
    pool.on("workerExit", lambda pool, wid, status: events.append(("exit", wid, status.code)))
    pool.on("stop", lambda pool: events.append(("stop",)))
    pool.start()  # blocks: respawn=False, so it returns when every worker is done
    assert sorted(take(results, 3)) == ["0 0 True", "1 1 True", "2 2 True"]
    assert events[0] == ("start", [0, 1, 2]) and events[-1] == ("stop",)
    assert sorted(events[1:-1]) == [("exit", 0, 0), ("exit", 1, 1), ("exit", 2, 2)]
    assert sorted((wid, st.code) for wid, st in pool.statuses) == [(0, 0), (1, 1), (2, 2)]
    assert pool.workers == {} and pool.stopping and "stopped" in repr(pool)


def test_an_exiting_worker_is_respawned_with_a_growing_backoff(results: pmq.Queue) -> None:
    exits: list[float] = []

    def on_exit(pool: Pool, wid: int, status: Any) -> None:
        exits.append(time.monotonic())
        if len(exits) == 5:
            pool.shutdown(timeout=5)

    pool = Pool(1, lambda pool, wid: 3, backoff=0.05, max_backoff=0.2, on_worker_exit=on_exit)
    started = time.monotonic()
    pool.start()
    assert time.monotonic() - started < WAIT
    assert [st.code for _, st in pool.statuses] == [3] * 5
    gaps = [b - a for a, b in zip(exits, exits[1:])]
    for gap, delay in zip(gaps, (0.05, 0.1, 0.2, 0.2)):  # each respawn waited its back-off
        assert gap >= delay * 0.9, (gaps, delay)


def test_a_queue_pool_sends_each_message_to_its_worker(results: pmq.Queue, stop_pools: list[Pool]) -> None:
    def on_message(pool: Pool, data: bytes) -> None:
        results.push(f"{pool.worker_id}:{data.decode()}")

    pool = Pool(3, ipc="queue", on_message=on_message,
                on_worker_stop=lambda pool, wid: results.push(f"stop {wid}"))
    stop_pools.append(pool)
    pool.start(block=False)
    for wid in (2, 0, 1):
        for k in range(2):
            pool.send(wid, f"m{wid}{k}")
    assert sorted(take(results, 6)) == ["0:m00", "0:m01", "1:m10", "1:m11", "2:m20", "2:m21"]
    queue_id = pool.queue.id
    statuses = pool.shutdown(timeout=5)
    assert sorted(statuses) == [0, 1, 2] and all(st.ok for st in statuses.values())  # WorkerStop: exit 0
    assert sorted(take(results, 3)) == ["stop 0", "stop 1", "stop 2"]
    assert pool.queue.freed and queue_registry.proc_table().get(queue_id) is None


def test_workers_message_each_other_through_the_queue(results: pmq.Queue, stop_pools: list[Pool]) -> None:
    def on_message(pool: Pool, data: bytes) -> None:
        if data == b"pass it on":
            pool.send(1, f"from {pool.worker_id}")
        else:
            results.push(f"{pool.worker_id} got {data.decode()}")

    pool = Pool(2, ipc="queue", on_message=on_message)
    stop_pools.append(pool)
    pool.start(block=False)
    pool.send(0, b"pass it on")
    assert take(results, 1) == ["1 got from 0"]
    pool.shutdown(timeout=5)


def test_a_balance_pool_lets_any_worker_take_a_message(results: pmq.Queue, stop_pools: list[Pool]) -> None:
    pool = Pool(2, ipc="queue", mode="balance", on_message=lambda pool, data: results.push(data))
    stop_pools.append(pool)
    pool.start(block=False)
    for k in range(20):
        pool.send(None, f"job {k}")
    assert sorted(take(results, 20)) == sorted(f"job {k}" for k in range(20))
    pool.shutdown(timeout=5)


def test_a_pipe_pool_carries_messages_of_any_size_on_its_bus(results: pmq.Queue, stop_pools: list[Pool]) -> None:
    def on_message(pool: Pool, data: bytes) -> None:
        if data.startswith(b"relay "):  # worker to worker, a message many chunks long
            pool.get_process(1).write(data[6:] * 40_000)
        else:
            results.push(f"{pool.worker_id}:{len(data)}:{hashlib.sha256(data).hexdigest()[:16]}")

    pool = Pool(2, ipc="pipe", on_message=on_message)
    stop_pools.append(pool)
    pool.start(block=False)
    big = os.urandom(3 * 1024 * 1024 + 7)
    pool.send(1, "one")
    pool.send(0, big)
    pool.send(0, b"relay abcdefgh")
    expected = {f"1:3:{hashlib.sha256(b'one').hexdigest()[:16]}",
                f"0:{len(big)}:{hashlib.sha256(big).hexdigest()[:16]}",
                f"1:320000:{hashlib.sha256(b'abcdefgh' * 40_000).hexdigest()[:16]}"}
    assert set(take(results, 3)) == expected
    with pytest.raises(ValueError, match=r"^send\(\) refuses empty data"):  # the user called send(), not push()
        pool.send(0, b"")
    with pytest.raises(TypeError, match=r"^send\(\) takes bytes or str, not float 3.5; encode other values first"):
        pool.send(0, 3.5)
    assert all(st.ok for st in pool.shutdown(timeout=5).values())


@pytest.mark.parametrize("ipc, message", [
    ("pipe", b"y" * 200_000),  # waits in the worker's inbox on the message bus
    ("queue", b"after"),  # waits in the SysV queue, for the worker's message type
])
def test_a_message_sent_while_its_worker_dies_waits_for_the_respawned_one(ipc: str, message: bytes, results: pmq.Queue,
                                                                          stop_pools: list[Pool]) -> None:
    def on_message(pool: Pool, data: bytes) -> None:
        if data == b"die":
            os._exit(7)
        results.push(f"{pool.worker_id} {os.getpid()} {hashlib.sha256(data).hexdigest()}")

    pool = Pool(1, ipc=ipc, on_message=on_message, backoff=0.01)
    stop_pools.append(pool)
    pool.start(block=False)
    first = pool.workers[0].pid
    pool.send(0, b"die")
    pool.send(0, message)  # sent while the worker dies: waits for the next one
    (report,) = take_while_supervising(pool, results, 1)
    wid, pid, digest = report.split()
    assert (wid, digest) == ("0", hashlib.sha256(message).hexdigest())  # the whole message, once
    assert int(pid) != first and int(pid) == pool.workers[0].pid
    assert [st.code for _, st in pool.statuses] == [7]
    pool.shutdown(timeout=5)


# -- stopping ------------------------------------------------------------------------------------
def test_shutdown_sends_sigterm_then_sigkill(results: pmq.Queue) -> None:
    def target(pool: Pool, wid: int) -> None:
        if wid == 1:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn worker
        results.push(f"ready {wid}")
        time.sleep(WAIT * 3)

    pool = Pool(2, target, on_worker_stop=lambda pool, wid: results.push(f"stop {wid}"))
    pool.start(block=False)
    assert sorted(take(results, 2)) == ["ready 0", "ready 1"]
    started = time.monotonic()
    statuses = pool.shutdown(timeout=0.3)
    assert 0.3 <= time.monotonic() - started < WAIT
    assert statuses[0].ok  # SIGTERM raised WorkerStop, on_worker_stop ran, exit 0
    assert statuses[1].signal == signal.SIGKILL
    assert statuses[0].stop_reason == statuses[1].stop_reason == "shutdown"  # the core's ladder marks them
    assert take(results, 1) == ["stop 0"]


def test_a_worker_can_ask_the_pool_to_shut_down() -> None:
    def target(pool: Pool, wid: int) -> None:
        if wid == 0:
            pool.shutdown()  # a request to the parent; SIGTERM follows
        time.sleep(WAIT * 3)

    pool = Pool(3, target, max_wait_time=WAIT)  # workers 1 and 2 may still be starting on a loaded machine
    started = time.monotonic()
    pool.start()
    assert time.monotonic() - started < WAIT * 2  # not the workers' sleep: the SIGTERM ended it
    assert sorted(wid for wid, _ in pool.statuses) == [0, 1, 2]
    assert all(st.ok for _, st in pool.statuses), "; ".join(f"{wid}: {st}" for wid, st in pool.statuses)


def test_a_detached_worker_leaves_the_pool_and_is_replaced(results: pmq.Queue, tmp_path: Any,
                                                           stop_pools: list[Pool]) -> None:
    marker = str(tmp_path / "first")
    release = pmq.attach(None)

    def target(pool: Pool, wid: int) -> None:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            results.push(f"replacement {os.getpid()}")
            time.sleep(WAIT * 3)
            return
        pool.detach()
        results.push(f"detached {os.getpid()}")
        release.pop()  # the pool no longer stops this one: the test does

    pool = Pool(1, target)
    stop_pools.append(pool)
    try:
        pool.start(block=False)
        reports = dict(r.split() for r in take_while_supervising(pool, results, 2))
        while not pool.detached:
            pool.wait(0.02)
        (detached,) = pool.detached
        assert int(reports["detached"]) == detached.pid
        assert int(reports["replacement"]) == pool.workers[0].pid != detached.pid
        pool.shutdown(timeout=5)
        assert detached.is_alive()  # not the pool's any more
        assert [wid for wid, _ in pool.statuses] == [0]  # only the replacement was stopped
        release.push(b"go")
        assert detached.join(timeout=WAIT).ok
    finally:
        release.free()


# -- errors --------------------------------------------------------------------------------------
def test_an_error_in_a_parent_callback_stops_and_cleans_everything() -> None:
    def boom(pool: Pool) -> None:
        raise RuntimeError("on_start failed")

    pool = Pool(3, lambda pool, wid: time.sleep(WAIT * 3), ipc="queue", on_start=boom)
    with pytest.raises(RuntimeError, match="on_start failed"):
        pool.start()
    assert pool.workers == {} and pool.queue.freed and len(pool.statuses) == 3


def test_keyboard_interrupt_during_start_stops_and_cleans_everything() -> None:
    def interrupt(signo: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    pool = Pool(2, lambda pool, wid: time.sleep(WAIT * 3), ipc="pipe",
                on_start=lambda pool: signal.setitimer(signal.ITIMER_REAL, 0.2))
    started = time.monotonic()
    outer = signal.getitimer(signal.ITIMER_REAL)[0]  # pytest-timeout's alarm, if any
    try:
        with pytest.raises(KeyboardInterrupt):
            pool.start()  # blocked in its poll loop when the interrupt comes
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, outer - (time.monotonic() - started)))
    assert pool.workers == {} and len(pool.statuses) == 2 and pool.stopping


def test_a_failed_fork_stops_the_workers_already_started(monkeypatch: pytest.MonkeyPatch) -> None:
    real_start = Process.start
    calls = []

    def flaky_start(self: Process, *args: Any, **kwargs: Any) -> int:
        calls.append(self)
        if len(calls) == 3:
            raise OSError(11, "fork() failed, nothing was started")
        return real_start(self, *args, **kwargs)

    monkeypatch.setattr(Process, "start", flaky_start)
    pool = Pool(4, lambda pool, wid: time.sleep(WAIT * 3), ipc="queue")
    with pytest.raises(OSError, match="fork\\(\\) failed"):
        pool.start()
    assert len(calls) == 3 and pool.workers == {} and pool.queue.freed
    assert len(pool.statuses) == 2


# -- Manager -------------------------------------------------------------------------------------
def test_manager_runs_each_function_in_its_own_worker(results: pmq.Queue) -> None:
    manager = Manager(respawn=False)
    first = manager.add(lambda pool, wid: results.push(f"first {wid}"))
    batch = manager.add_batch(2, lambda pool, wid: results.push(f"batch {wid}"))
    assert (first, batch) == (0, [1, 2])
    pool = manager.start()
    assert sorted(take(results, 3)) == ["batch 1", "batch 2", "first 0"]
    assert manager.wait() is True and len(pool.statuses) == 3
    with pytest.raises(ProcessStateError, match="add\\(\\) before start"):
        manager.add(job)
    with pytest.raises(ProcessStateError, match="started already"):
        manager.start()


def test_manager_with_a_queue(results: pmq.Queue, stop_pools: list[Pool]) -> None:
    manager = Manager(ipc="queue", on_message=lambda pool, data: results.push(f"{pool.worker_id} {data.decode()}"))
    manager.add_batch(2, lambda pool, wid: results.push(f"up {wid}"))
    pool = manager.start(block=False)
    stop_pools.append(pool)
    assert sorted(take(results, 2)) == ["up 0", "up 1"]
    manager.send(1, "hello")
    assert take(results, 1) == ["1 hello"]
    assert all(st.ok for st in manager.shutdown(timeout=5).values())


# -- signals to the pool's process, reload ---------------------------------------------------------
_SCRIPT = """
import os, signal, sys, time
from procmagic import Pool

def target(pool, wid):
    time.sleep(600)

def report(*words):
    print(*words, flush=True)

pool = Pool(2, target, ipc="queue", on_worker_exit=lambda pool, wid, st: report("exit", wid, st.code),
            on_stop=lambda pool: report("on_stop", pool.queue.freed))
pool.on("start", lambda pool: report("ready", pool.queue.id, *[p.pid for p in pool.workers.values()]))
if sys.argv[1] == "block":
    pool.start()
else:
    pool.start(block=False)
    while pool.running:
        signal.pause()  # not supervising: the pool's handler stops it right here
report("returned", pool.running)
"""


@pytest.mark.parametrize("how", ["block", "no-block"])
def test_sigterm_to_a_script_running_a_pool_stops_it_cleanly(how: str) -> None:
    script = subprocess.Popen([sys.executable, "-c", _SCRIPT, how], stdout=subprocess.PIPE, text=True)
    try:
        with deadline():
            words = script.stdout.readline().split()  # type: ignore[union-attr]
        assert words[0] == "ready", words
        queue_id, pids = int(words[1]), [int(w) for w in words[2:]]
        assert queue_id in sysv_queue_ids()
        script.send_signal(signal.SIGTERM)
        out, _ = script.communicate(timeout=WAIT)
    finally:
        if script.poll() is None:
            script.kill()
            script.communicate()
    assert script.returncode == 0, out
    lines = out.splitlines()
    assert sorted(lines[:2]) == ["exit 0 0", "exit 1 0"]  # each stopped by SIGTERM (WorkerStop), none killed
    assert lines[2:] == ["on_stop True", "returned False"]
    assert queue_id not in sysv_queue_ids()
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)


def test_sigint_to_a_script_blocked_in_start_stops_the_pool_then_interrupts_it() -> None:
    script = subprocess.Popen([sys.executable, "-c", _SCRIPT, "block"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        with deadline():
            words = script.stdout.readline().split()  # type: ignore[union-attr]
        assert words[0] == "ready", words
        queue_id, pids = int(words[1]), [int(w) for w in words[2:]]
        script.send_signal(signal.SIGINT)
        out, err = script.communicate(timeout=WAIT)
    finally:
        if script.poll() is None:
            script.kill()
            script.communicate()
    assert script.returncode == -signal.SIGINT and "KeyboardInterrupt" in err, (script.returncode, err)
    lines = out.splitlines()
    assert sorted(lines[:2]) == ["exit 0 0", "exit 1 0"] and lines[2:] == ["on_stop True"]  # start() did not return
    assert queue_id not in sysv_queue_ids()
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)


def test_one_sigterm_stops_every_pool_of_the_process() -> None:
    # max_wait_time=WAIT: on a loaded machine a worker may take seconds to put its SIGTERM handler
    # in place (the SIGTERM comes right after the fork) and as long again to act on the signal
    pools = [Pool(1, lambda pool, wid: time.sleep(WAIT * 3), ipc="queue", name=f"p{k}", max_wait_time=WAIT)
             for k in range(2)]
    for pool in pools:
        pool.start(block=False)
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # nothing supervises: the handlers stop both at once
        assert [pool.running for pool in pools] == [False, False]
        assert [(pool.queue.freed, [st.code for _, st in pool.statuses]) for pool in pools] == [(True, [0])] * 2
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # what was there before the pools
    finally:
        for pool in pools:
            pool.shutdown(timeout=5)


_TWO_POOLS = """
import os, signal, time
from procmagic import Pool
first, second = (Pool(1, lambda pool, wid: time.sleep(600)) for _ in range(2))
first.start(block=False)
second.start(block=False)
first.shutdown()   # stopped out of order: second's handler gives SIGTERM back to first's, now stale
print("first stopped", flush=True)
while second.running:
    signal.pause()
print("second stopped", flush=True)
while True:
    signal.pause()  # the next SIGTERM ends the process, as it would without any pool
"""


def test_sigterm_ends_the_process_once_its_pools_stopped_in_any_order() -> None:
    script = subprocess.Popen([sys.executable, "-c", _TWO_POOLS], stdout=subprocess.PIPE, text=True)
    try:
        with deadline():
            assert script.stdout.readline() == "first stopped\n"  # type: ignore[union-attr]
            script.send_signal(signal.SIGTERM)
            assert script.stdout.readline() == "second stopped\n"  # type: ignore[union-attr]
            script.send_signal(signal.SIGTERM)
            script.wait()
    finally:
        if script.poll() is None:
            script.kill()
        script.communicate()
    assert script.returncode == -signal.SIGTERM


def test_keyboard_interrupt_stops_the_pool_with_its_callbacks() -> None:
    events: list[str] = []

    def interrupt(signo: int, frame: Any) -> None:
        raise KeyboardInterrupt

    pool = Pool(2, lambda pool, wid: time.sleep(WAIT * 3), ipc="queue",
                on_worker_exit=lambda pool, wid, st: events.append(f"exit {wid} {st.code}"),
                on_stop=lambda pool: events.append("stop"))
    pool.start(block=False)
    previous = signal.signal(signal.SIGALRM, interrupt)
    outer = signal.getitimer(signal.ITIMER_REAL)[0]
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            pool.wait()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, outer - (time.monotonic() - started)))
    assert sorted(events[:2]) == ["exit 0 0", "exit 1 0"] and events[2:] == ["stop"]
    assert pool.queue.freed and not pool.running


def test_reload_restarts_one_worker_at_a_time(results: pmq.Queue) -> None:
    seen: list[tuple[int, int, dict[int, int]]] = []

    def on_exit(pool: Pool, wid: int, status: Any) -> None:  # what runs while each old worker ends
        seen.append((wid, status.pid, {w: p.pid for w, p in pool.workers.items()}))

    pool = Pool(3, lambda pool, wid: time.sleep(WAIT * 3), on_worker_exit=on_exit)
    pool.start(block=False)
    try:
        old = {w: p.pid for w, p in pool.workers.items()}
        assert pool.reload(timeout=5) == [0, 1, 2]
        new = {w: p.pid for w, p in pool.workers.items()}
        assert sorted(new) == [0, 1, 2] and all(new[w] != old[w] for w in old)
        assert [(wid, pid) for wid, pid, _ in seen] == [(0, old[0]), (1, old[1]), (2, old[2])]
        for wid, _, live in seen:  # when worker wid stopped, the ones before it were new already
            assert all(live[w] == new[w] for w in range(wid)) and all(live[w] == old[w] for w in range(wid + 1, 3))
        assert all(st.code == 0 for _, st in pool.statuses)  # stopped by the ladder's SIGTERM
    finally:
        pool.shutdown(timeout=5)


def test_a_worker_that_fails_to_start_stops_the_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = Pool(3, lambda pool, wid: time.sleep(WAIT * 3), backoff=0.01)
    pool.start(block=False)
    try:
        old = {w: p.pid for w, p in pool.workers.items()}
        real_start = Process.start

        def failing_for_worker_1(self: Process, *args: Any, **kwargs: Any) -> int:
            if self.worker == 1:
                raise OSError(11, "fork() failed, nothing was started")
            return real_start(self, *args, **kwargs)

        monkeypatch.setattr(Process, "start", failing_for_worker_1)
        with pytest.raises(pool_module.ReloadError, match=r"stopped at worker 1: its fork failed.*workers \[0\] were "
                           r"restarted, workers \[2\] still run their old processes"):
            pool.reload(timeout=5)
        monkeypatch.setattr(Process, "start", real_start)
        assert pool.workers[0].pid != old[0] and pool.workers[2].pid == old[2] and 1 not in pool.workers
        with deadline():
            while 1 not in pool.workers:  # the pool goes on: worker 1 is forked after its back-off
                pool.wait(0.02)
        assert pool.running
    finally:
        pool.shutdown(timeout=5)


def test_a_queue_workers_process_pushes_to_the_parent_and_pops_its_own(stop_pools: list[Pool]) -> None:
    def on_message(pool: Pool, data: bytes) -> None:
        proc = pool.get_process()
        proc.push(b"%d got %s" % (pool.worker_id, data))  # orient: to the parent (PARENT)

    pool = Pool(2, ipc="queue", on_message=on_message)
    stop_pools.append(pool)
    pool.start(block=False)
    pool.send(1, b"x")
    pool.send(0, b"y")
    with deadline():
        got = sorted(pool.queue.pop() for _ in range(2))
    assert got == [b"0 got y", b"1 got x"]
    pool.shutdown(timeout=5)


def test_sigusr1_while_start_blocks_reloads_the_workers(results: pmq.Queue, tmp_path: Any) -> None:
    def target(pool: Pool, wid: int) -> None:
        mine = tmp_path / f"worker-{wid}"
        if mine.exists():  # the second generation: reloaded
            results.push(f"new {wid} {os.getpid()}")
            if wid == 1:
                pool.shutdown()  # the last one reloaded ends the test
        else:
            mine.touch()
            results.push(f"old {wid} {os.getpid()}")
            if wid == 0:
                while not (tmp_path / "worker-1").exists():
                    time.sleep(0.01)
                os.kill(pool.master_pid, signal.SIGUSR1)  # the pool's loop reloads
        time.sleep(WAIT * 3)

    pool = Pool(2, target, max_wait_time=WAIT)  # the reload's wait for each new worker, on a loaded machine
    with deadline(WAIT * 4):
        pool.start()
    reports = take(results, 4)
    old = {r.split()[1]: r.split()[2] for r in reports if r.startswith("old")}
    new = {r.split()[1]: r.split()[2] for r in reports if r.startswith("new")}
    assert set(old) == set(new) == {"0", "1"} and all(old[w] != new[w] for w in old)
    assert [wid for wid, _ in pool.statuses][:2] == [0, 1]  # the old ones, in order
    assert all(st.ok for _, st in pool.statuses)
