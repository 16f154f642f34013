"""What a child forked from an ipykernel does before running the cell: cut itself off from the
kernel (its sockets, its zmq machinery, its output streams, its input), and wire procmagic's
channel in their place.

Runs in the child, from the core's child hook, after the core's own reset.
"""

from __future__ import annotations

import builtins
import getpass
import io
import os
import re
import socket
import stat as _stat
import sys
import warnings
import weakref
from typing import Any

from ..core.process import Process
from .channel import STDERR, STDOUT, ChannelRaw, ChannelSocket, FrameWriter

__all__ = ["kernel_fds", "kernel_ports", "kernel_socket_fds", "close_kernel_sockets", "live_kernel_fds", "prepare_parent", "stream_needs_flush",
           "setup_child", "SpawnWiring", "attach_wiring", "wiring_of"]


class SpawnWiring:
    """The child's ends of a spawn's extra sockets, attached to its Process before start."""

    def __init__(self, channel: Any, fdout: Any, cell: str, worker: int | None) -> None:
        self.channel = channel  # framed channel (Python-level output, displays, errors)
        self.fdout = fdout  # raw socket for fds 1 and 2 when not redirecting (C-level output)
        self.cell = cell
        self.worker = worker


_wirings: "weakref.WeakKeyDictionary[Process, SpawnWiring]" = weakref.WeakKeyDictionary()


def attach_wiring(proc: Process, wiring: SpawnWiring) -> None:
    """Remember ``proc``'s wiring (before start: the child finds it with :func:`wiring_of`)."""
    _wirings[proc] = wiring


def wiring_of(proc: Process) -> SpawnWiring | None:
    return _wirings.get(proc)


def _local_address(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "::", "0.0.0.0") or ip.startswith("::ffff:127.")


def _ends(fd: int) -> tuple[str, int, str, int] | None:
    """(local ip, local port, remote ip, remote port) of a TCP socket fd; None for any other fd.
    The remote end is ("", 0) for a listener."""
    try:
        sock = socket.socket(fileno=fd)  # wraps fd (the family is read from it); detached below
    except OSError:
        return None
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            return None
        local = sock.getsockname()
        try:
            remote = sock.getpeername()
        except OSError:
            remote = ("", 0)
        return local[0], local[1], remote[0], remote[1]
    except OSError:
        return None
    finally:
        sock.detach()


def kernel_ports(kernel: Any) -> set[int]:
    """The kernel's five ports and its IOPub pipe's (where ipykernel collects a forked child's
    print()s): fixed for the kernel's life."""
    app = getattr(kernel, "parent", None)
    ports = {getattr(app, name, 0) for name in ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")}
    ports.add(getattr(getattr(kernel, "iopub_thread", None), "_pipe_port", 0) or 0)
    return {p for p in ports if isinstance(p, int) and p > 0}


def kernel_socket_fds(ports: set[int], cache: dict[tuple[int, int], bool] | None = None) -> list[tuple[int, int]]:
    """(fd, inode) of this process's TCP sockets connected to or from ``ports`` on this host, as
    they are now: a local port in ``ports`` (the kernel's listeners, and the connections
    frontends made to them, also after ``%load_ext``), or a remote one at a local address (the
    kernel's own connections to its ports, as ipykernel 7's client of its shell port).

    It asks each socket fd for its two ends (``getsockname``/``getpeername``), where reading
    ``/proc/net/tcp`` costs milliseconds on a busy host; ``cache`` keeps each socket's verdict
    by (fd, inode), so a spawn only looks at sockets that are new since the previous one
    (docs/reliability.md gives the figures).
    """
    if not ports:
        return []
    out = []
    seen: dict[tuple[int, int], bool] = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if not _stat.S_ISSOCK(st.st_mode):
            continue
        key = (fd, st.st_ino)
        verdict = cache.get(key) if cache is not None else None
        if verdict is None:
            ends = _ends(fd)
            verdict = ends is not None and (ends[1] in ports or (
                ends[3] in ports and (ends[2] == ends[0] or _local_address(ends[2]))))
        seen[key] = verdict
        if verdict:
            out.append(key)
    if cache is not None:
        cache.clear()
        cache.update(seen)
    return out


def close_kernel_sockets(found: list[tuple[int, int]]) -> None:
    """In a child: close the sockets ``kernel_socket_fds`` found (each still the same inode)."""
    for fd, ino in found:
        try:
            if os.fstat(fd).st_ino == ino:
                os.close(fd)
        except OSError:
            pass


def kernel_fds(kernel: Any) -> list[tuple[int, int, int]]:
    """(fd, st_dev, st_ino) of the eventfd/epoll descriptors of zmq and the kernel's loops, as
    at ``%load_ext`` (these live as long as the kernel does). The kernel's TCP sockets are
    found in each child afresh (``kernel_socket_fds``)."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
            st = os.fstat(fd)
        except OSError:
            continue
        if link in ("anon_inode:[eventfd]", "anon_inode:[eventpoll]"):
            out.append((fd, st.st_dev, st.st_ino))
    return out


def live_kernel_fds(cached: list[tuple[int, int, int]]) -> list[int]:
    """The cached fds that are still the same open files (checked in the parent before a fork)."""
    out = []
    for fd, dev, ino in cached:
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_dev == dev and st.st_ino == ino:
            out.append(fd)
    return out


def stream_needs_flush(stream: Any) -> bool:
    """Whether ``stream`` may hold text to flush before a fork (``core.child.set_flush_check``).

    ipykernel's ``OutStream.flush()`` from the main thread is a round trip to the IOPub thread
    (two events, then a wait), ~0.1-0.5 ms of the spawn's wall time. Its ``_flush_pending``
    (with ``_subprocess_flush_pending``, ipykernel 6 and 7) is set by every write until the
    IOPub thread takes the buffers; when both are False nothing is buffered, and what is being
    sent goes out before anything the spawn schedules after it. Any other stream, or one
    without these attributes, is flushed as before.
    """
    if not type(stream).__module__.startswith("ipykernel."):
        return True
    return not (getattr(stream, "_flush_pending", None) is False
                and getattr(stream, "_subprocess_flush_pending", None) is False)


def _plain_input(prompt: object = "") -> str:
    """input() as in a script: the kernel's version asks the frontend over zmq."""
    if prompt:
        sys.stdout.write(str(prompt))
        sys.stdout.flush()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise EOFError("EOF when reading a line (this child's stdin is closed or empty; use %%spawn --redirect and write() to feed it)")
    return line[:-1] if line.endswith("\n") else line


def _text_stream(raw: io.RawIOBase) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedWriter(raw, 65536), encoding="utf-8", errors="backslashreplace",
                            line_buffering=True)


