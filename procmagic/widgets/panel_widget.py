"""The widget of a ``--bg`` spawn's panel: facts, actions, and stdin for ``--redirect``.

Built and refreshed on the hub's loop; click and input handlers run on the kernel's main thread
(where ipykernel delivers frontend messages) and only signal, write, or note what they did.
"""

from __future__ import annotations

import html as _html
from typing import Any

import ipywidgets as w

from ..kernel.stdin import answer as stdin_answer, close_input as stdin_close_input, waiting as stdin_waiting
from .controls import RowPool, action_buttons, button, html, send_signal, shared
from .facts import proc_facts
from .render import BORDER, GOOD, MONO, MUTED, row_html

__all__ = ["PanelWidget"]

_PAGE = 8  # worker rows per page with -n


class PanelWidget:
    def __init__(self, view: Any) -> None:
        self.view = view
        spawn = view.spawn
        self.owned: list[Any] = []
        self.head = html(owned=self.owned, cls="pm-head")
        self.note = html(owned=self.owned, cls="pm-note")
        self.single = None
        self.pool = None
        if len(spawn.procs) == 1:
            self.single = html(owned=self.owned, cls="pm-facts")
            body: Any = self.single
        else:
            self.pool = RowPool(_PAGE, self._note, self._redraw, name_width=100)
            body = self.pool.box
        self.buttons = action_buttons(self.owned, self._act_all)
        actions = w.HBox([*self.buttons, self.note], layout=shared("row"))
        self.owned.append(actions)
        children = [self.head, body, actions]
        self.stdin_closed: set[int] = set()
        self.text = self.target = None
        self.relayed = not spawn.options.redirect  # prompts of a --bg child are answered here (stdin.py)
        if spawn.options.redirect or self.relayed:
            self.text = w.Text(placeholder="a line for the child's stdin (Enter sends)", continuous_update=False,
                               layout=shared("text"), _dom_classes=("pm-stdin",))
            self.text.observe(self._on_text, "value")
            self.owned.append(self.text)
            send = button("send", "write the line and a newline to the child's stdin", self.owned, "pm-send")
            send.on_click(lambda _b: self._send(self.text.value if self.text is not None else ""))
            eof = button("close stdin", "close the child's stdin: it reads end of file", self.owned, "pm-close-stdin")
            eof.on_click(lambda _b: self._close_stdin())
            parts: list[Any] = [self.text, send, eof]
            if len(spawn.procs) > 1:
                options = [("all workers", -1)] + [(f"worker {p.worker}", i) for i, p in enumerate(spawn.procs)]
                self.target = w.Dropdown(options=options, value=-1, layout=w.Layout(width="130px"))
                self.owned.append(self.target)
                parts.insert(0, self.target)
            self.stdin_widgets = parts
            row = w.HBox(parts, layout=shared("row"))
            self.owned.append(row)
            children.append(row)
        self.box = w.VBox(children, layout=w.Layout(border=f"1px solid {BORDER}", border_left=f"3px solid {GOOD}",
                                                     padding="2px 8px", margin="2px 0"),
                          _dom_classes=("procmagic-panel", "procmagic-bg-panel"))
        self.owned.append(self.box)

    def bundle(self, snapshot_html: str) -> dict[str, Any]:
        data = dict(self.box._repr_mimebundle_() or {})
        from .tables import spawn_text

        data["text/plain"] = spawn_text(self.view.spawn)
        data["text/html"] = snapshot_html
        return data

    # -- the hub's loop -----------------------------------------------------------------------
    def refresh(self, now: float) -> int:
        """Update what changed; returns how many state messages that took."""
        view, spawn = self.view, self.view.spawn
        sent = 0
        head = view.header(now)
        if self.head.value != head:
            self.head.value = head
            sent += 1
        live = [p for p in spawn.procs if p.pid is not None and p.exitstatus is None]
        if self.single is not None:
            value = row_html(proc_facts(spawn.procs[0], view.hub.sampler, now), 120)
            if self.single.value != value:
                self.single.value = value
                sent += 1
        elif self.pool is not None:
            page = self.pool.page_items(list(spawn.procs))
            sent += self.pool.show([proc_facts(p, view.hub.sampler, now) for p in page], page, now)
        note = f"<span style='{MONO};color:{MUTED}'>{_html.escape(view.note)}</span>" if view.note else ""
        if self.note.value != note:
            self.note.value = note
            sent += 1
        for b in self.buttons:
            if b.disabled != (not live):
                b.disabled = not live
                sent += 1
        if self.text is not None:
            open_ = [p for p in live if p.id not in self.stdin_closed]
            for widget in self.stdin_widgets:
                if widget.disabled != (not open_):
                    widget.disabled = not open_
                    sent += 1
        return sent

    def finish(self, final_html: str) -> None:
        """The spawn ended: show its final snapshot, the same HTML as the cell's static display,
        so a view restored from the kernel (a reload, a second tab) ends with it too."""
        snapshot = html(final_html, owned=self.owned, cls="pm-snapshot")
        with self.box.hold_sync():
            self.box.children = (snapshot,)
        with self.box.layout.hold_sync():
            self.box.layout.border = "0"
            self.box.layout.border_left = "0"
            self.box.layout.padding = "0"

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for widget in self.owned:
            widget.close()
        self.owned.clear()

    # -- the kernel's main thread -------------------------------------------------------------
    def _note(self, text: str) -> None:
        self.view.note = text
        self._redraw()

    def _redraw(self) -> None:
        self.view.dirty = True
        self.view.hub.poke()

    def _act_all(self, sig: int) -> None:
        self._note(send_signal(list(self.view.spawn.procs), sig))

    def _targets(self) -> list[Any]:
        procs = list(self.view.spawn.procs)
        if self.target is not None and self.target.value != -1:
            procs = [procs[self.target.value]]
        return [p for p in procs if p.pid is not None and p.exitstatus is None and p.id not in self.stdin_closed]

    def _on_text(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._send(change["new"])

    def _send(self, line: str) -> None:
        if not line:
            return
        targets = self._targets()
        done = []
        for proc in targets:
            try:
                if self.relayed or stdin_waiting(proc) is not None:
                    # the child's input() or debugger asks through the kernel: answer it, or keep
                    # the line for its next prompt
                    stdin_answer(proc, line, typeahead=True)
                else:
                    proc.write(line + "\n")
                done.append(proc)
            except Exception as exc:
                self._note(f"could not write to {proc.name}: {exc}")
                break
        else:
            shown = line if len(line) <= 40 else line[:37] + "..."
            self._note(f"wrote {shown!r} to the stdin of {', '.join(str(p.name) for p in done)}" if done
                       else "no child is waiting for input" if self.relayed else "no child's stdin is open")
        if self.text is not None and self.text.value:
            self.text.value = ""  # the handler sees "" and does nothing

    def _close_stdin(self) -> None:
        targets = self._targets()
        for proc in targets:
            try:
                if self.relayed:
                    stdin_close_input(proc)  # its prompts read end of file from now on
                else:
                    proc.close("write")
            except Exception:
                pass
            self.stdin_closed.add(proc.id)
        self._note(f"closed the stdin of {', '.join(str(p.name) for p in targets)}" if targets else "no child's stdin is open")
