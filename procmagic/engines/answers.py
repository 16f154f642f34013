"""What the notebook does with the engines' answers to a remote spawn: ``--result``'s values
collected once every engine's spawn ended, a signal request's answers handed to a callback,
and the error text that names what an engine said."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from . import agent

__all__ = ["EngineGone", "remote_error_text", "settle_results", "when_answered"]


def settle_results(spawn: Any) -> bool:
    """Ask each engine for the values its spawn bound (once), and bind them here when all
    answered: ``{engine id: value}`` (with ``-n``, each a list in worker order)."""
    if spawn.result_asks is None:
        spawn.result_asks = {}
        for run in spawn.runs.values():
            if run.finished and not run.lost and run.children:
                try:
                    spawn.result_asks[run.engine] = spawn.ask(run.engine, agent.take_result, run.spawn_number)
                except EngineGone:
                    pass
        spawn.result_deadline = time.monotonic() + max(30.0, spawn.quiet_after)
    waiting = [ar for ar in spawn.result_asks.values() if not ar.ready()]
    if waiting and time.monotonic() < spawn.result_deadline:
        return False
    values: dict[int, Any] = {}
    problems = []
    for engine, run in sorted(spawn.runs.items()):
        ask = spawn.result_asks.get(engine)
        if ask is None or not ask.ready():
            problems.append(f"engine {engine} {'was lost' if run.lost else 'did not answer'}")
            continue
        try:
            answer = ask.get(timeout=0)
        except Exception as exc:
            problems.append(f"engine {engine}: {remote_error_text(exc)}")
            continue
        if answer.get("bound"):
            values[engine] = answer["value"]
        else:
            problems.append(f"engine {engine} bound nothing (its lines above say why)")
    if problems:
        spawn.publish("stream", {"name": "stderr", "text": (
            f"[procmagic] --result {spawn.result_var}: nothing bound: {'; '.join(problems)}\n")})
    else:
        spawn.ctx.shell.user_ns[spawn.result_var] = values
    return True


def when_answered(pending: dict[int, Any], then: Callable[[dict[str, bool]], None]) -> None:
    """Call ``then({key: sent})`` once every engine in ``pending`` answered its signal request
    (on ipyparallel's thread); an engine that failed contributes nothing."""
    if not pending:
        then({})
        return
    lock = threading.Lock()
    left = [len(pending)]
    sent: dict[str, bool] = {}

    def one(engine: int, ar: Any) -> None:
        try:
            rows = ar.get(timeout=0)
        except Exception:
            rows = []
        with lock:
            for row in rows:
                sent[f"e{engine}:{row['id']}"] = bool(row["sent"])
            left[0] -= 1
            last = left[0] == 0
        if last:
            then(dict(sent))

    for engine, ar in pending.items():
        ar.add_done_callback(lambda _f, engine=engine, ar=ar: one(engine, ar))


class EngineGone(Exception):
    """The engine cannot be asked anything any more."""


def remote_error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    if isinstance(exc, TimeoutError):
        return f"no answer ({exc})"
    return f"{type(exc).__name__}: {exc}"
