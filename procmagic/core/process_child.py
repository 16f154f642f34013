"""The child's side of a ``Process``: what it becomes right after the fork (its own end of
the pipe, none of its siblings'), and what only the child may do (``exit``, ``exec``).
Mixed into ``Process``; child.py drives the setup, fork.py the fork itself."""

from __future__ import annotations

import numbers
import os
import signal as _signal
import socket
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple

from . import child as _child
from . import counters as _counters
from .errors import ProcessStateError

if TYPE_CHECKING:
    from .process import Process
    from .record import ChildRecord

__all__ = ["ChildPlan", "ChildSideMixin", "all_processes", "add_process"]

#: The Process objects of this process that a new child must let go of (all but its own): every
#: one until it is reaped with its pipe closed (``_forget_if_done``), then nothing of it is left
#: to close. A kernel keeps a thousand finished ones for %procs; visiting each in every child cost
#: that child ~1.5 ms of copy-on-write faults (185 instead of 33 in ``_become_child``).
#: Weak references whose callback drops them (``add_process``): a ``WeakSet`` does the same in
#: Python, two calls per spawn more, each a page written after the previous fork.
all_processes: "set[weakref.ref[Process]]" = set()
_forget_ref = all_processes.discard


def add_process(proc: "Process") -> None:
    all_processes.add(weakref.ref(proc, _forget_ref))


class ChildPlan(NamedTuple):
    """What the child needs from its Process to set itself up (child.py reads it)."""

    signals: dict[int, Any]
    redirect_fd: int | None
    child_setup: Callable[["Process"], Any] | None
    target: Callable[["Process"], Any]


class ChildSideMixin:
    """The child's side of a ``Process`` (mixed into it)."""

    _in_child: bool
    _own_pid: int
    _errpipe_w: int | None
    _record: "ChildRecord | None"
    _sock: socket.socket | None
    _child_sock: socket.socket | None
    _child_ends: list[socket.socket]
    _counters: Any
    _redirect: bool
    _signals: dict[int, Any]
    _child_setup: Callable[["Process"], Any] | None
    _target: Callable[["Process"], Any]

    def _become_child(self, errpipe_w: int) -> ChildPlan:
        """First step in the child: own pid, own end of the pipe, nothing of the siblings'."""
        self._in_child = True
        self._own_pid = os.getpid()
        self._errpipe_w = errpipe_w
        self._record = None
        if self._sock is not None:
            self._sock.close()
        self._sock, self._child_sock = self._child_sock, None
        self._child_ends = []  # kept open: they are this child's now
        for ref in list(all_processes):
            other = ref()
            if other is not None and other is not self:
                other._drop_inherited()
        if self._counters is not None:
            _counters.set_for_this_process(self._counters)
        fd = self._sock.fileno() if self._redirect and self._sock is not None else None
        return ChildPlan(self._signals, fd, self._child_setup, self._target)

    def _forget_if_done(self) -> None:
        """In the parent: once reaped with every end closed, new children leave this one alone
        (its ``pid`` and ``exitstatus`` still read as they were at their fork)."""
        record = self._record
        sock = self._sock
        if ((sock is None or sock.fileno() < 0) and self._child_sock is None and not self._child_ends
                and (record is None or record.status is not None)):
            all_processes.discard(weakref.ref(self))  # type: ignore[arg-type]

    def _drop_inherited(self) -> None:
        # Plain close() of this copy of the fds; never shutdown(), which would reach the parent's.
        for sock in (self._sock, self._child_sock, *self._child_ends):
            if sock is not None:
                sock.close()
        self._sock = self._child_sock = None
        self._child_ends = []
        self._record = None

    def exit(self, code: int = 0) -> None:
        """End the child now with ``code`` (flushes stdio, then ``os._exit``). Child only."""
        if not self._in_child:
            raise ProcessStateError("exit() ends the child from inside it; from the parent use kill() or stop()")
        if isinstance(code, bool) or not isinstance(code, numbers.Integral) or not 0 <= code <= 255:
            raise ValueError(f"exit code must be an int from 0 to 255, got {code!r}")
        _child.flush_std()
        _counters.for_this_process().mark_exit()
        os._exit(int(code))

    def exec(self, path: str | os.PathLike[str], args: Iterable[str] = (), env: dict[str, str] | None = None) -> None:
        """Replace the child with program ``path`` (searched in PATH when it has no slash).

        ``args`` excludes ``argv[0]``, as in swoole. A failure is raised here and also reaches
        the parent, whose ``join()`` raises the same OSError.
        """
        if not self._in_child:
            raise ProcessStateError("exec() replaces the child's program, so it must be called inside the child (in target)")
        path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise ValueError(f"path must be a non-empty str, not {path!r}")
        if isinstance(args, (str, bytes)):
            raise TypeError(f"args must be a list of str, not a single {type(args).__name__} {args!r}")
        argv = [path, *[os.fspath(a) for a in args]]
        if env is not None and not isinstance(env, dict):
            raise TypeError(f"env must be a dict of str to str or None, not {env!r}")
        _child.flush_std()
        # The new program keeps this pid and could record a SysV queue of its own (a Python
        # using procmagic) without this slot: the parent then lists the records at the reap.
        _counters.for_this_process().mark_queue()
        # Programs expect SIGPIPE and SIGXFSZ at their defaults; Python ignores them.
        _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
        _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
        try:
            if env is None:
                os.execvp(path, argv)
            else:
                os.execvpe(path, argv, env)
        except OSError as exc:
            _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
            _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
            if self._errpipe_w is not None:  # read by the registry at the reap (reaper.py)
                try:
                    os.write(self._errpipe_w, f"{exc.errno}:{path}:{exc.strerror}".encode())
                except OSError:
                    pass
            raise _child.ExecFailed(exc.errno, exc.strerror, path) from None
