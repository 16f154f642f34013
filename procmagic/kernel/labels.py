"""Labels at the start of every line of a stream whose writes may split lines anywhere.

``%%spawn -n 4`` prefixes each worker's lines with ``[i] ``, and ``--engines`` with
``[engine N] ``; a write that ends mid-line must not label the rest of that line when it comes.
"""

from __future__ import annotations

from typing import Hashable

__all__ = ["LineLabels"]


class LineLabels:
    """Remembers, per stream, whether the next text starts a line."""

    def __init__(self) -> None:
        self._line_start: dict[Hashable, bool] = {}

    def apply(self, stream: Hashable, text: str, label: str) -> str:
        """``text`` with ``label`` before each line that starts in it."""
        start = self._line_start.get(stream, True)
        lines = text.split("\n")
        out = []
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            if last and not line:
                break
            out.append((label if (start or i > 0) else "") + line + ("" if last else "\n"))
        self._line_start[stream] = text.endswith("\n")
        return "".join(out)
