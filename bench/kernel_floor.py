"""The raw floors of ``bench_kernel.py``: run *inside* the benchmarked kernel, without procmagic.

``bench_kernel.py`` sends this file's source to the kernel once (``install_source()``) and then
calls ``_kfloor.stream(...)``, ``_kfloor.latency(...)``, ``_kfloor.start_load(...)`` from cells.
Each floor does the least work that gives the client the same result as procmagic's path:

- a child made with a bare ``os.fork()`` writes to a plain ``AF_UNIX`` socketpair (its
  ``sys.stdout`` a fresh text file over its end, line-buffered as a ``%%spawn`` child's is, or
  block-buffered to show what the child's own line-by-line writes cost);
- the kernel's end is read on the IOPub thread's own asyncio loop (where ``--bg`` output is read,
  and the only loop that runs while a synchronous cell blocks the main thread);
- what is read is published straight from that thread with the kernel's ``session.send`` on the
  socket that thread owns, as ``stream`` messages under the cell's parent header, of the sizes
  procmagic uses (256 KiB, or every read at once for the latency floor, or one message per child
  per 50 ms for the load floor).

No validation, no cap, no log, no labels, no ordering with other threads' queued sends: what is
left is the kernel's own message path (serialise, sign, zmq) and the client. The children end in
``os._exit`` and are reaped here, by pid.
"""

from __future__ import annotations

import codecs
import os
import select
import socket
import sys
import threading
import time
from typing import Any

CHUNK = 256 * 1024  # procmagic's Router.chunk
SNDBUF = 1024 * 1024  # procmagic's router.roomy


