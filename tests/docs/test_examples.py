"""The docs' examples, executed, so what the pages claim stays true.

A fenced block in ``docs/*.md`` (and the README) right after an ``<!-- run -->`` comment is a runnable example
(``<!-- run: raises -->``: one that must show an exception). The runnable blocks of one page run
in order, as the cells of one notebook, in a fresh python3 kernel, with ``notebooks/run_notebook.py``
(so late ``%%spawn --bg`` output is kept in its cell). A block after an ``<!-- output -->`` comment
is what the example before it shows: each of its non-empty lines must match a line of the cell's
output, in order (``<!-- output: any order -->``: in any order, for workers that race), with
``…`` standing for any text (pids, times, sizes). The comments are invisible on the site; the
output blocks are shown beside their examples.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

_MARK = re.compile(r"^<!--\s*(run(?::\s*raises)?|output(?::\s*any order)?)\s*-->\s*$")
_FENCE = re.compile(r"^(```+|~~~+)")


@dataclass
class Example:
    line: int  # 1-based line of the fence in the page
    source: str
    raises: bool = False
    expected: list[str] = field(default_factory=list)
    any_order: bool = False


def examples(page: Path) -> list[Example]:
    """The runnable examples of a page, each with the output it claims."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Example] = []
    pending: str | None = None
    i = 0
    while i < len(lines):
        mark = _MARK.match(lines[i])
        fence = _FENCE.match(lines[i])
        if mark:
            pending = mark.group(1)
        elif fence and pending is not None:
            body, j = [], i + 1
            while j < len(lines) and not lines[j].startswith(fence.group(1)):
                body.append(lines[j])
                j += 1
            if j == len(lines):
                raise ValueError(f"{page.name}:{i + 1}: unclosed fence")
            if pending.startswith("output"):
                if not found:
                    raise ValueError(f"{page.name}:{i + 1}: an output block with no example before it")
                found[-1].expected = [line for line in body if line.strip()]
                found[-1].any_order = pending.endswith("any order")
            else:
                found.append(Example(i + 1, "\n".join(body), raises=pending.endswith("raises")))
            pending = None
            i = j
        elif lines[i].strip():
            pending = None  # a marker applies to the block right after it only
        i += 1
    return found


def _pattern(expected_line: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in expected_line.strip().split("…")))


def unmatched(expected: list[str], text: str, any_order: bool = False) -> str | None:
    """The first expected line not found (in order, unless ``any_order``) among the output's
    lines, or None."""
    lines = [line.strip() for line in text.splitlines()]
    if any_order:
        for want in expected:
            if not any(_pattern(want).fullmatch(line) for line in lines):
                return want
        return None
    at = 0
    for want in expected:
        pattern = _pattern(want)
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


PAGES = sorted(p for p in [*DOCS.glob("*.md"), ROOT / "README.md"] if examples(p))


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebook", ROOT / "notebooks" / "run_notebook.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_the_matcher_can_fail():
    assert unmatched(["a … c", "d"], "x\na b c\nd\n") is None
    assert unmatched(["d", "a … c"], "a b c\nd\n") == "a … c"  # order matters
    assert unmatched(["exited 0"], "exited 1") == "exited 0"
    assert unmatched(["d", "a … c"], "a b c\nd\n", any_order=True) is None


def test_pages_have_runnable_examples():
    assert {p.name for p in PAGES} >= {"README.md", "index.md", "getting-started.md", "magics.md", "concepts.md",
                                       "errors.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_examples_run_and_show_what_the_page_says(page, tmp_path):
    found = examples(page)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for example in found:
        cell = nbformat.v4.new_code_cell(example.source)
        if example.raises:
            cell.metadata["tags"] = ["raises-exception"]
        nb.cells.append(cell)
    path = tmp_path / f"{page.stem}.ipynb"
    nbformat.write(nb, path)

    run_notebook = _runner()
    executed, _ = run_notebook.execute(path, timeout=120)

    for example, cell in zip(found, executed.cells):
        text = run_notebook.cell_text(cell)
        errors = [o for o in cell.outputs if o["output_type"] == "error"]
        where = f"{page.name}:{example.line}"
        if example.raises:
            assert errors, f"{where}: the example is marked 'raises' but showed no error:\n{text}"
        else:
            assert not errors, f"{where}: the example failed:\n{text}"
        missing = unmatched(example.expected, text, example.any_order)
        assert missing is None, f"{where}: the page says the example shows {missing!r}; it showed:\n{text}"
