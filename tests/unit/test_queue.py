"""SysV message queues with real processes: use_queue / push / pop / stat_queue / free_queue,
routing, blocking, signals, counters, and queue hygiene (queues / sweep_queues).

Every test runs twice: on the C accelerator's push/pop and on the pure-Python ones
(``queue_path``; children inherit the path at fork, ``python()`` scripts through
PROCMAGIC_PURE_QUEUE). tests/unit/test_queue_fast.py checks what differs between them.

Every blocking wait is bounded: pops in this process run under ``deadline()`` (an interval timer
whose handler raises TimeoutError, which the queue lets through), children are joined with a
timeout, and helpers that wait for a process to block give up after ``WAIT`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable, Iterator

import pytest
import sysv_ipc

import procmagic
from procmagic import NoQueue, Process, ProcessStateError, QueueEmpty, QueueFull
from procmagic.core import queue as pmq
from procmagic.core import queue_hot

from .helpers import deadline
from procmagic.core import queue_registry

WAIT = 20.0
MSGMAX = pmq.msgmax()
MSGMNB = pmq.msgmnb()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- helpers -------------------------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("queue_records", "queue_path")


@pytest.fixture(params=["c", "pure"])
def queue_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test on the C accelerator, then on the pure-Python path (in this process, its
    children, and the scripts it runs)."""
    accelerated = request.param == "c"
    if accelerated and not queue_hot.accelerator_available():
        pytest.skip("the C accelerator is not built here (test_queue_fast says whether it should be)")
    monkeypatch.setenv(queue_hot.PURE_ENV, "0" if accelerated else "1")
    was = queue_hot.accelerated()
    queue_hot.use_accelerator(accelerated)
    yield request.param
    queue_hot.use_accelerator(was)




@pytest.fixture
def procs() -> Iterator[Callable[..., Process]]:
    """``procs(target, **kw)`` makes a Process (dgram pipe by default); teardown kills and reaps
    whatever a failing test left, and closes the pipes."""
    made: list[Process] = []

    def make(target: Callable[[Process], Any], **kwargs: Any) -> Process:
        kwargs.setdefault("pipe", "dgram")
        proc = Process(target, **kwargs)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.pid is not None and proc.exitstatus is None:
            with contextlib.suppress(Exception):
                proc.kill(signal.SIGKILL)
                proc.join(timeout=WAIT)
        proc.close()




_SYSCALLS = {"x86_64": {"msgsnd": 69, "msgrcv": 70}, "aarch64": {"msgsnd": 189, "msgrcv": 188}}


def blocked_in(pid: int, call: str) -> bool:
    """True while ``pid`` sleeps inside ``call`` ("msgrcv" or "msgsnd")."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            if call in f.read():
                return True
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/syscall") as f:
            number = int(f.read().split()[0])
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, ValueError, IndexError):
        return False
    return state == "S" and number == _SYSCALLS.get(platform.machine(), {}).get(call)


def wait_blocked(pid: int, call: str, timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if blocked_in(pid, call):
            return True
        time.sleep(0.005)
    return False


def signal_when_blocked(pid: int, call: str, sig: int, times: int = 1) -> Callable[[Process], int]:
    """A helper child's target: each time ``pid`` sleeps in ``call``, send it ``sig``."""

    def helper(proc: Process) -> int:
        code = 0
        for _ in range(times):
            if not wait_blocked(pid, call):
                code = 3  # send it anyway: the waiter must not hang; the test sees code 3
            os.kill(pid, sig)
            time.sleep(0.05)  # let it handle the signal and block again
        return code

    return helper


def read_msg(proc: Process) -> bytes:
    return proc.read(65536, timeout=WAIT)


def row(msqid: int) -> queue_registry.Row | None:
    return queue_registry.proc_table().get(msqid)


def free_key() -> int:
    taken = {r.key for r in queue_registry.proc_table().values()}
    while True:
        key = random.randint(0x10000, 0x7FFFFFFF)
        if key not in taken:
            return key


def python(code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, **kwargs)


