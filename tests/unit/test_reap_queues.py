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
        fields = table()[str(queue.id)]
        path = os.path.join(queue_records, f"msq-{queue.id}-pid-{proc.pid}.json")
        with open(path, "w") as f:
            json.dump({"version": 1, "msqid": queue.id, "key": int(fields["key"]), "uid": int(fields["cuid"]),
                       "ctime": int(fields["ctime"]), "owner_pid": proc.pid,
                       "owner_start": runtime.start_ticks(proc.pid), "created": time.time()}, f)
        proc.write(b"go")
        assert proc.join(timeout=WAIT).ok
        assert exists(queue.id)
        assert os.path.exists(path)
    finally:
        queue.remove()
