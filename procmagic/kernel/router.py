"""Routes a spawn's output into the cell that spawned it: read, decode, coalesce, cap, publish.

The router owns no thread and no loop: a driver (the foreground wait loop on the main thread,
or an asyncio loop for ``--bg``) calls ``on_readable(fd)`` and ``flush_due()``. Everything it
publishes carries the spawning cell's parent header, captured at spawn time.

Coalescing is where the cost is: publishing every read as its own message floods IOPub and
slows the whole kernel. Text is held per (worker, stream) and published when it reaches
``chunk`` bytes, or ``interval`` seconds after the previous publication. Sporadic output (a
little text after ``quiet`` seconds of silence on its source: a progress line, a log line) goes
out at once, within a token bucket (``burst`` messages, ``rate`` per second), so an ordinary
print reaches the notebook in about a millisecond while a continuous stream is paced by
``interval``.

Reading is paced too: while text is being coalesced anyway and a child writes line by line,
the driver waits ``read_delay()`` (about a millisecond) before reading that source again, and
then takes many lines in one read instead of waking the kernel for every one. The children's
ends are given large socket buffers (``roomy``), so they do not block meanwhile.

Background routers all read on one thread, the IOPub thread, which also carries every message
the kernel itself sends. They share a ``ReadBudget``: reading continuous output may take a
fixed share of that thread's time; past it, reads wait and flooding children block on their
full pipes, so the kernel stays responsive whatever they print. Sporadic output is never held
by the budget. They also share one token bucket of immediate messages (``BACKGROUND_TOKENS``),
and a source whose text waits for a coalesced flush is read again just before that flush
(``BACKGROUND_READ_GAP``): eight children printing a line every 10 ms then cost one large read
and one message per child and ``interval``, not one of each per line.

Output past the cap goes only to the spawn's log (:mod:`procmagic.kernel.spawn_log`).
"""

from __future__ import annotations

import codecs
import socket
import time
from typing import Any, Callable

from ..core.status import format_size
from .channel import INPUT, MESSAGE, STDERR, STDOUT, BadFrame, FrameReader, decode_message
from .labels import LineLabels
from .spawn_log import SpawnLog

__all__ = ["Router", "Source", "ReadBudget", "TokenBucket", "BACKGROUND_BUDGET", "BACKGROUND_TOKENS", "BACKGROUND_READ_GAP", "roomy"]

Publish = Callable[[str, dict[str, Any]], None]
_READ = 256 * 1024
_BIG_READ = 64 * 1024  # a read this large means more is waiting: read again at once
_SPORADIC = 8 * 1024  # at most this much in one read is a sporadic print, not a stream
_SNDBUF = 1024 * 1024  # asked for a child's end (Linux doubles it, capped by net.core.wmem_max)