def has_cap_sys_resource() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc, match", [
    ({"mode": "fifo"}, ValueError, "unknown queue mode 'fifo'"),
    ({"mode": 3}, ValueError, "unknown queue mode 3"),
    ({"mode": True}, ValueError, "unknown queue mode"),
    ({"nowait": 1}, TypeError, "nowait must be True or False"),
    ({"nowait": "yes"}, TypeError, "nowait must be True or False"),
    ({"key": "abc"}, TypeError, "key must be an int"),
    ({"key": True}, TypeError, "key must be an int"),
    ({"key": 1.5}, TypeError, "key must be an int"),
    ({"key": 0}, ValueError, "non-zero int"),
    ({"key": 2**40}, ValueError, "non-zero int"),
    ({"capacity": 0}, ValueError, "capacity must be from 1"),
    ({"capacity": -5}, ValueError, "capacity must be from 1"),
    ({"capacity": 2**31}, ValueError, "capacity must be from 1"),
    ({"capacity": True}, TypeError, "capacity must be a number of bytes"),
    ({"capacity": "16k"}, TypeError, "capacity must be a number of bytes"),
    ({"perm": 0o1000}, ValueError, "perm must be permission bits"),
    ({"perm": "600"}, ValueError, "perm must be permission bits"),
    ({"perm": True}, ValueError, "perm must be permission bits"),
    ({"flavor": 1}, TypeError, r"unknown option\(s\) \['flavor'\]"),
])
def test_use_queue_refuses_bad_arguments(kwargs: dict[str, Any], exc: type, match: str) -> None:
    proc = Process(lambda p: None, pipe=None)
    with pytest.raises(exc, match=match):
        proc.use_queue(**kwargs)
    assert proc._queue is None


@pytest.mark.parametrize("process", ["abc", 0x7000])
def test_attach_refuses_what_is_not_a_process(process: Any) -> None:
    with pytest.raises(TypeError, match=r"process must be a procmagic Process .* not .*; a named queue's key goes in key="):
        pmq.attach(process)


def test_push_and_pop_refuse_bad_data() -> None:
    with pmq.attach(None) as q:
        for empty in (b"", ""):
            with pytest.raises(ValueError, match="refuses empty data"):
                q.push(empty)
        for wrong in (12, None, 1.5, ["a"]):
            with pytest.raises(TypeError, match="push\\(\\) takes bytes or str"):
                q.push(wrong)  # type: ignore[arg-type]
        with pytest.raises(ValueError) as info:
            q.push(b"x" * (MSGMAX + 1))
        assert f"{MSGMAX + 1} bytes" in str(info.value) and f"{MSGMAX} bytes" in str(info.value)
        assert "kernel.msgmax" in str(info.value)
        with pytest.raises(ValueError, match="only in mode='orient'"):
            q.push(b"x", to=3)
        for size, exc in ((0, ValueError), (-1, ValueError), ("a", TypeError), (True, TypeError), (1.0, TypeError)):
            with pytest.raises(exc, match="size must be"):
                q.pop(size)
        assert q.stat().messages == 0  # nothing refused reached the queue

        q.push(b"x" * MSGMAX)  # exactly the limit is fine
        assert q.pop() == b"x" * MSGMAX
        q.push("é" * 3)  # str goes as UTF-8
        q.push(bytearray(b"ba"))
        q.push(memoryview(b"mv"))
        assert [q.pop(), q.pop(), q.pop()] == ["é".encode() * 3, b"ba", b"mv"]

        q.push(b"0123456789")
        with pytest.raises(ValueError, match="more than size=4") as info:
            q.pop(4)
        assert info.value.data == b"0123456789"  # type: ignore[attr-defined]
        assert q.stat().messages == 0


def test_orient_refuses_bad_receivers() -> None:
    with pmq.attach(None, mode="orient") as q:
        with pytest.raises(ValueError, match="needs to= here"):
            q.push(b"x")  # a handle of no Process has no default receiver
        for to, exc in ((0, ValueError), (-1, ValueError), (2**31, ValueError), ("a", TypeError), (True, TypeError)):
            with pytest.raises(exc, match="to must be"):
                q.push(b"x", to=to)
        q.push(b"x", to=pmq.PARENT)
        assert q.pop() == b"x"


