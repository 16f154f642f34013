"""Execute a procmagic notebook in a real kernel, without a browser, and keep everything it shows.

``make demo`` and the notebook tests use this. It is nbclient with one addition: output that a
``%%spawn --bg`` child sends to *its own* cell after that cell finished is kept in that cell,
as JupyterLab would show it. Plain nbclient listens to a cell only until the cell goes idle and
drops whatever arrives later (procmagic publishes background output with the spawning cell's
parent header, so it is easy to file correctly).

    python notebooks/run_notebook.py notebooks/01-tour.ipynb --out build/demo [--html]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete

__all__ = ["LateOutputClient", "execute", "error_outputs", "cell_text", "main"]

HERE = Path(__file__).resolve().parent


class LateOutputClient(NotebookClient):
    """An nbclient that files output arriving for an earlier cell into that cell."""

    def __init__(self, nb: Any, **kwargs: Any) -> None:
        super().__init__(nb, **kwargs)
        self._cells_by_msg: dict[str, tuple[Any, int]] = {}
        self.late_outputs = 0

    async def _async_poll_output_msg(self, parent_msg_id: str, cell: Any, cell_index: int) -> None:
        from jupyter_core.utils import ensure_async

        assert self.kc is not None
        self._cells_by_msg[parent_msg_id] = (cell, cell_index)
        while True:
            msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=None))
            parent = msg["parent_header"].get("msg_id")
            if parent == parent_msg_id:
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    return
            elif parent in self._cells_by_msg and msg["msg_type"] not in ("status", "execute_input"):
                earlier, index = self._cells_by_msg[parent]
                self.late_outputs += 1
                try:
                    self.process_message(msg, earlier, index)
                except CellExecutionComplete:  # pragma: no cover - status is filtered out above
                    pass


def _coalesce(cell: Any) -> None:
    """Merge neighbouring stream outputs of the same name (nbclient does it only for output that
    arrived while the cell ran)."""
    merged: list[Any] = []
    for output in cell.get("outputs", []):
        if (output["output_type"] == "stream" and merged and merged[-1]["output_type"] == "stream"
                and merged[-1]["name"] == output["name"]):
            merged[-1]["text"] += output["text"]
        else:
            merged.append(output)
    cell["outputs"] = merged


def execute(path: str | os.PathLike[str], timeout: int = 120, kernel_name: str = "python3",
            allow_errors: bool = False, widget_state: bool = True) -> tuple[Any, float]:
    """Execute the notebook at ``path`` in a fresh kernel (working directory: its folder).

    Returns ``(notebook, seconds)``. Errors in cells tagged ``raises-exception`` are allowed,
    any other error stops the run with nbclient's ``CellExecutionError``, unless
    ``allow_errors`` (then every cell runs and the errors stay in the outputs). Without
    ``widget_state`` the live widgets' state is left out and each widget output keeps only its
    text fallback, so an HTML rendering needs no widget manager (nothing loaded from the network).
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = LateOutputClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=allow_errors,
                              resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            _coalesce(cell)
            if not widget_state:
                for output in cell.outputs:
                    output.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
    if not widget_state:
        nb.metadata.pop("widgets", None)
    return nb, time.monotonic() - started


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cell_text(cell: Any) -> str:
    """Everything a code cell shows as text: streams, text/plain results, error names and values."""
    parts = []
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream":
            parts.append(output["text"])
        elif kind in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
        elif kind == "error":
            parts.append(f"{output['ename']}: {output['evalue']}\n" + "\n".join(output.get("traceback", [])))
    return _ANSI.sub("", "\n".join(parts))


def error_outputs(nb: Any) -> list[tuple[int, str]]:
    """(cell index, "Name: value") of every error output in a cell not tagged raises-exception."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "raises-exception" in cell.metadata.get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                found.append((index, f"{output['ename']}: {output['evalue']}"))
    return found


def _summary(nb: Any, seconds: float, out_ipynb: Path, out_html: Path | None) -> str:
    code = [c for c in nb.cells if c.cell_type == "code"]
    lines = [f"ran {len(code)} code cells of {out_ipynb.name} in a fresh python3 kernel in {seconds:.1f} s"]
    statuses = [line for c in code for line in cell_text(c).splitlines() if line.startswith("[procmagic]")]
    if statuses:
        lines.append(f"children that ended ({len(statuses)}), as each spawning cell reported them:")
        lines += ["  " + s.replace("[procmagic] ", "", 1) for s in statuses]
    refused = sum(cell_text(c).count("refusing to fork") for c in code if "%forkcheck" not in c.source)
    if refused:
        lines.append(f"forks the threaded-fork guard refused, as the notebook shows: {refused}")
    tagged = sum(1 for c in code if "raises-exception" in c.metadata.get("tags", []))
    errors = error_outputs(nb)
    lines.append(f"errors: {len(errors)} unexpected; {tagged} cell(s) show an exception on purpose")
    lines.append(f"executed notebook: {out_ipynb}")
    if out_html is not None:
        lines.append(f"HTML copy:         {out_html}   (open it in a browser)")
    lines.append("run it yourself:   make lab   (JupyterLab on notebooks/)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", help="the .ipynb to execute")
    parser.add_argument("--out", default="build/demo", help="folder for the executed notebook (and HTML)")
    parser.add_argument("--html", action="store_true", help="also write an HTML copy (nbconvert)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per cell")
    parser.add_argument("--quiet", action="store_true", help="one line per notebook instead of the summary")
    parser.add_argument("--allow-errors", action="store_true",
                        help="run every cell and keep errors in the outputs (exit 0; the docs build uses it)")
    parser.add_argument("--no-widget-state", action="store_true",
                        help="keep only the widgets' text fallback (HTML that loads no widget manager)")
    args = parser.parse_args(argv)

    source = Path(args.notebook)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.quiet:
        print(f"executing {source} in a real kernel (no browser) ...", flush=True)
    nb, seconds = execute(source, timeout=args.timeout, allow_errors=args.allow_errors,
                          widget_state=not args.no_widget_state)
    out_ipynb = out / source.name
    nbformat.write(nb, out_ipynb)
    out_html = None
    if args.html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        out_html = out_ipynb.with_suffix(".html")
        out_html.write_text(body, encoding="utf-8")
    errors = error_outputs(nb)
    if args.quiet:
        print(f"executed {source} in {seconds:.1f} s -> {out_ipynb}" + (f", {len(errors)} unexpected errors" if errors else ""))
    else:
        print(_summary(nb, seconds, out_ipynb, out_html))
    return 1 if errors and not args.allow_errors else 0


if __name__ == "__main__":
    sys.exit(main())
