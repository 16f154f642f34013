"""What the notebook knows of the children a remote spawn started: one ``RemoteChild`` per child
on an engine, and one ``_EngineRun`` per engine (its header, its children, its state question)."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["RemoteChild"]


class RemoteChild:
    """One child forked on an engine, as the notebook sees it (the latest facts it was told)."""

    def __init__(self, spawn: Any, engine: int, host: str, info: dict[str, Any]) -> None:
        self.spawn = spawn
        self.engine = engine
        self.host = host
        self.id = int(info["id"])  # the id on its engine
        self.pid = int(info["pid"])
        self.name = f"{info['name']}@e{engine}"
        self.worker = int(info.get("worker") or 0)
        self.state = "running"  # running, exited, lost
        self.how = ""  # "exited 0", "killed by SIGTERM"... once ended
        self.ok: bool | None = None
        self.cpu: float | None = None
        self.rss: int | None = None
        self.peak: int | None = None
        self.started = time.time()
        self.ended: float | None = None

    @property
    def key(self) -> str:
        """How ``%kill`` and ``%wait`` name it: ``e<engine>:<id on the engine>``."""
        return f"e{self.engine}:{self.id}"

    @property
    def live(self) -> bool:
        return self.state == "running"

    @property
    def shown_state(self) -> str:
        """The state a row shows: "not answering" while its engine leaves questions unanswered."""
        if self.state == "running" and self.spawn.runs[self.engine].quiet_since is not None:
            return "not answering"
        return self.state

    @property
    def runtime(self) -> float:
        return (self.ended or time.time()) - self.started

    def __repr__(self) -> str:
        return f"<RemoteChild {self.key} {self.name!r} pid {self.pid} on {self.host} {self.state}>"


class _EngineRun:
    """One engine's part of a spawn: its header, its children, and the state question in flight."""

    def __init__(self, engine: int, header: dict[str, Any], future: Any) -> None:
        self.engine = engine
        self.header = header
        self.future = future  # ipyparallel's MessageFuture for header's msg_id: its iopub callbacks
        self.host = "?"
        self.spawn_number = 0  # the spawn's number on the engine
        self.children: list[RemoteChild] = []
        self.finished = False  # the engine said its spawn ended (all output sent before)
        self.lost = False
        self.question: Any = None  # AsyncResult of agent.poll
        self.asked_at = 0.0
        self.answered_at = time.monotonic()
        self.quiet_since: float | None = None  # when a question to it went unanswered past quiet_after
        self.ended_seen: float | None = None  # when a state answer first said all children ended

    @property
    def done(self) -> bool:
        return self.finished or self.lost or not self.children
