"""The engine's half of ``%%spawn --engines``: functions the notebook applies on each engine.

An ipyparallel engine is an IPython kernel. ``start`` loads procmagic there (once), then forks
the cell's children from the engine's own namespace with procmagic's ordinary spawn machinery,
in the background, so the engine answers the notebook again at once. The spawn publishes on
the engine's IOPub under a parent header the notebook made up for it: ipyparallel's client
files those messages under that header's msg_id, where the notebook listens. Exit statuses and
the end of the spawn travel the same way, as display data of procmagic's own MIME type, after
the output they follow.

Nothing here runs in the notebook's kernel; these functions are pickled by reference, so
procmagic must be importable on every engine (the same version as the notebook's).
"""

from __future__ import annotations

import os
import signal as _signal
import socket
import time
from typing import Any

__all__ = ["EVENT_MIME", "start", "take_result", "poll", "send_signal", "stop", "receive"]

#: Display data of this type carries procmagic's own events from an engine to the notebook.
EVENT_MIME = "application/vnd.procmagic.engine-event+json"


def _integration() -> Any:
    """The engine's procmagic, loaded on first use (``%load_ext procmagic`` on the engine)."""
    from IPython import get_ipython

    from .. import magics

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("procmagic --engines: this engine runs no IPython shell")
    _name_the_iopub_thread(getattr(shell, "kernel", None))
    if magics._instance is None:
        shell.run_line_magic("load_ext", "procmagic")
    if magics._instance is None:
        raise RuntimeError("procmagic could not be loaded on this engine (%load_ext procmagic failed)")
    return magics._instance


def _name_the_iopub_thread(kernel: Any) -> None:
    """An ipyparallel engine hands its kernel the IOPub thread itself as ``iopub_socket`` and
    leaves ``kernel.iopub_thread`` unset (ipykernel's own app sets both). procmagic finds the
    IOPub thread by that name: without it, an engine's children's output, exits and spawns ran
    on the engine's main thread, stalled while the engine runs anything else, and the threaded
    publishing rules (docs/reliability.md) did not apply. Name it, before procmagic loads (its
    integration then also reaps on that thread's loop)."""
    if kernel is None or getattr(kernel, "iopub_thread", None) is not None:
        return
    from ipykernel.iostream import IOPubThread

    socket_ = getattr(kernel, "iopub_socket", None)
    if isinstance(socket_, IOPubThread):
        kernel.iopub_thread = socket_
        from ..kernel.context import guard_iopub_thread

        guard_iopub_thread(kernel)  # what loading procmagic does; done here if it was loaded before




def _engine_id(shell: Any) -> int:
    return int(getattr(getattr(shell, "kernel", None), "engine_id", -1))


def receive(blobs: dict[str, bytes]) -> list[str]:
    """``--push``: unpickle the notebook's variables (cloudpickle) into the engine's namespace."""
    import cloudpickle

    from IPython import get_ipython

    shell = get_ipython()
    for name, blob in blobs.items():
        shell.user_ns[name] = cloudpickle.loads(blob)
    return sorted(blobs)


