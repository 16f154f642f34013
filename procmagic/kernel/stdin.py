"""stdin from the frontend: ``input()``, ``getpass()`` and ``sys.stdin`` in a spawned child ask
the notebook, as they do in an ordinary cell.

How a prompt travels: in the child, ``input(prompt)`` flushes its output and sends an ``i``
frame (JSON: prompt, password, worker) on procmagic's channel, then blocks reading the answer
on the same socket (the kernel's end writes back). In the kernel, the spawn's router hands the
frame to this module:

- foreground: the driver runs on the main thread, inside the spawning cell's execute request, so
  the kernel's own ``raw_input``/``getpass`` send an ``input_request`` on the stdin channel
  exactly as ``input()`` in a cell does (with ``-n``, each worker's prompt is labelled ``[i]``
  and asked one at a time, as the main thread takes them in turn). The answer goes back as an
  ``a`` frame. A frontend that does not allow stdin makes the child's ``input()`` raise
  ``StdinNotImplementedError`` (an ``x`` frame), never hang. An interrupt while the frontend
  asks is the cell's interrupt: the driver forwards it to the children.
- background (``--bg`` without ``--redirect``): the prompt is held here, the cell says the child
  is waiting for input, the panel shows it, and ``procmagic.kernel.stdin.answer(NAME, text)`` (or
  the panel's stdin box) answers it from a later cell.

With ``--redirect``, fd 0 stays the pipe that ``write()`` feeds (C-level reads and subprocesses
read it); ``--bg --redirect`` keeps Python's stdin on that pipe too, as documented for
``write()``. In terminal IPython the child reads the terminal itself (nothing is relayed).
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import getpass
import io
import json
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..core.process import Process
from .channel import INPUT
from .debug import is_debugger_prompt

__all__ = ["Prompt", "waiting", "answer", "close_input", "subscribe", "StdinBroker", "install_relay", "wants_relay",
           "RelayStdin", "forget"]

# kernel -> child: the line, why there is none, end of input, the cell was interrupted
ANSWER, REFUSED, END, INTERRUPTED = ord("a"), ord("x"), ord("z"), ord("k")
_HEAD = struct.Struct("!IB")
_MAX_ANSWER = 1 << 20


# -- the child's side -----------------------------------------------------------------------------
class _Relay:
    def __init__(self, sock: socket.socket, worker: int | None) -> None:
        self.sock = sock
        self.worker = worker

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            part = self.sock.recv(n - len(data))
            if not part:
                raise EOFError("the kernel closed procmagic's channel while this child waited for input")
            data += part
        return data

    def ask(self, prompt: str, password: bool = False, debugger: bool = False) -> str:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        payload = json.dumps({"prompt": prompt, "password": password, "debugger": debugger,
                              "worker": self.worker}).encode()
        self.sock.sendall(_HEAD.pack(len(payload), INPUT) + payload)
        length, kind = _HEAD.unpack(self._recv_exact(_HEAD.size))
        text = self._recv_exact(length).decode("utf-8", "replace")
        if kind == ANSWER:
            return text
        if kind == END:
            raise EOFError(text)
        if kind == INTERRUPTED:
            _end_as_interrupted(text)
        from IPython.core.error import StdinNotImplementedError

        raise StdinNotImplementedError(text)


def _end_as_interrupted(text: str) -> None:
    """The cell was interrupted and the child asks again (a debugger caught the SIGINT and
    prompts anew): end it as killed by SIGINT, as an uncaught KeyboardInterrupt would."""
    import os

    try:
        print(f"\nKeyboardInterrupt ({text})", file=sys.stderr, flush=True)
        sys.stdout.flush()
    except Exception:
        pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(128 + signal.SIGINT)  # not reached


class RelayStdin(io.TextIOBase):
    """``sys.stdin`` of a relayed child: each line read is asked of the frontend."""

    def __init__(self, relay: _Relay) -> None:
        super().__init__()
        self._relay = relay

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 0  # C-level readers of fd 0 get the real fd (the pipe with --redirect)

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return self._relay.ask("") + "\n"

    def read(self, size: int | None = -1) -> str:
        return self.readline()


def wants_relay(ctx: Any, options: Any) -> bool:
    """Relay stdin in a kernel, except ``--bg --redirect`` (whose stdin is the pipe)."""
    return not ctx.terminal and not (options.bg and options.redirect)


def install_relay(proc: Process) -> None:
    """In the child: ``input``, ``getpass`` and ``sys.stdin`` ask the frontend through the channel."""
    from .child_setup import wiring_of

    sock = getattr(wiring_of(proc), "channel", None)
    if sock is None:
        return
    relay = _Relay(sock, proc.worker)

    def relay_input(prompt: object = "") -> str:
        text = str(prompt)
        return relay.ask(text, debugger=is_debugger_prompt(text))

    def relay_getpass(prompt: str = "Password: ", stream: Any = None) -> str:
        return relay.ask(str(prompt), password=True)

    builtins.input = relay_input
    getpass.getpass = relay_getpass
    sys.stdin = sys.__stdin__ = RelayStdin(relay)  # type: ignore[misc,assignment]


# -- the kernel's side ----------------------------------------------------------------------------
@dataclass
class Prompt:
    """A child waiting for a line from the notebook (``--bg``)."""

    proc: Process
    text: str
    password: bool
    debugger: bool
    sock: socket.socket = field(repr=False)


_waiting: dict[int, Prompt] = {}  # by Process id
_closed: set[int] = set()  # children whose input was closed (close_input): every prompt reads EOF
_typed: dict[int, "collections.deque[str]"] = {}  # lines typed ahead of a child's next prompt
_listeners: list[Callable[[str, Prompt], None]] = []
_lock = threading.Lock()  # prompts arrive on the IOPub thread, answers come from the main thread


def subscribe(listener: Callable[[str, Prompt], None]) -> Callable[[], None]:
    """``listener(event, prompt)`` on ``"waiting"`` and ``"answered"`` (the panel's hook)."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def _emit(event: str, prompt: Prompt) -> None:
    for listener in list(_listeners):
        try:
            listener(event, prompt)
        except Exception:
            import traceback

            traceback.print_exc(file=sys.__stderr__)


def waiting(proc: Process | None = None) -> Any:
    """The Prompt ``proc`` waits on (None when it does not), or every waiting Prompt."""
    with _lock:
        if proc is None:
            return list(_waiting.values())
        return _waiting.get(proc.id)


def _reply(sock: socket.socket, kind: int, text: str) -> None:
    data = text.encode("utf-8", "replace")[:_MAX_ANSWER]
    frame = _HEAD.pack(len(data), kind) + data
    blocking = sock.getblocking()
    try:
        sock.setblocking(True)
        sock.settimeout(5.0)  # the child reads at once; a full buffer means it is gone
        sock.sendall(frame)
    except OSError:
        pass  # the child has gone: nobody to answer
    finally:
        sock.setblocking(blocking)


def answer(target: Any, text: str, wait: float = 0.0, typeahead: bool = False) -> str:
    """Answer the prompt a ``--bg`` child waits on, from a later cell: ``target`` is the child's
    Process, id or name (one waiting worker of a group, the first by index). ``wait``: seconds to
    wait for the child to ask, when it has not yet. ``typeahead=True``: when no prompt waits
    (yet), keep the line for the child's next prompt, as a terminal does (the panel's stdin box).
    Returns ``"answered"`` or ``"queued"``."""
    import time

    from ..core.reaper import registry

    if not isinstance(text, str):
        raise TypeError(f"the answer must be a str (one line), not {type(text).__name__} {text!r}")
    procs = [target] if isinstance(target, Process) else registry.find(target)
    procs = procs if isinstance(procs, list) else [procs]
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        with _lock:
            found = next((_waiting.pop(p.id) for p in procs if p.id in _waiting), None)
        if found is not None or time.monotonic() >= deadline or not any(p.is_alive() for p in procs):
            break
        time.sleep(0.01)
    if found is None and typeahead:
        live = [p for p in procs if p.is_alive()]
        if live:
            with _lock:
                found = _waiting.pop(live[0].id, None)  # it may have asked meanwhile
                if found is None:
                    _typed.setdefault(live[0].id, collections.deque()).append(text.rstrip("\n"))
                    return "queued"
    if found is None:
        names = ", ".join(str(p.name) for p in procs)
        raise LookupError(f"{names} is not waiting for input (procmagic.kernel.stdin.waiting() lists "
                          "the children that are)")
    _reply(found.sock, ANSWER, text.rstrip("\n"))
    _emit("answered", found)
    return "answered"


def close_input(proc: Process) -> None:
    """End a ``--bg`` child's input: a prompt it waits on, and every later one, reads end of file
    (``input()`` raises EOFError; a debugger quits). The panel's "close stdin" button."""
    with _lock:
        _closed.add(proc.id)
        prompt = _waiting.pop(proc.id, None)
    if prompt is not None:
        _reply(prompt.sock, END, "stdin was closed from the notebook")
        _emit("answered", prompt)


def forget(proc: Process) -> None:
    """The child ended: a prompt it left is void."""
    with _lock:
        prompt = _waiting.pop(proc.id, None)
        _closed.discard(proc.id)
        _typed.pop(proc.id, None)
    if prompt is not None:
        _emit("answered", prompt)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """While the frontend is asked, the notebook's interrupt raises KeyboardInterrupt again.

    The foreground driver only counts SIGINT (``interrupts.InterruptLatch``), so that no
    KeyboardInterrupt lands between a fork and its wait; but the kernel's ``raw_input`` waits for
    the frontend's reply until a KeyboardInterrupt ends it. The driver catches one raised here
    and forwards it to the children like a counted one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _AskTimedOut(BaseException):
    """--timeout ran out while the frontend was asked (not an Exception: ipykernel's input loop
    logs and ignores those)."""


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise _AskTimedOut after ``seconds`` while the frontend is asked, so a foreground
    ``--timeout`` holds while a child waits for an answer nobody gives. Uses SIGALRM only when
    nobody else does (no handler, no interval timer running); otherwise the wait is unbounded,
    as before."""
    if (seconds is None or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None)
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _AskTimedOut

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class StdinBroker:
    """Answers one spawn's prompts: asks the frontend (foreground) or holds them (``--bg``)."""

    def __init__(self, spawn: Any, kernel: Any) -> None:
        self.spawn = spawn
        self.kernel = kernel
        spawn.router.on_input = self.on_input
        self._unsubscribe = _subscribe_spawn(spawn)

    def close(self) -> None:
        """The spawn never started: stop listening for it."""
        self._unsubscribe()

    def on_input(self, worker: int | None, sock: socket.socket, payload: bytes) -> None:
        try:
            request = json.loads(payload)
            text = str(request.get("prompt", ""))
        except (ValueError, AttributeError):
            _reply(sock, REFUSED, "procmagic: a malformed input request")
            return
        procs = self.spawn.procs
        proc = procs[worker] if worker is not None and worker < len(procs) else procs[0]
        if self.spawn.options.n > 1:
            text = f"[{proc.worker}] {text}"
        if self.spawn.options.bg:
            self._hold(proc, sock, text, request)
            return
        if self.spawn.interrupted:  # asking again would block the interrupt's escalation
            _reply(sock, INTERRUPTED, "the cell was interrupted; the child asked for input again")
            return
        try:
            with _interruptible(), _deadline(self._time_left()):
                if request.get("password"):
                    line = self.kernel.getpass(text)
                else:
                    line = self.kernel.raw_input(text)
        except KeyboardInterrupt:
            raise  # the cell's interrupt: the driver forwards it to the children
        except _AskTimedOut:
            _reply(sock, END, f"--timeout ({self.spawn.options.timeout} s) ran out while this child waited for input")
            return
        except Exception as exc:
            name = type(exc).__name__
            if name == "StdinNotImplementedError":
                message = ("this frontend does not allow stdin (the execute request had allow_stdin=False), "
                           "so the child cannot ask for input; run it where stdin is allowed, or use "
                           "%%spawn --redirect and proc.write() to feed it")
            else:
                message = f"procmagic could not ask the frontend: {name}: {exc}"
            _reply(sock, REFUSED, message)
            return
        _reply(sock, ANSWER, line)

    def _time_left(self) -> float | None:
        timeout = self.spawn.options.timeout
        if not timeout:
            return None
        return self.spawn.started_at + timeout - time.time()

    def _hold(self, proc: Process, sock: socket.socket, text: str, request: dict[str, Any]) -> None:
        prompt = Prompt(proc, text, bool(request.get("password")), bool(request.get("debugger")), sock)
        with _lock:
            closed = proc.id in _closed
            typed = _typed.get(proc.id)
            line = typed.popleft() if typed else None
            if not closed and line is None:
                _waiting[proc.id] = prompt
        if closed:
            _reply(sock, END, "stdin was closed from the notebook")
            return
        if line is not None:  # typed ahead: answered at once
            _reply(sock, ANSWER, line)
            return
        what = "in the debugger" if prompt.debugger else "waiting for input"
        self.spawn.router.add_notice(
            f"[procmagic] {proc.name} is {what}: {text!r}; answer it in the panel's stdin box or with "
            f"procmagic.kernel.stdin.answer({str(proc.name)!r}, 'text')\n", name="stdout")
        _emit("waiting", prompt)


def _subscribe_spawn(spawn: Any) -> Callable[[], None]:
    from . import spawn as spawn_mod

    # The remover sits in a list emptied when it runs, not in a variable of this closure: the
    # listener and its remover would otherwise hold each other (and the spawn) for good.
    remover: list[Callable[[], None]] = []

    def unsubscribe() -> None:
        if remover:
            remover.pop()()

    def on_event(event: str, s: Any, detail: Any) -> None:
        if s is not spawn:
            return
        if event == "status":
            forget(detail[0])
        elif event == "finished":
            unsubscribe()

    remover.append(spawn_mod.subscribe(on_event))
    return unsubscribe
