"""The one text-table renderer: terminal IPython's ``%procs``, ``%wait``'s exit statuses, and the
text/plain fallback of every panel and dashboard (``widgets/tables.py`` builds its rows)."""

from __future__ import annotations

from typing import Iterable

__all__ = ["table"]


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    """Columns padded to their widest cell, under a header and a rule of dashes."""
    rows = list(rows)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


_table = table  # the name widgets/tables.py imports
