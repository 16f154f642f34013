"""Nothing outlives its parent, grandchildren included: a child's own subprocesses are stopped
with it (stop ladder), when the parent exits, and when the parent is killed with SIGKILL (the
watcher); a group a child left behind is tracked and stopped at shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from procmagic import Process
from procmagic.core import ladder, watcher
from procmagic.core.reaper import registry

from .helpers import WAIT, gone, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_sleeper(proc: Process, new_session: bool = False) -> None:
    """In the child: start ``sleep 300``, tell the parent its pid, then wait for the parent."""
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=new_session)
    proc.write(str(sleeper.pid))
    proc.read()  # until the parent's end closes or the child is stopped


def test_stop_takes_the_childs_subprocesses_with_it(spawn):
    p = spawn(start_sleeper)
    p.start()
    grandchild = int(p.read(timeout=WAIT))
    status = p.stop(grace=WAIT)
    assert status.signal == signal.SIGTERM and status.stop_reason == "stop"
    wait_until(lambda: gone(grandchild), what="the grandchild to be stopped with its parent")


def test_stop_finds_a_descendant_that_left_the_group(spawn):
    """setsid() leaves the group; the child is a subreaper, so it is still found below it."""
    p = spawn(lambda proc: start_sleeper(proc, new_session=True))
    p.start()
    grandchild = int(p.read(timeout=WAIT))
    assert os.getpgid(grandchild) == grandchild  # a group of its own
    p.stop(grace=WAIT)
    wait_until(lambda: gone(grandchild), what="the grandchild in its own session to be stopped")


def test_a_group_left_behind_is_tracked_and_stopped_at_shutdown(spawn):
    def leave_a_sleeper(proc: Process) -> None:
        sleeper = subprocess.Popen(["sleep", "300"])
        proc.write(str(sleeper.pid))

    p = spawn(leave_a_sleeper)
    pid = p.start()
    grandchild = int(p.read(timeout=WAIT))
    assert p.join(timeout=WAIT).code == 0
    assert not gone(grandchild)  # a background job may finish its work after its parent
    assert pid in registry.leftover_groups()
    ladder.stop_all(grace=WAIT)
    wait_until(lambda: gone(grandchild), what="the leftover group to be stopped")
    assert pid not in registry.leftover_groups()


def test_the_watcher_is_not_a_child_of_ours():
    assert watcher.ensure()
    pid = watcher.watcher_pid()
    assert pid is not None and not gone(pid)
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rpartition(")")[2].split()[1])
    assert ppid != os.getpid()


PARENT = """
import subprocess, sys, time
from procmagic import Process

def child(proc):
    sleeper = subprocess.Popen(["sleep", "300"])
    proc.write(str(sleeper.pid))
    time.sleep(300)

p = Process(child)
p.start()
print(p.read(timeout=60).decode(), flush=True)
if sys.argv[1] == "wait":
    time.sleep(300)   # until the test kills this parent with SIGKILL
# "exit": leave without join(), the child still running
"""


def _run_parent(mode: str) -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mode], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line.strip().isdigit(), parent.stderr.read() if parent.stderr else line
    return parent, int(line)


def test_a_grandchild_is_stopped_when_its_grandparent_exits():
    parent, grandchild = _run_parent("exit")
    try:
        assert parent.wait(timeout=60) == 0
        wait_until(lambda: gone(grandchild), timeout=60, what="the grandchild to go after its grandparent exited")
    finally:
        _cleanup(parent, grandchild)


def test_a_grandchild_is_stopped_when_its_grandparent_is_killed_with_sigkill():
    parent, grandchild = _run_parent("wait")
    try:
        assert not gone(grandchild)
        parent.kill()
        assert parent.wait(timeout=60) == -signal.SIGKILL
        wait_until(lambda: gone(grandchild), timeout=60, what="the grandchild to go after SIGKILL of its grandparent")
    finally:
        _cleanup(parent, grandchild)


def _cleanup(parent: subprocess.Popen[str], grandchild: int) -> None:
    if parent.poll() is None:
        parent.kill()
        parent.wait(timeout=WAIT)
    for stream in (parent.stdout, parent.stderr):
        if stream is not None:
            stream.close()
    if not gone(grandchild):
        try:
            os.kill(grandchild, signal.SIGKILL)
        except OSError:
            pass

