"""A foreground ``%%spawn --engines``: the cell publishes its engines' output until every engine's
spawn ended or was lost, and forwards the notebook's interrupt to the remote children."""

from __future__ import annotations

import contextlib
import queue
import signal as _signal
import time
from typing import Iterator

from .remote import RemoteSpawn

__all__ = ["run_foreground"]


def run_foreground(spawn: RemoteSpawn) -> None:
    """Publish output until every engine's spawn ended or was lost. The notebook's interrupt
    goes to the remote children: --signal-on-interrupt, then SIGTERM and SIGKILL after grace
    periods (or at once on the next interrupt); one more interrupt after that stops waiting for
    engines that do not answer (their children are shown as lost). Raised again at the end."""
    sigs = [spawn.options.signal_on_interrupt, _signal.SIGTERM, _signal.SIGKILL]
    step = 0
    escalate_at: float | None = None
    interrupts = 0  # taken, not yet acted on: acting is inside the try, so one more during it counts too
    spawn.pump()  # what came while the engines started: often the whole spawn already
    next_tick = time.monotonic()
    while not spawn.finished.is_set():
        try:
            if interrupts:
                with _interrupts_held():
                    interrupts -= 1
                    if step < len(sigs):
                        step, escalate_at = _escalate(spawn, sigs, step)
                    else:  # SIGKILL was asked for, and the user interrupts again: an engine that
                        # does not answer (stopped, cut off) will not deliver it; stop waiting for it
                        spawn.stop_waiting("the notebook stopped waiting for it after SIGKILL")
                continue
            now = time.monotonic()
            if now >= next_tick:
                with _interrupts_held():
                    spawn.tick()
                next_tick = now + 0.25
            if escalate_at is not None and now >= escalate_at and step < len(sigs):
                with _interrupts_held():
                    step, escalate_at = _escalate(spawn, sigs, step)
            wake = min(next_tick, escalate_at or next_tick)
            try:
                item = spawn.inbox.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                continue
            spawn.handle(*item)
            spawn.pump()
        except KeyboardInterrupt:
            spawn.interrupted = True
            interrupts += 1
    spawn.pump()
    if spawn.interrupted:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """An interrupt waits while the cell asks the engines (ipyparallel's client) or changes the
    spawn's state: a KeyboardInterrupt raised in the middle of either could leave them half
    done. It is raised right after, and counted by the loop. (The handler is swapped, not the
    signal blocked: any thread of the kernel may receive SIGINT, Python runs it here.)"""
    taken: list[int] = []
    try:
        previous = _signal.signal(_signal.SIGINT, lambda *_: taken.append(1))
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        _signal.signal(_signal.SIGINT, previous if previous is not None else _signal.default_int_handler)
        if taken:
            raise KeyboardInterrupt


def _escalate(spawn: RemoteSpawn, sigs: list[int], step: int) -> tuple[int, float | None]:
    sig = sigs[step]
    live = [c for c in spawn.children if c.live]
    spawn.signal(live, sig, wait=None)
    if live:  # said, so that a user whose engine does not answer sees what the interrupts do
        spawn.publish("stream", {"name": "stderr", "text": (
            f"[procmagic] interrupted: asked the engines to send {_signal.Signals(sig).name} to {len(live)} running "
            f"{'child' if len(live) == 1 else 'children'}" + ("" if step < len(sigs) - 1 else
                                                                 "; interrupt once more to stop waiting for engines that do not answer") + "\n")})
    grace = float(getattr(spawn.settings, "interrupt_grace" if step == 0 else "term_grace", 2.0))
    step += 1
    return step, (time.monotonic() + grace if step < len(sigs) else None)
