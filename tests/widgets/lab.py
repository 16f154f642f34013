"""A throwaway JupyterLab or Notebook 7 on localhost and Debian's Chromium driven by Playwright,
for the browser tests and for the screenshots in docs/widgets.md and docs/frontends.md.

Every wait is bounded and says what it waited for. JupyterLab runs with its own temporary
root, runtime, config and settings folders, no token, no browser of its own, and nothing that
reaches the network (no news, no update check).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """``with Lab() as lab:`` a JupyterLab server (``Lab("notebook")``: Notebook 7); ``lab.url``,
    ``lab.root``, ``lab.runtime``, ``lab.open_url(name)``."""

    def __init__(self, app: str = "lab", start_timeout: float = 240) -> None:
        if app not in ("lab", "notebook"):
            raise ValueError(f"app must be 'lab' or 'notebook', not {app!r}")
        self.app = app
        self.start_timeout = start_timeout
        self.base = tempfile.mkdtemp(prefix="procmagic-lab-")
        self.root = os.path.join(self.base, "root")
        self.runtime = os.path.join(self.base, "runtime")
        settings = os.path.join(self.base, "settings")
        for path in (self.root, self.runtime, os.path.join(self.base, "config"), os.path.join(self.base, "data")):
            os.makedirs(path, exist_ok=True)
        user_settings = {
            ("apputils-extension", "notification"): {"fetchNews": "false", "checkForUpdates": False},
            ("notebook-extension", "tracker"): {"windowingMode": "none"},  # every cell stays in the DOM
        }
        for (package, plugin), values in user_settings.items():
            os.makedirs(os.path.join(settings, "@jupyterlab", package), exist_ok=True)
            with open(os.path.join(settings, "@jupyterlab", package, f"{plugin}.jupyterlab-settings"), "w") as f:
                json.dump(values, f)
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = os.path.join(self.base, "lab.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open_url(self, name: str) -> str:
        """Where the frontend opens the notebook ``name`` (in its root)."""
        return f"{self.url}/lab/tree/{name}" if self.app == "lab" else f"{self.url}/notebooks/{name}"

    def set_theme(self, theme: str) -> None:
        """Choose the theme (``"JupyterLab Dark"``, ``"JupyterLab Light"``) for pages loaded from now."""
        self.api("/lab/api/settings/@jupyterlab/apputils-extension:themes", method="PUT",
                 body={"raw": json.dumps({"theme": theme})})

    def __enter__(self) -> "Lab":
        for attempt in range(3):  # a free port can be taken between the probe and the bind
            self.port = free_port()
            self._start()
            if self._wait_ready():
                return self
            died = self.proc is not None and self.proc.poll() is not None
            self._stop()
            if not died:
                break  # it is slow, not unlucky: starting again would only be slower
        raise TimeoutError(f"JupyterLab did not answer on /api/status within {self.start_timeout} s; its log:\n"
                           f"{self.log()}")

    def _start(self) -> None:
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=self.runtime, JUPYTER_CONFIG_DIR=os.path.join(self.base, "config"),
                   JUPYTER_DATA_DIR=os.path.join(self.base, "data"), JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1",
                   JUPYTERLAB_SETTINGS_DIR=self.settings, JUPYTERLAB_WORKSPACES_DIR=os.path.join(self.base, "ws"))
        env.pop("JPY_PARENT_PID", None)
        module = "jupyterlab" if self.app == "lab" else "notebook"
        args = [sys.executable, "-m", module, "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
                "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.shutdown_no_activity_timeout=600", "--MappingKernelManager.cull_idle_timeout=0"]
        if self.app == "lab":
            args += [f"--LabApp.user_settings_dir={self.settings}",
                     f"--LabApp.workspaces_dir={os.path.join(self.base, 'ws')}",
                     "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:
            args.append("--allow-root")  # CI runs as root
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.root, env=env, start_new_session=True)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/api/status", timeout=5) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.25)
        return False

    def api(self, path: str, method: str = "GET", body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
        return json.loads(text) if text else None

    def session(self, name: str) -> Any:
        """The session of the notebook ``name``, or None."""
        return next((s for s in self.api("/api/sessions") if s.get("path") == name), None)

    def kernel_client(self, name: str | None = None, timeout: float = 60) -> Any:
        """A client on the kernel of notebook ``name``'s session (default: the only one), from
        its connection file."""
        from jupyter_client import BlockingKernelClient

        deadline = time.monotonic() + timeout
        while True:
            sessions = [s for s in self.api("/api/sessions") if name is None or s.get("path") == name]
            if sessions:
                kid = sessions[0]["kernel"]["id"]
                path = os.path.join(self.runtime, f"kernel-{kid}.json")
                if os.path.exists(path):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kernel session appeared within {timeout} s: {sessions}")
            time.sleep(0.25)
        client = BlockingKernelClient(connection_file=path)
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=timeout)
        return client

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self.api("/api/shutdown", method="POST", timeout=10)  # shuts its kernels down too
            except OSError:
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except OSError:
                    pass
                try:
                    proc.wait(timeout=15)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # kernels left in its session, if any
        except OSError:
            pass
        self._log.close()

    def __exit__(self, *exc: object) -> None:
        self._stop()
        shutil.rmtree(self.base, ignore_errors=True)


def execute(client: Any, code: str, timeout: float = 30) -> str:
    """Run ``code`` on ``client``'s kernel; its stdout (RuntimeError with the traceback on error)."""
    msg_id = client.execute(code, store_history=False)
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{code!r} did not finish within {timeout} s")
        try:
            msg = client.get_iopub_msg(timeout=left)
        except Exception:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            raise RuntimeError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)


def browser(playwright: Any, user_data_dir: str) -> Any:
    """Debian's Chromium, headless, in a fresh profile."""
    return playwright.chromium.launch_persistent_context(
        user_data_dir, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 1400}, device_scale_factor=1)


def notebook(cells: list[str]) -> dict[str, Any]:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return nb
