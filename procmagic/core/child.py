"""The child side of a fork. Everything here runs only in the child, and ends in ``os._exit``.

What the child resets, in order: the garbage collector's view of what it inherited (frozen, so
its collections never touch the parent's objects and copy their pages); the pipes it inherited from siblings and the parent's end of
its own; its process group (it leads its own, so a signal to the group reaches its whole tree
and a kernel interrupt aimed at another cell misses it); a parent-death signal, so it cannot
outlive a parent killed with SIGKILL, and the subreaper flag, so its orphaned descendants stay
below it (the watcher, watcher.py, stops what is left of its group if the parent dies); inherited Python signal handlers, the signal mask, the
wakeup fd and interval timers; the inherited asyncio loop, which it must never touch (its epoll
instance is shared with the parent); then the redirect and fresh ``sys.stdin/stdout/stderr``.
"""

from __future__ import annotations

import _signal as _csignal
import ctypes
import gc
import os
import signal as _signal
import socket
import sys
import traceback
import weakref
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .process import Process

__all__ = ["bootstrap", "add_child_hook", "close_in_children", "ExecFailed", "die_by", "exit_code_of", "flush_std",
           "set_flush_check", "bind_std_streams"]

_PR_SET_PDEATHSIG = 1
_PR_GET_DUMPABLE = 3
_PR_SET_CHILD_SUBREAPER = 36
_SIGINT = int(_signal.SIGINT)
try:  # loaded in the parent: the child should not have to dlopen anything
    _libc: Any = ctypes.CDLL(None, use_errno=True)
    _prctl: Any = _libc.prctl
    # A harmless first call here binds the symbol, so the child's call does not have to
    # (measured in a fresh child: 65 us and 31 page faults unwarmed, 38 us and 24 warmed).
    _prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)
except (OSError, AttributeError):  # not Linux
    _prctl = None

_hooks: list[Callable[["Process"], None]] = []
_parent_only: "weakref.WeakSet[socket.socket]" = weakref.WeakSet()
_prune_at = 64  # close_in_children() drops closed sockets from _parent_only at this size


def close_in_children(sock: socket.socket) -> None:
    """Close ``sock`` in every child forked from now on (it stays open here).

    For the parent's ends of channels to children: a child that kept a sibling's or the
    parent's end open would hold that pipe open, and its reader would never see end of file.
    Closed and garbage-collected sockets drop out by themselves.
    """
    if not isinstance(sock, socket.socket):
        raise TypeError(f"close_in_children() takes a socket.socket, not {type(sock).__name__} {sock!r}")
    global _prune_at
    _parent_only.add(sock)
    if len(_parent_only) >= _prune_at:
        # Closed ones that something still holds (a finished spawn kept for %procs) would be
        # visited by every child, a copy-on-write fault each: drop them here, now and then.
        for held in list(_parent_only):
            if held.fileno() < 0:
                _parent_only.discard(held)
        _prune_at = max(64, 2 * len(_parent_only))


def _close_parent_only() -> None:
    for sock in list(_parent_only):
        try:
            sock.close()  # this copy only: close(), never shutdown(), which would reach the parent's
        except OSError:
            pass
    _parent_only.clear()


def add_child_hook(hook: Callable[["Process"], None]) -> Callable[[], None]:
    """Run ``hook(process)`` in every child after the core's own reset, before the target.

    For what every child must do (the kernel integration cuts each child off from the kernel's
    sockets and streams); what one child needs goes in ``Process(child_setup=...)``, which runs
    right after these hooks. Returns a function that removes the hook.
    """
    _hooks.append(hook)

    def remove() -> None:
        if hook in _hooks:
            _hooks.remove(hook)

    return remove


class ExecFailed(OSError):
    """exec() failed in the child; the parent's join() raises the same OSError."""


_needs_flush: Callable[[Any], bool] | None = None


def set_flush_check(needs_flush: Callable[[Any], bool] | None) -> Callable[[], None]:
    """Integrations: ``needs_flush(stream)`` says whether a standard stream may hold text that
    ``flush_std`` must flush before a fork; False skips that stream's ``flush()``. For a stream
    whose flush is costly even when it holds nothing (a kernel's output stream waits for its
    I/O thread). None restores flushing every time. Returns the function that undoes it."""
    global _needs_flush
    _needs_flush = needs_flush

    def undo() -> None:
        global _needs_flush
        if _needs_flush is needs_flush:
            _needs_flush = None

    return undo


def flush_std() -> None:
    """Flush sys.stdout and sys.stderr, whatever they are, ignoring any error."""
    check = _needs_flush
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and (check is None or check(stream)):
                stream.flush()
        except Exception:
            pass