def test_push_without_a_queue_is_refused() -> None:
    proc = Process(lambda p: None, pipe=None)
    for call in (lambda: proc.push(b"x"), proc.pop, proc.stat_queue, proc.free_queue):
        with pytest.raises(NoQueue, match="call use_queue\\(\\) before"):
            call()


# -- creation ------------------------------------------------------------------------------------
def test_a_private_queue_is_ipc_private_0600_with_msgmax_messages() -> None:
    proc = Process(lambda p: None, pipe=None)
    q = proc.use_queue()
    try:
        r = row(q.id)
        assert r is not None and r.key == 0 and q.key == 0
        with open("/proc/sysvipc/msg") as f:
            perms = {int(line.split()[1]): line.split()[2] for line in f.read().splitlines()[1:]}
        assert perms[q.id] == "600"
        assert q.max_message_size == MSGMAX and q.capacity == MSGMNB
        assert q.owner_pid == os.getpid() and not q.freed
        assert "key=IPC_PRIVATE" in repr(q)
    finally:
        proc.free_queue()
    assert row(q.id) is None and q.freed


def test_an_int_key_attaches_or_creates_with_perm() -> None:
    key = free_key()
    first = pmq.attach(None, key=key)
    second = pmq.attach(None, key=key)
    other = pmq.attach(None, key=free_key(), perm=0o640)
    try:
        assert first.id == second.id and first.key == key
        assert first.owner_pid == os.getpid() and second.owner_pid is None  # the second one only attached
        with open("/proc/sysvipc/msg") as f:
            perms = {int(line.split()[1]): line.split()[2] for line in f.read().splitlines()[1:]}
        assert perms[first.id] == "600" and perms[other.id] == "640"
        second.push(b"via second")
        assert first.pop() == b"via second"
    finally:
        assert first.free() is True
        other.free()
    with pytest.raises(NoQueue, match="no longer exists"):
        second.push(b"x")
    assert second.free() is False  # gone already


def test_capacity_is_in_bytes_and_refused_with_the_reason() -> None:
    with pmq.attach(None, capacity=4096) as q:
        assert q.capacity == 4096 and q.stat().capacity == 4096
        assert q.max_message_size == 4096  # a message larger than the queue could never be sent
        with pytest.raises(ValueError, match="5000 bytes, larger than the 4096 bytes .*capacity is 4096 bytes"):
            q.push(b"x" * 5000)
        q.capacity = MSGMNB  # lowering and raising up to kernel.msgmnb needs no privilege
        assert q.capacity == MSGMNB and q.max_message_size == MSGMAX
        with pytest.raises(ValueError):
            q.capacity = 0
    big = 4 * MSGMNB
    if has_cap_sys_resource():
        with pmq.attach(None, capacity=big) as q:
            assert q.capacity == big
    else:
        with pytest.raises(PermissionError, match="CAP_SYS_RESOURCE") as info:
            pmq.attach(None, capacity=big)
        assert f"capacity={big} bytes" in str(info.value) and f"({MSGMNB} bytes)" in str(info.value)
        with pmq.attach(None) as q:
            with pytest.raises(PermissionError, match="CAP_SYS_RESOURCE"):
                q.capacity = big
            assert q.capacity == MSGMNB


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user")
def test_capacity_refused_for_an_unprivileged_user(procs: Callable[..., Process]) -> None:
    def child(proc: Process) -> None:
        os.setgid(65534)
        os.setuid(65534)  # no capabilities left
        try:
            proc.use_queue(capacity=4 * MSGMNB)
        except PermissionError as exc:
            proc.write(str(exc))
        else:
            proc.write("accepted")
            proc.free_queue()

    proc = procs(child)
    proc.start()
    assert "CAP_SYS_RESOURCE" in read_msg(proc).decode()
    assert proc.join(timeout=WAIT).ok


