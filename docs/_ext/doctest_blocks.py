"""A griffe extension for the API pages: docstrings written for Python's tools, read as Markdown.

procmagic's docstrings show examples the doctest way (``>>> p.start()``), which Markdown would
read as nested block quotes, and name objects with Sphinx roles (``:mod:`signal```). This turns
each run of ``>>>`` lines and their output into a fenced ``pycon`` block (without ``# doctest:``
directives) and each role into inline code. The docstrings themselves are untouched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")
_ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|exc|obj):`~?([^`]+)`")


def fence_doctests(text: str) -> str:
    out: list[str] = []
    block: list[str] = []
    for line in text.splitlines() + [""]:
        stripped = line.strip()
        if stripped.startswith(">>>") or (block and stripped):
            block.append(_DIRECTIVE.sub("", line.rstrip()))
            continue
        if block:
            out += ["```pycon", *block, "```"]
            block = []
        out.append(line)
    return "\n".join(out[:-1])


class DoctestBlocks(griffe.Extension):
    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = _ROLE.sub(r"`\1`", obj.docstring.value)
        obj.docstring.value = fence_doctests(text) if ">>>" in text else text
