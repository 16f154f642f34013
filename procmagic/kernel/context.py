"""Where a spawn's output goes and which loops drive it: a Jupyter kernel, or a terminal.

The kernel context publishes with ``session.send`` on the kernel's IOPub socket, under the
parent header captured when the cell ran, so output lands in the spawning cell whatever runs
since. Background output is read on the IOPub thread's own event loop, which keeps running
while a synchronous cell blocks the main thread (procmagic adds no thread of its own).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable

__all__ = ["Context", "KernelContext", "TerminalContext", "context_for"]

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
        session, socket = self.kernel.session, self.kernel.iopub_socket

        def publish(msg_type: str, content: dict[str, Any]) -> None:
            ident = f"stream.{content['name']}".encode() if msg_type == "stream" else None
            session.send(socket, msg_type, content, parent=header, ident=ident)

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


def context_for(shell: Any) -> Context:
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and getattr(kernel, "iopub_socket", None) is not None:
        return KernelContext(shell, kernel)
    return TerminalContext(shell)
