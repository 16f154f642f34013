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
import sys
import warnings
from typing import Any

from ..core.process import Process
from .channel import STDERR, STDOUT, ChannelRaw, ChannelSocket, FrameWriter

__all__ = ["kernel_fds", "live_kernel_fds", "prepare_parent", "setup_child", "SpawnWiring"]


class SpawnWiring:
    """The child's ends of a spawn's extra sockets, attached to its Process before start."""

    def __init__(self, channel: Any, fdout: Any, cell: str, worker: int | None) -> None:
        self.channel = channel  # framed channel (Python-level output, displays, errors)
        self.fdout = fdout  # raw socket for fds 1 and 2 when not redirecting (C-level output)
        self.cell = cell
        self.worker = worker


def _tcp_inodes(ports: set[int]) -> set[int]:
    inodes: set[int] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    port = int(parts[1].rsplit(":", 1)[1], 16)
                    if port in ports:
                        inodes.add(int(parts[9]))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return inodes


def kernel_fds(kernel: Any) -> list[tuple[int, int, int]]:
    """(fd, st_dev, st_ino) of the kernel's TCP sockets (its five ports and the IOPub pipe's,
    listening and connected) and of the eventfd/epoll descriptors of zmq and the kernel's loops.

    Computed once in the parent: these live as long as the kernel does.
    """
    app = getattr(kernel, "parent", None)
    ports = {getattr(app, name, 0) for name in ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")}
    # the IOPub thread's PULL socket, where ipykernel collects a forked child's print()s
    ports.add(getattr(getattr(kernel, "iopub_thread", None), "_pipe_port", 0) or 0)
    ports.discard(0)
    ports.discard(None)  # type: ignore[arg-type]
    inodes = _tcp_inodes(ports) if ports else set()
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
        elif link.startswith("socket:[") and int(link[8:-1]) in inodes:
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
    for fd in close_fds:  # the kernel's sockets: a surviving child must not keep its ports
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
    wiring: SpawnWiring | None = getattr(proc, "_wiring", None)
    old_in, old_out, old_err = proc._inherited_streams
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


def prepare_parent() -> None:
    """In the kernel, before forking: build the Session children serialise their displays with.
    Built once here (a traitlets object: ~1.5 ms), not in every child."""
    global _child_session
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