def _neutralise(old: Any, new: Any) -> None:
    """Stale references to the kernel's OutStream (a logging handler made earlier) write where
    the child's own stream does, never to the kernel's zmq pipes."""
    if old is None or new is None or old is new:
        return
    if type(old).__module__.startswith("ipykernel"):
        for attr in ("write", "writelines", "flush"):
            try:
                setattr(old, attr, getattr(new, attr))
            except (AttributeError, TypeError):
                pass


def setup_child(proc: Process, kernel: Any, shell: Any, close_fds: list[int]) -> None:
    """The kernel child hook's body (see module docs)."""
    # The kernel's sockets as they were at the fork (a surviving child must not keep its ports
    # or a frontend's connections): found by prepare_parent just before a spawn forks, else
    # (a plain Process started in the kernel) here; then zmq's and the loops' eventfd/epoll
    # descriptors, found at %load_ext.
    spawned = wiring_of(proc) is not None
    found = _at_fork[1] if spawned and _at_fork is not None and _at_fork[0] == os.getppid() else None
    if found is None and kernel is not None:
        found = kernel_socket_fds(kernel_ports(kernel))
    close_kernel_sockets(found or [])
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    if kernel is not None:
        iopub = getattr(kernel, "iopub_thread", None)
        if iopub is not None:  # BackgroundSocket sends directly when its thread is gone
            iopub.send_multipart = lambda *a, **k: None
            iopub.schedule = lambda f: None
    builtins.input = _plain_input
    getpass.getpass = getpass.unix_getpass if hasattr(getpass, "unix_getpass") else getpass.getpass
    wiring = wiring_of(proc)
    old_in, old_out, old_err = proc.inherited_streams
    if wiring is not None and wiring.channel is not None:
        writer = FrameWriter(wiring.channel)
        if not proc.redirect:
            if wiring.fdout is not None:  # C-level writes to fds 1 and 2 reach the cell too
                os.dup2(wiring.fdout.fileno(), 1)
                os.dup2(wiring.fdout.fileno(), 2)
            sys.stdout = sys.__stdout__ = _text_stream(ChannelRaw(writer, STDOUT))  # type: ignore[misc]
            sys.stderr = sys.__stderr__ = _text_stream(ChannelRaw(writer, STDERR))  # type: ignore[misc]
        if shell is not None and kernel is not None:
            _wire_display(shell, writer)
    _neutralise(old_out, sys.stdout)
    _neutralise(old_err, sys.stderr)
    warnings.filterwarnings("ignore", message=_EXIT_WARNING)


_child_session: Any = None
_EXIT_WARNING = "To exit: use 'exit', 'quit', or Ctrl-D."


_verdicts: dict[tuple[int, int], bool] = {}  # kernel_socket_fds' cache, in the kernel
_at_fork: tuple[int, list[tuple[int, int]]] | None = None  # (kernel pid, its sockets) at the last spawn


def prepare_parent(kernel: Any = None) -> None:
    """In the kernel, just before a spawn forks: find the kernel's sockets as they are now (the
    children close them), and build the Session children serialise their displays with (a
    traitlets object: ~1.5 ms, built once here, not in every child)."""
    global _child_session, _at_fork
    if kernel is not None:
        _at_fork = (os.getpid(), kernel_socket_fds(kernel_ports(kernel), _verdicts))
    if _child_session is None:
        from jupyter_client.session import Session

        _child_session = Session(key=b"procmagic-child", check_pid=False)  # signed: an empty key logs a warning
    re.compile(_EXIT_WARNING, re.I)  # warm re's cache: the child's filterwarnings() finds it compiled


def _wire_display(shell: Any, writer: FrameWriter) -> None:
    """display(), the last expression's value and tracebacks go through the channel."""
    prepare_parent()  # a no-op when the parent prepared it
    session = _child_session
    sock = ChannelSocket(writer)
    for publisher in (getattr(shell, "displayhook", None), getattr(shell, "display_pub", None)):
        if publisher is None:
            continue
        try:
            publisher.session = session
            publisher.pub_socket = sock
        except Exception:
            pass