def start(header: dict[str, Any], source: str, options: dict[str, Any], settings: dict[str, Any],
          cell_number: int | None, result: bool = False) -> dict[str, Any]:
    """Fork the cell's children on this engine and return at once with their ids and pids.

    ``header`` is the parent header their output is published under. A refusal of the
    threaded-fork guard comes back as ``{"refused": text}``, naming this engine's threads."""
    from ..core.errors import ForkRefused
    from ..kernel import spawn as spawn_mod
    from ..kernel.cell import make_target
    from ..kernel.context import KernelContext
    from ..kernel.background import BackgroundDriver
    from ..kernel.spawn import Settings, Spawn, SpawnOptions

    magics = _integration()
    shell = magics.shell
    engine = _engine_id(shell)

    class _Routed(KernelContext):
        """The engine's kernel, publishing under the notebook's header for this spawn."""

        def header(self) -> Any:
            return header

    ctx = _Routed(shell, magics.ctx.kernel)
    spawn = Spawn(ctx, SpawnOptions(**options), source, Settings(**settings))
    collector = None
    if result:  # --result: the engine's procmagic collects the values, the notebook takes them
        from ..kernel.result import ResultCollector

        collector = ResultCollector(spawn, _result_name(spawn.number), shell)
    inner = make_target(shell, source, cell_number, on_result=collector.send_from_child if collector else None)

    def target(proc: Any) -> Any:
        proc.engine = engine  # in the child: the body reads proc.engine beside proc.worker
        if collector is not None:
            collector.claim(proc)  # first: close the siblings' channel ends
        return inner(proc)

    def on_event(event: str, which: Any, detail: Any) -> None:
        if which is not spawn:
            return
        if event == "status":
            proc, status = detail
            _event(spawn, {"kind": "status", "id": proc.id, "pid": status.pid, "how": status.how,
                           "ok": status.ok, "code": status.code, "signal": int(status.signal or 0),
                           "wall": status.wall_time, "cpu": status.cpu_time, "max_rss": status.max_rss})
        elif event == "finished":
            unsubscribe()
            _event(spawn, {"kind": "finished"})

    unsubscribe = spawn_mod.subscribe(on_event)
    try:
        spawn.start(target)
        if collector is not None:
            collector.after_start()
    except BaseException as exc:
        unsubscribe()
        if collector is not None:
            collector.abort()
        if isinstance(exc, ForkRefused):
            return {"refused": str(exc)}
        raise
    # Always in the background on the engine: the engine answers the notebook again at once.
    # attach() hands the driver every child's end, those that came before it too.
    driver = BackgroundDriver(spawn, magics.ctx.output_loop())
    # The read budget keeps a notebook's IOPub thread free for the kernel's own messages; an
    # engine's carries little but this output, and the engine answers on its shell socket.
    spawn.router.budget = None
    spawn.attach(driver)
    driver.start()
    return {"engine": engine, "host": socket.gethostname(), "engine_pid": os.getpid(), "spawn": int(spawn.number),
            "children": [{"id": int(p.id), "pid": int(p.pid or 0), "name": str(p.name), "worker": int(p.worker or 0)}
                         for p in spawn.procs]}


def _result_name(number: int) -> str:
    return f"_procmagic_result_{number}"


def take_result(number: int) -> dict[str, Any]:
    """``--result``: the values the engine's spawn ``number`` bound, taken out of the engine's
    namespace: {"bound": True, "value": ...}, or {"bound": False} (the cell said why)."""
    from IPython import get_ipython

    shell = get_ipython()
    name = _result_name(number)
    if name not in shell.user_ns:
        return {"bound": False}
    return {"bound": True, "value": shell.user_ns.pop(name)}


def _event(spawn: Any, data: dict[str, Any]) -> None:
    spawn.publish("display_data", {"data": {EVENT_MIME: data}, "metadata": {}, "transient": {}})


def _procs(ids: list[int]) -> list[Any]:
    from ..core.reaper import registry

    known = {p.id: p for p in registry.known()}
    return [known[i] for i in ids if i in known]


def _peak_rss(pid: int) -> int:
    """The child's peak resident size so far (VmHWM), in bytes; 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def poll(ids: list[int]) -> list[dict[str, Any]]:
    """The state of these children, for the notebook's rows: alive or exited, CPU, RSS."""
    import psutil

    from ..core.reaper import registry

    registry.reap_ready()
    out = []
    now = time.time()
    for proc in _procs(ids):
        row: dict[str, Any] = {"id": proc.id, "pid": proc.pid, "now": now}
        status = proc.exitstatus
        if status is not None:
            row.update(state="exited", how=status.how, ok=status.ok, cpu=status.cpu_time, peak=status.max_rss)
        else:
            row["state"] = "running"
            try:
                ps = psutil.Process(proc.pid)
                times = ps.cpu_times()
                row.update(cpu=times.user + times.system, rss=ps.memory_info().rss, peak=_peak_rss(proc.pid))
            except psutil.Error:
                pass
        out.append(row)
    return out


def send_signal(ids: list[int], sig: int) -> list[dict[str, Any]]:
    """Signal these children (each one's process group); never the engine itself."""
    out = []
    for proc in _procs(ids):
        out.append({"id": proc.id, "pid": proc.pid, "sent": bool(proc.kill(sig))})
    return out


def stop(ids: list[int], grace: float) -> list[int]:
    """SIGTERM these children, SIGKILL those still alive after ``grace`` s, reap them all;
    returns the ids that were still running. The engine stays up."""
    from ..core.reaper import registry

    live = [p for p in _procs(ids) if p.exitstatus is None]
    for proc in live:
        proc.kill(_signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in live:
        if registry.reap(proc, max(0.0, deadline - time.monotonic())) is None:
            proc.kill(_signal.SIGKILL)
            registry.reap(proc, 5.0)
    return [p.id for p in live]
