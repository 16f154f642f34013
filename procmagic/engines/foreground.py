"""A foreground ``%%spawn --engines``: the cell publishes its engines' output until every engine's
spawn ended or was lost, and forwards the notebook's interrupt to the remote children."""

from __future__ import annotations

import queue
import signal as _signal
import time

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
                interrupts -= 1
                if step < len(sigs):
                    step, escalate_at = _escalate(spawn, sigs, step)
                else:  # SIGKILL was asked for, and the user interrupts again: an engine that does
                    # not answer (stopped, cut off) will not deliver it; stop waiting for it
                    spawn.stop_waiting("the notebook stopped waiting for it after SIGKILL")
                continue
            now = time.monotonic()
            if now >= next_tick:
                spawn.tick()
                next_tick = now + 0.25
            if escalate_at is not None and now >= escalate_at and step < len(sigs):
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


def _escalate(spawn: RemoteSpawn, sigs: list[int], step: int) -> tuple[int, float | None]:
    sig = sigs[step]
    spawn.signal([c for c in spawn.children if c.live], sig, wait=None)
    grace = float(getattr(spawn.settings, "interrupt_grace" if step == 0 else "term_grace", 2.0))
    step += 1
    return step, (time.monotonic() + grace if step < len(sigs) else None)
