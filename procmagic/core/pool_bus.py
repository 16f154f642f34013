"""A pipe pool's message bus: messages of any size to any worker, from the parent or another worker.

Each worker id has an *inbox*: a datagram socketpair made by the parent before the first fork and
held by it for the pool's whole life, so a message sent while its worker is being respawned waits
there for the new one. Every process of the pool sends on the inbox's writing end (datagrams from
several senders never interleave within one datagram); only that worker reads the other end.

A message is cut into chunks of at most :data:`CHUNK` bytes, each with a small header (the
sender's pid, and whether it is the first and/or the last chunk of its message). One sender
sends one message at a time, so the receiver puts a message together per sender pid. A chunk
that continues a message whose start it never saw (its old worker was stopped halfway through
reading it) is dropped, with the rest of that message.

A sender waits while the inbox is full. A worker that waits reads its own inbox meanwhile (the
messages are kept for later), so two workers sending each other large messages at the same time
do not wait for each other forever; the parent keeps supervising the pool while it waits.

Workers know each other's pids through a small shared table the parent fills in at each fork and
exit (:class:`PidTable`); ``pool.get_process(other_id)`` in a worker gives a :class:`WorkerPeer`.
"""

from __future__ import annotations

import collections
import mmap
import os
import select
import signal as _signal
import socket
import struct
from typing import Any, Callable

__all__ = ["Bus", "Inbox", "PidTable", "WorkerPeer", "CHUNK", "wait_writable"]

_HEADER = struct.Struct("=iB")  # sender pid, flags
_FIRST, _LAST = 1, 2
#: The largest datagram the bus sends: a message is cut into chunks of this size (header included).
CHUNK = 65536
_PAYLOAD = CHUNK - _HEADER.size


class Bus:
    """The inboxes of one pool: ``n`` datagram socketpairs (the writing end, the reading end)."""

    def __init__(self, n: int) -> None:
        self.ends: list[tuple[socket.socket, socket.socket]] = []
        try:
            for _ in range(n):
                writer, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.ends.append((writer, reader))
                writer.setblocking(False)
                reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * CHUNK)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for writer, reader in self.ends:
            writer.close()
            reader.close()
        self.ends = []

    def keep_inbox(self, wid: int) -> "Inbox":
        """In worker ``wid``: close the other workers' reading ends (never ours to read)."""
        for i, (_, reader) in enumerate(self.ends):
            if i != wid:
                reader.close()
        return Inbox(self.ends[wid][1])

    def send(self, wid: int, data: bytes, wait: Callable[[socket.socket], None]) -> None:
        """Send ``data`` to worker ``wid``'s inbox; ``wait(sock)`` returns once it may be writable."""
        writer = self.ends[wid][0]
        pid = os.getpid()
        view = memoryview(data)
        total = len(view)
        start = 0
        while True:
            end = min(total, start + _PAYLOAD)
            flags = (_FIRST if start == 0 else 0) | (_LAST if end == total else 0)
            datagram: list[Any] = [_HEADER.pack(pid, flags), view[start:end]]
            while True:
                try:
                    writer.sendmsg(datagram)
                    break
                except BlockingIOError:
                    wait(writer)
            if end == total:
                return
            start = end


class Inbox:
    """One worker's reading end: whole messages out of chunks."""

    def __init__(self, reader: socket.socket) -> None:
        self.reader = reader
        self.partial: dict[int, list[bytes]] = {}
        self.ready: collections.deque[bytes] = collections.deque()

    def fileno(self) -> int:
        return self.reader.fileno()

    def take(self) -> bytes:
        """The next whole message (waits for one)."""
        while not self.ready:
            self._receive(True)
        return self.ready.popleft()

    def drain(self) -> None:
        """Read whatever chunks are waiting now, without waiting (while this worker sends)."""
        while self._receive(False):
            pass

    def _receive(self, block: bool) -> bool:
        try:
            chunk = self.reader.recv(CHUNK, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        pid, flags = _HEADER.unpack_from(chunk)
        body = chunk[_HEADER.size:]
        if flags & _FIRST:
            parts = self.partial[pid] = []
        else:
            parts = self.partial.get(pid)  # type: ignore[assignment]
            if parts is None:
                return True  # the rest of a message whose start an earlier worker took
        parts.append(body)
        if flags & _LAST:
            del self.partial[pid]
            self.ready.append(b"".join(parts))
        return True


def wait_writable(sock: socket.socket, also: Inbox | None = None) -> None:
    """Wait until ``sock`` may take a datagram; meanwhile read ``also`` (our own inbox)."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    if also is not None:
        poller.register(also.reader, select.POLLIN)
    for fd, _ in poller.poll(1000):
        if also is not None and fd == also.fileno():
            also.drain()


class PidTable:
    """The pid of each worker id (0: none running), in memory shared with the workers."""

    def __init__(self, n: int) -> None:
        self._map = mmap.mmap(-1, 8 * n)
        self._pids = memoryview(self._map).cast("q")

    def __getitem__(self, wid: int) -> int | None:
        return self._pids[wid] or None

    def __setitem__(self, wid: int, pid: int | None) -> None:
        self._pids[wid] = pid or 0

    def close(self) -> None:
        self._pids.release()
        self._map.close()


class WorkerPeer:
    """Another worker of the pool, as a worker sees it (``pool.get_process(other_id)`` there).

    ``write(data)`` sends ``data`` to that worker's ``on_message`` (``pool.send(worker_id, data)``:
    any size in a pipe pool); ``pid`` is the pid of the process running that worker id now (None
    while it is being respawned); ``kill(sig)`` signals it.
    """

    def __init__(self, worker_id: int, pids: PidTable, send: Callable[[int, Any], None]) -> None:
        self.id = self.worker_id = worker_id
        self._pids = pids
        self._send = send

    @property
    def pid(self) -> int | None:
        return self._pids[self.worker_id]

    def write(self, data: bytes | str) -> int:
        """Send ``data`` to this worker's on_message; returns its size in bytes."""
        size = len(data.encode() if isinstance(data, str) else data)
        self._send(self.worker_id, data)
        return size

    send = write

    def kill(self, sig: int = _signal.SIGTERM) -> bool:
        """Send ``sig`` to that worker; False when none runs under that id now."""
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def __repr__(self) -> str:
        return f"<procmagic WorkerPeer worker_id={self.worker_id} pid={self.pid}>"
