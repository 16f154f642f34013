"""HTML for the panels and the dashboard, and the queue-depth plot (a tiny inline SVG).

Plain functions of the facts, no ipywidgets: the same HTML fills the live widgets, the
in-place updated display of a foreground spawn, and the static snapshot left in the notebook
when a spawn ends (which a saved notebook keeps without any widget state).
"""

from __future__ import annotations

import html
import time
from typing import Iterable

from ..core.status import ExitStatus
from .facts import (AlarmFacts, ProcFacts, QueueFacts, fmt_ago, fmt_bytes, fmt_interval, fmt_runtime, how_short,
                    is_failure)

__all__ = ["row_html", "rows_html", "panel_html", "header_html", "queues_html", "alarms_html", "reaped_html",
           "depth_svg", "section", "late_html", "BOX", "MONO", "TEXT", "MUTED", "BORDER", "GOOD", "ERROR", "WARN",
           "INFO", "BRAND", "badge"]

# Colours come from the frontend's theme: JupyterLab's and Notebook 7's CSS variables, then VS
# Code's (its notebook outputs define --vscode-*), then a value that reads on light and dark
# backgrounds alike. The text itself inherits the page's colour.
TEXT = "var(--jp-content-font-color1, var(--vscode-foreground, currentColor))"
MUTED = "var(--jp-content-font-color2, var(--vscode-descriptionForeground, #6e7781))"
BORDER = "var(--jp-border-color2, var(--vscode-panel-border, #8c959f80))"
GOOD = "var(--jp-success-color1, var(--vscode-charts-green, #2da44e))"
ERROR = "var(--jp-error-color1, var(--vscode-errorForeground, #e5534b))"
WARN = "var(--jp-warn-color0, var(--vscode-charts-orange, #d4731f))"
INFO = "var(--jp-info-color0, var(--vscode-charts-purple, #986ee2))"
BRAND = "var(--jp-brand-color1, var(--vscode-textLink-foreground, #4493f8))"

MONO = "font-family:var(--jp-code-font-family,monospace);font-size:12px;line-height:1.5"
BOX = f"{MONO};border:1px solid {BORDER};border-radius:3px;padding:3px 8px"
_COLORS = {"starting": MUTED, "running": GOOD, "exited": MUTED, "killed": WARN, "timed out": INFO, "failed": ERROR}
_esc = html.escape


def _color(state: str, status: ExitStatus | None) -> str:
    if state == "exited" and status is not None and is_failure(status):
        return _COLORS["failed"]
    return _COLORS.get(state, MUTED)


def badge(state: str, status: ExitStatus | None = None) -> str:
    color = _color(state, status)
    return (f'<span class="pm-state" style="display:inline-block;min-width:64px;color:{color};font-weight:600">'
            f"{_esc(state)}</span>")


