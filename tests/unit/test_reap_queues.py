"""The reap lists the queue records only for a child that may have made a queue (issue 13).

A child sets a mark in its counters slot before it records a queue it created (and before an
``exec``, whose program keeps the pid); the parent reads the mark at the reap and lists the
record directory only then. Each test checks one side: a child that made a queue still has it
removed at the reap, however it ended; a child that made none is not looked up at all.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time

import pytest
import sysv_ipc

from procmagic import Process
from procmagic.core import runtime

from .helpers import WAIT

pytestmark = pytest.mark.usefixtures("queue_records")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def table() -> dict[str, dict[str, str]]:
    """The kernel's queues (``/proc/sysvipc/msg``): msqid -> the fields of its line."""
    with open("/proc/sysvipc/msg") as f:
        names, *rows = f.read().splitlines()
    return {fields["msqid"]: fields for fields in (dict(zip(names.split(), row.split())) for row in rows)}


def exists(msqid: int) -> bool:
    return str(msqid) in table()


def plant_record(directory: str, queue: sysv_ipc.MessageQueue, pid: int) -> str:
    """A record naming live process ``pid`` as the owner of ``queue`` (as a stale record of an
    earlier process with the same pid would): a listing at ``pid``'s reap would remove it."""
    fields = table()[str(queue.id)]
    path = os.path.join(directory, f"msq-{queue.id}-pid-{pid}.json")
    with open(path, "w") as f:
        json.dump({"version": 1, "msqid": queue.id, "key": int(fields["key"]), "uid": int(fields["cuid"]),
                   "ctime": int(fields["ctime"]), "owner_pid": pid, "owner_start": runtime.start_ticks(pid),
                   "created": time.time()}, f)
    return path


def test_a_child_killed_after_making_a_queue_has_it_removed_at_the_reap(spawn):
    def child(proc: Process) -> None:
        queue = proc.use_queue()
        proc.write(str(queue.id))
        os.kill(os.getpid(), signal.SIGKILL)  # no free, no atexit: only the reap can remove it

    proc = spawn(child)
    proc.start()
    msqid = int(proc.read(timeout=WAIT))
    status = proc.join(timeout=WAIT)
    assert status.signal == signal.SIGKILL
    assert not exists(msqid)


def test_a_program_the_child_execs_has_its_queue_removed_at_the_reap(spawn, queue_records):
    # The exec'd program keeps the child's pid but not its counters slot: exec() marks the slot
    # first, so the reap still looks for records under that pid.
    script = textwrap.dedent("""
        import os, signal
        from procmagic.core import queue
        q = queue.attach(None)
        print(q.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)

    def child(proc: Process) -> None:
        proc.exec(sys.executable, ["-c", script], env)

    proc = spawn(child, redirect=True)
    proc.start()
    msqid = int(proc.read(timeout=WAIT))
    status = proc.join(timeout=WAIT)
    assert status.signal == signal.SIGKILL
    assert not exists(msqid)
    assert os.listdir(queue_records) == []


def test_the_records_are_not_listed_at_the_reap_of_a_child_that_made_no_queue(spawn, queue_records):
    # A record naming the child as the owner of a real queue, planted while it runs (as a
    # stale record of an earlier process with the same pid would be): a listing at the reap
    # would remove that queue, since its owner is then dead and the record matches it.
    def child(proc: Process) -> None:
        proc.read()  # wait for the parent's go

    proc = spawn(child, pipe="stream")
    proc.start()
    queue = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX, 0o600)
    try:
        path = plant_record(queue_records, queue, proc.pid)
        proc.write(b"go")
        assert proc.join(timeout=WAIT).ok
        assert exists(queue.id)
        assert os.path.exists(path)
    finally:
        queue.remove()


def test_a_slot_reused_by_the_next_child_starts_without_the_last_ones_mark(spawn, queue_records):
    # The first child makes a queue (its slot is marked) and is reaped; the next child gets the
    # same slot back, zeroed: it made no queue, so a record planted under its pid is not looked
    # up at its reap. And its counters start at zero, not at the first child's pushes.
    def maker(proc: Process) -> None:
        queue = proc.use_queue()
        queue.push(b"x")
        proc.write(str(queue.id))

    first = spawn(maker)
    first.start()
    msqid = int(first.read(timeout=WAIT))
    assert first.join(timeout=WAIT).ok
    assert first.counters["pushes"] == 1
    assert not exists(msqid)

    def waiter(proc: Process) -> None:
        proc.read()

    second = spawn(waiter, pipe="stream")
    second.start()
    queue = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX, 0o600)
    try:
        assert second.counters["pushes"] == 0
        plant_record(queue_records, queue, second.pid)
        second.write(b"go")
        assert second.join(timeout=WAIT).ok
        assert exists(queue.id)
    finally:
        queue.remove()


def test_a_child_reaping_its_own_child_removes_the_queue_that_one_made(spawn):
    # The cleanup hook is the registry's, inherited through the fork: a procmagic child that
    # spawns and reaps children of its own cleans up after them as its parent does.
    def grandchild(proc: Process) -> None:
        queue = proc.use_queue()
        proc.write(str(queue.id))
        os.kill(os.getpid(), signal.SIGKILL)

    def child(proc: Process) -> None:
        inner = Process(grandchild)
        inner.start()
        msqid = int(inner.read(timeout=WAIT))
        status = inner.join(timeout=WAIT)
        inner.close()
        proc.write(f"{msqid} {status.signal == signal.SIGKILL} {exists(msqid)}")

    proc = spawn(child)
    proc.start()
    msqid, killed, left = proc.read(timeout=WAIT).decode().split()
    assert proc.join(timeout=WAIT).ok
    assert (killed, left) == ("True", "False")
    assert not exists(int(msqid))