# -- routing -------------------------------------------------------------------------------------
def test_balance_with_several_producers_and_consumers(procs: Callable[..., Process]) -> None:
    per_producer = 40

    def producer(proc: Process) -> None:
        for j in range(per_producer):
            proc.push(f"{proc.id}:{j}")

    def consumer(proc: Process) -> None:
        got = []
        while (msg := proc.pop()) != b"stop":
            got.append(msg.decode())
        proc.write("\n".join(got) or "-")

    first = procs(consumer)
    queue = first.use_queue()
    consumers = [first] + [procs(consumer) for _ in range(2)]
    producers = [procs(producer, pipe=None) for _ in range(3)]
    for proc in consumers[1:] + producers:
        proc.use_queue(queue)  # joining: the same kernel queue
        assert proc._queue.id == queue.id
    try:
        for proc in consumers + producers:
            proc.start()
        for proc in producers:
            assert proc.join(timeout=WAIT).ok
        for _ in consumers:
            queue.push(b"stop")  # after every data message: the queue is first in, first out
        received = [read_msg(proc).decode() for proc in consumers]
        for proc in consumers:
            assert proc.join(timeout=WAIT).ok
    finally:
        queue.free()
    items = [item for text in received for item in text.split("\n") if item != "-"]
    expected = {f"{p.id}:{j}" for p in producers for j in range(per_producer)}
    assert sorted(items) == sorted(expected)  # each message once, none lost
    for proc in producers:
        counts = proc.counters
        sent = sum(len(f"{proc.id}:{j}") for j in range(per_producer))
        assert counts["pushes"] == per_producer and counts["bytes_pushed"] == sent and counts["pops"] == 0
    assert sum(proc.counters["pops"] for proc in consumers) == len(expected) + len(consumers)


def test_orient_delivers_each_message_to_its_process(procs: Callable[..., Process]) -> None:
    workers: list[Process] = []

    def worker(proc: Process) -> None:
        mine = [proc.pop().decode()]
        if proc is workers[2]:
            mine.append(proc.pop().decode())  # one more, from worker 1
        if proc is workers[1]:
            proc.push(f"hello {workers[2].id} from {proc.id}", to=workers[2])
        proc.push(f"{proc.id} got {sorted(mine)}")  # to the parent

    workers.extend(procs(worker, pipe=None) for _ in range(3))
    queue = workers[0].use_queue(mode="orient")
    for proc in workers[1:]:
        proc.use_queue(queue, mode="orient")
    try:
        for proc in reversed(workers):
            proc.push(f"for {proc.id}")  # waits in the queue until its process runs
        assert queue.stat().messages == 3
        for proc in workers:
            proc.start()
        with deadline():
            replies = sorted(workers[0].pop().decode() for _ in workers)  # every child replies to PARENT
        for proc in workers:
            assert proc.join(timeout=WAIT).ok
        assert queue.stat().messages == 0
    finally:
        queue.free()
    a, b, c = (p.id for p in workers)
    assert replies == sorted([
        f"{a} got ['for {a}']",
        f"{b} got ['for {b}']",
        f"{c} got {sorted([f'for {c}', f'hello {c} from {b}'])}",
    ])


def test_the_child_uses_the_queue_its_process_had_in_the_parent(procs: Callable[..., Process]) -> None:
    proc = procs(lambda p: p.write(f"{p._queue.id} {p._queue.me} {p._queue.peer}") and None)
    queue = proc.use_queue(mode="orient")
    try:
        assert (queue.me, queue.peer) == (pmq.PARENT, proc.id)
        proc.start()
        assert read_msg(proc).decode() == f"{queue.id} {proc.id} {pmq.PARENT}"
        assert proc.join(timeout=WAIT).ok
    finally:
        proc.free_queue()


def test_use_queue_after_start_refuses_a_private_queue_the_child_would_never_see(
        procs: Callable[..., Process]) -> None:
    shared = pmq.attach(None)  # made before the fork: the child has it too
    proc = procs(lambda p: p.write(shared.pop()) and None)
    try:
        proc.start()
        with pytest.raises(ProcessStateError, match=r"use_queue\(\) after start\(\): process \d+ \(pid \d+\) is "
                                                    r"already running .* call use_queue\(\) before start\(\)"):
            proc.use_queue()
        assert proc.queue is None
        proc.use_queue(shared)  # joining a queue the child already has is fine, after start too
        proc.push(b"reached the child")
        assert read_msg(proc) == b"reached the child"
        assert proc.join(timeout=WAIT).ok
    finally:
        shared.free()


