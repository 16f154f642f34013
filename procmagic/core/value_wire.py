"""The wire format of result channels (see ``values.py``): one message is a header ``!BQQI``
(kind, tag, length of the pickle stream, number of out-of-band buffers), the buffers' lengths
(``!Q`` each), the pickle stream, then the buffers.

The child's side pickles (cloudpickle, protocol 5) and sends; the parent's side, ``Receiver``,
reads without blocking into the memory the value will use, and ``decode`` loads it once.
"""

from __future__ import annotations

import collections
import io
import json
import mmap
import pickle
import socket
import struct
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cloudpickle

from .errors import ProcmagicError
from .status import format_size

if TYPE_CHECKING:
    from .status import ExitStatus

__all__ = [
    "Message", "Outcome", "Receiver", "NoResult", "ChildError", "RemoteTraceback", "send_value", "send_error",
    "decode", "no_value", "DEFAULT_LIMIT", "VALUE", "ERROR", "FAILED",
]

VALUE, ERROR, FAILED = 1, 2, 3
_HEAD = struct.Struct("!BQQI")
_LEN = struct.Struct("!Q")
_MAX_BUFFERS = 1 << 16
DEFAULT_LIMIT = 8 * 1024**3  # 8 GiB: generous, but a corrupt header cannot allocate the moon
_PIECE = 4 * 1024 * 1024  # the pickle stream is received in pieces of this size at most


