"""``%%spawn --engines``: procmagic's children on ipyparallel engines.

The notebook's kernel is an ipyparallel client; each engine is an IPython kernel holding its own
state. procmagic is loaded on every target engine and forks the cell's children there, from the
engine's namespace, with the same spawn machinery as a local ``%%spawn``; their output comes
back through the cluster and is published in the spawning cell, labelled by engine (and worker).

This package imports ipyparallel only when ``--engines`` is used (``pip install
'procmagic[engines]'``). ``agent.py`` runs on the engines, ``remote.py`` in the notebook,
``targets.py`` picks the engines. The functions below are what the magics call.
"""

from __future__ import annotations

import atexit
import os
import signal as _signal
import time
from typing import Any

from .remote import RemoteChild, RemoteSpawn, remote_spawns
from .targets import INSTALL_HINT, parse_targets

__all__ = ["EngineOptions", "spawn_on_engines", "find", "live", "kill", "wait", "processes_text", "shutdown",
           "RemoteChild", "RemoteSpawn", "remote_spawns", "INSTALL_HINT", "parse_targets"]


class EngineOptions:
    """What ``--engines``, ``--view`` and ``--push`` asked for."""

    def __init__(self, targets: str | int | list[int], view: str | None, push: list[str]) -> None:
        self.targets = targets
        self.view = view
        self.push = push


_shutdown_registered = False
_pid = os.getpid()


def spawn_on_engines(shell: Any, ctx: Any, settings: Any, options: Any, engine_options: EngineOptions,
                     source: str, cell_number: int | None) -> RemoteSpawn:
    """Run a ``%%spawn`` body on engines: resolve them, push variables, fork on each, then wait
    (foreground) or return with the output streaming in (``--bg``)."""
    global _shutdown_registered
    from . import targets

    client, engines = targets.resolve(shell.user_ns, engine_options.view, engine_options.targets)
    if engine_options.push:
        targets.push(client, engines, shell.user_ns, engine_options.push)
    if not _shutdown_registered:
        # registered after the client exists, so it runs before anything closes the client
        atexit.register(shutdown)
        _shutdown_registered = True
    spawn = RemoteSpawn(ctx, client, engines, options, settings)
    spawn.start(source, cell_number)
    if not options.bg:
        from .foreground import run_foreground

        run_foreground(spawn)
    return spawn


def live() -> list[RemoteChild]:
    return [c for s in remote_spawns() for c in s.children if c.live]


def find(target: str) -> list[RemoteChild] | None:
    """Remote children named by ``target``: a key ``e0:3``, a child's name ``job@e0`` or
    ``job/1@e0``, or a spawn's name ``job`` (all its children). None when nothing matches."""
    children = [c for s in remote_spawns() for c in s.children]
    found = [c for c in children if target in (c.key, c.name)]
    if not found:
        found = [c for s in remote_spawns() if s.name == target for c in s.children]
    return found or None


def kill(children: list[RemoteChild], sig: int) -> list[str]:
    """Signal remote children through their engines; one line of report per child."""
    name = _signal.Signals(sig).name if sig else "signal 0"
    lines = []
    by_spawn: dict[int, list[RemoteChild]] = {}
    for child in children:
        by_spawn.setdefault(id(child.spawn), []).append(child)
    for group in by_spawn.values():
        sent = group[0].spawn.signal(group, sig)
        for child in group:
            who = f"{child.name} (engine {child.engine} on {child.host}, id {child.key}, pid {child.pid})"
            if child.state == "lost":
                lines.append(f"{name} not sent to {who}: its engine is lost")
            elif sent.get(child.key):
                lines.append(f"sent {name} to {who}")
            elif child.key in sent or not child.live:
                lines.append(f"{name} not sent to {who}: it has already ended")
            else:
                lines.append(f"{name} not sent to {who}: its engine did not answer")
    return lines


def wait(children: list[RemoteChild], timeout: float | None) -> tuple[list[RemoteChild], list[RemoteChild]]:
    """Wait until these children's spawns ended (or their engines were lost); returns the ended
    children and those still running when ``timeout`` passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for spawn in {id(c.spawn): c.spawn for c in children}.values():
        while not spawn.done:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            if spawn.loop is None:
                # terminal IPython: no event loop asks the engines, so %wait does (a lost
                # engine, a --result to collect), a few times a second
                spawn.tick()
                spawn.finished.wait(0.25 if left is None else min(0.25, left))
            else:
                spawn.finished.wait(left)
    return [c for c in children if not c.live], [c for c in children if c.live]


def processes_text(children: list[RemoteChild] | None = None) -> str:
    """Remote children as a text table (for ``%procs``, ``%wait``)."""
    from ..text import table

    rows = []
    for c in children if children is not None else [c for s in remote_spawns() for c in s.children]:
        rows.append([c.key, c.name, str(c.engine), c.host, str(c.pid), c.shown_state, f"{c.runtime:.1f} s",
                     "-" if c.cpu is None else f"{c.cpu:.2f} s", _mb(c.peak), c.how or "-"])
    if not rows:
        return "no procmagic children on engines"
    return table(["id", "name", "engine", "host", "pid", "state", "runtime", "cpu", "peak rss", "exit"], rows)


def _mb(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:.1f} MB"


def shutdown(grace: float = 2.0) -> None:
    """Stop every remote child procmagic started (kernel shutdown or restart); the engines stay up."""
    if os.getpid() != _pid:
        return
    for spawn in remote_spawns():
        if any(c.live for c in spawn.children):
            try:
                spawn.stop(grace)
            except Exception:
                pass
