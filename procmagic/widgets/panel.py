"""The panel above a ``%%spawn`` cell's output.

It starts as a small display (one message, published before the fork, so it sits above the
children's output), which is then updated in place:

- a foreground spawn: the kernel runs the cell, so it cannot read a click until the cell ends
  (buttons would act too late). Its panel is live HTML, re-rendered in place by the hub; the
  notebook's interrupt (■) stops the children (procmagic forwards SIGINT, then SIGTERM, SIGKILL).
- a ``--bg`` spawn: a widget, built on the hub's loop after the fork (so the cell does not pay
  for it), with interrupt / terminate / kill, a row per worker with ``-n``, and for
  ``--redirect`` a line input for the child's stdin and a button that closes it.

When the spawn ends, the panel's display becomes a static snapshot (HTML and a text table: what a
saved notebook, an HTML export and a notebook executed by nbclient keep), published under the
latest cell's header so that nbclient applies it too (see hub.py; live updates go under the
spawning cell's header, like its output). A ``--bg`` panel's widget is
not closed then: it shows the same snapshot, so a view restored from the kernel (a reloaded page,
a second tab), which never sees the display update, ends with the final panel as well.

Output for headless runs. nbclient files a cell's output only while the cell runs, so what a
``--bg`` spawn prints after its cell finished is lost to a headless run. A ``--bg`` panel keeps a
copy of the text its spawn sends (bounded by the output cap, notices included). When the spawning
cell ends with the spawn still running, the panel adds a second, empty display at the end of the
cell; the final snapshot fills it with the spawn's complete output, in order (folded in HTML: a
live view streamed those lines already). ``%wait`` publishes both again from its own cell
(``settle``): the saved file of a headless run then has every line and the exit status.
"""

from __future__ import annotations

import html as _html
import threading
import time
import uuid
from typing import Any

from ..core.process import Process
from .facts import ProcFacts, fmt_bytes, proc_facts
from .hub import DONE, LIVE, Hub, View
from .render import INFO, MUTED, header_html, late_html, panel_html, rows_html
from .tables import late_text, spawn_text

__all__ = ["PanelView", "show_panel", "settle", "running_on"]

_escape = _html.escape

_FG_HINT = ("foreground: the kernel reads clicks only after this cell; stop it with the notebook's "
            "interrupt (&#9632;): SIGINT, then SIGTERM, SIGKILL")
_ROWS_SHOWN = 24  # rows of a static or foreground panel; more are summed up in one line


