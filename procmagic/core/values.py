"""Values from a child back to its parent: a result channel.

``Process`` keeps swoole's meaning of a return value (the exit code). A value travels on a
``ResultChannel`` instead: a socketpair made before the fork, whose child end sends one or more
messages, each a value, an exception, or why no value could be sent.

Wire format of one message: a header ``!BQQI`` (kind, tag, length of the pickle stream, number
of out-of-band buffers), the buffers' lengths (``!Q`` each), the pickle stream, then the
buffers. Values are pickled with cloudpickle (so lambdas, closures and classes defined in a
notebook come back) at pickle protocol 5: the data of numpy arrays and other
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

import os
import select
import socket
import time
import weakref
from typing import TYPE_CHECKING, Any

from .value_wire import (DEFAULT_LIMIT, ChildError, Message, NoResult, Outcome, Receiver, RemoteTraceback,
                         decode, no_value, send_error, send_value)

if TYPE_CHECKING:
    from .process import Process
    from .status import ExitStatus

__all__ = [
    "ResultChannel", "Receiver", "Message", "Outcome", "NoResult", "ChildError", "RemoteTraceback",
    "send_value", "send_error", "result_of", "record", "claim_in_child", "no_value", "decode", "DEFAULT_LIMIT",
]

_SNDBUF = 4 * 1024 * 1024


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
        deadline = None if timeout is None else time.monotonic() + timeout
        with proc.hold_exit_fd() as pidfd:  # open while polled, whoever reaps the child
            self._wait(proc, pidfd, deadline, timeout)
        status = proc.join()
        outcome = self.finish(status)
        record(proc, outcome)
        return outcome

    def _wait(self, proc: "Process", pidfd: int | None, deadline: float | None, timeout: float | None) -> None:
        """Read until a message came or the child ended (and what it sent is read)."""
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

    def finish(self, status: "ExitStatus | None") -> Outcome:
        """The outcome once the child has ended (its status), from what was received."""
        msgs = self.receiver.messages
        if msgs:
            return decode(msgs[-1])
        return no_value(status)


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
