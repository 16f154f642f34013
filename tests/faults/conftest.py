"""The fault suite: real kernels under hostile conditions (see docs/reliability.md).

Each test records the figure it measures with ``figure(name, value, unit)``; the figures are
printed at the end of the run (``-rA`` shows them per test) and docs/reliability.md quotes them.
``FAULTS_SOAK=N`` multiplies the sizes and repetitions of the soak-able tests by N.
"""

from __future__ import annotations

import os

import pytest

from ..kernel.conftest import Kernel, stream_text  # noqa: F401  (the shared harness)

SOAK = max(1, int(os.environ.get("FAULTS_SOAK", "1") or "1"))

_figures: list[tuple[str, str, float, str]] = []


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture
def figure(request):
    """``figure(name, value, unit)``: record what this test measured."""

    def record(name: str, value: float, unit: str = "") -> None:
        _figures.append((request.node.name, name, value, unit))
        request.node.user_properties.append((name, f"{value:g} {unit}".strip()))

    return record


@pytest.fixture
def kernel():
    k = Kernel()
    try:
        k.execute("%load_ext procmagic", timeout=60)
        yield k
    finally:
        k.close()


def pytest_terminal_summary(terminalreporter):
    if not _figures:
        return
    terminalreporter.section("fault suite figures")
    for test, name, value, unit in _figures:
        terminalreporter.write_line(f"{test}: {name} = {value:g} {unit}".rstrip())