class NoResult(ProcmagicError):
    """The child sent no value: it died by a signal, exited early, timed out, or its value could
    not be serialised or was over the size limit. ``reason`` says which, ``status`` is the
    child's ExitStatus when known."""

    def __init__(self, message: str, reason: str = "", status: "ExitStatus | None" = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class ChildError(ProcmagicError):
    """The child raised an exception that could not cross back itself (it could not be
    pickled); its type, message and traceback are in the text."""


class RemoteTraceback(Exception):
    """The child's traceback, attached as ``__cause__`` of an exception re-raised in the parent."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\nthe child's traceback:\n\"\"\"\n{self.text.rstrip()}\n\"\"\""


# -- the child's side -----------------------------------------------------------------------------
def _frame(kind: int, tag: int, data: Any, buffers: list[memoryview]) -> list[Any]:
    head = _HEAD.pack(kind, tag, len(data), len(buffers))
    lens = b"".join(_LEN.pack(b.nbytes) for b in buffers)
    return [head + lens, data, *buffers]


def _send(sock: socket.socket, parts: list[Any]) -> None:
    for part in parts:
        if len(part):
            sock.sendall(part)


def _failed(sock: socket.socket, tag: int, reason: str, **facts: Any) -> None:
    data = json.dumps({"reason": reason, **facts}).encode()
    _send(sock, _frame(FAILED, tag, data, []))


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ in ("builtins", "__main__") else f"{t.__module__}.{t.__qualname__}"


def send_value(sock: socket.socket, value: Any, tag: int = 0, limit: int | None = None) -> bool:
    """Child side: send ``value`` (cloudpickle, protocol 5). When it cannot be serialised or is
    over ``limit`` bytes, send why instead. Returns whether the value itself was sent."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        raws = [b.raw() for b in buffers]
    except BufferError:  # a non-contiguous buffer: pickle everything in band
        data, raws = cloudpickle.dumps(value, protocol=5), []
    except Exception as exc:
        _failed(sock, tag, "unpicklable", type=_type_name(value), error=f"{type(exc).__name__}: {exc}")
        return False
    size = len(data) + sum(r.nbytes for r in raws)
    if limit is not None and size > limit:
        _failed(sock, tag, "too_large", type=_type_name(value), size=size, limit=limit)
        return False
    _send(sock, _frame(VALUE, tag, data, raws))
    return True


def send_error(sock: socket.socket, exc: BaseException, tag: int = 0) -> None:
    """Child side: send the exception ``exc`` with its formatted traceback."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data = cloudpickle.dumps((exc, text), protocol=5)
        pickle.loads(data)  # an exception whose __init__ wants other arguments fails only here
    except Exception:
        payload = {"reason": "exception", "type": _type_name(exc), "message": str(exc), "traceback": text}
        _send(sock, _frame(FAILED, tag, json.dumps(payload).encode(), []))
        return
    _send(sock, _frame(ERROR, tag, data, []))


# -- the parent's side ----------------------------------------------------------------------------
@dataclass
class Message:
    kind: int
    tag: int
    data: Any  # the pickle stream (or JSON) as a list of bytearray pieces; None once decoded
    buffers: list[bytearray] = field(default_factory=list)
    over_limit: int = 0  # the size, when the parent refused a message over its limit
    limit: int = 0  # that limit
    decoded: "Outcome | None" = None  # decode()'s answer, kept: the data is gone by then


@dataclass
class Outcome:
    """What one child sent: ``ok`` with ``value``, or the exception to raise (``error``)."""

    ok: bool
    value: Any = None
    error: BaseException | None = None
    reason: str = ""  # "", "exception", "unpicklable", "too_large", "no value"

    def unwrap(self) -> Any:
        if self.ok:
            return self.value
        assert self.error is not None
        raise self.error


class _Pieces(io.RawIOBase):
    """The received pickle stream as a file for the unpickler, each piece freed once read: a
    large ``bytes`` in the value is read straight into the object the unpickler made for it
    (``readinto``), so the stream and the value are never both held whole."""

    def __init__(self, pieces: list[Any]) -> None:
        super().__init__()
        self._pieces = collections.deque(pieces)
        pieces.clear()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        out = memoryview(b).cast("B")
        n = 0
        while n < len(out) and self._pieces:
            head = self._pieces[0]
            take = min(len(head) - self._pos, len(out) - n)
            out[n:n + take] = memoryview(head)[self._pos:self._pos + take]
            n += take
            self._pos += take
            if self._pos == len(head):
                self._pieces.popleft()
                self._pos = 0
                if isinstance(head, mmap.mmap):
                    try:
                        head.close()
                    except BufferError:  # still viewed somewhere: freed with its last view
                        pass
        return n


def _load(msg: Message) -> Any:
    pieces, msg.data = msg.data, None
    if len(pieces) == 1:
        return pickle.loads(pieces[0], buffers=msg.buffers)
    return pickle.Unpickler(_Pieces(pieces), buffers=msg.buffers).load()


def decode(msg: Message) -> Outcome:
    """The value or the exception a message carries (loading it in this process, once)."""
    if msg.decoded is None:
        msg.decoded = _decode(msg)
        msg.buffers = []
    return msg.decoded


def _decode(msg: Message) -> Outcome:
    if msg.over_limit:
        return Outcome(False, error=NoResult(
            f"the child's value is {format_size(msg.over_limit)}, over the limit of {format_size(msg.limit)}; "
            "it was read and discarded", "too_large"), reason="too_large")
    if msg.kind == VALUE:
        try:
            value = _load(msg)
        except Exception as exc:
            return Outcome(False, error=NoResult(
                f"the child's value could not be loaded here: {type(exc).__name__}: {exc}", "unpicklable"),
                reason="unpicklable")
        return Outcome(True, value)
    if msg.kind == ERROR:
        raised, text = _load(msg)
        raised.__cause__ = RemoteTraceback(text)
        raised.child_traceback = text
        return Outcome(False, error=raised, reason="exception")
    facts = json.loads(b"".join(msg.data))
    reason = facts.get("reason", "")
    if reason == "exception":
        err = ChildError(f"{facts.get('type')}: {facts.get('message')}\n(the child's exception could not be "
                         f"pickled, so it is shown here as text)")
        err.__cause__ = RemoteTraceback(facts.get("traceback", ""))
        err.child_traceback = facts.get("traceback", "")  # type: ignore[attr-defined]
        return Outcome(False, error=err, reason=reason)
    if reason == "unpicklable":
        return Outcome(False, error=NoResult(
            f"the child's value, of type {facts.get('type')}, could not be serialised: {facts.get('error')} "
            "(return something picklable, e.g. plain data, or convert it first)", reason), reason=reason)
    if reason == "too_large":
        return Outcome(False, error=NoResult(
            f"the child's value, of type {facts.get('type')}, is {format_size(facts.get('size', 0))}, over the limit "
            f"of {format_size(facts.get('limit', 0))}; return less, or raise the limit", reason), reason=reason)
    return Outcome(False, error=NoResult(f"the child sent something unexpected: {facts!r}", "no value"),
                   reason="no value")


class Receiver:
    """Reads messages from the parent's end without blocking; ``read()`` whenever it is readable."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = DEFAULT_LIMIT if limit is None else limit
        self.messages: list[Message] = []
        self.eof = False
        self._start(_HEAD.size)
        self._phase = "head"
        self._msg: Message | None = None
        self._lens: list[int] = []
        self._discard = 0

    def _start(self, size: int, target: Any = None) -> None:
        self._target = bytearray(size) if target is None else target
        self._view = memoryview(self._target)
        self._got = 0

    def _start_piece(self) -> None:
        size = min(self._left, _PIECE)
        # A stream of several pieces gets pieces of its own mapped memory: each goes back to the
        # system the moment the unpickler has read it, whatever malloc would do with a free().
        self._start(size, mmap.mmap(-1, size) if self._size > _PIECE else None)

    @property
    def busy(self) -> bool:
        """True in the middle of a message."""
        return self._phase != "head" or self._got > 0

    def read(self, sock: socket.socket, max_bytes: int = 1 << 62) -> bool:
        """Read what is there (up to about ``max_bytes``); False at end of file."""
        done = 0
        while done < max_bytes:
            try:
                if self._discard:
                    n = len(sock.recv(min(self._discard, 1 << 20)))
                else:
                    n = sock.recv_into(self._view[self._got:])
            except (BlockingIOError, InterruptedError):
                return True
            except (ConnectionResetError, OSError):
                n = 0
            if n == 0:
                self.eof = True
                return False
            done += n
            if self._discard:
                self._discard -= n
                if not self._discard:
                    self._complete()
                continue
            self._got += n
            if self._got == len(self._target):
                self._advance()
        return True

    def _advance(self) -> None:
        # The current part is full (zero-length parts count as full): move to the next one.
        while self._got == len(self._target):
            if self._phase == "head":
                kind, tag, size, nbuf = _HEAD.unpack(self._target)
                if kind not in (VALUE, ERROR, FAILED) or nbuf > _MAX_BUFFERS:
                    raise ValueError(f"corrupt result message: kind {kind}, {nbuf} buffers")
                self._msg = Message(kind, tag, None)
                self._size = size
                self._phase = "lens"
                self._start(_LEN.size * nbuf)
            elif self._phase == "lens":
                self._lens = [v for (v,) in _LEN.iter_unpack(self._target)]
                total = self._size + sum(self._lens)
                assert self._msg is not None
                if total > self.limit:  # read past it without keeping it; decode() says why
                    self._msg.over_limit = total
                    self._msg.limit = self.limit
                    self._discard = total
                    self._phase = "discard"
                    return
                self._phase = "data"
                self._pieces: list[Any] = []
                self._left = self._size
                self._start_piece()
            elif self._phase == "data":
                # the pickle stream arrives in pieces, which the unpickler frees as it goes
                assert self._msg is not None
                self._pieces.append(self._target)
                self._left -= len(self._target)
                if self._left > 0:
                    self._start_piece()
                    continue
                self._msg.data, self._pieces = self._pieces, []
                self._phase = "buffer"
                if not self._lens:
                    self._complete()
                    return
                self._start(self._lens[0])
            else:  # "buffer"
                assert self._msg is not None
                self._msg.buffers.append(self._target)
                if len(self._msg.buffers) == len(self._lens):
                    self._complete()
                    return
                self._start(self._lens[len(self._msg.buffers)])

    def _complete(self) -> None:
        assert self._msg is not None
        self.messages.append(self._msg)
        self._msg = None
        self._lens = []
        self._phase = "head"
        self._start(_HEAD.size)


def no_value(status: "ExitStatus | None", what: str = "the child") -> Outcome:
    how = status.how if status is not None else "ended"
    if status is not None and status.timed_out:
        reason = "timed out"
    elif status is not None and status.signal is not None:
        reason = "signal"
    else:
        reason = "no value"
    return Outcome(False, error=NoResult(f"{what} {how} without sending a value", reason, status), reason=reason)