class Floor:
    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.session = kernel.session
        self.iopub = kernel.iopub_thread
        self.loop = kernel.iopub_thread.io_loop.asyncio_loop
        self.load: list[dict[str, Any]] = []
        self.load_timer: Any = None

    # -- shared ----------------------------------------------------------------------------------
    def _header(self) -> Any:
        try:
            return self.kernel.get_parent("shell")
        except TypeError:
            return self.kernel.get_parent()

    def _fork(self, body: str, buffering: int) -> tuple[int, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ours.close()
                sys.stdout = open(theirs.fileno(), "w", buffering=buffering, encoding="utf-8", closefd=False)
                exec(compile(body, "<floor child>", "exec"), {"__name__": "__floor__"})
                sys.stdout.flush()
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        ours.setblocking(False)
        return pid, ours

    def _send(self, header: Any, text: str) -> None:
        self.session.send(self.iopub.socket, "stream", {"name": "stdout", "text": text}, parent=header,
                          ident=b"stream.stdout")

    def _send_main(self, header: Any, text: str) -> None:
        """From the main thread: through the kernel's ``iopub_socket``, as a foreground spawn does."""
        self.session.send(self.kernel.iopub_socket, "stream", {"name": "stdout", "text": text}, parent=header,
                          ident=b"stream.stdout")

    def _on_loop(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the IOPub loop and wait for it."""
        done = threading.Event()

        def run() -> None:
            try:
                fn(*args)
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(30)

    # -- (a) streaming: 256 KiB messages, a read after a short pause when the last was small ------
    def stream(self, body: str, buffering: int = 1, gap: float = 0.001) -> None:
        """Fork a child running ``body``; forward its stdout to this cell; return once it is all
        published and the child reaped."""
        header = self._header()
        pid, sock = self._fork(body, buffering)
        fd = sock.fileno()
        done = threading.Event()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending: list[str] = []
        size = [0]
        loop = self.loop

        def publish() -> None:
            if pending:
                self._send(header, "".join(pending))
                pending.clear()
                size[0] = 0

        def resume() -> None:
            loop.add_reader(fd, readable)

        def readable() -> None:
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                return
            if not data:
                loop.remove_reader(fd)
                pending.append(decoder.decode(b"", final=True))
                publish()
                done.set()
                return
            text = decoder.decode(data)
            pending.append(text)
            size[0] += len(text)
            if size[0] >= CHUNK:
                publish()
            if len(data) < 64 * 1024 and gap:  # written line by line: take many lines per read
                loop.remove_reader(fd)
                loop.call_later(gap, resume)

        loop.call_soon_threadsafe(loop.add_reader, fd, readable)
        done.wait()
        sock.close()
        os.waitpid(pid, 0)

    def stream_main(self, body: str, buffering: int = 1, gap: float = 0.001) -> None:
        """``stream`` read on the main thread instead, as a foreground ``%%spawn`` reads: the cell
        polls the socket and hands each 256 KiB message to the IOPub thread (``iopub_socket``)."""
        header = self._header()
        pid, sock = self._fork(body, buffering)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending: list[str] = []
        size = 0
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            poller.poll()
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                continue
            if not data:
                break
            text = decoder.decode(data)
            pending.append(text)
            size += len(text)
            if size >= CHUNK:
                self._send_main(header, "".join(pending))
                pending.clear()
                size = 0
            if len(data) < 64 * 1024 and gap:
                time.sleep(gap)
        pending.append(decoder.decode(b"", final=True))
        self._send_main(header, "".join(pending))
        sock.close()
        os.waitpid(pid, 0)

    # -- (b) latency: every read published at once ------------------------------------------------
    def latency(self, body: str) -> None:
        header = self._header()
        pid, sock = self._fork(body, 1)
        fd = sock.fileno()
        done = threading.Event()
        loop = self.loop

        def readable() -> None:
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                return
            if not data:
                loop.remove_reader(fd)
                done.set()
                return
            self._send(header, data.decode("utf-8", "replace"))

        loop.call_soon_threadsafe(loop.add_reader, fd, readable)
        done.wait()
        sock.close()
        os.waitpid(pid, 0)

    # -- (c) load: every child's output polled once per interval, at most ``rate`` bytes/s -------
    def start_load(self, body: str, n: int, rate: float | None, interval: float = 0.05) -> None:
        """``n`` children run ``body`` (forever); every ``interval`` seconds each one's socket is
        read (up to its share of ``rate`` bytes a second, all of it without a rate) and what came
        is published as one message for that child. Nothing else wakes the IOPub thread."""
        if self.load:
            raise RuntimeError("a load is running: stop_load() first")
        header = self._header()
        for _ in range(n):
            pid, sock = self._fork(body, 1)
            self.load.append({"pid": pid, "sock": sock, "decoder": codecs.getincrementaldecoder("utf-8")("replace")})
        share = None if rate is None else max(1, int(rate * interval / n))
        loop = self.loop

        def tick() -> None:
            for child in self.load:
                want = share if share is not None else 1 << 30
                parts = []
                while want > 0:
                    try:
                        data = child["sock"].recv(min(want, CHUNK))
                    except (BlockingIOError, OSError):
                        break
                    if not data:
                        break
                    parts.append(child["decoder"].decode(data))
                    want -= len(data)
                if parts:
                    self._send(header, "".join(parts))
            self.load_timer = loop.call_later(interval, tick)

        self._on_loop(lambda: setattr(self, "load_timer", loop.call_later(interval, tick)))

    def stop_load(self) -> None:
        def cancel() -> None:
            if self.load_timer is not None:
                self.load_timer.cancel()
                self.load_timer = None

        self._on_loop(cancel)
        for child in self.load:
            try:
                os.kill(child["pid"], 9)
            except OSError:
                pass
        for child in self.load:
            os.waitpid(child["pid"], 0)
            child["sock"].close()
        self.load.clear()


def install_source() -> str:
    """A cell that defines ``_kfloor`` (a ``Floor`` of this kernel) in the kernel's namespace."""
    with open(__file__, encoding="utf-8") as f:
        source = f.read()
    return (f"_kfloor_ns = {{'__name__': 'kernel_floor'}}\nexec(compile({source!r}, 'kernel_floor.py', 'exec'), _kfloor_ns)\n"
            "_kfloor = _kfloor_ns['Floor'](get_ipython().kernel)\ndel _kfloor_ns\n")
