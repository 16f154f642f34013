"""Values from a child back to its parent: a result channel.

``Process`` keeps swoole's meaning of a return value (the exit code). A value travels on a
``ResultChannel`` instead: a socketpair made before the fork, whose child end sends one or more
messages, each a value, an exception, or why no value could be sent.

Wire format of one message: a header ``!BQQI`` (kind, tag, length of the pickle stream, number
of out-of-band buffers), the buffers' lengths (``!Q`` each), the pickle stream, then the
buffers. Values are pickled with cloudpickle (so lambdas, closures and classes defined in a
notebook come back) at pickle protocol 5: the data of numpy arrays, ``bytearray`` and other
``PickleBuffer`` exporters crosses out of band, sent straight from the child's memory and
received straight into the memory the parent's value will use (``recv_into``), never held
twice. ``bytes`` and ``bytearray`` travel inside the pickle stream, which is received in mapped
pieces of 4 MB that go back to the system as the unpickler reads them into the value
(``readinto``): the peak stays about one value plus one piece. A ``str`` is decoded from UTF-8,
which needs a temporary copy.

The parent reads without blocking (``Receiver.read``), so an event loop can read a large value
in pieces while it does other work; ``ResultChannel.receive`` is the blocking form.
"""

from __future__ import annotations

import collections
import io
import json
import mmap
import os
import pickle
import select
import socket
import struct
import traceback
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cloudpickle

from .errors import ProcmagicError

if TYPE_CHECKING:
    from .process import Process
    from .status import ExitStatus

__all__ = [
    "ResultChannel", "Receiver", "Message", "Outcome", "NoResult", "ChildError", "RemoteTraceback",
    "send_value", "send_error", "result_of", "record", "claim_in_child", "no_value", "DEFAULT_LIMIT",
]

VALUE, ERROR, FAILED = 1, 2, 3
_HEAD = struct.Struct("!BQQI")
_LEN = struct.Struct("!Q")
_MAX_BUFFERS = 1 << 16
DEFAULT_LIMIT = 8 * 1024**3  # 8 GiB: generous, but a corrupt header cannot allocate the moon
_SNDBUF = 4 * 1024 * 1024
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
            f"the child's value is {_size(msg.over_limit)}, over the limit of {_size(msg.limit)}; "
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
            f"the child's value, of type {facts.get('type')}, is {_size(facts.get('size', 0))}, over the limit "
            f"of {_size(facts.get('limit', 0))}; return less, or raise the limit", reason), reason=reason)
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


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# -- a channel ------------------------------------------------------------------------------------
_open: "weakref.WeakSet[ResultChannel]" = weakref.WeakSet()


