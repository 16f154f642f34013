"""The router's pacing, without a kernel: sporadic prints go out at once, continuous output is
coalesced, reads of a line-by-line stream are paced, and background reading has a budget."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any, Iterator

import pytest

from procmagic.kernel.channel import MESSAGE, STDERR, STDOUT, FrameReader
from procmagic.kernel.router import ReadBudget, Router


_open: list[Any] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def _router(**kw: Any) -> tuple[Router, int, socket.socket, list[tuple[str, dict[str, Any]]]]:
    sent: list[tuple[str, dict[str, Any]]] = []
    router = Router(lambda kind, content: sent.append((kind, content)), label_workers=False,
                    cap=1 << 30, interval=kw.pop("interval", 0.05), **kw)
    ours, theirs = socket.socketpair()
    fd = router.add(ours, framed=False).fd
    _open.extend([router, theirs])
    return router, fd, theirs, sent


def _texts(sent):
    return [content["text"] for kind, content in sent if kind == "stream"]


def test_a_sporadic_print_is_published_at_once_even_within_the_interval():
    router, fd, child, sent = _router(interval=10.0)
    for i in range(3):
        child.send(f"line {i}\n".encode())
        assert router.on_readable(fd)
        assert _texts(sent)[-1] == f"line {i}\n"  # not held for the 10 s interval
        time.sleep(0.01)  # a quiet spell: longer than router.quiet
    assert router.due() is None


def test_continuous_output_is_coalesced_and_its_reads_paced():
    # quiet=1 s: a loaded machine may pause this loop for more than the default 5 ms, which
    # would make the next read sporadic; what is tested is the coalescing of continuous reads
    router, fd, child, sent = _router(interval=10.0, quiet=1.0)
    child.send(b"first\n")
    router.on_readable(fd)
    assert _texts(sent) == ["first\n"]
    for i in range(20):  # no quiet spell between these: held for one coalesced message
        child.send(f"more {i}\n".encode())
        router.on_readable(fd)
    assert _texts(sent) == ["first\n"]
    assert router.due() is not None
    assert 0 < router.read_delay(fd) <= router.read_gap
    router.flush()
    assert _texts(sent)[-1] == "".join(f"more {i}\n" for i in range(20))


def test_sporadic_prints_are_rate_limited_by_the_token_bucket():
    router, fd, child, sent = _router(interval=10.0, burst=2, rate=0.001)
    for i in range(4):
        child.send(f"p{i}\n".encode())
        router.on_readable(fd)
        time.sleep(0.01)
    assert _texts(sent) == ["p0\n", "p1\n", "p2\n"]  # the first after silence, then the burst
    assert router.due() is not None


def test_the_budget_makes_continuous_reads_wait():
    router, fd, child, sent = _router(interval=10.0, quiet=1.0)  # "b" is continuous however slow the machine
    router.budget = ReadBudget(share=0.1, slack=0.0)
    router.budget.spend(0.01, time.monotonic())  # 10 ms spent: 100 ms to pay back at 10 %
    child.send(b"a\n")
    router.on_readable(fd)  # sporadic: never held, whatever the budget
    assert router.read_delay(fd) == 0.0
    child.send(b"b\n")
    router.on_readable(fd)  # continuous
    assert 0.05 < router.read_delay(fd) < 0.2


def test_frame_reader_joins_runs_of_one_stream_and_keeps_messages_apart():
    head = struct.Struct("!IB")

    def frame(kind: int, payload: bytes) -> bytes:
        return head.pack(len(payload), kind) + payload

    data = (frame(STDOUT, b"a\n") + frame(STDOUT, b"b\n") + frame(STDERR, b"e") + frame(MESSAGE, b"m1")
            + frame(MESSAGE, b"m2") + frame(STDOUT, b"c") + frame(STDOUT, b"d"))
    assert list(FrameReader().feed(data)) == [
        (STDOUT, b"a\nb\n"), (STDERR, b"e"), (MESSAGE, b"m1"), (MESSAGE, b"m2"), (STDOUT, b"cd")]
    for cut in range(len(data) + 1):  # split anywhere: same bytes per stream, same messages
        reader = FrameReader()
        frames = list(reader.feed(data[:cut])) + list(reader.feed(data[cut:]))
        assert b"".join(p for k, p in frames if k == STDOUT) == b"a\nb\ncd"
        assert [p for k, p in frames if k == MESSAGE] == [b"m1", b"m2"]


def test_the_log_touches_the_disk_only_when_output_is_large(tmp_path):
    def run(text: str, cap: int) -> tuple[list[str], str | None]:
        sent: list = []
        directory = tmp_path / f"cap{cap}-{len(text)}"
        router = Router(lambda kind, content: sent.append((kind, content)), label_workers=False, cap=cap,
                        interval=0.05, log_dir=str(directory), log_name="spawn-1.log")
        ours, theirs = socket.socketpair()
        fd = router.add(ours, framed=False).fd
        theirs.sendall(text.encode())
        theirs.close()
        while router.on_readable(fd):
            pass
        router.close_source(fd)
        kept = router.close()
        return (sorted(p.name for p in directory.iterdir()) if directory.exists() else []), kept

    assert run("small\n", cap=1 << 30) == ([], None)  # never created
    assert run("x" * 200_000, cap=1 << 30) == ([], None)  # created, then deleted: all was published
    files, kept = run("y" * 200_000, cap=2048)  # withheld past the cap: kept, every character in it
    assert files == ["spawn-1.log"] and kept is not None
    with open(kept) as f:
        assert f.read() == "y" * 200_000
    files, kept = run("z" * 5000, cap=1024)  # less than the in-memory head, but past the cap
    assert files == ["spawn-1.log"] and kept is not None
    with open(kept) as f:
        assert f.read() == "z" * 5000


def test_a_log_that_cannot_be_written_is_said_in_the_cell_and_nothing_is_lost_silently(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should be")
    sent: list = []
    router = Router(lambda kind, content: sent.append((kind, content)), label_workers=False, cap=1024,
                    interval=0.05, log_dir=str(blocker / "logs"), log_name="spawn-1.log")
    ours, theirs = socket.socketpair()
    fd = router.add(ours, framed=False).fd
    theirs.sendall(b"w" * 5000)
    theirs.close()
    while router.on_readable(fd):
        pass
    router.close_source(fd)
    assert router.close() is None  # no log to point at
    text = "".join(_texts(sent))
    assert f"[procmagic] cannot write the log {blocker / 'logs' / 'spawn-1.log'}: Not a directory; " \
           "output past the cap is not kept\n" in text
    assert text.count("w") >= 1024 and "of output withheld past the cap; it could not be kept in a log\n" in text


def test_a_log_filling_past_the_cap_is_said_even_when_no_text_is_pending(tmp_path):
    # The cap is reached by the first read; the log fills on a later read whose text is all
    # withheld, so nothing is pending when its notice is queued. It used to wait for a flush
    # that returned early with nothing pending and was never published (a flaky fault test).
    sent: list = []
    router = Router(lambda kind, content: sent.append((kind, content)), label_workers=False, cap=1024,
                    interval=0.05, log_dir=str(tmp_path), log_name="spawn-1.log", log_limit=20_000)
    ours, theirs = socket.socketpair()
    fd = router.add(ours, framed=False).fd
    _open.extend([router, theirs])
    theirs.sendall(b"a" * 2000)
    while sum(len(t) for t in _texts(sent)) < 1024:  # bounded: the bytes are already in the socket
        router.on_readable(fd)
        router.flush()
    notice = "reached its limit of 19.5 KB (%config ProcMagics.log_limit)"
    assert not any(notice in t for t in _texts(sent))
    theirs.sendall(b"b" * 30_000)
    theirs.close()
    while router.on_readable(fd):
        if any(notice in t for t in _texts(sent)):
            break
    assert any(notice in t for t in _texts(sent))  # at once, not only when the spawn ends
    router.close_source(fd)
    kept = router.close()
    text = "".join(_texts(sent))
    assert text.count(notice) == 1
    assert "the first 19.5 KB of output are in" in text and kept is not None
    with open(kept) as f:
        assert f.read().startswith("a" * 2000 + "b" * 18_000)