def test_joining_by_key(procs: Callable[..., Process]) -> None:
    key = free_key()
    proc = procs(lambda p: p.push(b"from the child"), pipe=None)
    mine = pmq.attach(None, key=key)
    try:
        proc.use_queue(key=key)
        assert proc._queue.id == mine.id
        proc.start()
        assert proc.join(timeout=WAIT).ok
        with deadline():
            assert mine.pop() == b"from the child"
    finally:
        mine.free()


# -- blocking and not ----------------------------------------------------------------------------
def test_nowait_raises_queue_empty_and_queue_full() -> None:
    with pmq.attach(None, nowait=True, capacity=1024) as q:
        with pytest.raises(QueueEmpty, match="nowait=True"):
            q.pop()
        q.push(b"a" * 512)
        q.push(b"b" * 512)
        with pytest.raises(QueueFull, match="1024 bytes") as info:
            q.push(b"c" * 512)
        assert "2 messages" in str(info.value)
        assert q.pop() == b"a" * 512
        q.push(b"c" * 512)
        assert q.stat().messages == 2
    with pmq.attach(None, mode="orient", nowait=True) as q:
        q.push(b"not mine", to=7)
        with pytest.raises(QueueEmpty, match=f"for id {pmq.PARENT}"):
            q.pop()


def test_a_blocking_pop_waits_for_a_push(procs: Callable[..., Process]) -> None:
    proc = procs(lambda p: p.write(b"got " + p.pop()) and None)
    queue = proc.use_queue()
    try:
        proc.start()
        assert wait_blocked(proc.pid, "msgrcv")
        queue.push(b"late")
        assert read_msg(proc) == b"got late"
        assert proc.join(timeout=WAIT).ok
    finally:
        queue.free()


def test_a_blocking_push_waits_for_room(procs: Callable[..., Process]) -> None:
    proc = procs(lambda p: p.push(b"c" * 512), pipe=None)
    queue = proc.use_queue(capacity=1024)
    try:
        queue.push(b"a" * 512)
        queue.push(b"b" * 512)
        proc.start()
        assert wait_blocked(proc.pid, "msgsnd")
        assert proc.exitstatus is None and queue.stat().messages == 2
        with deadline():
            assert queue.pop() == b"a" * 512
        assert proc.join(timeout=WAIT).ok
        with deadline():
            assert [queue.pop(), queue.pop()] == [b"b" * 512, b"c" * 512]
    finally:
        queue.free()


def test_signals_during_blocking_calls_lose_nothing(procs: Callable[..., Process]) -> None:
    def child(proc: Process) -> None:
        seen = []
        signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
        got = proc.pop()  # interrupted three times, keeps waiting
        proc.push(b"c" * 600)  # no room for it: interrupted three times, keeps waiting
        proc.write(f"{len(seen)} {got.decode()}")

    proc = procs(child)
    # Orient: the parent's own messages fill the queue, and the child never takes them.
    queue = proc.use_queue(mode="orient", capacity=1536)
    try:
        queue.push(b"1" * 512, to=pmq.PARENT)
        queue.push(b"2" * 512, to=pmq.PARENT)
        proc.start()
        helper = procs(signal_when_blocked(proc.pid, "msgrcv", signal.SIGUSR1, times=3), pipe=None)
        helper.start()
        assert helper.join(timeout=WAIT).code == 0
        with deadline():
            queue.push(b"a" * 512)  # to the child: the queue is full now (1536 bytes)
        assert wait_blocked(proc.pid, "msgsnd")  # it took "a"; 600 more bytes do not fit
        helper = procs(signal_when_blocked(proc.pid, "msgsnd", signal.SIGUSR1, times=3), pipe=None)
        helper.start()
        assert helper.join(timeout=WAIT).code == 0
        with deadline():
            assert queue.pop() == b"1" * 512  # room for the child's message
        assert read_msg(proc).decode() == "6 " + "a" * 512
        assert proc.join(timeout=WAIT).ok
        with deadline():
            assert [queue.pop(), queue.pop()] == [b"2" * 512, b"c" * 600]
        assert proc.counters["pushes"] == 1 and proc.counters["pops"] == 1
    finally:
        queue.free()


