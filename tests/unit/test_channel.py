"""The channel's frames: bounded whatever one write's size, and every frame validated."""

from __future__ import annotations

import json
import socket
import struct
from typing import Iterator

import pytest

from procmagic.kernel.channel import (MESSAGE, MESSAGE_FRAME, STDERR, STDOUT, TEXT_FRAME, BadFrame, ChannelRaw,
                                      FrameReader, FrameWriter, decode_message)

_HEAD = struct.Struct("!IB")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _message(header: object, content: object) -> bytes:
    h, c = json.dumps(header).encode(), json.dumps(content).encode()
    return struct.pack("!I", len(h)) + h + c


def test_one_big_write_becomes_bounded_frames(pair) -> None:
    ours, theirs = pair
    theirs.setblocking(False)
    raw = ChannelRaw(FrameWriter(ours), STDOUT)
    data = b"h" * (3 * TEXT_FRAME + 5)
    assert raw.write(memoryview(data)) == len(data)
    got = b""
    while True:
        try:
            got += theirs.recv(1 << 20)
        except BlockingIOError:
            break
    sizes, pos = [], 0
    while pos < len(got):
        length, kind = _HEAD.unpack_from(got, pos)
        assert kind == STDOUT
        sizes.append(length)
        pos += _HEAD.size + length
    assert sizes == [TEXT_FRAME, TEXT_FRAME, TEXT_FRAME, 5]
    assert b"".join(frame for _, frame in FrameReader().feed(got)) == data


def test_the_reader_holds_at_most_a_frame_and_a_read() -> None:
    reader = FrameReader()
    frame = _HEAD.pack(TEXT_FRAME, STDOUT) + b"x" * TEXT_FRAME
    stream = frame * 64
    total, peak = 0, 0
    for start in range(0, len(stream), 256 * 1024 - 7):  # reads that split frames anywhere
        for kind, payload in reader.feed(stream[start:start + 256 * 1024 - 7]):
            total += len(payload)
        peak = max(peak, reader.pending)
    assert total == 64 * TEXT_FRAME
    assert peak <= TEXT_FRAME + _HEAD.size


@pytest.mark.parametrize("head, why", [
    (_HEAD.pack(10, ord("z")), "unknown kind"),
    (_HEAD.pack(TEXT_FRAME + 1, STDOUT), "at most"),
    (_HEAD.pack(MESSAGE_FRAME + 1, MESSAGE), "at most"),
    (_HEAD.pack(0xFFFFFFFF, STDERR), "at most"),
])
def test_a_bad_frame_is_refused_after_the_good_ones(head: bytes, why: str) -> None:
    reader = FrameReader()
    good = _HEAD.pack(3, STDOUT) + b"ok\n"
    frames = list(reader.feed(good + head + b"rest"))
    assert frames == [(STDOUT, b"ok\n")]
    assert reader.error is not None and why in str(reader.error)
    assert reader.pending == 0  # nothing after a bad frame is kept
    with pytest.raises(BadFrame):
        reader.feed(b"more")


@pytest.mark.parametrize("payload, why", [
    (b"\x00\x00", "too short"),
    (struct.pack("!I", 1000) + b"{}", "header of 1000 bytes"),
    (struct.pack("!I", 2) + b"{}" + b"not json", "not JSON"),
    (struct.pack("!I", 2) + b"[]" + b"{}", "not a JSON object"),
    (_message({"msg_type": "comm_open"}, {}), "may not publish"),
    (_message({"msg_type": "stream"}, {"name": "stdin", "text": "x"}), "not shaped"),
    (_message({"msg_type": "display_data"}, {"data": "x"}), "not shaped"),
    (struct.pack("!I", 2) + b"{}" + b"[" * 100000, "not JSON"),
])
def test_a_bad_message_is_refused(payload: bytes, why: str) -> None:
    with pytest.raises(BadFrame, match=why):
        decode_message(payload)


def test_a_good_message_decodes() -> None:
    content = {"data": {"text/plain": "1"}, "metadata": {}}
    assert decode_message(_message({"msg_type": "display_data"}, content)) == ("display_data", content)


def test_a_message_too_big_for_a_frame_becomes_a_notice(pair) -> None:
    ours, theirs = pair
    FrameWriter(ours).message(b'{"msg_type": "display_data"}', b"x" * MESSAGE_FRAME)
    theirs.setblocking(False)
    frames = list(FrameReader().feed(theirs.recv(1 << 20)))
    assert len(frames) == 1 and frames[0][0] == STDERR
    assert b"larger than the 8 MB one message from a child may take" in frames[0][1]
