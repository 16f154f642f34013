"""procmagic's own channel from a spawned child to the kernel: framed messages on a socketpair.

The child's Python-level stdout and stderr, its display() calls, its last expression's value
and its formatted tracebacks all travel here, in order, and the kernel publishes them with
the spawning cell's parent header. ipykernel itself drops what a forked child sends (its
Session checks the pid), and must: a child writing to the kernel's zmq sockets corrupts them.

A frame is ``!IB`` (payload length, kind) then the payload. Kinds: ``o``/``e`` stdout/stderr
bytes, ``m`` a Jupyter message as ``!I`` header length, header JSON, content JSON, ``i`` a
prompt (JSON; the answer comes back the other way on the same socket, see ``stdin.py``).

Bounded pieces. The child writes text in frames of at most ``TEXT_FRAME`` bytes whatever the
size of one ``write()``; a message (a display, a result, a traceback) may take ``MESSAGE_FRAME``
bytes, a prompt ``INPUT_FRAME``; a bigger message is replaced, in the child, by a line on its
stderr saying so. The kernel's reader keeps at most one frame and one read in memory
(docs/reliability.md, "Bounded memory").

Validation. The reader checks every frame: a known kind, a length within that kind's bound, a
message whose header and content are JSON objects of a message type a child may publish. The
first bad frame raises ``BadFrame``: the router then ends that spawn's channel with a message in
its cell, and the child is stopped.
"""

from __future__ import annotations

import io
import json
import socket
import struct
from typing import Any, Iterator

__all__ = ["FrameWriter", "ChannelRaw", "ChannelSocket", "FrameReader", "BadFrame", "make_channel",
           "decode_message", "TEXT_FRAME", "MESSAGE_FRAME", "INPUT_FRAME"]

_HEAD = struct.Struct("!IB")
_HLEN = struct.Struct("!I")
STDOUT, STDERR, MESSAGE = ord("o"), ord("e"), ord("m")
INPUT = ord("i")  # a prompt: the child waits for the answer on the same socket (see stdin.py)
_DELIM = b"<IDS|MSG>"

TEXT_FRAME = 64 * 1024  # bytes of stdout/stderr text in one frame
MESSAGE_FRAME = 8 * 1024 * 1024  # one display, result or traceback (JSON): it costs ~5x in the kernel
INPUT_FRAME = 64 * 1024  # one prompt (JSON)
_LIMITS = {STDOUT: TEXT_FRAME, STDERR: TEXT_FRAME, MESSAGE: MESSAGE_FRAME, INPUT: INPUT_FRAME}
#: What a child may publish through the channel (its displayhook, display publisher, tracebacks).
MESSAGE_TYPES = frozenset({"display_data", "update_display_data", "execute_result", "error", "stream",
                           "clear_output"})


class BadFrame(ValueError):
    """A frame on a child's channel that procmagic's writer would never produce."""


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
        size = _HLEN.size + len(header) + len(content)
        if size > MESSAGE_FRAME:
            note = (f"[procmagic] a message of {size / 2**20:.1f} MB (a display or a result) is larger than the "
                    f"{MESSAGE_FRAME // 2**20} MB one message from a child may take; it was not sent\n")
            self.frame(STDERR, note.encode())
            return
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
        view = memoryview(data).cast("B")
        for start in range(0, len(view), TEXT_FRAME):  # bounded frames, whatever one write's size
            self._writer.frame(self._kind, bytes(view[start:start + TEXT_FRAME]))
        return len(view)


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
    writes a frame per line, and the reader then decodes and stores each run once. At a frame
    of an unknown kind or beyond its kind's bound, ``feed`` returns the good frames before it
    and sets ``error`` (a ``BadFrame``); every later feed raises it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.error: BadFrame | None = None

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        if self.error is not None:
            raise self.error
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
            limit = _LIMITS.get(kind)
            if limit is None or length > limit:
                what = f"a frame of unknown kind {kind}" if limit is None else (
                    f"a {chr(kind)!r} frame of {length} bytes (at most {limit})")
                self.error = BadFrame(f"{what} at byte {pos} of the pending data")
                del buf[:]  # nothing after a bad frame can be trusted
                break
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
        if pos and self.error is None:
            del buf[:pos]
        return iter(frames)

    @property
    def pending(self) -> int:
        return len(self._buf)


def decode_message(payload: bytes) -> tuple[str, dict[str, Any]]:
    """(msg_type, content) of a MESSAGE frame; ``BadFrame`` when it is not one procmagic's
    writer makes (a header length past the end, JSON that is not an object, an unknown type)."""
    if len(payload) < _HLEN.size:
        raise BadFrame(f"a message frame of {len(payload)} bytes, too short for its header length")
    (hlen,) = _HLEN.unpack_from(payload, 0)
    if hlen > len(payload) - _HLEN.size:
        raise BadFrame(f"a message header of {hlen} bytes in a frame of {len(payload)}")
    try:
        header = json.loads(payload[4 : 4 + hlen])
        content = json.loads(payload[4 + hlen :])
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadFrame(f"a message that is not JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict) or not isinstance(content, dict):
        raise BadFrame("a message whose header or content is not a JSON object")
    msg_type = header.get("msg_type")
    if msg_type not in MESSAGE_TYPES:
        raise BadFrame(f"a message of type {str(msg_type)[:40]!r}, which a child may not publish")
    if msg_type == "stream":
        ok = content.get("name") in ("stdout", "stderr") and isinstance(content.get("text"), str)
    elif msg_type == "error":
        ok = isinstance(content.get("traceback", []), list)
    elif msg_type == "clear_output":
        ok = True
    else:
        ok = isinstance(content.get("data"), dict) and isinstance(content.get("metadata", {}), dict)
    if not ok:
        raise BadFrame(f"a {msg_type} message whose content is not shaped like one")
    return str(msg_type), content
