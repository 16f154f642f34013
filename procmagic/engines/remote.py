"""The notebook's half of ``%%spawn --engines``: one spawn's children on ipyparallel engines.

Output path: each engine's procmagic publishes its children's output on the engine's IOPub
under a parent header made here (one per engine); ipyparallel's client receives it on its own
thread and calls the callback registered for that header's msg_id. The callback only queues
the message. The queue is drained by the cell itself in the foreground, or on the IOPub
thread's event loop for ``--bg`` (as local background spawns are), and every message is
published under the spawning cell's parent header, each line labelled ``[engine N]``. procmagic
starts no thread here: ipyparallel's own thread hands over, an event loop publishes.

Liveness: while children run, each engine is asked for their state every ``poll_interval``
seconds (CPU, memory, exit). An engine that leaves a question unanswered for ``quiet_after``
seconds is shown as *not answering* (busy with another task, or stopped), and as answering
again when it does: its children go on (their output and exit statuses travel on the engine's
IOPub thread, which a busy engine still runs). An engine is *lost*, with its running children,
only when it is gone: the controller unregistered it (ipyparallel's nanny saw it die, or its
heartbeat stopped for ``HeartMonitor.period * (max_heartmonitor_misses + 1)``, ~33 s by
default), or a question to it failed with ipyparallel's EngineError. Nothing then waits for it.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import queue
import sys
import threading
import time
from typing import Any, Callable, Deque

from ..kernel.labels import LineLabels
from . import agent
from .answers import EngineGone, remote_error_text, settle_results, when_answered
from .children import RemoteChild, _EngineRun

__all__ = ["RemoteChild", "RemoteSpawn", "remote_spawns", "POLL_INTERVAL", "QUIET_AFTER", "START_TIMEOUT"]

POLL_INTERVAL = 1.0  # seconds between two state questions to an engine
QUIET_AFTER = 5.0  # seconds an engine may leave a question unanswered before it shows as not answering
START_TIMEOUT = 60.0  # seconds every engine has to start its children (a busy engine answers late)

_numbers = itertools.count(1)
_history: Deque["RemoteSpawn"] = collections.deque(maxlen=100)


def remote_spawns() -> list["RemoteSpawn"]:
    """The last 100 remote spawns, oldest first."""
    return list(_history)


class RemoteSpawn:
    """The children one ``%%spawn --engines`` cell started on engines."""

    def __init__(self, ctx: Any, client: Any, engines: list[int], options: Any, settings: Any) -> None:
        self.number = next(_numbers)
        self.ctx = ctx
        self.client = client
        self.options = options
        self.settings = settings
        self.name = options.name or f"remote-{self.number}"
        self.header = ctx.header()
        self.publish = ctx.publisher(self.header)
        self.engines = engines
        self.runs: dict[int, _EngineRun] = {}
        self.inbox: "queue.SimpleQueue[tuple[int, str, dict[str, Any]]]" = queue.SimpleQueue()
        self.finished = threading.Event()
        self.interrupted = False
        self.loop: Any = None  # the loop that drains the inbox for --bg
        self._pump_scheduled = False
        self._started = False  # set once start() knows every engine's children (--bg)
        self._tick_handle: Any = None
        self._labels = LineLabels()
        self._views: dict[int, Any] = {}
        self.panel: Any = None  # the live table above the output (a kernel, not a terminal)
        self.result_var: str | None = getattr(options, "result", None)  # --result VAR
        self.result_asks: dict[int, Any] | None = None
        self.result_deadline = 0.0
        self.poll_interval = POLL_INTERVAL
        self.quiet_after = QUIET_AFTER

    # -- children ------------------------------------------------------------------------------
    @property
    def children(self) -> list[RemoteChild]:
        return [c for run in self.runs.values() for c in run.children]

    @property
    def done(self) -> bool:
        return self.finished.is_set()

    def __repr__(self) -> str:
        return f"<RemoteSpawn #{self.number} {self.name!r} on engines {self.engines} {'finished' if self.done else 'running'}>"

    def view(self, engine: int) -> Any:
        if engine not in self._views:
            self._views[engine] = self.client[engine]
        return self._views[engine]

    def ask(self, engine: int, f: Any, *args: Any) -> Any:
        """``f(*args)`` on ``engine``, not waiting; EngineGone once the controller dropped it."""
        if engine not in self.client.ids:
            raise EngineGone("the controller unregistered it")
        try:
            return self.view(engine).apply_async(f, *args)
        except (IndexError, OSError, RuntimeError) as exc:  # no such engine / the client is closed
            raise EngineGone(str(exc)) from None

    # -- starting ------------------------------------------------------------------------------
    def start(self, source: str, cell_number: int | None, start_timeout: float | None = None) -> None:
        """Fork on every target engine; raises RuntimeError naming each engine that failed
        (the children that did start on other engines are stopped first)."""
        remote_options = {
            "redirect": self.options.redirect, "bg": True, "name": f"{self.name}",
            "pipe": self.options.pipe, "n": self.options.n, "queue": self.options.queue,
            "timeout": self.options.timeout, "signal_on_interrupt": self.options.signal_on_interrupt,
            "force": self.options.force,
        }
        settings = dataclasses.asdict(self.settings)
        settings["log_dir"] = ""  # a path of the notebook's host means nothing on an engine: its default
        pending = {}
        for engine in self.engines:
            header = self.client.session.msg_header("procmagic_spawn")
            future = self.client.create_message_futures(header["msg_id"], header, async_result=False)[0]
            run = _EngineRun(engine, header, future)
            future.iopub_callbacks.append(lambda msg, engine=engine, run=run: self._on_iopub(engine, run, msg))
            self.runs[engine] = run
            pending[engine] = self.view(engine).apply_async(agent.start, header, source, remote_options,
                                                            settings, cell_number, bool(self.result_var))
        failures = []
        deadline = time.monotonic() + (START_TIMEOUT if start_timeout is None else start_timeout)
        for engine, ar in pending.items():
            run = self.runs[engine]
            try:
                info = ar.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:  # RemoteError, EngineError, TimeoutError: say which engine
                failures.append(f"engine {engine}: {remote_error_text(exc)}")
                run.lost = not ar.ready()
                if run.lost:  # busy or gone: if the request still waits in its queue, it never runs
                    try:
                        self.client.abort(ar.msg_ids, targets=[engine], block=False)
                    except Exception:
                        pass
                continue
            if "refused" in info:
                failures.append(f"engine {engine}: {info['refused']}")
                continue
            run.host = info["host"]
            run.spawn_number = int(info["spawn"])
            run.children = [RemoteChild(self, engine, info["host"], c) for c in info["children"]]
        _history.append(self)
        if failures:
            started = [c for c in self.children]
            if started:
                self.stop(self.settings_term_grace())
            self._release()
            self.finished.set()
            raise RuntimeError("%%spawn --engines could not start on every engine:\n  " + "\n  ".join(failures)
                               + ("\n(the children started on the other engines were stopped)" if started else ""))
        if not self.ctx.terminal:
            from .panel import RemotePanel

            self.panel = RemotePanel(self)
            self.panel.show()
            if self.options.bg:
                from .panel import show_buttons

                self.panel.controls = show_buttons(self)
        if self.options.bg:
            # Only now, with every engine's children known, may the loop handle what came in
            # meanwhile (an engine's "finished" must not be taken for the whole spawn's).
            self.loop = self.ctx.output_loop()
            self._started = True
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._tick_on_loop)
                self._schedule_pump()
            else:  # a terminal: no loop, ipyparallel's thread prints as it receives
                self.pump()

    def settings_term_grace(self) -> float:
        return float(getattr(self.settings, "term_grace", 2.0))

    # -- ipyparallel's thread ------------------------------------------------------------------
    def _on_iopub(self, engine: int, run: _EngineRun, msg: dict[str, Any]) -> None:
        """On ipyparallel's client thread: queue the message, forget ipyparallel's copy of it
        (its metadata would keep every byte of output), wake the loop that publishes."""
        self.inbox.put((engine, msg["header"]["msg_type"], msg["content"]))
        md = self.client.metadata.get(run.header["msg_id"])
        if md is not None:
            md["stdout"] = md["stderr"] = ""
            md["outputs"] = []
        if not self._started:
            return  # start() is still collecting the engines' answers: it pumps at its end
        if self.loop is not None:
            self._schedule_pump()
        elif self.options.bg:
            self.pump()

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon_threadsafe(self.pump)

    # -- publishing (the cell's thread in the foreground, the IOPub loop with --bg) ------------
    def pump(self) -> None:
        self._pump_scheduled = False
        while True:
            try:
                engine, msg_type, content = self.inbox.get_nowait()
            except queue.Empty:
                return
            self.handle(engine, msg_type, content)

    def handle(self, engine: int, msg_type: str, content: dict[str, Any]) -> None:
        run = self.runs.get(engine)
        if run is None:
            return
        if msg_type == "stream":
            text = self._labels.apply((engine, content.get("name", "stdout")), content.get("text", ""), f"[engine {engine}] ")
            if text:
                self.publish("stream", {"name": content.get("name", "stdout"), "text": text})
        elif msg_type == "display_data" and agent.EVENT_MIME in content.get("data", {}):
            self._on_event(run, content["data"][agent.EVENT_MIME])
        elif msg_type in ("display_data", "update_display_data", "execute_result", "error", "clear_output"):
            self.publish(msg_type, content)

    def _on_event(self, run: _EngineRun, data: dict[str, Any]) -> None:
        if data.get("kind") == "status":
            for child in run.children:
                if child.id == data.get("id"):
                    child.state = "exited"
                    child.how = str(data.get("how", ""))
                    child.ok = bool(data.get("ok"))
                    child.cpu = data.get("cpu")
                    child.peak = data.get("max_rss")
                    child.ended = child.started + float(data.get("wall") or child.runtime)
            if self.panel is not None:
                self.panel.update(force=True)
        elif data.get("kind") == "finished":
            run.finished = True
            self._check_done()

    # -- liveness ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Ask each engine with running children for their state; show an engine that does not
        answer within quiet_after as not answering (and again as answering when it does); lose
        an engine the controller unregistered."""
        now = time.monotonic()
        registered = set(self._engine_ids())
        for run in self.runs.values():
            if run.done:
                continue
            if run.engine not in registered:
                self._lose(run, "the controller unregistered it: it died, or its heartbeat stopped")
                continue
            question = run.question
            if question is None:
                if now - run.answered_at >= self.poll_interval:
                    ids = [c.id for c in run.children]
                    try:
                        run.question = self.ask(run.engine, agent.poll, ids)
                    except EngineGone as exc:
                        self._lose(run, str(exc))
                        continue
                    run.asked_at = now
                continue
            if question.ready():
                run.question = None
                run.answered_at = now
                if run.quiet_since is not None:
                    self._answers_again(run, now)
                try:
                    rows = question.get(timeout=0)
                except Exception as exc:
                    self._lose(run, remote_error_text(exc))
                    continue
                self._update(run, rows)
            elif now - run.asked_at >= self.quiet_after and run.quiet_since is None:
                self._not_answering(run, run.asked_at)
        if self.panel is not None:
            self.panel.update()
        self._check_done()

    def _update(self, run: _EngineRun, rows: list[dict[str, Any]]) -> None:
        by_id = {c.id: c for c in run.children}
        for row in rows:
            child = by_id.get(int(row.get("id", -1)))
            if child is None or child.state != "running":
                continue
            child.cpu = row.get("cpu", child.cpu)
            child.rss = row.get("rss", child.rss)
            child.peak = row.get("peak", child.peak)
            if row.get("state") == "exited" and child.how == "":
                child.how = str(row.get("how", ""))  # its status event is still on its way
        reported = {row.get("id") for row in rows if row.get("state") == "exited"}
        if all(c.id in reported for c in run.children) and not run.finished:
            # Every child ended on the engine, but the end of the spawn's output has not come:
            # wait the engine's drain time and a margin, then stop waiting, saying so.
            if run.ended_seen is None:
                run.ended_seen = time.monotonic()
            elif time.monotonic() - run.ended_seen > float(getattr(self.settings, "drain_timeout", 2.0)) + 5.0:
                for child in run.children:
                    if child.state == "running":
                        child.state = "exited"
                        child.ended = time.time()
                run.finished = True
                self.publish("stream", {"name": "stderr", "text": (
                    f"[procmagic] engine {run.engine} ({run.host}): its children ended, but the end of their "
                    "output never arrived; some output may be missing\n")})

    def _engine_ids(self) -> list[int]:
        try:
            return list(self.client.ids)
        except Exception:  # a closed client knows no engine
            return []

    def _not_answering(self, run: _EngineRun, since: float) -> None:
        run.quiet_since = since
        if self.panel is not None:
            self.panel.update(force=True)
        running = sum(1 for c in run.children if c.live)
        self.publish("stream", {"name": "stderr", "text": (
            f"[procmagic] engine {run.engine} ({run.host}) has not answered for {self.quiet_after:.0f} s (busy with "
            f"another task, or stopped): its {running} running children are shown as not answering; procmagic "
            "keeps waiting, and shows them as lost if the controller unregisters the engine\n")})

    def _answers_again(self, run: _EngineRun, now: float) -> None:
        quiet = now - (run.quiet_since or now)
        run.quiet_since = None
        if self.panel is not None:
            self.panel.update(force=True)
        self.publish("stream", {"name": "stderr", "text": (
            f"[procmagic] engine {run.engine} ({run.host}) answers again (after {quiet:.0f} s)\n")})

    def stop_waiting(self, why: str) -> None:
        """Give up on every engine not answering now (a foreground cell interrupted once more
        after SIGKILL was asked for): their running children are shown as lost."""
        for run in self.runs.values():
            if not run.done and run.quiet_since is not None:
                self._lose(run, why)
        self._check_done()

    def _lose(self, run: _EngineRun, why: str) -> None:
        if run.lost or run.finished:
            return
        run.lost = True
        run.question = None
        run.quiet_since = None
        running = [c for c in run.children if c.state == "running"]
        for child in running:
            child.state = "lost"
            child.ended = time.time()
        if self.panel is not None:
            self.panel.update(force=True)
        self.publish("stream", {"name": "stderr", "text": (
            f"[procmagic] engine {run.engine} ({run.host}) is lost ({why}): shown as lost with its "
            f"{len(running)} running children; procmagic no longer waits for them\n")})

    def _check_done(self) -> None:
        if self.finished.is_set():
            return
        if all(run.done for run in self.runs.values()):
            if self.result_var and not self._result_settled():
                return  # asked the engines for their values: the next tick looks again
            self._release()
            if self.panel is not None:
                self.panel.update(force=True)
            self.finished.set()

    def _result_settled(self) -> bool:
        return settle_results(self)

    def _release(self) -> None:
        """Unhook from ipyparallel's client: no callbacks, no metadata kept for our headers."""
        for run in self.runs.values():
            try:
                run.future.iopub_callbacks.clear()
            except AttributeError:
                pass
            self.client.metadata.pop(run.header["msg_id"], None)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def _tick_on_loop(self) -> None:
        self._tick_handle = None
        try:
            self.tick()
        except Exception:
            import traceback

            traceback.print_exc(file=sys.__stderr__)
        if not self.finished.is_set():
            self._tick_handle = self.loop.call_later(min(self.poll_interval, 0.5), self._tick_on_loop)

    # -- control -------------------------------------------------------------------------------
    def signal(self, children: list[RemoteChild], sig: int, wait: float | None = 5.0,
               then: Callable[[dict[str, bool]], None] | None = None) -> dict[str, bool]:
        """Send ``sig`` to these children through their engines (never to the engines).
        Returns {key: sent}; with ``wait`` None, returns at once with an empty dict, and calls
        ``then({key: sent})`` on ipyparallel's thread once every engine answered (or failed)."""
        by_engine: dict[int, list[RemoteChild]] = {}
        for child in children:
            if child.live and not self.runs[child.engine].lost:
                by_engine.setdefault(child.engine, []).append(child)
        pending = {}
        for engine, group in by_engine.items():
            try:
                pending[engine] = self.ask(engine, agent.send_signal, [c.id for c in group], sig)
            except EngineGone as exc:
                self._lose(self.runs[engine], str(exc))
        sent: dict[str, bool] = {}
        if wait is None:
            if then is not None:
                when_answered(pending, then)
            return sent
        deadline = time.monotonic() + wait
        for engine, ar in pending.items():
            try:
                rows = ar.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                continue
            for row in rows:
                sent[f"e{engine}:{row['id']}"] = bool(row["sent"])
        return sent

    def stop(self, grace: float, wait: float | None = None) -> None:
        """SIGTERM every live child, SIGKILL after ``grace``: each engine does it and reaps."""
        pending = []
        for run in self.runs.values():
            live = [c.id for c in run.children if c.live]
            if live and not run.lost:
                try:
                    pending.append(self.ask(run.engine, agent.stop, live, grace))
                except EngineGone:
                    pass
        deadline = time.monotonic() + (grace + 5.0 if wait is None else wait)
        for ar in pending:
            try:
                ar.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                pass