class ResultChannel:
    """A socketpair that carries values from a child to its parent.

    Make it before ``start()``; in the child, ``send(value)`` (or ``send_error(exc)``); in the
    parent, call ``parent_side()`` right after ``start()`` and then ``receive(process)``::

        ch = ResultChannel()
        p = Process(lambda proc: ch.send(sum(range(10))))
        p.start(); ch.parent_side()
        ch.receive(p)          # 45, or the child's exception raised again, or NoResult

    Every child forked afterwards (by anyone) closes the parent's end in itself, so only the
    parent ever reads it. ``duplex=True`` lets the parent send small commands the other way
    (``procmagic.map`` sends chunk numbers).
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.parent, self.child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.child.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        except OSError:
            pass
        self.receiver = Receiver(limit)
        self._pid = os.getpid()
        _open.add(self)

    # child
    def send(self, value: Any, tag: int = 0) -> bool:
        """In the child: send ``value``; False when only the reason it could not be sent went."""
        return send_value(self.child, value, tag, self.limit)

    def send_error(self, exc: BaseException, tag: int = 0) -> None:
        send_error(self.child, exc, tag)

    # parent
    def parent_side(self) -> None:
        """In the parent after ``start()``: close the child's end (only the child writes it)."""
        if self.child.fileno() >= 0:
            self.child.close()
        self.parent.setblocking(False)

    def fileno(self) -> int:
        return self.parent.fileno()

    def read(self, max_bytes: int = 1 << 62) -> bool:
        """Non-blocking: read what is there; False at end of file."""
        return self.receiver.read(self.parent, max_bytes)

    def close(self) -> None:
        for sock in (self.parent, self.child):
            if sock.fileno() >= 0:
                sock.close()
        _open.discard(self)

    def receive(self, proc: "Process", timeout: float | None = None) -> Any:
        """Block until ``proc`` sent its value and ended; return the value, or raise the child's
        exception (its traceback attached as ``__cause__``) or :class:`NoResult`. Joins ``proc``."""
        outcome = self.outcome(proc, timeout)
        return outcome.unwrap()

    def outcome(self, proc: "Process", timeout: float | None = None) -> Outcome:
        """As :meth:`receive`, but returns the :class:`Outcome` instead of raising."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = proc.exit_fd
        poller = select.poll()
        poller.register(self.parent.fileno(), select.POLLIN)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        ended = False
        while not self.receiver.messages and not self.receiver.eof:
            if ended:
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0:
                raise TimeoutError(f"no value from process {proc.id} (pid {proc.pid}) after {timeout} s")
            ms = 50 if pidfd is None else (None if left is None else int(left * 1000) + 1)
            for fd, _ in poller.poll(ms):
                if fd == self.parent.fileno():
                    self.read()
                else:
                    ended = True
            if pidfd is None and not proc.is_alive():
                ended = True
            if ended:
                self.read()  # all it sent before exiting is in the socket now
        status = proc.join()
        outcome = self.finish(status)
        record(proc, outcome)
        return outcome

    def finish(self, status: "ExitStatus | None") -> Outcome:
        """The outcome once the child has ended (its status), from what was received."""
        msgs = self.receiver.messages
        if msgs:
            return decode(msgs[-1])
        return no_value(status)


def no_value(status: "ExitStatus | None", what: str = "the child") -> Outcome:
    how = status.how if status is not None else "ended"
    if status is not None and status.timed_out:
        reason = "timed out"
    elif status is not None and status.signal is not None:
        reason = "signal"
    else:
        reason = "no value"
    return Outcome(False, error=NoResult(f"{what} {how} without sending a value", reason, status), reason=reason)


def claim_in_child(keep: ResultChannel) -> None:
    """In a child: close the child ends of every other channel (its siblings', made before it
    forked), so each sibling's parent sees end of file when that sibling ends."""
    for ch in list(_open):
        if ch is not keep and ch.child.fileno() >= 0:
            ch.child.close()


def _after_fork_in_child() -> None:
    # No child reads a parent's end: close them all. Child ends are kept only when the process
    # that forks us made them (one is ours; the parent closes it after the fork); one inherited
    # from further up (our parent's own value channel) would keep its reader from seeing the end.
    forker = os.getppid()
    for ch in list(_open):
        if ch.parent.fileno() >= 0:
            ch.parent.close()
        if ch._pid != forker and ch.child.fileno() >= 0:
            ch.child.close()


os.register_at_fork(after_in_child=_after_fork_in_child)

# -- a value remembered per process -----------------------------------------------------------------
_outcomes: "weakref.WeakKeyDictionary[Process, Outcome]" = weakref.WeakKeyDictionary()


def record(proc: "Process", outcome: Outcome) -> None:
    """Remember what ``proc`` sent back; ``proc.result`` reads it."""
    _outcomes[proc] = outcome


def result_of(proc: "Process") -> Any:
    """``proc.result``: the value the child sent back, or raises why there is none."""
    outcome = _outcomes.get(proc)
    if outcome is None:
        from .errors import ProcessStateError

        raise ProcessStateError(
            f"process {proc.id} has no result: only children that send one back have it "
            "(procmagic.call, %%spawn --result), and only once they ended")
    return outcome.unwrap()
