"""The docs' diagrams are SVGs rendered by Graphviz from the .dot sources beside them
(docs/diagrams/). Both are committed; this test renders each source again and fails when the
committed SVG is stale (run `make diagrams`) or a source has no SVG."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DIAGRAMS = Path(__file__).resolve().parents[2] / "docs" / "diagrams"
SOURCES = sorted(DIAGRAMS.glob("*.dot"))


def _normal(svg: str) -> str:
    """The SVG without comments (Graphviz writes its version and the source's name in them)."""
    return re.sub(r"<!--.*?-->", "", svg, flags=re.DOTALL).strip()


def test_every_diagram_has_its_source():
    assert len(SOURCES) >= 3
    assert sorted(p.stem for p in DIAGRAMS.glob("*.svg")) == [p.stem for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_committed_svg_matches_its_source(source):
    dot = shutil.which("dot")
    assert dot, "Graphviz's dot is missing: `make graphviz` installs it (Debian package graphviz)"
    rendered = subprocess.run([dot, "-Tsvg", str(source)], capture_output=True, text=True, timeout=60, check=True)
    committed = source.with_suffix(".svg").read_text(encoding="utf-8")
    assert _normal(rendered.stdout) == _normal(committed), f"{source.name} changed: run `make diagrams`"