def _cell(text: str, width: int, cls: str = "", title: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    tip = f' title="{_esc(title)}"' if title else ""
    return (f'<span{attr}{tip} style="display:inline-block;width:{width}px;overflow:hidden;white-space:nowrap;'
            f'text-overflow:ellipsis;vertical-align:bottom">{text}</span>')


def row_html(f: ProcFacts, name_width: int = 120) -> str:
    """One child on one line: name, pid, state, then live facts or, once reaped, its exit status."""
    parts = [
        _cell(_esc(f.name), name_width, "pm-name", f"{f.name} (id {f.id})"),
        _cell(f"pid <b class='pm-pid'>{f.pid if f.pid is not None else '-'}</b>", 88),
        badge(f.state, f.status),
    ]
    if f.status is None:
        cpu = "-" if f.cpu_s is None else (f"{f.cpu_pct:.0f}% " if f.cpu_pct is not None else "") + f"{f.cpu_s:.2f} s"
        parts += [_cell(fmt_runtime(f.runtime), 64, "pm-runtime", "runtime"), _cell(f"cpu {cpu}", 124, "", "CPU: percent over the last second, and seconds used"),
                  _cell(f"rss {fmt_bytes(f.rss)}", 96, "", "resident memory")]
    else:
        s = f.status
        parts += [_cell(f'<b class="pm-exit">{_esc(how_short(s))}</b>', 136, "", s.how),
                  _cell(f"wall {s.wall_time:.2f} s", 96), _cell(f"cpu {s.cpu_time:.2f} s", 88),
                  _cell(f"peak {fmt_bytes(s.max_rss)}", 96, "", "peak resident memory")]
    if f.alarm or f.ticks:
        parts.append(_cell(f'alarm <span class="pm-ticks">{f.ticks}</span> ticks', 120, "", f"interval timer: {f.alarm or 'off'}"))
    if f.has_queue:
        parts.append(_cell(f"queue &uarr;{f.pushes} &darr;{f.pops}", 120, "", "messages this child pushed / popped"))
    return f'<div class="pm-row" style="{MONO}">{"".join(parts)}</div>'


def rows_html(facts: list[ProcFacts], limit: int = 24, name_width: int = 120) -> str:
    out = [row_html(f, name_width) for f in facts[:limit]]
    if len(facts) > limit:
        rest = facts[limit:]
        live = sum(1 for f in rest if f.live)
        out.append(f'<div style="color:{MUTED}">&hellip; and {len(rest)} more ({live} running)</div>')
    return "".join(out)


def header_html(title: str, number: int, tags: list[str], counts: dict[str, int], extra: str = "") -> str:
    """A spawn's first line: name, number, options, how many children are in each state."""
    states = " ".join(f'<span style="color:{_COLORS.get(k, MUTED)}">{v} {_esc(k)}</span>'
                      for k, v in counts.items() if v)
    tag_text = "".join(f' <span style="color:{MUTED}">&middot; {_esc(t)}</span>' for t in tags)
    name = (f'<b class="pm-title" title="{_esc(title)}" style="display:inline-block;max-width:32em;overflow:hidden;'
            f'text-overflow:ellipsis;white-space:nowrap;vertical-align:bottom">{_esc(title)}</b>')
    return (f'<div class="pm-head" style="{MONO};overflow-wrap:anywhere">{name} <span style="color:{MUTED}">#{number}</span>'
            f"{tag_text} &middot; {states}{extra}</div>")


def panel_html(head: str, rows: str, hint: str = "", final: bool = False) -> str:
    border = MUTED if final else GOOD
    note = f'<div class="pm-hint" style="color:{MUTED};{MONO}">{hint}</div>' if hint else ""
    return (f'<div class="procmagic-panel" style="{BOX};border-left:3px solid {border}">'
            f"{head}{rows}{note}</div>")


def late_html(name: str, output: list[tuple[str, str]], displays: int = 0) -> str:
    """A ``--bg`` spawn's complete output, folded: a live view streamed it into the cell as it
    came; a saved or executed notebook (which stops listening when the cell ends) keeps it here."""
    text = "".join(t for _, t in output)
    lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    body = "".join(f'<span style="color:{ERROR}">{_esc(t)}</span>' if n == "stderr" else _esc(t) for n, t in output)
    more = (f", and {displays} rich {'output' if displays == 1 else 'outputs'} (figures, displays) that only a "
            "live view shows") if displays else ""
    summary = (f"{_esc(name)}: its complete output, {lines} {'line' if lines == 1 else 'lines'}{more} "
               f'<span style="color:{MUTED}">(the cell ended before the spawn: a live notebook streamed these '
               "lines into the cell; a saved or executed one keeps them here)</span>")
    pre = (f'<pre style="{MONO};margin:2px 0 0 0;white-space:pre-wrap;color:{TEXT}">{body}</pre>') if body else ""
    return (f'<details class="procmagic-late" style="{MONO}"><summary style="cursor:pointer;color:{TEXT}">{summary}'
            f"</summary>{pre}</details>")


def section(title: str, body: str, note: str = "") -> str:
    extra = f' <span style="color:{MUTED};font-weight:normal">{note}</span>' if note else ""
    return f'<div style="{MONO};margin-top:6px"><div style="font-weight:600">{_esc(title)}{extra}</div>{body}</div>'


def _table(header: list[str], rows: Iterable[list[str]], cls: str = "") -> str:
    head = "".join(f'<th style="text-align:left;padding:0 10px 0 0;color:{MUTED};white-space:nowrap">{_esc(h)}</th>'
                   for h in header)
    body = "".join("<tr>" + "".join(f'<td style="padding:0 10px 0 0;vertical-align:top;white-space:nowrap">{c}</td>'
                                    for c in r) + "</tr>" for r in rows)
    return (f'<table class="{cls}" style="border-collapse:collapse;{MONO}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1f}/s"


def depth_svg(history: list[tuple[float, int]], now: float | None = None, window: float = 60.0,
              width: int = 150, height: int = 30) -> str:
    """Depth over the last ``window`` seconds as a small line plot (an inline SVG). A younger
    history spans the plot (10 s at least), so a new queue's line does not hide in a corner."""
    now = time.monotonic() if now is None else now
    history = [(t, d) for t, d in history if now - t <= window]
    if history:
        window = max(10.0, min(window, now - history[0][0]))
    top = max([d for _, d in history] + [1])
    pad = 2

    def xy(t: float, d: int) -> str:
        x = pad + (width - 2 * pad) * max(0.0, 1 - (now - t) / window)
        y = height - pad - (height - 2 * pad) * d / top
        return f"{x:.1f},{y:.1f}"

    points = " ".join(xy(t, d) for t, d in history)
    line = f'<polyline fill="none" style="stroke:{BRAND}" stroke-width="1.5" points="{points}"/>' if points else ""
    last = history[-1][1] if history else 0
    return (f'<svg class="pm-depth-plot" width="{width + 64}" height="{height}" style="vertical-align:middle" '
            f'xmlns="http://www.w3.org/2000/svg">'
            f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="none" style="stroke:{BORDER}"/>'
            f"{line}"
            f'<text x="{width + 4}" y="11" font-size="10" style="fill:{MUTED}">max {top}</text>'
            f'<text x="{width + 4}" y="{height - 3}" font-size="10" style="fill:{BRAND}">now {last}</text>'
            f"<title>messages waiting, last {window:.0f} s</title></svg>")


def queues_html(queues: list[QueueFacts], now: float | None = None) -> str:
    if not queues:
        return f'<div style="color:{MUTED}">no procmagic queues</div>'
    out = []
    for q in queues:
        key = "private" if q.key == 0 else f"{q.key:#x}"
        if q.error:
            out.append(f'<div class="pm-queue pm-queue-error" style="color:{ERROR}">queue id {q.id} ({key}): '
                       f"{_esc(q.error)}</div>")
            continue
        fill = ""
        if q.capacity and q.bytes is not None:
            fill = f" ({100 * q.bytes / q.capacity:.0f}% full)"
        facts = _table(
            ["queue", "key", "waiting", "bytes", "capacity", "depth over time", "last sender", "last receiver"],
            [[f"id {q.id}", key, f'<b class="pm-depth">{q.messages}</b> msgs', fmt_bytes(q.bytes) + fill,
              fmt_bytes(q.capacity), depth_svg(q.history, now),
              f"{_esc(q.last_sender)}<br><span style='color:{MUTED}'>{fmt_ago(q.last_send_time)}</span>",
              f"{_esc(q.last_receiver)}<br><span style='color:{MUTED}'>{fmt_ago(q.last_receive_time)}</span>"]])
        users = _table(["process", "pushes", "push rate", "pops", "pop rate"],
                       [[_esc(u.who) + ("" if u.live else f" <span style='color:{MUTED}'>(ended)</span>"), str(u.pushes),
                         _rate(u.push_rate), str(u.pops), _rate(u.pop_rate)] for u in q.users[:16]]) if q.users else ""
        more = f'<div style="color:{MUTED}">&hellip; and {len(q.users) - 16} more processes</div>' if len(q.users) > 16 else ""
        out.append(f'<div class="pm-queue" data-queue="{q.id}" style="margin:2px 0 6px 0">{facts}{users}{more}</div>')
    return "".join(out)


def alarms_html(alarms: list[AlarmFacts], limit: int = 24) -> str:
    if not alarms:
        return f'<div style="color:{MUTED}">no interval timers (procmagic.alarm) in any child</div>'
    rows = [[str(a.id), _esc(a.name), str(a.pid or "-"), badge(a.state), _esc(a.timer), fmt_interval(a.interval_us),
             f'<b class="pm-ticks">{a.ticks}</b>', _rate(a.rate), fmt_ago(a.last_tick)] for a in alarms[:limit]]
    more = f'<div style="color:{MUTED}">&hellip; and {len(alarms) - limit} more</div>' if len(alarms) > limit else ""
    return _table(["id", "name", "pid", "state", "timer", "interval", "ticks", "rate", "last tick"], rows, "pm-alarms") + more


def reaped_html(statuses: list[ExitStatus], failures_only: bool, limit: int = 30) -> str:
    """Reaped children, newest first (``statuses`` oldest first, as the registry keeps them)."""
    chosen = [s for s in reversed(statuses) if not failures_only or is_failure(s)]
    if not chosen:
        return f'<div style="color:{MUTED}">{"no failures" if failures_only else "no reaped children yet"}</div>'
    rows = []
    for s in chosen[:limit]:
        state = "timed out" if s.timed_out else ("killed" if s.signal is not None else "exited")
        rows.append([str(s.id), _esc(s.name or "-"), str(s.pid), badge(state, s), f'<b class="pm-exit">{_esc(how_short(s))}</b>',
                     "yes" if s.core_dumped else "", f"{s.wall_time:.2f} s", f"{s.cpu_time:.2f} s", fmt_bytes(s.max_rss)])
    more = f'<div style="color:{MUTED}">&hellip; and {len(chosen) - limit} more</div>' if len(chosen) > limit else ""
    return _table(["id", "name", "pid", "state", "exit", "core", "wall", "cpu", "peak rss"], rows, "pm-reaped") + more
