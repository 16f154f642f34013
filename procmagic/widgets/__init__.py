"""procmagic's widgets: a live panel per ``%%spawn`` and the ``%procs`` dashboard.

The layer above the core and the kernel integration (the core never imports it). Importing
this package does not import ipywidgets: a terminal's ``%procs`` prints text tables, and
ipywidgets loads with the first panel or dashboard. See docs/widgets.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["show_panel", "show_dashboard", "dashboard_text", "current_hub", "panels", "dashboards", "panel_of",
           "settle"]


def show_panel(spawn: Any) -> Any:
    """Show the live panel of ``spawn`` above its output (``%%spawn`` calls this before forking)."""
    from .panel import show_panel as _show

    return _show(spawn)


def settle(procs: list[Any], timeout: float = 5.0) -> None:
    """``%wait``: publish the final panels of the spawns of ``procs`` (and what they printed after
    their cells finished) again from the waiting cell, where nbclient files them."""
    from ..kernel.spawn import spawn_of
    from .panel import settle as _settle

    spawns = {s.number: s for s in (spawn_of(p) for p in procs) if s is not None}
    _settle(list(spawns.values()), timeout)


def show_dashboard(ctx: Any) -> Any:
    """``%procs``: the live dashboard, or text tables in a terminal."""
    from .dashboard import show_dashboard as _show

    return _show(ctx)


def dashboard_text(failures_only: bool = False) -> str:
    """The dashboard's four parts as text tables."""
    from .tables import dashboard_text as _text

    return _text(failures_only=failures_only)


def current_hub() -> Any:
    """The hub refreshing this kernel's panels and dashboards (None before the first one)."""
    from .hub import current_hub as _current

    return _current()


def panels() -> list[Any]:
    """The live panels, oldest first."""
    hub = current_hub()
    return [v for v in list(hub.views) if v.kind == "panel"] if hub is not None else []


def panel_of(name: str) -> Any:
    """The most recent panel of the spawn named ``name`` (live or finished), or None."""
    if not isinstance(name, str):  # a number would match no name and hide the mistake behind None
        raise TypeError(f"panel_of() takes a spawn's name (a str, as given to %%spawn --name), not "
                        f"{type(name).__name__} {name!r:.60}; e.g. panel_of('crew')")
    hub = current_hub()
    for view in reversed(list(hub.recent) if hub is not None else []):
        if view.kind == "panel" and view.spawn.name == name:
            return view
    return None


def dashboards() -> list[Any]:
    """The live dashboard (a list of at most one)."""
    hub = current_hub()
    return [v for v in list(hub.views) if v.kind == "dashboard"] if hub is not None else []
