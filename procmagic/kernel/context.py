"""Where a spawn's output goes and which loops drive it: a Jupyter kernel, or a terminal.

The kernel context publishes with ``session.send`` under the parent header captured when the
cell ran, so output lands in the spawning cell whatever runs since. Background output is read
on the IOPub thread's own event loop, which keeps running while a synchronous cell blocks the
main thread (procmagic adds no thread of its own).

The IOPub thread must never wait on itself (docs/reliability.md, "Publishing from the IOPub
thread"). ipykernel's ``kernel.iopub_socket`` is a ``BackgroundSocket``: each send appends a
callback to ``IOPubThread._events`` and wakes the IOPub thread with one zmq message on a PUSH
socket of the calling thread's own (``_event_pipe``). Only the IOPub thread's loop reads that
pipe, and only between two loop iterations; a PUSH blocks once about 2,000 wake-ups are queued
(send and receive high-water marks of 1,000). Code that sends through ``iopub_socket`` *on* the
IOPub thread, many times within one loop iteration (128 ``--bg`` cells ending together: status
lines, panel snapshots, widget closes), blocks in that send for ever, and the kernel with it.
So, on the IOPub thread:

- procmagic's publisher sends on the real socket, ``iopub_thread.socket``, which that thread
  owns (ipykernel does the same for its own welcome messages), after running the sends other
  threads queued before (``run_queued``: the order of messages stays the order of sending);
- ``guard_iopub_thread`` makes ``iopub_thread.schedule`` run the callback at once when it is
  called on the IOPub thread itself (what its loop would do a moment later), so sends that do
  not go through procmagic (ipywidgets' comm messages: ``session.send(kernel.iopub_socket)``)
  never queue on that thread's own pipe. Other threads schedule exactly as before.

Both rules hold in ipykernel 6 (PUB socket) and 7 (XPUB socket); neither socket blocks a
sender (they drop for a subscriber that is far behind, as every kernel message does).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any, Callable

__all__ = ["Context", "KernelContext", "TerminalContext", "context_for", "guard_iopub_thread",
           "on_iopub_thread", "run_queued"]

Publish = Callable[[str, dict[str, Any]], None]


class Context:
    kernel: Any = None
    terminal = False

    def __init__(self, shell: Any) -> None:
        self.shell = shell

    def header(self) -> Any:
        return None

    def publisher(self, header: Any) -> Publish:
        raise NotImplementedError

    def output_loop(self) -> Any:
        """The asyncio loop that reads background output, or None (terminal: drained per cell)."""
        return None

    def main_loop(self) -> Any:
        """The main thread's asyncio loop, where children are reaped, or None."""
        return None


class KernelContext(Context):
    def __init__(self, shell: Any, kernel: Any) -> None:
        super().__init__(shell)
        self.kernel = kernel
        self._main_loop: Any = None

    def header(self) -> Any:
        get_parent = getattr(self.kernel, "get_parent", None)
        if get_parent is not None:
            try:
                return get_parent("shell")
            except TypeError:
                return get_parent()
        return getattr(self.shell, "parent_header", None)

    def publisher(self, header: Any) -> Publish:
        kernel = self.kernel
        session, background = kernel.session, kernel.iopub_socket
        thread = getattr(kernel, "iopub_thread", None)

        def publish(msg_type: str, content: dict[str, Any]) -> None:
            ident = f"stream.{content['name']}".encode() if msg_type == "stream" else None
            raw = getattr(thread, "socket", None) if on_iopub_thread(kernel) else None
            if raw is not None:
                # on the IOPub thread: after what other threads queued before (a panel's first
                # display), straight onto the socket it owns, never onto its own event pipe
                run_queued(thread)
                session.send(raw, msg_type, content, parent=header, ident=ident)
            else:
                session.send(background, msg_type, content, parent=header, ident=ident)

        return publish

    def output_loop(self) -> Any:
        thread = getattr(self.kernel, "iopub_thread", None)
        io_loop = getattr(thread, "io_loop", None)
        loop = getattr(io_loop, "asyncio_loop", None)
        runner = getattr(thread, "thread", None)
        if loop is not None and runner is not None and runner.is_alive():
            return loop
        return self.main_loop()  # ipykernel without an IOPub loop: background output waits for idle

    def main_loop(self) -> Any:
        if self._main_loop is None:
            try:
                self._main_loop = asyncio.get_running_loop()
            except RuntimeError:
                io_loop = getattr(self.kernel, "io_loop", None)
                self._main_loop = getattr(io_loop, "asyncio_loop", None)
        return self._main_loop


class TerminalContext(Context):
    terminal = True

    def publisher(self, header: Any) -> Publish:
        def publish(msg_type: str, content: dict[str, Any]) -> None:
            if msg_type == "stream":
                stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
                stream.write(content.get("text", ""))
                stream.flush()
            elif msg_type in ("display_data", "execute_result", "update_display_data"):
                text = content.get("data", {}).get("text/plain")
                if text is not None:
                    print(text)
            elif msg_type == "error":
                print("\n".join(content.get("traceback", [])), file=sys.stderr)

        return publish


def on_iopub_thread(kernel: Any) -> bool:
    """True when the caller runs on the kernel's IOPub thread (in the kernel's own process)."""
    thread = getattr(getattr(kernel, "iopub_thread", None), "thread", None)
    return thread is not None and thread.ident == threading.get_ident()


def run_queued(iopub: Any) -> None:
    """On the IOPub thread: run the sends other threads queued and the loop has not run yet
    (``IOPubThread._events``, what its event handler runs), so a send made at once from this
    thread keeps its place after them. Their wake-ups on the event pipe then find nothing left.

    Only from procmagic's own loop callbacks, never from inside ipykernel's event handler (it
    counts the queued events, then pops that many)."""
    events = getattr(iopub, "_events", None)
    if not events:
        return
    for _ in range(len(events)):  # the ones queued by now; more may come meanwhile
        try:
            event = events.popleft()
        except IndexError:
            return
        event()


def guard_iopub_thread(kernel: Any) -> Callable[[], None]:
    """Make ``kernel.iopub_thread.schedule(f)`` call ``f()`` at once when it is called on the
    IOPub thread itself (see the module's docs); returns the function that undoes it."""
    iopub = getattr(kernel, "iopub_thread", None)
    original = getattr(iopub, "schedule", None)
    if iopub is None or original is None or getattr(original, "_procmagic_guard", False):
        return lambda: None
    pid = os.getpid()

    def schedule(f: Callable[[], Any]) -> Any:
        if os.getpid() == pid and on_iopub_thread(kernel):
            # (never run_queued here: this may run inside ipykernel's own event handler, which
            # counted the queued events before running them)
            return f()  # what the IOPub loop would run next; queueing it could block this thread
        return original(f)

    schedule._procmagic_guard = True  # type: ignore[attr-defined]
    iopub.schedule = schedule

    def undo() -> None:
        if getattr(iopub, "schedule", None) is schedule:
            try:
                del iopub.schedule  # back to the class's method
            except AttributeError:
                iopub.schedule = original

    return undo


def context_for(shell: Any) -> Context:
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and getattr(kernel, "iopub_socket", None) is not None:
        return KernelContext(shell, kernel)
    return TerminalContext(shell)