class PanelView(View):
    kind = "panel"

    def __init__(self, hub: Hub, spawn: Any) -> None:
        self.hub = hub
        self.spawn = spawn
        self.display_id = f"procmagic-panel-{uuid.uuid4().hex}"
        self.started = False
        self.final = False
        self.widget: Any = None
        self.note = ""
        self.created = time.monotonic()
        self.last_html: str | None = None
        self.lock = threading.Lock()  # final snapshot vs. a live update from the other thread
        self.period = hub.TICK
        self.late_id = f"procmagic-late-{uuid.uuid4().hex}"
        self.late = False  # whether the spawning cell ended first (then the display above exists)
        # a --bg spawn's output, as (stream, text) sent to the cell; None once let go (hub.keep_output)
        self.output: list[tuple[str, str]] | None = [] if spawn.options.bg else None
        self.displays = 0  # rich outputs (figures, displays) its children sent
        self.snapshot: dict[str, Any] | None = None  # the final panel's data, once published
        self.published = threading.Event()  # set once the final snapshot went out

    # -- facts and HTML -----------------------------------------------------------------------
    def facts(self, procs: list[Process], now: float, sample: bool = True) -> list[ProcFacts]:
        return [proc_facts(p, self.hub.sampler if sample else None, now) for p in procs]

    def header(self, now: float, sample: bool = True) -> str:
        spawn, opts = self.spawn, self.spawn.options
        counts: dict[str, int] = {}
        for proc in spawn.procs:
            status = proc.exitstatus
            if proc.pid is None:
                key = "starting"
            elif status is None:
                key = "running"
            elif status.timed_out:
                key = "timed out"
            elif status.signal is not None:
                key = "killed"
            else:
                key = "exited" if status.ok else "failed"
            counts[key] = counts.get(key, 0) + 1
        if not spawn.procs:
            counts["starting"] = opts.n
        tags = ["bg" if opts.bg else "foreground"]
        if opts.redirect:
            tags.append("redirect")
        if opts.timeout:
            tags.append(f"timeout {opts.timeout:g} s")
        extra = ""
        if spawn.queue is not None:
            depth: Any = None
            if sample:
                found = next((q for q in self.hub.queue_watch.sample(now) if q.id == spawn.queue.id), None)
                depth = None if found is None else (f"? ({_escape(found.error)})" if found.error else found.messages)
            extra += f" &middot; queue id {spawn.queue.id}: <b class='pm-depth'>{'-' if depth is None else depth}</b> waiting"
        router = spawn.router
        if router.published:
            extra += f" &middot; output {fmt_bytes(router.published)}"
        if spawn.timed_out:
            extra += f" &middot; <span style='color:{INFO}'>timed out</span>"
        n = len(spawn.procs) or opts.n
        title = f"{spawn.name}"
        return header_html(title, spawn.number, tags + [f"{n} {'child' if n == 1 else 'children'}"], counts, extra)

    def html(self, now: float, final: bool = False, sample: bool = True) -> str:
        """The panel as HTML. ``sample=False`` (off the hub's loop): no psutil, no queue stat."""
        procs = self.spawn.procs[:_ROWS_SHOWN]
        rows = rows_html(self.facts(procs, now, sample=sample and not final), _ROWS_SHOWN) if procs else ""
        if len(self.spawn.procs) > _ROWS_SHOWN:
            rest = self.spawn.procs[_ROWS_SHOWN:]
            live = sum(1 for p in rest if p.exitstatus is None)
            rows += f'<div style="color:{MUTED}">&hellip; and {len(rest)} more ({live} running)</div>'
        hint = ""
        if final:
            notes = [_escape(self.note)] if self.note else []
            if self.spawn.log_path:
                notes.append(f"output past the cap is in {_escape(self.spawn.log_path)}")
            hint = " &middot; ".join(notes)
        elif not final and not self.spawn.options.bg and self.started:
            hint = _FG_HINT
        return panel_html(self.header(now, sample=sample and not final), rows, hint, final=final)

    # -- display ------------------------------------------------------------------------------
    def _display(self, data: dict[str, Any], update: bool = True, display_id: str | None = None,
                 publish: Any = None) -> None:
        """Under the spawning cell's header, unless ``publish`` says otherwise (the final ones)."""
        publish = publish or self.spawn.publish
        publish("update_display_data" if update else "display_data",
                {"data": data, "metadata": {}, "transient": {"display_id": display_id or self.display_id}})
        self.hub.sent()

    def show(self) -> None:
        """Publish the placeholder (main thread, before the fork)."""
        now = time.monotonic()
        self._display({"text/plain": spawn_text(self.spawn), "text/html": self.html(now, sample=False)}, update=False)
        self.spawn.router.on_stream = self._on_stream
        self.spawn.router.on_message = self._on_message
        self.hub.add(self)

    # -- output for headless runs (any thread) ---------------------------------------------------
    def cell_ended(self) -> None:
        """The spawning cell ends (main thread, still inside it) and the spawn runs on: add the
        display that the final snapshot fills with its output, at the end of the cell's output."""
        with self.lock:  # either the final snapshot fills this display, or it is never added
            if not self.spawn.options.bg or self.final or self.spawn.done or self.late:
                return
            self._display(running_on(self.spawn.name), update=False, display_id=self.late_id)
            self.late = True

    def _on_stream(self, name: str, text: str) -> None:
        output = self.output
        if output is not None:
            output.append((name, text))

    def _on_message(self, msg_type: str, content: dict[str, Any]) -> None:
        if msg_type in ("display_data", "execute_result", "error"):
            self.displays += 1

    def _output_data(self) -> dict[str, Any] | None:
        output = self.output
        if not self.late or output is None:
            return None
        output = list(output)
        return {"text/plain": late_text(self.spawn.name, output, self.displays),
                "text/html": late_html(self.spawn.name, output, self.displays)}

    def _publish_final(self, publish: Any = None) -> None:
        """The final snapshot and the output copy, under the latest cell's header (hub.py)."""
        publish = publish or self.hub.update_publisher()
        if self.snapshot is not None:
            self._display(self.snapshot, publish=publish)
        output = self._output_data()
        if output is not None:
            self._display(output, display_id=self.late_id, publish=publish)

    def on_started(self) -> None:
        """A --bg cell returns at once: leave its pids in the cell's own output (nbclient keeps
        what arrives before the cell ends), then let the hub build the widget."""
        if self.spawn.options.bg:
            with self.lock:
                now = time.monotonic()
                self._display({"text/plain": spawn_text(self.spawn), "text/html": self.html(now, sample=False)})

    def fail(self, error: BaseException) -> None:
        """The spawn never started (the guard refused, a fork failed): say so at once."""
        with self.lock:
            if self.final:
                return
            self.final = True
            first = (str(error).splitlines() or [""])[0]
            text = f"{self.spawn.name}: did not start ({type(error).__name__}: {first})"
            self._display({"text/plain": text, "text/html": f"<div>{_escape(text)}</div>"})

    def finalize(self) -> None:
        """The spawn ended: a static snapshot replaces the live panel in the cell's display, and
        the widget (kept open) shows the same snapshot to every view restored from the kernel."""
        with self.lock:
            if self.final:
                return
            self.final = True
            now = time.monotonic()
            final_html = self.html(now, final=True)
            self.snapshot = {"text/plain": spawn_text(self.spawn), "text/html": final_html}
            self._publish_final()
        self.published.set()
        if self.output is not None:
            self.hub.keep_output(self)
        widget, self.widget = self.widget, None
        if widget is not None:
            def finish() -> None:
                widget.finish(final_html)
                self.hub.keep_finished(widget)

            self.hub.call(finish)

    def settle(self, timeout: float = 5.0) -> bool:
        """``%wait`` (main thread): once the final snapshot is out, publish it and the output copy
        again under the waiting cell's header, which nbclient files while that cell runs."""
        if not self.published.wait(timeout):
            return False
        with self.lock:
            self._publish_final(self.spawn.ctx.publisher(self.spawn.ctx.header()))
        return True

    # -- on the hub's loop --------------------------------------------------------------------
    def refresh(self, hub: Hub, now: float) -> str:
        spawn = self.spawn
        if self.final:
            return DONE
        if spawn.done:
            self.finalize()
            return DONE
        if not self.started:
            if now - self.created > 10 and all(p.pid is None or p.exitstatus is not None for p in spawn.procs):
                self._display({"text/plain": f"{spawn.name}: did not start",
                               "text/html": f"<div>{spawn.name}: did not start</div>"})
                self.final = True
                return DONE
            return LIVE
        if spawn.options.bg:
            with self.lock:
                if self.final:
                    return DONE
                if self.widget is None:
                    from .panel_widget import PanelWidget

                    self.widget = PanelWidget(self)
                    self._display(self.widget.bundle(self.html(now)))
                hub.sent(self.widget.refresh(now))
            return LIVE
        value = self.html(now)
        with self.lock:
            if self.final:
                return DONE
            if value != self.last_html:
                self.last_html = value
                self._display({"text/plain": spawn_text(self.spawn), "text/html": value})
        return LIVE

    def retire(self, hub: Hub) -> None:
        self.finalize()


