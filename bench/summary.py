"""One row per figure, shared by every bench: what ``make bench`` prints as its final table.

A bench calls :func:`figure` for each figure it measured. When ``bench/run_all.py`` runs it, the
environment names a file (``PROCMAGIC_BENCH_SUMMARY``) and each row is appended to it as one JSON
line; run on its own, a bench prints its own report and :func:`figure` does nothing.

Ratios are procmagic / baseline for costs (lower is better) and for rates (higher is better); the
row says which, and whether the target was met, so the table needs no knowledge of the bench.
"""

from __future__ import annotations

import json
import os
from typing import Literal

__all__ = ["figure", "ENV"]

ENV = "PROCMAGIC_BENCH_SUMMARY"


def figure(name: str, procmagic: float, baseline: float, unit: str, *, target: float,
           better: Literal["lower", "higher"], baseline_name: str = "baseline", aim: float | None = None,
           absolute: bool = False, note: str = "", comparison: bool = False) -> float:
    """Record one figure; returns its ratio (procmagic / baseline).

    ``target`` is the ratio the issue asks for: met when the ratio is at most it (``better="lower"``,
    a cost) or at least it (``better="higher"``, a rate). With ``absolute=True`` the target is a
    value in ``unit`` that procmagic's own figure must meet (a latency bound, say); the ratio to
    the baseline is still shown. ``comparison=True`` marks a row shown beside a target's row
    (another path or setting of the same figure): the table says "comparison", never met or
    missed.
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', not {better!r}")
    ratio = procmagic / baseline if baseline else float("nan")
    measured = procmagic if absolute else ratio
    met = measured <= target if better == "lower" else measured >= target
    path = os.environ.get(ENV)
    if path:
        row = {"figure": name, "procmagic": procmagic, "baseline": baseline, "baseline_name": baseline_name,
               "unit": unit, "ratio": ratio, "target": target, "better": better, "aim": aim, "met": met,
               "absolute": absolute,
               "note": note, "comparison": comparison}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    return ratio