def roomy(sock: socket.socket) -> None:
    """Give a child's end of an output socket a large send buffer: the child keeps writing
    while the router paces its reads (line-by-line writes cost ~8x their size in buffer)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
    except OSError:
        pass


def _decoder() -> Any:
    return codecs.getincrementaldecoder("utf-8")("replace")


class ReadBudget:
    """Time the routers sharing one thread may spend on continuous output: ``share`` of the
    wall clock, as a leaky bucket (what was spent drains at ``share`` seconds per second)."""

    def __init__(self, share: float = 0.25, slack: float = 0.002) -> None:
        self.share = share
        self.slack = slack  # spent time allowed in one go before reads wait
        self._debt = 0.0
        self._at = time.monotonic()

    def _drain(self, now: float) -> None:
        self._debt = max(0.0, self._debt - (now - self._at) * self.share)
        self._at = now

    def spend(self, seconds: float, now: float) -> None:
        self._drain(now)
        self._debt += seconds

    def wait(self, now: float) -> float:
        """Seconds until continuous reading may go on."""
        self._drain(now)
        return max(0.0, (self._debt - self.slack) / self.share)


class TokenBucket:
    """How many messages may go out at once, the moment their text arrives: ``burst`` in a row,
    refilled at ``rate`` a second. Text that finds no token waits for the next coalesced flush."""

    def __init__(self, burst: int = 10, rate: float = 100.0) -> None:
        self.burst = burst
        self.rate = rate
        self._tokens = float(burst)
        self._at = 0.0

    def take(self, now: float) -> bool:
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


#: Shared by every background router: they all read on the IOPub thread.
BACKGROUND_BUDGET = ReadBudget()
#: And they share one bucket of immediate messages: eight children printing a line every 10 ms
#: each look sporadic (every line after a quiet spell), and with a bucket each they would
#: publish 800 messages a second where one per child and ``interval`` carries the same text.
BACKGROUND_TOKENS = TokenBucket(burst=20, rate=100.0)
#: How long a background source whose text waits for a coalesced flush waits before its next
#: read (at most until that flush is due): one large read per flush instead of one per line;
#: the children write on meanwhile into their large socket buffers (``roomy``).
BACKGROUND_READ_GAP = 0.05


class Source:
    """One fd the router reads: a raw byte stream (a redirected child's pipe) or a channel."""

    def __init__(self, sock: socket.socket, framed: bool, worker: int | None, name: str, owned: bool,
                 handler: Callable[[], bool] | None = None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.framed = framed
        self.worker = worker
        self.name = name  # the stream a raw source publishes as
        self.owned = owned  # close the socket at EOF
        self.handler = handler  # reads the source itself (a result channel): returns False at EOF
        self.frames = FrameReader() if framed else None
        self.decoders = {"stdout": _decoder(), "stderr": _decoder()}
        self.last_read_at = float("-inf")  # monotonic time of the last read
        self.last_read = 0  # bytes it returned
        self.sporadic = True  # whether that read came after a quiet spell
        self.deferred = False  # whether the driver was told to wait before reading again


class Router:
    def __init__(
        self,
        publish: Publish,
        *,
        label_workers: bool,
        cap: int,
        interval: float,
        chunk: int = 256 * 1024,
        log_dir: str | None = None,
        log_name: str | None = None,
        log_limit: int = 64 * 1024 * 1024,
        pause_above: int = 8 * 1024 * 1024,
        quiet: float = 0.005,
        burst: int = 10,
        rate: float = 100.0,
        read_gap: float = 0.001,
    ) -> None:
        self._publish = publish
        self._label = label_workers
        self.cap = cap
        self.interval = interval
        self.chunk = chunk
        self.pause_above = pause_above
        self.quiet = quiet
        self.read_gap = read_gap
        self.tokens = TokenBucket(burst, rate)  # a driver may share one among its routers
        self.budget: ReadBudget | None = None  # set by a driver whose thread must stay responsive
        self.sources: dict[int, Source] = {}
        self._pending: dict[tuple[int | None, str], list[str]] = {}
        self._pending_bytes = 0
        self._labels = LineLabels()
        self._last_flush = 0.0
        self._flush_at: float | None = None
        self.published = 0
        self.withheld = 0
        self._cap_noticed = False
        self._notices: list[str] = []  # the log's notices, published with the next flush, outside the cap
        self.log = SpawnLog(log_dir, log_name, log_limit, self._notices.append)  # everything, past the cap too
        self.messages = 0
        self.bad_frames = 0
        self.on_bad_source: Callable[[int | None], None] | None = None  # the spawn stops that child
        self.on_message: Callable[[str, dict[str, Any]], None] | None = None  # widgets listen here
        self.on_stream: Callable[[str, str], None] | None = None  # and here: (name, text) of each stream sent
        # a child's prompt: on_input(worker, socket, payload), see stdin.py; None refuses it
        self.on_input: Callable[[int | None, socket.socket, bytes], None] | None = None

    # -- sources -------------------------------------------------------------------------------
    def add(self, sock: socket.socket, *, framed: bool, worker: int | None = None, name: str = "stdout",
            owned: bool = True, handler: Callable[[], bool] | None = None) -> Source:
        """Read ``sock`` for the spawn; with ``handler``, the driver calls it instead when the
        socket is readable (another module's data on the same driver, e.g. ``--result``)."""
        sock.setblocking(False)
        source = Source(sock, framed, worker, name, owned, handler)
        self.sources[source.fd] = source
        return source

    @property
    def open(self) -> bool:
        return bool(self.sources)

    def close_source(self, fd: int) -> None:
        """Forget ``fd`` (its decoders' tails are kept), closing it when the router owns it."""
        source = self.sources.pop(fd, None)
        if source is None:
            return
        for name, decoder in source.decoders.items():
            tail = decoder.decode(b"", final=True)
            if tail:
                self._add_text(source.worker, name, tail)
        if source.owned:
            source.sock.close()

    def on_readable(self, fd: int) -> bool:
        """Read what is there; False once the source hit end of file (it is then closed)."""
        source = self.sources.get(fd)
        if source is None:
            return False
        if source.handler is not None:
            return source.handler()
        started = time.monotonic()
        try:
            data = source.sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return True
        except (ConnectionResetError, OSError):
            data = b""
        if not data:
            return False  # the driver stops watching fd, then calls close_source(fd)
        now = time.monotonic()
        # A little text after a quiet spell; not when the wait was ours (a paced read), nor when
        # much was waiting (the reader, not the child, was slow)
        sporadic = source.sporadic = (now - source.last_read_at >= self.quiet and not source.deferred
                                      and len(data) <= _SPORADIC)
        source.deferred = False
        source.last_read_at = now
        source.last_read = len(data)
        if source.frames is None:
            self._add_text(source.worker, source.name, source.decoders[source.name].decode(data))
        else:
            for kind, payload in source.frames.feed(data):
                if kind == STDOUT:
                    self._add_text(source.worker, "stdout", source.decoders["stdout"].decode(payload))
                elif kind == STDERR:
                    self._add_text(source.worker, "stderr", source.decoders["stderr"].decode(payload))
                elif kind == INPUT:
                    self.flush()  # what the child printed before asking shows first
                    self._input(source, payload)
                elif kind == MESSAGE:
                    try:
                        msg_type, content = decode_message(payload)
                    except BadFrame as exc:
                        source.frames.error = exc
                        break
                    self.message(msg_type, content)
            if source.frames.error is not None:
                self._bad_source(source, source.frames.error)
                return False  # the driver stops watching fd, then calls close_source(fd)
        self._maybe_flush(now, sporadic)
        if self.budget is not None and not sporadic:
            self.budget.spend(time.monotonic() - started, now)
        return True

    def read_delay(self, fd: int) -> float:
        """Seconds the driver may wait before reading ``fd`` again; 0: as soon as it is ready.

        While text is held for a coalesced flush anyway and the last read was small (a child
        writing line by line), reading a little later takes many lines at once; that holds for
        a source whose last line looked sporadic too, once it found no token and waits for the
        flush like the rest. Continuous output also waits for the router's budget, when it has
        one."""
        source = self.sources.get(fd)
        if source is None:
            return 0.0
        now = time.monotonic()
        delay = 0.0
        if self._pending and self._flush_at is not None and source.last_read < _BIG_READ:
            delay = min(self.read_gap, self._flush_at - now)
        elif source.sporadic:
            return 0.0  # after a quiet spell, its line sent: the next one may go out at once
        if self.budget is not None and not source.sporadic:
            delay = max(delay, self.budget.wait(now))
        source.deferred = delay > 0
        return max(0.0, delay)

    @property
    def paused(self) -> bool:
        """True while so much text waits that reading should stop (the child then blocks)."""
        return self._pending_bytes >= self.pause_above

    # -- text ----------------------------------------------------------------------------------
    def _add_text(self, worker: int | None, name: str, text: str) -> None:
        if not text:
            return
        key = (worker, name)
        if self._label and worker is not None:
            text = self._labels.apply(key, text, f"[{worker}] ")
        self.log.write(text)
        if self.published >= self.cap:  # past the cap: the log has it, the notebook gets none of it
            self.withheld += len(text)
            if self._notices:  # the log just filled (or failed): say so now, nothing else is pending
                self.flush()
            return
        self._pending.setdefault(key, []).append(text)
        self._pending_bytes += len(text)

    def add_notice(self, text: str, name: str = "stderr") -> None:
        """A line of procmagic's own, published in order with the children's output."""
        self.flush()
        self._send_stream(name, text, count=False)

    def _maybe_flush(self, now: float, sporadic: bool) -> None:
        if self._pending_bytes >= self.chunk or now - self._last_flush >= self.interval:
            self.flush(now)
        elif sporadic and self._pending and self.tokens.take(now):
            self.flush(now)
        elif self._pending and self._flush_at is None:
            self._flush_at = self._last_flush + self.interval

    def due(self) -> float | None:
        """Monotonic time of the next flush the driver must call, or None."""
        return self._flush_at if self._pending else None

    def flush_due(self) -> None:
        if self._flush_at is not None and time.monotonic() >= self._flush_at:
            self.flush()

    def flush(self, now: float | None = None) -> None:
        self._flush_at = None
        if not self._pending and not self._notices:
            return
        pending, self._pending = self._pending, {}
        self._pending_bytes = 0
        # stdout of every worker first, then stderr: one message per stream and flush
        for name in ("stdout", "stderr"):
            text = "".join("".join(parts) for (w, n), parts in pending.items() if n == name)
            if text:
                self._send_stream(name, text)
        notices = self._notices[:]
        self._notices.clear()  # the same list: the log appends to it
        for notice in notices:
            self._send_stream("stderr", notice, count=False)
        self._last_flush = now if now is not None else time.monotonic()

    def _send_stream(self, name: str, text: str, count: bool = True) -> None:
        if count:
            room = self.cap - self.published
            if room <= 0:
                self.withheld += len(text)
                return
            if len(text) > room:
                self.withheld += len(text) - room
                text = text[:room]
            self.published += len(text)
        self._stream(name, text)
        if count and self.published >= self.cap and not self._cap_noticed:
            self._cap_noticed = True
            self.log.open()  # what waited in memory goes to the file the notice names
            kept = f"kept in {self.log.path}" if self.log.state == "open" else "not kept (see above)"
            self._stream("stderr", (
                f"\n[procmagic] output reached the cap of {format_size(self.cap)} "
                f"(%config ProcMagics.output_cap); the rest is withheld from the notebook and {kept}\n"))

    def _stream(self, name: str, text: str) -> None:
        """Every stream message goes out here."""
        self.messages += 1
        self._publish("stream", {"name": name, "text": text})
        if self.on_stream is not None:
            self.on_stream(name, text)

    # -- messages ------------------------------------------------------------------------------
    def message(self, msg_type: str, content: dict[str, Any]) -> None:
        """A display, result or error from a child: after the text before it, at once."""
        self.flush()
        self.messages += 1
        self._publish(msg_type, content)
        if self.on_message is not None:
            self.on_message(msg_type, content)

    def _bad_source(self, source: Source, error: BadFrame) -> None:
        """A child sent what procmagic's writer never would: say so in the cell, stop reading
        that channel, and let the spawn stop the child (``on_bad_source``)."""
        who = f"worker {source.worker}" if self._label and source.worker is not None else "the child"
        self.add_notice(f"[procmagic] bad data on the output channel of {who}: {error}; the channel is "
                        "closed and the child is stopped (SIGTERM, then SIGKILL after ProcMagics.term_grace)\n")
        self.bad_frames += 1
        if self.on_bad_source is not None:
            self.on_bad_source(source.worker)

    def _input(self, source: Source, payload: bytes) -> None:
        if self.on_input is not None:
            self.on_input(source.worker, source.sock, payload)
            return
        from .stdin import REFUSED, _reply

        _reply(source.sock, REFUSED, "procmagic: this spawn cannot ask the notebook for input")

    def forget_listeners(self) -> None:
        """Drop the callbacks others set (the spawn, its panel, its stdin broker): each one holds
        its owner, which holds this router, so a spawn dropped from the history would otherwise
        wait as a reference cycle for the garbage collector's next full pass (~70 objects each)."""
        self.on_bad_source = self.on_message = self.on_stream = self.on_input = None

    def close(self) -> str | None:
        """Close every source and the log. Returns the log's path when output was withheld
        (the log is kept), else None (the log is deleted: the notebook has all of it)."""
        for fd in list(self.sources):
            self.close_source(fd)
        self.flush()
        log = self.log
        log.close(keep=bool(self.withheld))  # without withheld output the notebook has all of it
        if self.withheld:
            if log.state == "open":
                where = f"the full output is in {log.path}"
            elif log.state == "full":
                where = f"the first {format_size(log.limit)} of output are in {log.path}"
            else:
                where = "it could not be kept in a log"
            self._stream("stderr", f"[procmagic] {format_size(self.withheld)} of output withheld past the cap; {where}\n")
            return log.path if log.state in ("open", "full") else None
        return None

