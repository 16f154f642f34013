"""Real ipykernel kernels driven with jupyter_client. Assertions are on ``parent_header``:
nbclient drops output that arrives after a cell ends, these tests do not."""

from __future__ import annotations

import os
import queue
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyter_client.manager import KernelManager



def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/kernel/" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)


@dataclass
class Cell:
    msg_id: str
    reply: dict[str, Any] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)  # iopub messages of this cell

    def text(self, name: str | None = None) -> str:
        return "".join(m["content"]["text"] for m in self.outputs
                       if m["msg_type"] == "stream" and (name is None or m["content"]["name"] == name))

    def errors(self) -> list[dict[str, Any]]:
        return [m["content"] for m in self.outputs if m["msg_type"] == "error"]

    def of_type(self, msg_type: str) -> list[dict[str, Any]]:
        return [m["content"] for m in self.outputs if m["msg_type"] == msg_type]


class Kernel:
    """A kernel and a client; every IOPub message is kept and filed by its parent msg_id."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        env = dict(os.environ)
        env.update(extra_env or {})
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, extra_arguments=[], cwd=os.getcwd())
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.by_parent: dict[str, list[dict[str, Any]]] = {}
        self.all: list[dict[str, Any]] = []  # every IOPub message, in arrival order

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid  # type: ignore[union-attr]

    def fds(self) -> int:
        """How many fds the kernel process has open (read from outside it)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fds_settled(self, most: int | None = None, within: float = 30.0) -> int:
        """The kernel's fd count once it settles: the last spawns' sockets close on the IOPub
        loop just after their statuses are published. Waits (bounded) until the count is at
        most ``most``, or, without ``most``, the same over a second."""
        deadline, last, same_since = time.monotonic() + within, self.fds(), time.monotonic()
        while time.monotonic() < deadline:
            if most is not None and last <= most:
                break
            if most is None and time.monotonic() - same_since >= 1.0:
                break
            time.sleep(0.1)
            n = self.fds()
            if n != last:
                last, same_since = n, time.monotonic()
        return last

    def fd_links(self) -> list[str]:
        """What the kernel's fds point at, sorted (for a failure message)."""
        links = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                links.append(os.readlink(f"/proc/{self.pid}/fd/{fd}"))
            except OSError:
                pass
        return sorted(links)

    def _pump(self, timeout: float) -> dict[str, Any] | None:
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        parent = msg.get("parent_header", {}).get("msg_id", "")
        self.all.append(msg)
        self.by_parent.setdefault(parent, []).append(msg)
        return msg

    def execute(self, code: str, timeout: float = 60, wait: bool = True, stop_on_error: bool = False) -> Cell:
        msg_id = self.kc.execute(code, stop_on_error=stop_on_error)
        cell = Cell(msg_id)
        if wait:
            self.finish(cell, timeout)
        return cell

    def finish(self, cell: Cell, timeout: float = 60) -> Cell:
        deadline = time.monotonic() + timeout
        idle = False
        while not idle:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cell {cell.msg_id} did not finish within {timeout} s")
            msg = self._pump(min(left, 1.0))
            if msg is None:
                continue
            if (msg["parent_header"].get("msg_id") == cell.msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                idle = True
        while True:  # skip stray replies (a second kernel_info_reply from wait_for_ready)
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply.get("parent_header", {}).get("msg_id") == cell.msg_id:
                break
        cell.reply = reply["content"]
        cell.outputs = self.outputs(cell.msg_id)
        return cell

    def outputs(self, msg_id: str) -> list[dict[str, Any]]:
        return [m for m in self.by_parent.get(msg_id, []) if m["msg_type"] != "status" and m["msg_type"] != "execute_input"]

    def stream_text(self, msg_id: str) -> str:
        """Every stream text published so far under the cell ``msg_id`` (background output too)."""
        return "".join(m["content"].get("text", "") for m in self.outputs(msg_id) if m["msg_type"] == "stream")

    def wait_for_text(self, msg_id: str, text: str, timeout: float = 30) -> bool:
        """Pump IOPub until ``text`` appears in the cell's streams; False on time-out."""
        return self.collect_until(lambda: text in self.stream_text(msg_id), timeout)

    def collect_until(self, predicate: Any, timeout: float = 30) -> bool:
        """Pump IOPub until predicate() is true (for background output); False on time-out."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._pump(min(left, 0.5))
        return True

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=False)


@pytest.fixture
def kernel():
    k = Kernel()
    try:
        k.execute("%load_ext procmagic", timeout=60)
        yield k
    finally:
        k.close()


def stream_text(msgs: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
