"""procmagic's own channel from a spawned child to the kernel: framed messages on a socketpair.

The child's Python-level stdout and stderr, its display() calls, its last expression's value
and its formatted tracebacks all travel here, in order, and the kernel publishes them with
the spawning cell's parent header. ipykernel itself drops what a forked child sends (its
Session checks the pid), and must: a child writing to the kernel's zmq sockets corrupts them.

A frame is ``!IB`` (payload length, kind) then the payload. Kinds: ``o``/``e`` stdout/stderr
bytes, ``m`` a Jupyter message as ``!I`` header length, header JSON, content JSON, ``i`` a
prompt (JSON; the answer comes back the other way on the same socket, see ``stdin.py``).
"""

from __future__ import annotations

import io
import json
import socket
import struct
from typing import Any, Iterator

__all__ = ["FrameWriter", "ChannelRaw", "ChannelSocket", "FrameReader", "make_channel"]

_HEAD = struct.Struct("!IB")
_HLEN = struct.Struct("!I")
STDOUT, STDERR, MESSAGE = ord("o"), ord("e"), ord("m")
INPUT = ord("i")  # a prompt: the child waits for the answer on the same socket (see stdin.py)
_DELIM = b"<IDS|MSG>"


def make_channel() -> tuple[socket.socket, socket.socket]:
    """(kernel's end, child's end) of a new channel."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


class FrameWriter:
    """The child's side: writes whole frames, blocking (the kernel reads as fast as it can)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def frame(self, kind: int, payload: bytes) -> None:
        try:
            self.sock.sendall(_HEAD.pack(len(payload), kind) + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the kernel went away; PR_SET_PDEATHSIG ends us shortly

    def message(self, header: bytes, content: bytes) -> None:
        self.frame(MESSAGE, _HLEN.pack(len(header)) + header + content)


class ChannelRaw(io.RawIOBase):
    """A raw binary stream that frames each write as stdout or stderr bytes."""

    def __init__(self, writer: FrameWriter, kind: int) -> None:
        super().__init__()
        self._writer = writer
        self._kind = kind

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        if data:
            self._writer.frame(self._kind, data)
        return len(data)


class ChannelSocket:
    """Stands in for the kernel's IOPub socket inside the child's displayhook and display
    publisher: a Session signs and serialises the message, this forwards header and content."""

    def __init__(self, writer: FrameWriter) -> None:
        self._writer = writer

    def send_multipart(self, parts: list[Any], *args: Any, **kwargs: Any) -> None:
        parts = [bytes(p) if not isinstance(p, bytes) else p for p in parts]
        try:
            i = parts.index(_DELIM)
        except ValueError:
            return
        # after the delimiter: signature, header, parent header, metadata, content, buffers...
        header, content = parts[i + 2], parts[i + 5]
        self._writer.message(header, content)

    send = send_multipart

    def flush(self, *args: Any, **kwargs: Any) -> None:
        pass


class FrameReader:
    """The kernel's side: feed bytes, get (kind, payload) frames back.

    Consecutive stdout (or stderr) frames come back as one: a child printing line by line
    writes a frame per line, and the reader then decodes and stores each run once.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        head = _HEAD.size
        unpack = _HEAD.unpack_from
        run_kind = -1
        run: list[bytes] = []
        frames: list[tuple[int, bytes]] = []
        while n - pos >= head:
            length, kind = unpack(buf, pos)
            end = pos + head + length
            if end > n:
                break
            payload = bytes(buf[pos + head : end])
            pos = end
            if kind == run_kind:
                run.append(payload)
                continue
            if run:
                frames.append((run_kind, b"".join(run)))
            if kind == MESSAGE or kind == INPUT:
                frames.append((kind, payload))
                run_kind, run = -1, []
            else:
                run_kind, run = kind, [payload]
        if run:
            frames.append((run_kind, b"".join(run)))
        if pos:
            del buf[:pos]
        return iter(frames)

    @property
    def pending(self) -> int:
        return len(self._buf)


def decode_message(payload: bytes) -> tuple[str, dict[str, Any]]:
    """(msg_type, content) of a MESSAGE frame."""
    (hlen,) = _HLEN.unpack_from(payload, 0)
    header = json.loads(payload[4 : 4 + hlen])
    content = json.loads(payload[4 + hlen :])
    return str(header.get("msg_type", "")), content