def test_keyboard_interrupt_stops_a_blocking_pop_and_leaves_the_queue_intact(procs: Callable[..., Process]) -> None:
    queue = pmq.attach(None, mode="orient")
    try:
        queue.push(b"for someone else", to=5)
        helper = procs(signal_when_blocked(os.getpid(), "msgrcv", signal.SIGINT), pipe=None)
        helper.start()
        with pytest.raises(KeyboardInterrupt), deadline():
            queue.pop()
        assert helper.join(timeout=WAIT).code == 0
        st = queue.stat()
        assert st.messages == 1 and st.bytes == len(b"for someone else")
        queue.push(b"for me", to=pmq.PARENT)
        with deadline():
            assert queue.pop() == b"for me"
    finally:
        queue.free()


def test_keyboard_interrupt_stops_a_blocking_push_and_sends_nothing(procs: Callable[..., Process]) -> None:
    queue = pmq.attach(None, capacity=1024)
    try:
        queue.push(b"a" * 512)
        queue.push(b"b" * 512)
        helper = procs(signal_when_blocked(os.getpid(), "msgsnd", signal.SIGINT), pipe=None)
        helper.start()
        with pytest.raises(KeyboardInterrupt), deadline():
            queue.push(b"c" * 512)
        assert helper.join(timeout=WAIT).code == 0
        assert queue.stat().messages == 2
        assert [queue.pop(), queue.pop()] == [b"a" * 512, b"b" * 512]
    finally:
        queue.free()


# -- state ---------------------------------------------------------------------------------------
def test_stat_queue_reports_messages_bytes_and_the_last_sender_and_receiver(procs: Callable[..., Process]) -> None:
    def child(proc: Process) -> None:
        for _ in range(3):
            proc.push(b"0123456789")

    proc = procs(child, pipe=None)
    proc.use_queue()
    try:
        before = time.time()
        st = proc.stat_queue()
        assert (st.messages, st.bytes, st.last_sender_pid, st.last_receiver_pid) == (0, 0, None, None)
        assert st.capacity == MSGMNB and st.max_message_size == MSGMAX
        proc.start()
        assert proc.join(timeout=WAIT).ok
        st = proc.stat_queue()
        assert (st.messages, st.bytes, st.last_sender_pid, st.last_receiver_pid) == (3, 30, proc.pid, None)
        assert st.last_send_time is not None and before - 2 <= st.last_send_time <= time.time() + 2
        proc.pop()
        st = proc.stat_queue()
        assert (st.messages, st.bytes, st.last_receiver_pid) == (2, 20, os.getpid())
        assert st.last_receive_time is not None
    finally:
        proc.free_queue()
    with pytest.raises(NoQueue, match="no longer exists"):
        proc.stat_queue()
    with pytest.raises(NoQueue, match="no longer exists"):
        proc.pop()
    with pytest.raises(NoQueue, match="was freed"):
        Process(lambda p: None, pipe=None).use_queue(proc._queue)


def test_counters_are_readable_by_the_parent_while_the_child_runs(procs: Callable[..., Process]) -> None:
    def child(proc: Process) -> None:
        for _ in range(5):
            proc.push(b"x" * 100)
        proc.write(b"pushed")
        proc.read(16, timeout=WAIT)  # wait until the parent has looked

    proc = procs(child)
    queue = proc.use_queue()
    try:
        proc.start()
        assert read_msg(proc) == b"pushed"
        live = proc.counters
        assert (live["pushes"], live["bytes_pushed"], live["pops"], live["bytes_popped"]) == (5, 500, 0, 0)
        proc.write(b"go on")
        assert proc.join(timeout=WAIT).ok
        assert proc.counters["pushes"] == 5
        with deadline():
            for _ in range(5):
                queue.pop()
    finally:
        queue.free()


