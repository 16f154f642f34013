"""Swoole's own process tests, ported to procmagic: one test per ``.phpt`` file of swoole-src's
``tests/swoole_process/`` and ``tests/swoole_process_pool/`` that this suite did not cover
elsewhere, named after it (``test_<dir>__<file>``). Each keeps what the phpt asserts; where
procmagic differs on purpose, the comment says how (``docs/swoole.md`` has the mapping).

Workers report to the test through a queue; every wait is bounded by ``deadline()``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from typing import Any

import pytest
import sysv_ipc

import procmagic
from procmagic import Pool, Process, ProcessStateError
from procmagic.core import affinity
from procmagic.core import queue as pmq
from procmagic.core import queue_limits

from .helpers import deadline

WAIT = 20.0


pytestmark = pytest.mark.usefixtures("queue_records")




def take(queue: pmq.Queue, n: int, pool: Pool | None = None) -> list[str]:
    got: list[str] = []
    try:
        with deadline():
            while len(got) < n:
                got.append(queue.pop().decode())
    except TimeoutError:
        why = f"; the pool's workers ended: {pool.statuses}" if pool is not None else ""
        raise AssertionError(f"only {got} of {n} reports{why}") from None
    return got


def run_child(target: Any) -> Any:
    proc = Process(target, pipe=None)
    proc.start()
    return proc.join(timeout=WAIT)


# -- tests/swoole_process ------------------------------------------------------------------------
def test_swoole_process__setaffinity(results: pmq.Queue) -> None:
    """Narrow to CPU 0, then widen again: the rule is the CPUs the process may use, not its mask."""
    allowed = affinity.allowed_cpus()

    def target(proc: Process) -> None:
        proc.set_affinity([allowed[0]])
        results.push(repr(sorted(os.sched_getaffinity(0))))
        proc.set_affinity(allowed[:2])
        results.push(repr(sorted(os.sched_getaffinity(0))))

    assert run_child(target).ok
    assert take(results, 2) == [repr([allowed[0]]), repr(allowed[:2])]


def test_swoole_process__getaffinity(results: pmq.Queue) -> None:
    def target(proc: Process) -> None:
        results.push(repr(proc.get_affinity()))

    assert run_child(target).ok
    assert take(results, 1) == [repr(sorted(os.sched_getaffinity(0)))]


def test_swoole_process__ctor() -> None:
    """A Process made and dropped never runs its target."""
    ran: list[int] = []
    proc = Process(lambda proc: ran.append(1))
    del proc
    assert ran == []


def test_swoole_process__start() -> None:
    proc = Process(lambda proc: print("SUCCESS"), pipe=None)
    assert proc.start() > 0
    proc.close()
    assert proc.join(timeout=WAIT).ok


def test_swoole_process__exit() -> None:
    proc = Process(lambda proc: proc.exit(9), pipe=None)
    proc.start()
    assert proc.join(timeout=WAIT).code == 9


def test_swoole_process__kill(fresh_wait: None) -> None:
    proc = Process(lambda proc: time.sleep(WAIT * 3), pipe=None)
    pid = proc.start()
    procmagic.kill(pid, signal.SIGKILL)
    status = procmagic.wait(timeout=WAIT)
    assert status is not None and status.pid == pid and status.signal == signal.SIGKILL


def test_swoole_process__wait(fresh_wait: None) -> None:
    """wait() returns pid, exit code and signal: 0/0, 1/0, then 0/SIGTERM."""
    targets = [lambda proc: None, lambda proc: sys.exit(1), lambda proc: os.kill(os.getpid(), signal.SIGTERM)]
    for target, (code, sig) in zip(targets, [(0, None), (1, None), (None, signal.SIGTERM)]):
        proc = Process(target, pipe=None)
        pid = proc.start()
        status = procmagic.wait(timeout=WAIT)
        assert status is not None and status.pid == pid, status
        assert (status.code, status.signal) == (code, sig), status


def test_swoole_process__process_id() -> None:
    """Ids count up by one per Process; the child sees its own."""
    procs = [Process(lambda proc: proc.write(str(proc.id)) and None, pipe="dgram") for _ in range(3)]
    assert [p.id - procs[0].id for p in procs] == [0, 1, 2]
    for proc in procs:
        proc.start()
        assert proc.read(timeout=WAIT) == str(proc.id).encode()
        assert proc.join(timeout=WAIT).ok
        proc.close()


def test_swoole_process__write() -> None:
    """write() returns the bytes written; the parent reads them (also swoole's read.phpt)."""
    proc = Process(lambda proc: proc.write(str(proc.write("SUCCESS"))) and None, pipe="dgram")
    proc.start()
    assert [proc.read(timeout=WAIT), proc.read(timeout=WAIT)] == [b"SUCCESS", b"7"]
    assert proc.join(timeout=WAIT).ok
    proc.close()


def test_swoole_process__redirect() -> None:
    proc = Process(lambda proc: print("SUCCESS", end=""), redirect=True)
    proc.start()
    assert proc.read(timeout=WAIT) == b"SUCCESS"
    assert proc.join(timeout=WAIT).ok
    proc.close()


def test_swoole_process__exec() -> None:
    """exec() in the child replaces it; its output comes through the redirected pipe."""
    proc = Process(lambda proc: proc.exec("printf", ["HELLO"]), redirect=True)
    proc.start()
    assert proc.read(timeout=WAIT) == b"HELLO"
    assert proc.join(timeout=WAIT).ok
    proc.close()
    with pytest.raises(ProcessStateError, match="must be called inside the child"):
        proc.exec("printf", [" WORLD"])  # Swoole execs the parent itself; procmagic refuses


def test_swoole_process__timeout() -> None:
    """A read with a time-out gives up (TimeoutError where Swoole returns false)."""
    proc = Process(lambda proc: time.sleep(WAIT * 3), pipe="dgram")
    proc.start()
    proc.set_timeout(0.3)
    with pytest.raises(TimeoutError):
        proc.read()
    proc.kill(signal.SIGKILL)
    assert proc.join(timeout=WAIT).signal == signal.SIGKILL
    proc.close()


def test_swoole_process__read_invalid_size() -> None:
    proc = Process(lambda proc: None, pipe="dgram")
    with pytest.raises(ValueError):
        proc.read(0)
    proc.close()


def test_swoole_process__name() -> None:
    title = f"SWOOLE_PROCESS_TEST_{os.getpid()}"

    def target(proc: Process) -> None:
        proc.name(title)
        proc.write(b"named")
        time.sleep(WAIT * 3)

    proc = Process(target, pipe="dgram")
    pid = proc.start()
    assert proc.read(timeout=WAIT) == b"named"
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert title.encode() in f.read()
    proc.kill(signal.SIGKILL)
    proc.join(timeout=WAIT)
    proc.close()


def test_swoole_process__priority(results: pmq.Queue) -> None:
    def target(proc: Process) -> None:
        proc.set_priority(12)
        results.push(str(proc.get_priority()))

    assert run_child(target).ok
    assert take(results, 1) == ["12"]


def test_swoole_process__priority_error() -> None:
    proc = Process(lambda proc: None, pipe=None)
    for bad in (-1000, None, 20):
        with pytest.raises(ValueError, match="priority must be a nice value from -20 to 19"):
            proc.set_priority(bad)  # type: ignore[arg-type]


def test_swoole_process__alarm(results: pmq.Queue) -> None:
    """alarm(10 ms) ticks until the handler clears it after 11 ticks."""
    def target(proc: Process) -> None:
        ticks = [0]

        def on_alarm(signo: int, frame: Any) -> None:
            ticks[0] += 1
            if ticks[0] > 10:
                procmagic.alarm(-1)

        procmagic.signal(signal.SIGALRM, on_alarm)
        procmagic.alarm(10_000)
        while ticks[0] <= 10:
            signal.pause()
        results.push(str(ticks[0]))

    assert run_child(target).ok
    assert take(results, 1) == ["11"]


def test_swoole_process__wait_signal() -> None:
    """A child's own SIGINT handler runs (its output reaches the redirected pipe); exit 0."""
    def target(proc: Process) -> None:
        seen = []
        # os.write, not print: the handler may run while print("START") is still flushing
        procmagic.signal(signal.SIGINT, lambda signo, frame: seen.append(os.write(1, b"SIGINT\n")))
        print("START", flush=True)
        while not seen:
            signal.pause()

    proc = Process(target, redirect=True)
    pid = proc.start()
    assert proc.read(timeout=WAIT) == b"START\n"
    procmagic.kill(pid, signal.SIGINT)
    assert proc.read(timeout=WAIT) == b"SIGINT\n"
    status = proc.join(timeout=WAIT)
    assert (status.code, status.signal) == (0, None)
    proc.close()


def test_swoole_process__process_exec() -> None:
    """exec() of another Python that echoes its stdin: write to it, read its answer."""
    echo = "import sys; print('Python: ' + sys.stdin.readline(), end='', flush=True)"
    proc = Process(lambda proc: proc.exec(sys.executable, ["-c", echo]), redirect=True)
    proc.start()
    proc.write("Hello World\n")
    assert proc.read(timeout=WAIT) == b"Python: Hello World\n"
    assert proc.join(timeout=WAIT).ok
    proc.close()


def test_swoole_process__process_select() -> None:
    """The parent's end of the pipe is an fd to select() on."""
    proc = Process(lambda proc: proc.write("hello master\n") and proc.exit(0), pipe="dgram")
    proc.start()
    readable, _, _ = select.select([proc.pipe], [], [], WAIT)
    assert readable == [proc.pipe] and proc.read() == b"hello master\n"
    assert proc.join(timeout=WAIT).ok
    proc.close()


def test_swoole_process__exception() -> None:
    """An exception in the child ends it with exit 1 and its traceback on stderr (Swoole: a fatal error)."""
    def target(proc: Process) -> None:
        raise NameError("name 'AAAA' is not defined")

    proc = Process(target, redirect=True)
    proc.start()
    out = b""
    with deadline():
        while chunk := proc.read():
            out += chunk
    assert b"NameError: name 'AAAA' is not defined" in out and b"Traceback" in out
    assert proc.join(timeout=WAIT).code == 1
    proc.close()


def test_set_affinity_refuses_cpus_outside_the_allowed_set() -> None:
    proc = Process(lambda proc: None, pipe=None)
    outside = max(affinity.allowed_cpus()) + 1
    with pytest.raises(ValueError, match=r"are not all available: this process may use CPUs \[.*\].*not \[%d\]" % outside):
        proc.set_affinity([0, outside])


def test_swoole_process__pop() -> None:
    proc = Process(lambda proc: None, pipe=None)
    proc.use_queue()
    proc.push("SUCCESS")
    assert proc.pop() == b"SUCCESS"
    proc.free_queue()


def test_swoole_process__push() -> None:
    proc = Process(lambda proc: None, pipe=None)
    proc.use_queue()
    proc.start()
    proc.push("\0")  # one NUL byte is a message (empty data is refused)
    proc.free_queue()
    assert proc.join(timeout=WAIT).ok


def test_swoole_process__freeQueue() -> None:
    proc = Process(lambda proc: None, pipe=None)
    assert proc.use_queue() is proc.queue
    proc.start()
    proc.free_queue()
    assert proc.queue.freed and proc.join(timeout=WAIT).ok


def test_swoole_process__useQueue(results: pmq.Queue) -> None:
    def target(proc: Process) -> None:
        results.push(proc.pop())

    proc = Process(target, pipe=None)
    proc.use_queue()
    proc.start()
    proc.push("SUCCESS")
    assert take(results, 1) == ["SUCCESS"]
    assert proc.join(timeout=WAIT).ok
    proc.free_queue()


def test_swoole_process__process_push(results: pmq.Queue) -> None:
    def target(proc: Process) -> None:
        results.push(proc.pop())
        proc.exit(0)

    proc = Process(target, pipe=None)
    proc.use_queue()
    proc.start()
    proc.push("hello worker\n")
    assert take(results, 1) == ["hello worker\n"]
    assert proc.join(timeout=WAIT).ok
    proc.free_queue()


def test_swoole_process__process_msgqueue() -> None:
    proc = Process(lambda proc: None, pipe=None)
    proc.use_queue()
    sent = [f"hello worker[{i}]".encode() for i in range(1, 11)]
    for data in sent:
        proc.push(data)
    stat = proc.stat_queue()
    assert (stat.messages, stat.bytes) == (10, sum(map(len, sent)))
    proc.free_queue()


def test_swoole_process__msgq_capacity() -> None:
    """A queue given a capacity larger than kernel.msgmnb holds that many bytes (Swoole: 64 MiB for
    32 MiB of messages; here 2 MiB for 1 MiB). It needs CAP_SYS_RESOURCE, which procmagic checks."""
    big = 2 * 1024 * 1024
    if big > pmq.msgmnb() and not queue_limits.has_cap_sys_resource():
        pytest.skip("a capacity above kernel.msgmnb needs CAP_SYS_RESOURCE")
    proc = Process(lambda proc: None, pipe=None)
    proc.use_queue(mode="orient", capacity=big)
    try:
        total, messages = 0, []
        while total < big // 2:
            data = os.urandom(4000 + len(messages) % 4000)
            messages.append(data)
            total += len(data)
            proc.push(data, to=pmq.PARENT)
        assert proc.stat_queue().bytes == total > pmq.msgmnb()
        with deadline():
            assert [proc.pop() for _ in messages] == messages
        assert proc.stat_queue().bytes == 0
    finally:
        proc.free_queue()


# -- tests/swoole_process_pool -------------------------------------------------------------------
def test_swoole_process_pool__bug_2652(results: pmq.Queue) -> None:
    """getProcess($workerId) with the worker's own id, inside that worker."""
    key = 0x5EED2652

    def target(pool: Pool, wid: int) -> None:
        me = pool.get_process(wid)
        me.use_queue(key)
        pool.get_process(wid).push("test")
        results.push(pool.get_process(wid).pop())
        me.free_queue()
        pool.shutdown()

    pool = Pool(1, target, respawn=False)
    pool.start()
    assert take(results, 1) == ["test"]
    assert [st.code for _, st in pool.statuses] == [0]


def test_swoole_process_pool__getprocess_1(results: pmq.Queue) -> None:
    def target(pool: Pool, wid: int) -> None:
        results.push(str(pool.get_process().pid == os.getpid()))
        pool.shutdown()

    pool = Pool(1, target, respawn=False)
    pool.start()
    assert take(results, 1) == ["True"]


def test_swoole_process_pool__shutdown() -> None:
    """A worker's shutdown() stops the pool: its sleep is cut short by the pool's SIGTERM."""
    pool = Pool(1, lambda pool, wid: (pool.shutdown(), time.sleep(WAIT * 3)), respawn=False)
    pool.start()
    assert [st.code for _, st in pool.statuses] == [0] and not pool.running


def test_swoole_process_pool__master_pid(results: pmq.Queue) -> None:
    """SIGTERM to the pool's process (its master_pid) stops the pool cleanly; start() returns."""
    def target(pool: Pool, wid: int) -> None:
        results.push(f"{pool.master_pid} {pool.worker_pid == os.getpid()}")
        os.kill(pool.master_pid, signal.SIGTERM)
        time.sleep(WAIT * 3)

    stopped: list[bool] = []
    pool = Pool(1, target, on_stop=lambda pool: stopped.append(pool.running))
    pool.start()
    assert take(results, 1) == [f"{os.getpid()} True"]
    assert pool.master_pid == os.getpid() and stopped == [False]
    assert [st.code for _, st in pool.statuses] == [0]  # stopped by the ladder (WorkerStop), not killed


def test_swoole_process_pool__master_callback(results: pmq.Queue) -> None:
    """running/worker_running/stopping: with its own SIGTERM handler, a worker never sees stopping."""
    def target(pool: Pool, wid: int) -> None:
        results.push(f"start {pool.running} {pool.worker_running} {pool.worker_id} {pool.worker_pid == os.getpid()}")

        def own(signo: int, frame: Any) -> None:
            raise SystemExit(0)  # PHP's sleep() returns on a signal; Python's resumes, so leave here

        signal.signal(signal.SIGTERM, own)
        pool.shutdown()
        time.sleep(WAIT * 3)

    def on_worker_stop(pool: Pool, wid: int) -> None:
        results.push(f"stop {pool.running} {pool.worker_running} {pool.stopping}")

    seen: list[str] = []
    pool = Pool(1, target, on_worker_stop=on_worker_stop, respawn=False, max_wait_time=WAIT,  # a loaded machine
                on_start=lambda pool: seen.append(f"start {pool.running}"),
                on_stop=lambda pool: seen.append(f"stop {pool.running}"))
    pool.start()
    assert take(results, 2, pool) == ["start True True 0 True", "stop False False False"]
    assert seen == ["start True", "stop False"]


def test_swoole_process_pool__msgqueue_2(results: pmq.Queue) -> None:
    """Each worker's own Process carries the pool's queue: push in one, pop in the other."""
    def target(pool: Pool, wid: int) -> None:
        if wid == 0:
            pool.get_process().push("hello world\n")
        else:
            results.push(pool.get_process().pop())
            pool.shutdown()
            time.sleep(WAIT * 3)

    def on_worker_stop(pool: Pool, wid: int) -> None:
        if wid == 1:
            results.push("worker stop")

    pool = Pool(2, target, ipc="queue", mode="balance", key=0x70000001, on_worker_stop=on_worker_stop)
    pool.start()
    assert take(results, 2) == ["hello world\n", "worker stop"]


def test_swoole_process_pool__getprocess_2(results: pmq.Queue) -> None:
    """A message larger than a pipe's 64 KiB, from worker 0 to worker 1 through get_process(1)."""
    n = 70000

    def target(pool: Pool, wid: int) -> None:
        if wid == 0:
            assert pool.get_process().pid == os.getpid() and pool.get_process(1).id == 1
            pool.get_process(1).write(b"A" * n)
            with pytest.raises(ValueError, match="worker_id must be from 0 to 1"):
                pool.get_process(2)
            if pool.recv() == b"shutdown":
                results.push("shutdown")
                pool.shutdown()
                time.sleep(WAIT * 3)

    def on_message(pool: Pool, data: bytes) -> None:
        results.push(str(len(data)))
        pool.get_process(0).write("shutdown")

    pool = Pool(2, target, ipc="pipe", on_message=on_message)
    pool.start()
    assert take(results, 2) == [str(n), "shutdown"]


def test_swoole_process_pool__getprocess_3(results: pmq.Queue) -> None:
    """Worker 0 kills worker 1 by pid; once it is respawned, get_process(1) shows the new pid."""
    def target(pool: Pool, wid: int) -> None:
        if wid == 0:
            peer = pool.get_process(1)
            with deadline():
                while peer.pid is None:
                    time.sleep(0.01)
                first = peer.pid
                os.kill(first, signal.SIGTERM)
                while peer.pid in (first, None):
                    time.sleep(0.01)
            results.push(str(peer.pid != first))
            pool.shutdown()
        time.sleep(WAIT * 3)

    pool = Pool(2, target, backoff=0.01)
    pool.start()
    assert take(results, 1) == ["True"]


def test_swoole_process_pool__message_bus(results: pmq.Queue) -> None:
    """Messages from 8 KiB to 1 MiB, worker to worker, arrive whole and in order."""
    sizes = [8192, 65536 - 5, 65536, 1024 * 1024, 123_457, 8193]
    blobs = [os.urandom(size) for size in sizes]

    def target(pool: Pool, wid: int) -> None:
        if wid == 0:
            for blob in blobs:
                pool.get_process(1).write(blob)

    received: list[bytes] = []

    def on_message(pool: Pool, data: bytes) -> None:
        received.append(data)
        if len(received) == len(blobs):
            results.push(str(received == blobs))
            pool.shutdown()

    pool = Pool(2, target, ipc="pipe", on_message=on_message)
    pool.start()
    assert take(results, 1) == ["True"]


def test_swoole_process_pool__send_message_invalid_worker(results: pmq.Queue) -> None:
    def target(pool: Pool, wid: int) -> None:
        if wid == 0:
            for bad in (-1, 2):
                try:
                    pool.send(bad, "hello")
                except ValueError as exc:
                    results.push(str(exc))
            pool.shutdown()

    pool = Pool(2, target, ipc="pipe", on_message=lambda pool, data: None)
    pool.start()
    assert take(results, 2) == [f"worker_id must be from 0 to 1 (pool 'pool' has 2), got {bad}" for bad in (-1, 2)]


def test_swoole_process_pool__start_pool_twice_in_same_process() -> None:
    for _ in range(2):
        pool = Pool(1, lambda pool, wid: pool.shutdown(), respawn=False)
        pool.start()
        assert not pool.running


def test_swoole_process_pool__reload(results: pmq.Queue) -> None:
    """SIGUSR1 to the pool's process restarts every worker, and the pool goes on."""
    def target(pool: Pool, wid: int) -> None:
        results.push(f"{wid} {os.getpid()}")
        time.sleep(WAIT * 3)

    pool = Pool(2, target)
    pool.start(block=False)
    try:
        first = dict(r.split() for r in take(results, 2))
        os.kill(os.getpid(), signal.SIGUSR1)  # not supervising now: the handler reloads at once
        second = dict(r.split() for r in take(results, 2))
        assert set(first) == set(second) == {"0", "1"}
        assert all(first[w] != second[w] for w in first)
        assert {str(w): str(p.pid) for w, p in pool.workers.items()} == second
        assert pool.running
    finally:
        pool.shutdown(timeout=5)


def test_swoole_process_pool__msgqueue(results: pmq.Queue) -> None:
    """Messages put on a keyed queue by another program (raw sysv_ipc, any type) reach on_message."""
    key, n = 0x70000002, 100
    count = [0]

    def on_message(pool: Pool, data: bytes) -> None:
        assert len(json.loads(data)["data"]) == 1024
        count[0] += 1
        if count[0] == n:
            results.push("DONE")
            pool.shutdown()

    pool = Pool(1, ipc="queue", mode="balance", key=key, on_message=on_message,
                on_start=lambda pool: [sysv_ipc.MessageQueue(key).send(
                    json.dumps({"data": "x" * 1024, "index": i}), type=i) for i in range(1, n + 1)])
    pool.start()
    assert take(results, 1) == ["DONE"]


def test_swoole_process_pool__max_wait_time(results: pmq.Queue) -> None:
    """Workers that ignore SIGTERM are killed once max_wait_time has passed; on_stop still runs."""
    def target(pool: Pool, wid: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        results.push(str(wid))
        if wid == 0:
            for _ in range(4):  # once every worker ignores SIGTERM
                results.pop()
            pool.shutdown()
        time.sleep(WAIT * 3)

    stopped: list[str] = []
    pool = Pool(4, target, max_wait_time=0.5, on_stop=lambda pool: stopped.append("shutdown"))
    started = time.monotonic()
    pool.start()
    assert time.monotonic() - started < WAIT and stopped == ["shutdown"]
    assert sorted(wid for wid, _ in pool.statuses) == [0, 1, 2, 3]
    assert all(st.signal == signal.SIGKILL for _, st in pool.statuses)


def test_swoole_process_pool__export_socket(results: pmq.Queue) -> None:
    """Two workers talk through worker 0's channel; here, each other's inbox on the bus."""
    def target(pool: Pool, wid: int) -> None:
        if wid == 0:
            results.push(pool.recv())
            results.push("proc0 stop")  # before it writes: worker 1's shutdown() may stop it at once
            pool.get_process(1).write("hello proc1\n")
        else:
            pool.get_process(0).write("hello proc0\n")
            results.push(pool.recv())
            results.push("proc1 stop")
            pool.shutdown()
            time.sleep(WAIT * 3)

    pool = Pool(2, target, ipc="pipe", respawn=False)
    pool.start()
    assert take(results, 4) == ["hello proc0\n", "proc0 stop", "hello proc1\n", "proc1 stop"]



def test_swoole_process_pool__message_bus_sync(results: pmq.Queue) -> None:
    """One message of 8 KiB to 1 MiB from worker 0 to worker 1 (getprocess_5 is the same shape)."""
    blob = os.urandom(int.from_bytes(os.urandom(3), "big") % (1024 * 1024 - 8192) + 8192)

    def target(pool: Pool, wid: int) -> None:
        if wid == 0:
            pool.send(1, blob)

    def on_message(pool: Pool, data: bytes) -> None:
        results.push(str(data == blob))
        pool.shutdown()

    pool = Pool(2, target, ipc="pipe", on_message=on_message)
    pool.start()
    assert take(results, 1, pool) == ["True"]


def test_swoole_process_pool__start_twice() -> None:
    """Swoole starts a stopped pool again; procmagic asks for a new Pool (a pool's queue, bus and
    statuses belong to one run), which start_pool_twice_in_same_process shows working."""
    pool = Pool(1, lambda pool, wid: pool.shutdown(), respawn=False)
    pool.start()
    with pytest.raises(ProcessStateError, match="was started already .*make a new Pool"):
        pool.start()
