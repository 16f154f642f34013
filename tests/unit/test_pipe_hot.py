"""The pipe's hot path: blocking reads with no time-out (the parent's waits on its child's pidfd
and the pipe with one reused poll, the child's plain receive) keep every promise of the general
path: message boundaries, oversized messages left whole, no wait on a dead child's descendant,
threads, restarts, and no pidfd copy left open anywhere."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from procmagic import Process, ProcessStateError

from .helpers import WAIT, deadline, gone, pidfds


def _echo(proc: Process) -> None:
    while True:
        data = proc.read(65536)  # no time-out: the child's own hot path
        if not data:
            return
        proc.write(data)


@pytest.mark.parametrize("kind", ["dgram", "stream"])
def test_ping_pong_without_timeouts_keeps_every_byte(spawn, kind):
    p = spawn(_echo, pipe=kind)
    p.start()
    with deadline():
        for i in range(300):  # the reader mostly arrives before the data: it polls first
            message = f"{i:05d}".encode() * (1 + i % 7)
            assert p.write(message) == len(message)
            got = p.read(65536)
            while kind == "stream" and len(got) < len(message):
                got += p.read(65536)
            assert got == message
        p.close("write")
        assert p.read() == b""  # end of file, then the exit
    assert p.join(timeout=WAIT).code == 0


def test_an_oversized_message_stays_whole_in_the_pipe_on_both_sides(spawn):
    def target(proc: Process) -> int:
        try:
            proc.read(4)
        except ValueError as exc:
            proc.write(str(exc))
        proc.write(proc.read(10))  # the same message, whole
        proc.write(b"0123456789")
        return 0

    p = spawn(target, pipe="dgram")
    p.start()
    with deadline():
        p.write(b"0123456789")
        assert p.read() == (b"the next message is 10 bytes, larger than size=4; it is still in the pipe: "
                            b"read it with size>=10")
        assert p.read() == b"0123456789"
        assert p.read(10) == b"0123456789"  # a message just as long as size: not too big
    assert p.join(timeout=WAIT).code == 0


def test_a_blocked_read_ends_when_the_child_dies_and_a_grandchild_keeps_the_pipe(spawn):
    def target(proc: Process) -> None:
        time.sleep(0.2)  # the parent is already waiting
        sleeper = subprocess.Popen(["sleep", str(int(WAIT * 3))], pass_fds=[proc.pipe])
        proc.write(str(sleeper.pid))

    p = spawn(target, pipe="dgram")
    p.start()
    with deadline():
        grandchild = int(p.read())
        try:
            assert p.read() == b""  # the pidfd ends the wait: no end of file comes
            assert not gone(grandchild)
        finally:
            os.kill(grandchild, 9)
    assert p.join(timeout=WAIT).code == 0


def test_two_threads_can_wait_on_one_pipe(spawn):
    def target(proc: Process) -> None:
        proc.read(timeout=WAIT)  # both readers wait by now
        proc.write(b"one")
        proc.write(b"two")

    p = spawn(target, pipe="dgram")
    p.start()
    got: list[bytes] = []
    readers = [threading.Thread(target=lambda: got.append(p.read())) for _ in range(2)]
    for reader in readers:
        reader.start()
    time.sleep(0.2)
    p.write(b"go")
    for reader in readers:
        reader.join(timeout=WAIT)
    assert sorted(got) == [b"one", b"two"]
    assert p.join(timeout=WAIT).code == 0


def test_a_restarted_process_watches_its_new_child(spawn):
    p = spawn(lambda proc: proc.write(str(os.getpid())), pipe="dgram")
    pids = []
    with deadline():
        for _ in range(2):
            p.start()
            pids.append(int(p.read()))
            assert p.read() == b""
            p.join(timeout=WAIT)
    assert pids[0] != pids[1]


def test_the_pidfd_copy_closes_with_the_pipe_and_stays_out_of_other_children(spawn):
    def lister(proc: Process) -> None:
        proc.write(str(pidfds()))

    first = spawn(lambda proc: proc.write(b"hi") and proc.read(timeout=WAIT) and None, pipe="dgram")
    first.start()
    before = pidfds()
    with deadline():
        assert first.read() == b"hi"  # the first blocking read makes the watch and its copy
        assert pidfds() == before + 1
        second = spawn(lister, pipe="dgram")
        second.start()
        assert second.read() == b"0"  # neither the registry's pidfds nor the copy
        second.join(timeout=WAIT)
        first.write(b"bye")
        first.join(timeout=WAIT)
    first.close()
    second.close()
    assert pidfds() == before - 1  # the registry closed its own at the reaps, close() the copies


def test_the_watch_gives_way_to_later_settings_and_claims(spawn):
    """Once a blocking read made the watch, a time-out, non-blocking mode or a claim set later
    still rules every read."""
    p = spawn(lambda proc: proc.write(b"hi") and proc.read(timeout=WAIT) and None, pipe="dgram")
    p.start()
    with deadline():
        assert p.read() == b"hi"
        p.set_timeout(0.1)
        with pytest.raises(TimeoutError, match="no data arrived in the pipe within 0.1 s"):
            p.read()
        p.set_timeout(None)
        p.set_blocking(False)
        with pytest.raises(BlockingIOError, match="no data in the pipe yet"):
            p.read()
        p.set_blocking(True)
        p.claim_reader("the pipe is read by a test")
        with pytest.raises(ProcessStateError, match="the pipe is read by a test"):
            p.read()
        p.write(b"bye")
    assert p.join(timeout=WAIT).code == 0


def test_timed_reads_take_the_same_path_with_the_same_promises(spawn):
    def target(proc: Process) -> None:
        proc.read(timeout=WAIT)  # "go"
        proc.write(b"0123456789")
        sleeper = subprocess.Popen(["sleep", str(int(WAIT * 3))], pass_fds=[proc.pipe])
        proc.write(str(sleeper.pid))

    p = spawn(target, pipe="dgram")
    p.start()
    with deadline():
        with pytest.raises(TimeoutError, match=r"no data arrived in the pipe within 0.0 s"):
            p.read(timeout=0)
        with pytest.raises(TimeoutError, match=r"no data arrived in the pipe within 0.1 s"):
            p.read(timeout=0.1)
        p.write(b"go")
        with pytest.raises(ValueError, match="the next message is 10 bytes, larger than size=4"):
            p.read(4, timeout=WAIT)
        assert p.read(10, timeout=WAIT) == b"0123456789"
        grandchild = int(p.read(timeout=WAIT))
        try:
            assert p.read(timeout=WAIT) == b""  # the child's exit ends it, long before WAIT
            assert not gone(grandchild)
        finally:
            os.kill(grandchild, 9)
    assert p.join(timeout=WAIT).code == 0


def test_the_childs_timed_reads_keep_the_same_promises(spawn):
    def target(proc: Process) -> int:
        try:
            proc.read(timeout=0.1)
        except TimeoutError as exc:
            proc.write(str(exc))
        try:
            proc.read(4, timeout=WAIT)
        except ValueError as exc:
            proc.write(str(exc))
        proc.write(proc.read(10, timeout=WAIT))  # the message, whole
        proc.write(proc.read())  # a read without a time-out after the timed ones
        return 7 if proc.read(timeout=WAIT) == b"" else 1  # end of file once the parent closes

    p = spawn(target, pipe="dgram")
    p.start()
    with deadline():
        assert p.read() == b"no data arrived in the pipe within 0.1 s"
        p.write(b"0123456789")
        assert p.read().startswith(b"the next message is 10 bytes, larger than size=4")
        assert p.read() == b"0123456789"
        p.write(b"plain")
        assert p.read() == b"plain"
        p.close()
    assert p.join(timeout=WAIT).code == 7
