"""A real ipyparallel cluster for the engines tests: a controller and two engines, separate
processes talking TCP on 127.0.0.1 (the protocol of a multi-host cluster), started once per
module through ipyparallel's Cluster API, and a real notebook kernel that is its client."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from typing import Any

import psutil
import pytest

from tests.kernel.conftest import Kernel

ipp = pytest.importorskip("ipyparallel", reason="ipyparallel is not installed: pip install 'procmagic[engines]'")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).endswith("/tests/engines/test_engines.py"):
            item.add_marker(pytest.mark.kernel)
            item.add_marker(pytest.mark.slow)


class LocalCluster:
    def __init__(self, n: int = 2) -> None:
        self.profile_dir = tempfile.mkdtemp(prefix="procmagic-ipp-")
        self.cluster = ipp.Cluster(n=n, profile_dir=self.profile_dir, controller_ip="127.0.0.1",
                                   engine_timeout=60, log_level=40)
        self.cluster.start_cluster_sync()
        self.client = self.cluster.connect_client_sync()
        self.client.wait_for_engines(n, timeout=90)
        found = glob.glob(os.path.join(self.cluster.profile_dir, "security", f"ipcontroller-{self.cluster.cluster_id}-client.json"))
        assert found, f"no client connection file in {self.cluster.profile_dir}/security"
        self.url_file = found[0]
        self.pids = dict(zip(self.client.ids, self.client[:].apply_sync(_getpid)))
        # what an engine runs of its own (ipyparallel's nanny), before procmagic forks anything
        self.baseline = {e: {c.pid for c in self._children(e)} for e in self.pids}

    def _children(self, engine: int) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pids[engine]).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def forked(self, engine: int) -> list[psutil.Process]:
        """The processes procmagic forked on ``engine`` that still exist (zombies too)."""
        return [c for c in self._children(engine) if c.pid not in self.baseline[engine]]

    def engine_alive(self, engine: int) -> bool:
        try:
            return psutil.Process(self.pids[engine]).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self.cluster.stop_cluster_sync()
            shutil.rmtree(self.profile_dir, ignore_errors=True)


def _getpid() -> int:
    import os

    return os.getpid()


@pytest.fixture(scope="module")
def cluster():
    try:
        c = LocalCluster()
    except Exception as exc:  # a machine where ipyparallel cannot start a cluster at all
        pytest.skip(f"ipyparallel could not start a local cluster here: {type(exc).__name__}: {exc}")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def nb(cluster) -> Any:
    """A notebook kernel with procmagic loaded and ``rc``, an ipyparallel Client of the cluster."""
    k = Kernel()
    try:
        k.execute("%load_ext procmagic", timeout=60)
        cell = k.execute(f"import ipyparallel as ipp\nrc = ipp.Client({cluster.url_file!r})\n"
                         "rc.wait_for_engines(2, timeout=60)\nprint(sorted(rc.ids))", timeout=90)
        assert "[0, 1]" in cell.text(), cell.outputs
        yield k
    finally:
        k.close()
