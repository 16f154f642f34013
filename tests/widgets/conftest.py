"""Widgets tests drive real kernels (jupyter_client) and read the widget models' state in the
kernel, and the messages a frontend would get, from IOPub."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.kernel.conftest import Cell, Kernel


class WidgetKernel(Kernel):
    def value(self, expr: str, timeout: float = 30) -> Any:
        """Evaluate ``expr`` in the kernel and return it (through JSON)."""
        cell = self.execute(f"import json as _j\nprint('@@' + _j.dumps({expr}))", timeout=timeout)
        if cell.errors():
            raise AssertionError(f"{expr!r} raised in the kernel: {cell.errors()[0]['evalue']}\n"
                                 + "\n".join(cell.errors()[0]["traceback"]))
        line = [l for l in cell.text().splitlines() if l.startswith("@@")]
        assert line, f"no value for {expr!r}: {cell.text()!r}"
        return json.loads(line[-1][2:])

    def wait_value(self, expr: str, timeout: float = 30, pause: float = 0.2) -> Any:
        """Evaluate ``expr`` until it is truthy; its last value (AssertionError on time-out)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(expr)
            if value or time.monotonic() > deadline:
                assert value, f"{expr!r} still {value!r} after {timeout} s"
                return value
            time.sleep(pause)

    def send_comm(self, comm_id: str, data: dict[str, Any]) -> None:
        """What a frontend sends when a widget is clicked or edited."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)

    def click(self, model_id: str) -> None:
        self.send_comm(model_id, {"method": "custom", "content": {"event": "click"}})

    def set_state(self, model_id: str, **state: Any) -> None:
        self.send_comm(model_id, {"method": "update", "state": state, "buffer_paths": []})

    def all_messages(self) -> list[dict[str, Any]]:
        return [m for msgs in self.by_parent.values() for m in msgs]


@pytest.fixture(scope="module")
def wk():
    k = WidgetKernel()
    try:
        cell = k.execute("%load_ext procmagic", timeout=60)
        assert not cell.errors(), cell.errors()
        yield k
    finally:
        k.close()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/widgets/" in str(item.fspath) and "wk" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kernel)


__all__ = ["Cell", "WidgetKernel"]