def _reset_signals(handlers: dict[int, Any] | None = None) -> None:
    # The C module's functions: signal.py converts every handler and mask to an enum, and in a
    # fresh child each object touched costs a copy-on-write page fault (this loop through
    # signal.py took ~0.3 ms, through _signal ~0.04 ms). Interval timers need no reset: fork()
    # does not pass them on.
    getsignal, default_int_handler = _csignal.getsignal, _csignal.default_int_handler
    for sig in range(1, _csignal.NSIG):
        try:
            handler = getsignal(sig)
        except (ValueError, OSError):
            continue
        if callable(handler) and handler is not default_int_handler:
            _csignal.signal(sig, default_int_handler if sig == _SIGINT else _csignal.SIG_DFL)
    _csignal.set_wakeup_fd(-1)  # the parent's loop owns that fd: a signal here must not wake it
    if handlers:  # Process(signals=...): validated in the parent, installed before any delivery
        from .signals import action_for

        for sig, handler in handlers.items():
            _csignal.signal(sig, action_for(sig, handler))
    # start() blocked every signal around the fork: what arrived meanwhile is delivered now,
    # to the child's own handlers
    _csignal.pthread_sigmask(_csignal.SIG_SETMASK, ())


def _forget_event_loop() -> None:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    # Never close the inherited loop: closing unregisters fds from an epoll instance the parent
    # still uses. Only forget it, so asyncio.run() works in the child.
    try:
        asyncio.events._set_running_loop(None)
        # No policy yet means no loop was ever set: asking for one here would build the policy
        # in every child (measured: ~50 copy-on-write page faults and ~0.1-0.3 ms each).
        if getattr(asyncio.events, "_event_loop_policy", True) is not None:
            asyncio.set_event_loop(None)
    except Exception:
        pass


def _open_std(fd: int, mode: str) -> Any:
    try:
        if mode == "r":
            return open(fd, "r", encoding="utf-8", errors="replace", closefd=False)
        return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    except OSError:  # that fd is closed, as Python itself would leave it: None
        return None


def bind_std_streams() -> None:
    """Fresh ``sys.stdin/stdout/stderr`` (and their ``__dunder__`` twins) over fds 0, 1 and 2."""
    sys.stdin = sys.__stdin__ = _open_std(0, "r")  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = _open_std(1, "w")  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = _open_std(2, "w")  # type: ignore[misc]


def _set_death_signal(parent_pid: int) -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(_signal.SIGKILL), 0, 0, 0)
        # Orphaned descendants (a daemon's double fork, a setsid'd grandchild whose parent
        # exited) are re-parented to this child while it lives, instead of to init: the stop
        # ladder finds them below it, even those that left its process group.
        _prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # The parent may have died between fork and prctl: then nobody would ever send it.
    if os.getppid() != parent_pid:
        os._exit(1)


def exit_code_of(value: Any) -> int:
    """The exit code for ``sys.exit(value)``: None -> 0, an int -> its low 8 bits, else print it, 1."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    try:
        print(value, file=sys.stderr)
    except Exception:
        pass
    return 1


def die_by(sig: int) -> int:
    """End as killed by ``sig`` (what Python does on an uncaught KeyboardInterrupt); returns
    128 + sig in case the signal is blocked or ignored."""
    flush_std()
    try:
        from . import counters

        counters.for_this_process().mark_exit()
        _signal.signal(sig, _signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    except OSError:
        pass
    return 128 + sig


def _setup(proc: "Process", parent_pid: int, errpipe_w: int) -> Callable[["Process"], Any]:
    # Everything inherited goes to the collector's permanent generation (as the gc docs advise
    # for a forked child): the child's collections then walk only what the child made, instead
    # of writing to every object of the parent's younger generations (a fault per page).
    gc.freeze()
    plan = proc._become_child(errpipe_w)
    _close_parent_only()
    os.setpgid(0, 0)
    _set_death_signal(parent_pid)
    _reset_signals(plan.signals)
    _forget_event_loop()
    if plan.redirect_fd is not None:
        for target in (0, 1, 2):
            os.dup2(plan.redirect_fd, target)
    proc._inherited_streams = (sys.stdin, sys.stdout, sys.stderr)
    bind_std_streams()
    proc._apply_child_settings()
    for hook in list(_hooks):
        hook(proc)
    if plan.child_setup is not None:
        plan.child_setup(proc)
    return plan.target


def bootstrap(proc: "Process", parent_pid: int, errpipe_w: int) -> int:
    """Set the child up, run its target, and return the exit code (fork.py's trampoline calls
    this inside ``try/finally: os._exit``)."""
    try:
        target = _setup(proc, parent_pid, errpipe_w)
    except KeyboardInterrupt:
        # An interrupt sent to the parent's process group in the instant before this child
        # left it (it waited, blocked, until the child's handlers were in place): end as the
        # interrupt would have ended the target, without a traceback about the set-up.
        return die_by(_signal.SIGINT)
    except BaseException:
        try:
            print("procmagic: the child failed to set itself up:", file=sys.stderr)
            traceback.print_exc()
        except Exception:
            pass
        return 1
    try:
        result = target(proc)
    except SystemExit as exc:
        return exit_code_of(exc.code)
    except KeyboardInterrupt:
        try:
            print("KeyboardInterrupt", file=sys.stderr)
        except Exception:
            pass
        return die_by(_signal.SIGINT)
    except ExecFailed as exc:
        try:
            print(f"procmagic: exec failed: {exc}", file=sys.stderr)
        except Exception:
            pass
        return 127
    except BaseException:
        try:
            traceback.print_exc()
        except Exception:
            pass
        return 1
    if isinstance(result, int):  # bool included: True exits 1
        return int(result) & 0xFF
    return 0