# -- hygiene -------------------------------------------------------------------------------------
def test_queues_lists_what_procmagic_created(queue_records: str) -> None:
    q = pmq.attach(None)
    foreign = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX, 0o600)
    try:
        listed = {info.id: info for info in procmagic.queues()}
        assert foreign.id not in listed
        info = listed[q.id]
        assert info.owner_pid == os.getpid() and info.owner_alive and info.mine and info.key == 0
        (name,) = os.listdir(queue_records)
        record = json.load(open(os.path.join(queue_records, name)))
        assert record["msqid"] == q.id and record["owner_pid"] == os.getpid()
    finally:
        q.free()
        foreign.remove()
    assert q.id not in {info.id for info in procmagic.queues()}
    assert os.listdir(queue_records) == []


def test_a_childs_queue_is_removed_when_the_child_is_reaped(procs: Callable[..., Process]) -> None:
    def child(proc: Process) -> None:
        queue = proc.use_queue()
        proc.write(str(queue.id))

    proc = procs(child)
    proc.start()
    msqid = int(read_msg(proc))
    assert proc.join(timeout=WAIT).ok
    assert row(msqid) is None


def test_a_queue_is_removed_at_a_normal_exit_and_swept_after_a_crash() -> None:
    script = """
        import os, signal, sys
        from procmagic.core import queue
        q = queue.attach(None)
        print(q.id, flush=True)
        if sys.argv[1] == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), "exit"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert row(int(done.stdout)) is None  # atexit removed it

    crashed = subprocess.run([sys.executable, "-c", textwrap.dedent(script), "crash"], capture_output=True,
                             text=True, timeout=60, cwd=ROOT)
    assert crashed.returncode == -signal.SIGKILL
    msqid = int(crashed.stdout)
    try:
        assert row(msqid) is not None
        (info,) = [i for i in procmagic.queues() if i.id == msqid]
        assert not info.owner_alive and not info.mine
        assert procmagic.sweep_queues() == [msqid]
        assert row(msqid) is None
        assert procmagic.sweep_queues() == []
    finally:
        with contextlib.suppress(sysv_ipc.ExistentialError):
            sysv_ipc.remove_message_queue(msqid)


def test_sweep_touches_no_queue_it_cannot_prove_is_a_dead_owners(queue_records: str) -> None:
    mine = pmq.attach(None)  # a live owner
    foreign = sysv_ipc.MessageQueue(sysv_ipc.IPC_PRIVATE, sysv_ipc.IPC_CREX, 0o600)  # no record at all
    impostor = sysv_ipc.MessageQueue(sysv_ipc.IPC_PRIVATE, sysv_ipc.IPC_CREX, 0o600)
    r = row(impostor.id)
    assert r is not None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    # A record from a dead owner whose msqid now names another queue (another change time).
    forged = {"version": 1, "msqid": impostor.id, "key": r.key, "uid": r.cuid, "ctime": r.ctime - 100,
              "owner_pid": dead_pid, "owner_start": 1, "created": time.time()}
    path = os.path.join(queue_records, f"msq-{impostor.id}-pid-{dead_pid}.json")
    with open(path, "w") as f:
        json.dump(forged, f)
    with open(os.path.join(queue_records, "notes.txt"), "w") as f:
        f.write("not a record")
    try:
        assert procmagic.sweep_queues() == []
        for q in (mine.id, foreign.id, impostor.id):
            assert row(q) is not None
        assert not os.path.exists(path)  # the stale record is dropped
        assert os.path.exists(os.path.join(queue_records, "notes.txt"))
    finally:
        mine.free()
        foreign.remove()
        impostor.remove()


def test_a_registry_directory_open_to_others_is_never_used(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    monkeypatch.setenv(queue_registry.ENV, str(open_dir))
    assert queue_registry.registry_dir(create=True) is None
    with pmq.attach(None) as q:  # the queue still works, and is still removed when freed
        q.push(b"x")
    assert os.listdir(open_dir) == []