def running_on(name: str) -> dict[str, Any]:
    """The note a ``--bg`` cell ends with while its spawn runs on: where its output goes, and how
    a headless run keeps it (the final snapshot replaces it)."""
    text = (f"{name} runs on after this cell: a live notebook streams its output below; a notebook run "
            f"headless (papermill, nbconvert --execute) keeps it here only if a later cell runs %wait {name}")
    return {"text/plain": f"[procmagic] {text}",
            "text/html": f'<div class="procmagic-running-on" style="color:{MUTED};font-size:11px">{_escape(text)}</div>'}


def settle(spawns: list[Any], timeout: float = 5.0) -> None:
    """``%wait``: republish the final panels (and output copies) of ``spawns`` from this cell."""
    from .hub import current_hub

    hub = current_hub()
    if hub is None:
        return
    deadline = time.monotonic() + timeout
    for spawn in spawns:
        view = hub.panel_of(spawn)
        if view is not None and spawn.done:
            view.settle(max(0.0, deadline - time.monotonic()))


def show_panel(spawn: Any) -> PanelView | None:
    """Show the panel of ``spawn`` (called by ``%%spawn`` before it forks)."""
    from .hub import hub_for

    ctx = spawn.ctx
    if ctx.terminal:
        return None
    if spawn.options.bg:
        from . import panel_widget  # noqa: F401  (ipywidgets loads here, once, not on the hub's loop)
    hub = hub_for(ctx)
    view = PanelView(hub, spawn)
    view.show()
    return view
