"""The pipe: redirect, stream and dgram, reads that end, time-outs, non-blocking mode, close()."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import pytest

from procmagic import NoPipe, Process

from .helpers import WAIT, gone, read_all, wait_until


def noop(proc: Process) -> None:
    pass


def wait_for_parent(proc: Process) -> None:
    proc.read(timeout=WAIT)


def sleeper(proc: Process) -> None:
    time.sleep(WAIT * 3)  # reads nothing: the pipe fills; the test kills it


# -- redirect ----------------------------------------------------------------------------------
def test_redirect_carries_every_kind_of_output_and_stdin(spawn):
    def target(proc: Process) -> None:
        print("from print")
        os.system("echo from os.system")
        libc = ctypes.CDLL(None)
        libc.printf(b"from C printf\n")
        libc.fflush(None)
        os.write(1, b"from os.write\n")
        subprocess.run(["sh", "-c", "echo from a subprocess; echo its stderr >&2"], check=True)
        print("from sys.stderr", file=sys.stderr)
        line = sys.stdin.readline()
        print(f"stdin said {line.strip()!r}")
        print(f"input() said {input()!r}")

    p = spawn(target, redirect=True)
    p.start()
    assert p.write("hello\nworld\n") == 12
    out = read_all(p).decode()
    assert out.splitlines() == [
        "from print",
        "from os.system",
        "from C printf",
        "from os.write",
        "from a subprocess",
        "its stderr",
        "from sys.stderr",
        "stdin said 'hello'",
        "input() said 'world'",
    ]
    assert p.join(timeout=WAIT).code == 0


def test_redirected_child_sees_eof_on_stdin_after_close_write(spawn):
    def target(proc: Process) -> None:
        data = sys.stdin.read()  # until end of file
        print(f"read {len(data)} chars, then end of file")

    p = spawn(target, redirect=True)
    p.start()
    p.write("abc" * 1000)
    p.close("write")
    assert read_all(p) == b"read 3000 chars, then end of file\n"
    assert p.join(timeout=WAIT).code == 0
    with pytest.raises(BrokenPipeError, match="the other end of the pipe is closed"):
        p.write(b"too late")


def test_without_redirect_the_child_keeps_the_parents_stdio(spawn, capfd):
    p = spawn(lambda proc: print("to the inherited stdout"), pipe=None)
    p.start()
    p.join(timeout=WAIT)
    assert capfd.readouterr().out == "to the inherited stdout\n"


# -- dgram and stream ------------------------------------------------------------------------
def test_dgram_keeps_message_boundaries_both_ways(spawn):
    def target(proc: Process) -> None:
        for message in (b"a", b"bb", b"ccc", b"x" * 5000):
            proc.write(message)
        proc.write(proc.read(timeout=WAIT).upper())
        proc.write(proc.read(timeout=WAIT).upper())

    p = spawn(target, pipe="dgram")
    p.start()
    assert [p.read(timeout=WAIT) for _ in range(3)] == [b"a", b"bb", b"ccc"]
    with pytest.raises(ValueError, match=r"the next message is 5000 bytes, larger than size=100.*size>=5000"):
        p.read(100, timeout=WAIT)
    assert p.read(8192, timeout=WAIT) == b"x" * 5000  # it stayed in the pipe
    p.write(b"one")
    p.write(b"two")
    assert p.read(timeout=WAIT) == b"ONE"
    assert p.read(timeout=WAIT) == b"TWO"
    assert p.read(timeout=WAIT) == b""
    assert p.join(timeout=WAIT).code == 0


def test_dgram_refuses_a_message_bigger_than_its_buffer(spawn):
    p = spawn(noop, pipe="dgram")
    with pytest.raises(ValueError, match=r"does not fit a dgram pipe.*use pipe='stream'"):
        p.write(b"x" * (8 << 20))


def test_stream_carries_a_large_write_whole(spawn):
    size = 4 << 20

    def target(proc: Process) -> None:
        got = 0
        while got < size:
            chunk = proc.read(1 << 20, timeout=WAIT)
            if not chunk:
                break
            got += len(chunk)
        proc.write(str(got))

    p = spawn(target, pipe="stream")
    p.start()
    assert p.write(memoryview(b"y" * size)) == size
    assert p.read(timeout=WAIT) == str(size).encode()
    assert p.join(timeout=WAIT).code == 0


def test_write_str_is_utf8_and_returns_bytes_written(spawn):
    def target(proc: Process) -> None:
        for _ in range(2):
            proc.write(proc.read(timeout=WAIT))

    p = spawn(target)
    p.start()
    assert p.write("héllo") == 6
    assert p.read(timeout=WAIT) == "héllo".encode()
    assert p.write(bytearray(b"ba")) == 2
    assert p.read(timeout=WAIT) == b"ba"
    p.join(timeout=WAIT)


@pytest.mark.parametrize("data", [b"", "", bytearray()])
def test_empty_write_is_refused(spawn, data):
    with pytest.raises(ValueError, match="data to write is empty: an empty write would read as end-of-file"):
        spawn(noop).write(data)


@pytest.mark.parametrize("data", [None, 42, ["a"]])
def test_write_of_a_non_bytes_is_refused(spawn, data):
    with pytest.raises(TypeError, match="data must be bytes or str"):
        spawn(noop).write(data)


@pytest.mark.parametrize("size, exc, message", [
    (0, ValueError, "size must be at least 1 byte, got 0"),
    (-5, ValueError, "size must be at least 1 byte, got -5"),
    (1.5, TypeError, "size must be an int number of bytes"),
    (True, TypeError, "size must be an int number of bytes"),
])
def test_bad_read_size_is_refused(spawn, size, exc, message):
    with pytest.raises(exc, match=message):
        spawn(noop).read(size, timeout=0)


@pytest.mark.parametrize("timeout, exc", [(-1, ValueError), ("1", TypeError)])
def test_bad_read_timeout_is_refused(spawn, timeout, exc):
    with pytest.raises(exc, match="timeout must be"):
        spawn(noop).read(timeout=timeout)


def test_pipe_none_refuses_read_and_write(spawn):
    p = spawn(noop, pipe=None)
    with pytest.raises(NoPipe, match="no pipe to read from: this Process has pipe=None"):
        p.read()
    with pytest.raises(NoPipe, match="no pipe to write to: this Process has pipe=None"):
        p.write(b"x")


# -- reads that end ----------------------------------------------------------------------------
def test_read_timeout_raises_timeout_error(spawn):
    p = spawn(wait_for_parent)
    p.start()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no data arrived in the pipe within 0.2 s"):
        p.read(timeout=0.2)
    assert 0.15 < time.monotonic() - started < WAIT
    p.write(b"go")
    assert p.join(timeout=WAIT).code == 0


def test_read_returns_empty_bytes_at_eof_before_and_after_join(spawn):
    p = spawn(lambda proc: proc.write(b"last words") and None)
    p.start()
    assert p.read(timeout=WAIT) == b"last words"
    assert p.read(timeout=WAIT) == b""
    assert p.read(timeout=WAIT) == b""  # end of file stays end of file
    p.join(timeout=WAIT)
    assert p.read() == b""


def test_child_reads_eof_when_the_parent_closes(spawn):
    def target(proc: Process) -> int:
        return 5 if proc.read(timeout=WAIT) == b"" else 1

    p = spawn(target)
    p.start()
    p.close()
    assert p.join(timeout=WAIT).code == 5


def _holds_the_pipe(proc: Process) -> None:
    # A grandchild inherits the redirected stdout and outlives the child: no EOF will come.
    grandchild = subprocess.Popen(["sleep", str(int(WAIT * 3))])
    print(grandchild.pid, flush=True)


def test_read_does_not_wait_for_a_grandchild_that_holds_the_pipe(spawn):
    p = spawn(_holds_the_pipe, redirect=True)
    p.start()
    grandchild = int(p.read(timeout=WAIT))
    try:
        started = time.monotonic()
        assert p.read() == b""  # no timeout: the child's pidfd ends the wait
        assert time.monotonic() - started < WAIT
        assert not gone(grandchild)  # it still holds the pipe
        assert p.join(timeout=WAIT).code == 0
    finally:
        os.kill(grandchild, signal.SIGKILL)


def test_read_after_join_does_not_wait_for_a_grandchild_that_holds_the_pipe(spawn):
    p = spawn(_holds_the_pipe, redirect=True)
    p.start()
    grandchild = int(p.read(timeout=WAIT))
    try:
        assert p.join(timeout=WAIT).code == 0
        started = time.monotonic()
        assert p.read() == b""  # reaped: its pidfd is closed, and the read still ends
        assert time.monotonic() - started < WAIT
    finally:
        os.kill(grandchild, signal.SIGKILL)


# -- blocking, time-outs, close ----------------------------------------------------------------
def test_set_blocking_false_raises_blocking_io_error(spawn):
    p = spawn(sleeper, pipe="stream")
    p.start()
    p.set_blocking(False)
    with pytest.raises(BlockingIOError, match="no data in the pipe yet"):
        p.read()
    chunk = b"z" * 65536
    with pytest.raises(BlockingIOError, match="the pipe is full"):
        for _ in range(10_000):  # the child is not reading: the pipe fills
            p.write(chunk)
    p.set_blocking(True)
    p.kill(signal.SIGKILL)
    p.join(timeout=WAIT)


def test_set_blocking_wants_a_bool(spawn):
    with pytest.raises(TypeError, match="blocking must be True or False"):
        spawn(noop).set_blocking(0)  # type: ignore[arg-type]


def test_set_timeout_is_the_default_for_read_and_write(spawn):
    p = spawn(sleeper, pipe="stream")
    p.start()
    p.set_timeout(0.2)
    with pytest.raises(TimeoutError, match="within 0.2 s"):
        p.read()
    chunk = b"z" * 65536
    with pytest.raises(TimeoutError, match=r"the pipe stayed full for 0.2 s: the other side is not reading"):
        for _ in range(10_000):
            p.write(chunk)
    p.set_timeout(None)
    p.kill(signal.SIGKILL)
    p.join(timeout=WAIT)


@pytest.mark.parametrize("seconds, exc", [(-0.5, ValueError), ("1", TypeError), (True, TypeError)])
def test_bad_set_timeout_is_refused(spawn, seconds, exc):
    with pytest.raises(exc, match="timeout must be"):
        spawn(noop).set_timeout(seconds)


def test_close_read_ends_reads(spawn):
    p = spawn(wait_for_parent)
    p.start()
    p.close("read")
    assert p.read(timeout=WAIT) == b""
    p.write(b"go")  # the write side still works
    assert p.join(timeout=WAIT).code == 0


def test_close_both_closes_the_fd_and_is_idempotent(spawn):
    p = spawn(noop)
    fd = p.pipe
    p.close()
    assert p.pipe is None
    with pytest.raises(OSError):
        os.fstat(fd)  # type: ignore[arg-type]
    p.close()
    with pytest.raises(NoPipe, match="its pipe was closed"):
        p.read()
    with pytest.raises(NoPipe, match="no pipe to close for write"):
        p.close("write")


@pytest.mark.parametrize("which", ["r", "WRITE", None, 1])
def test_close_bad_value_is_refused(spawn, which):
    with pytest.raises(ValueError, match="which must be 'read', 'write' or 'both'"):
        spawn(noop).close(which)


def test_close_half_on_pipe_none_is_refused(spawn):
    p = spawn(noop, pipe=None)
    with pytest.raises(NoPipe, match="no pipe to close for read: this Process has pipe=None"):
        p.close("read")
    p.close()  # closing nothing at all is fine


def test_pipe_survives_a_signal_during_a_blocking_read(spawn):
    """EINTR is retried: an alarm ticking in the child does not break its read."""

    def target(proc: Process) -> None:
        import procmagic

        procmagic.signal(signal.SIGALRM, lambda signo: None)
        procmagic.alarm(2_000)
        proc.write(b"ticking")
        data = proc.read(timeout=WAIT)
        procmagic.alarm(0)
        proc.write(data + b" after " + str(proc.counters["alarm_ticks"] > 0).encode())

    p = spawn(target)
    p.start()
    assert p.read(timeout=WAIT) == b"ticking"
    wait_until(lambda: p.counters["alarm_ticks"] >= 5, what="alarm ticks")
    p.write(b"read")
    assert p.read(timeout=WAIT) == b"read after True"
    assert p.join(timeout=WAIT).code == 0
