"""The hub: one per kernel, it refreshes every panel and dashboard from a single paced timer.

Where updates run. procmagic starts no thread. Widget state and display updates are sent from
the IOPub thread's own asyncio loop (the loop that reads ``--bg`` output, ``Context.output_loop``):
it keeps running while a synchronous cell blocks the main thread, and while the kernel is idle,
so the frontend sees a child start, tick and end in both cases (DESIGN.md §4). Every mutation of
a view's widgets happens there; other threads only mark a view dirty and *poke* the hub.

Which cell a final snapshot names. Frontends apply ``update_display_data`` by display id, not
by the cell a message names (JupyterLab, Notebook 7), but nbclient (papermill, ``nbconvert
--execute``) reads only the messages of the cell it is running and then applies their display
updates to earlier cells too. So the update that leaves a view's final snapshot goes out under
the header of the latest cell to run (``Hub.header``), which lands in the view's cell everywhere,
also in a notebook executed headless while a later cell (``%wait``) runs. A view's first display
and its live updates are published under its own cell's header, like the children's output.

Pacing. A live view is refreshed every ``TICK`` seconds; an event (a child started or reaped, a
click) refreshes sooner, but never within ``MIN_GAP`` of the previous refresh, so a burst of 200
exits costs a handful of refreshes. Only a view's changed parts are sent. Panels beyond the
``FAST_PANELS`` newest live ones refresh every ``SLOW`` seconds. With nothing live the timer stops.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable

from ..core.reaper import registry
from ..kernel import spawn as spawn_mod
from .facts import QueueWatch, Sampler

__all__ = ["Hub", "hub_for", "current_hub", "View"]

LIVE, IDLE, DONE = "live", "idle", "done"


class View:
    """What the hub refreshes: a panel or a dashboard. ``refresh`` runs on the hub's loop and
    returns LIVE (refresh again after ``period``), IDLE (only when dirty) or DONE (forget it)."""

    kind = "view"
    dirty = True
    live = True
    refreshed = 0.0
    period = 0.5

    def refresh(self, hub: "Hub", now: float) -> str:
        raise NotImplementedError

    def retire(self, hub: "Hub") -> None:
        """Leave a final snapshot in the notebook and release the widgets (loop thread)."""


class Hub:
    TICK = 0.5
    MIN_GAP = 0.25
    FAST_PANELS = 16
    SLOW = 4.0
    LIVE_DASHBOARDS = 1
    SLICE = 0.02  # seconds of refreshing in one loop iteration; the rest goes on in the next
    #: Finished views whose widgets stay open, showing their final snapshot to every view of the
    #: notebook restored from the kernel (a reload, a second tab); past this, the oldest close.
    KEEP_FINISHED = 64
    #: Finished ``--bg`` panels that keep a copy of their output for ``%wait`` to publish again.
    KEEP_OUTPUT = 16

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.loop = ctx.output_loop()
        self.pid = os.getpid()
        self.views: list[View] = []  # touched on the loop's thread only
        self.panels: dict[int, View] = {}  # spawn number -> panel; read from any thread
        self.recent: collections.deque[View] = collections.deque(maxlen=32)  # for a look from the notebook
        self.by_spawn: collections.OrderedDict[int, View] = collections.OrderedDict()  # the last 256 panels
        self.sampler = Sampler()
        self.queue_watch = QueueWatch(every=self.TICK)
        self.alarm_counts: dict[int, tuple[float, int]] = {}
        self.stats = {"ticks": 0, "refreshes": 0, "seconds": 0.0, "messages": 0, "errors": 0}
        self.errors: collections.deque[str] = collections.deque(maxlen=20)
        self._handle: Any = None
        self._due: float | None = None
        self._last = 0.0
        self._poke_lock = threading.Lock()
        self._poked = False
        self._more = False  # the last tick's slice ran out before every due view was refreshed
        self._closed = False
        self.finished: collections.deque[Any] = collections.deque()  # widgets showing a final snapshot
        self.kept_output: collections.deque[Any] = collections.deque()  # finished panels with their output
        self.header: Any = ctx.header()  # of the latest cell to run (see the module's docstring)
        self._unsubscribe = [spawn_mod.subscribe(self._on_spawn), registry.subscribe(self._on_registry)]
        events = getattr(ctx.shell, "events", None)
        if events is not None:
            events.register("pre_run_cell", self._pre_run_cell)
            events.register("post_run_cell", self._post_run_cell)
            self._unsubscribe += [lambda: events.unregister("pre_run_cell", self._pre_run_cell),
                                  lambda: events.unregister("post_run_cell", self._post_run_cell)]

    # -- from any thread ----------------------------------------------------------------------
    def call(self, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` on the hub's loop (at once where there is no loop); False if it cannot."""
        if self.loop is None:
            self._guarded(fn)
            return True
        try:
            self.loop.call_soon_threadsafe(self._guarded, fn)
        except RuntimeError:  # the loop is closed: the kernel is shutting down
            return False
        return True

    def panel_of(self, spawn: Any) -> Any:
        """The panel of ``spawn``, live or finished (the last 256 spawns), or None."""
        return self.by_spawn.get(spawn.number)

    def update_publisher(self) -> Callable[[str, dict[str, Any]], None]:
        """Publish final snapshots under the latest cell's header (see the module's docstring)."""
        return self.ctx.publisher(self.header)  # type: ignore[no-any-return]

    def keep_output(self, view: Any) -> None:
        """``view`` finished: keep its copy of the output for ``%wait`` only in the newest
        ``KEEP_OUTPUT`` finished panels (a copy is bounded by the output cap)."""
        self.kept_output.append(view)
        while len(self.kept_output) > self.KEEP_OUTPUT:
            self.kept_output.popleft().output = None

    def keep_finished(self, widget: Any) -> None:
        """``widget`` shows its final snapshot now: keep it open (a restored view of the notebook
        shows it from the kernel's state), closing the oldest past ``KEEP_FINISHED`` (loop thread)."""
        self.finished.append(widget)
        while len(self.finished) > self.KEEP_FINISHED:
            self._guarded(self.finished.popleft().close)

    def poke(self) -> None:
        """Something changed: refresh the dirty views soon (throttled)."""
        if os.getpid() != self.pid or self._closed:
            return
        with self._poke_lock:
            if self._poked:
                return
            self._poked = True
        if not self.call(self._on_poke):
            with self._poke_lock:
                self._poked = False

    def add(self, view: View) -> None:
        self.recent.append(view)
        if view.kind == "panel":
            self.panels[view.spawn.number] = view  # type: ignore[attr-defined]
            self.by_spawn[view.spawn.number] = view  # type: ignore[attr-defined]
            while len(self.by_spawn) > 256:
                self.by_spawn.popitem(last=False)
        self.call(lambda: self._add(view))

    def close(self) -> None:
        self._closed = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # -- IPython's cell events (the main thread) -----------------------------------------------
    def _pre_run_cell(self, *args: Any) -> None:
        if os.getpid() == self.pid:  # a child runs its body as a cell too: not ours
            self.header = self.ctx.header()

    def _post_run_cell(self, *args: Any) -> None:
        """The cell ends: what its ``--bg`` spawns print from now on, nbclient no longer files."""
        if os.getpid() != self.pid:
            return
        msg_id = (self.header or {}).get("msg_id")
        for view in list(self.by_spawn.values()):  # (by_spawn changes on this thread only)
            if msg_id is not None and (view.spawn.header or {}).get("msg_id") == msg_id:  # type: ignore[attr-defined]
                view.cell_ended()  # type: ignore[attr-defined]

    # -- event listeners (the thread that emitted) --------------------------------------------
    def _on_spawn(self, event: str, spawn: Any, detail: Any) -> None:
        view: Any = self.panels.get(spawn.number)
        if view is not None:
            view.dirty = True
            if event == "started":
                view.started = True
                view.on_started()
            elif event == "finished":
                view.finalize()  # in the emitting thread: a foreground cell's snapshot lands before it ends
        self._dashboards_dirty()
        self.poke()

    def _on_registry(self, event: str, proc: Any, status: Any) -> None:
        spawn = spawn_mod.spawn_of(proc)
        view = self.panels.get(spawn.number) if spawn is not None else None
        if view is not None:
            view.dirty = True
        self._dashboards_dirty()
        self.poke()

    def _dashboards_dirty(self) -> None:
        for view in list(self.views):
            if view.kind == "dashboard":
                view.dirty = True

    # -- on the loop --------------------------------------------------------------------------
    def _guarded(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            self._error()

    def _add(self, view: View) -> None:
        if view.kind == "dashboard":
            boards = [v for v in self.views if v.kind == "dashboard"]
            for old in boards[: max(0, len(boards) - self.LIVE_DASHBOARDS + 1)]:
                self._drop(old)
                self._guarded(lambda: old.retire(self))
        self.views.append(view)
        view.dirty = True
        self._schedule(max(0.0, self._last + self.MIN_GAP - time.monotonic()))

    def _drop(self, view: View) -> None:
        if view in self.views:
            self.views.remove(view)
        if view.kind == "panel" and self.panels.get(view.spawn.number) is view:  # type: ignore[attr-defined]
            del self.panels[view.spawn.number]  # type: ignore[attr-defined]

    def _on_poke(self) -> None:
        with self._poke_lock:
            self._poked = False
        self._schedule(max(0.0, self._last + self.MIN_GAP - time.monotonic()))

    def _schedule(self, delay: float) -> None:
        if self.loop is None or self._closed:
            if self.loop is None:
                self._tick()
            return
        due = time.monotonic() + delay
        if self._handle is not None:
            if self._due is not None and self._due <= due:
                return
            self._handle.cancel()
        self._due = due
        self._handle = self.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._handle = self._due = None
        started = time.perf_counter()
        now = time.monotonic()
        self._last = now
        self.stats["ticks"] += 1
        next_due: float | None = now + self.TICK  # if anything below fails: try again soon
        self._more = False
        try:
            next_due = self._refresh_all(now)
            self.sampler.forget(p.id for p in registry.live())
        except Exception:
            self._error()
        finally:
            self.stats["seconds"] += time.perf_counter() - started
            if self._more:  # the slice ran out: go on once the loop has served the kernel's own sends
                self._schedule(0.0)
            elif next_due is not None:
                self._schedule(max(self.MIN_GAP, next_due - time.monotonic()))

    def _refresh_all(self, now: float) -> float | None:
        """Refresh the views that are due; when the next one is due (None: nothing is live)."""
        live_panels = sorted((v for v in self.views if v.kind == "panel" and v.live),
                             key=lambda v: -v.spawn.number)  # type: ignore[attr-defined]
        fast = {id(v) for v in live_panels[: self.FAST_PANELS]}
        next_due: float | None = None
        # One loop iteration refreshes for at most SLICE seconds: the IOPub thread also carries
        # every message the kernel sends (docs/reliability.md, "Publishing from the IOPub thread").
        stop_at = time.perf_counter() + self.SLICE
        for view in list(self.views):
            period = view.period if (view.kind != "panel" or id(view) in fast) else max(view.period, self.SLOW)
            if view.dirty or (view.live and now - view.refreshed >= period * 0.95):
                if time.perf_counter() > stop_at:
                    self._more = True
                    continue
                view.dirty = False
                try:
                    result = view.refresh(self, now)
                except Exception:
                    self._error()
                    result = LIVE  # a passing failure must not freeze the view: retry next time
                view.refreshed = now
                self.stats["refreshes"] += 1
                view.live = result == LIVE
                if result == DONE:
                    self._drop(view)
                    continue
            if view.live:
                when = view.refreshed + period
                next_due = when if next_due is None else min(next_due, when)
        if any(v.dirty for v in self.views):
            next_due = min(next_due or now, now + self.MIN_GAP)
        return next_due

    def _error(self) -> None:
        """Keep the traceback (``hub.errors``); print each distinct one once, to the kernel's log."""
        text = traceback.format_exc()
        self.stats["errors"] += 1
        if text not in self.errors:
            self.errors.append(text)
            print(f"procmagic widgets: {text}", file=sys.__stderr__)

    def sent(self, n: int = 1) -> None:
        self.stats["messages"] += n


_hub: Hub | None = None


def hub_for(ctx: Any) -> Hub:
    """This kernel's hub (made on first use)."""
    global _hub
    if _hub is None or _hub.pid != os.getpid() or _hub._closed:
        _hub = Hub(ctx)
    return _hub


def current_hub() -> Hub | None:
    return _hub if _hub is not None and _hub.pid == os.getpid() else None
