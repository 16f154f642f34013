"""What the child resets: its process group, parent-death signal, signal state and event loop;
and kill() reaching its whole tree."""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import procmagic
from procmagic import Process, ProcessStateError

from .helpers import WAIT, gone, wait_until


def noop(proc: Process) -> None:
    pass


def test_child_leads_its_own_process_group(spawn):
    def target(proc: Process) -> None:
        proc.write(f"{os.getpgid(0)} {os.getpid()}")

    p = spawn(target)
    pid = p.start()
    pgid, child_pid = map(int, p.read(timeout=WAIT).split())
    assert pgid == child_pid == pid
    assert os.getpgid(0) != pid
    assert p.join(timeout=WAIT).code == 0


def _with_grandchild(proc: Process) -> None:
    grandchild = subprocess.Popen(["sleep", str(int(WAIT * 3))])
    proc.write(str(grandchild.pid))
    time.sleep(WAIT * 3)


def test_kill_reaches_the_whole_process_group(spawn):
    p = spawn(_with_grandchild)
    pid = p.start()
    grandchild = int(p.read(timeout=WAIT))
    try:
        assert os.getpgid(grandchild) == pid
        assert p.kill(signal.SIGTERM) is True
        assert p.join(timeout=WAIT).signal == signal.SIGTERM
        wait_until(lambda: gone(grandchild), what="the grandchild's death")
    finally:
        _kill_quietly(grandchild)


def test_kill_group_false_reaches_the_child_alone(spawn):
    p = spawn(_with_grandchild)
    p.start()
    grandchild = int(p.read(timeout=WAIT))
    try:
        assert p.kill("SIGTERM", group=False) is True
        assert p.join(timeout=WAIT).signal == signal.SIGTERM
        assert not gone(grandchild)
    finally:
        _kill_quietly(grandchild)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_kill_after_reap_returns_false(spawn):
    p = spawn(noop, pipe=None)
    p.start()
    p.join(timeout=WAIT)
    assert p.kill() is False
    assert p.kill(signal.SIGKILL) is False


def test_kill_before_start_is_refused(spawn):
    with pytest.raises(ProcessStateError, match=r"never started: call start\(\) before kill\(\)"):
        spawn(noop).kill()


def test_kill_with_a_bad_signal_is_refused(spawn):
    with pytest.raises(ValueError, match="unknown signal name 'SIGNOPE'"):
        spawn(noop).kill("SIGNOPE")


def test_parent_death_signal_kills_an_orphan():
    """A procmagic child of a process killed with SIGKILL dies too (PR_SET_PDEATHSIG)."""
    script = textwrap.dedent(
        f"""
        import time
        from procmagic import Process
        p = Process(lambda proc: time.sleep({WAIT * 3}), pipe=None)
        print(p.start(), flush=True)
        time.sleep({WAIT * 3})
        """
    )
    middle = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    grandchild = None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(middle.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            assert sel.select(WAIT), "the intermediate process printed no pid"
        grandchild = int(middle.stdout.readline())  # type: ignore[union-attr]
        assert not gone(grandchild)
        middle.kill()
        middle.wait(timeout=WAIT)
        wait_until(lambda: gone(grandchild), what="the orphan's death")
    finally:
        middle.kill()
        middle.wait(timeout=WAIT)
        middle.stdout.close()  # type: ignore[union-attr]
        if grandchild is not None:
            _kill_quietly(grandchild)


def test_inherited_signal_state_is_reset_in_the_child(spawn):
    def handler(signo, frame):  # pragma: no cover - never called
        pass

    def target(proc: Process) -> None:
        report = [
            signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL,
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
            signal.getsignal(signal.SIGINT) is signal.default_int_handler,
            signal.getsignal(signal.SIGHUP) is signal.SIG_IGN,  # ignored stays ignored, as POSIX does
            signal.pthread_sigmask(signal.SIG_BLOCK, []) == set(),
            signal.set_wakeup_fd(-1) == -1,
            signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0),
        ]
        proc.write(" ".join(str(r) for r in report))

    wakeup_r, wakeup_w = socket.socketpair()
    wakeup_w.setblocking(False)
    signal.signal(signal.SIGUSR1, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    previous_wakeup = signal.set_wakeup_fd(wakeup_w.fileno())
    try:
        p = spawn(target)
        p.start()
        assert p.read(timeout=WAIT) == b"True True True True True True True"
        assert p.join(timeout=WAIT).code == 0
    finally:
        signal.set_wakeup_fd(previous_wakeup)
        wakeup_r.close()
        wakeup_w.close()


def test_the_child_has_no_running_event_loop(spawn):
    def target(proc: Process) -> None:
        try:
            asyncio.get_running_loop()
            running = "running loop inherited"
        except RuntimeError:
            running = "no running loop"
        answer = asyncio.run(asyncio.sleep(0, "asyncio.run works"))
        proc.write(f"{running}; {answer}")

    async def main() -> bytes:
        p = spawn(target)
        p.start()
        data = p.read(timeout=WAIT)
        assert p.join(timeout=WAIT).code == 0
        await asyncio.sleep(0)  # the parent's loop is unharmed
        return data

    assert asyncio.run(main()) == b"no running loop; asyncio.run works"


def test_child_sees_only_its_own_pipe(spawn):
    """A child does not keep its siblings' pipe ends: a sibling's EOF is not held up."""

    def first(proc: Process) -> None:
        proc.read(timeout=WAIT)

    def second(proc: Process) -> None:
        mine = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                mine.add(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        proc.write(str(int(sibling in mine)))

    a = spawn(first)
    b = spawn(second)
    sibling = os.readlink(f"/proc/self/fd/{a.pipe}")  # socket:[inode]
    a.start()
    b.start()
    assert b.read(timeout=WAIT) == b"0"
    b.join(timeout=WAIT)
    a.write(b"go")
    a.join(timeout=WAIT)
    assert a.read(timeout=WAIT) == b""


def test_procmagic_signal_reads_like_the_signal_module():
    assert procmagic.signal.SIGTERM is signal.SIGTERM
    assert procmagic.signal.ITIMER_REAL == signal.ITIMER_REAL
    assert callable(procmagic.signal)


def test_flush_check_decides_which_standard_streams_are_flushed_before_a_fork(monkeypatch):
    from procmagic.core import child as core_child

    class Counting:
        def __init__(self) -> None:
            self.flushes = 0

        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            self.flushes += 1

    out, err = Counting(), Counting()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    core_child.flush_std()
    assert (out.flushes, err.flushes) == (1, 1)
    undo = core_child.set_flush_check(lambda stream: stream is err)
    try:
        core_child.flush_std()
        assert (out.flushes, err.flushes) == (1, 2)
    finally:
        undo()
    core_child.flush_std()
    assert (out.flushes, err.flushes) == (2, 3)
