"""``procmagic.call(..., view=)`` and ``procmagic.map(..., view=)``: values from children forked
on ipyparallel engines.

The function (and ``map``'s items) travel to the engines with cloudpickle, by value, with the
globals they use, as ``--push`` sends variables. On each engine, procmagic's own ``call`` /
``map`` forks the children from the engine and collects their values there; the engine sends them
back. ``map`` splits the items into one contiguous block per engine and keeps their order.

An interrupt while waiting interrupts the engines' waits (SIGINT through ipyparallel), which stop
and reap their children before the interrupt is raised here.
"""

from __future__ import annotations

import signal as _signal
from typing import Any, Callable, Iterable

__all__ = ["call_on_engines", "map_on_engines"]


def _engines_of(view: Any) -> tuple[Any, list[int]]:
    from .targets import TargetError, _view_targets, require_ipyparallel

    ipp = require_ipyparallel()
    if isinstance(view, ipp.Client):
        client, allowed = view, None
    elif isinstance(view, ipp.DirectView):
        client, allowed = view.client, _view_targets(view.targets, sorted(view.client.ids))
    elif isinstance(view, ipp.Cluster):
        from .targets import client_of_cluster

        client, allowed = client_of_cluster(view), None
    else:
        raise TypeError(f"view must be an ipyparallel Client, DirectView or Cluster, not {type(view).__name__}")
    ids = sorted(client.ids) if allowed is None else [i for i in allowed if i in set(client.ids)]
    if not ids:
        raise TargetError("view= has no engines registered yet (wait for them, e.g. client.wait_for_engines(n))")
    return client, ids


def _run_call(blob: bytes) -> Any:
    """On an engine: unpickle (fn, args, kwargs) and run them in a child forked from the engine."""
    import cloudpickle

    from ..core.call import call

    fn, args, kwargs = cloudpickle.loads(blob)
    return call(fn, *args, **kwargs)


def _run_map(blob: bytes) -> list[Any]:
    """On an engine: unpickle (fn, items, workers, chunksize) and map them in children forked here."""
    import cloudpickle

    from ..core.call import map as core_map

    fn, items, workers, chunksize = cloudpickle.loads(blob)
    return core_map(fn, items, workers, chunksize=chunksize)


def _gather(client: Any, pending: list[Any], engines: list[int]) -> list[Any]:
    try:
        return [ar.get() for ar in pending]
    except KeyboardInterrupt:
        try:
            client.send_signal(_signal.SIGINT, targets=engines, block=False)
        except Exception:
            pass
        for ar in pending:  # the engines stop and reap their children, then answer
            try:
                ar.get(timeout=10)
            except BaseException:
                pass
        raise


def call_on_engines(view: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` in a child forked on the view's first engine; its value."""
    import cloudpickle

    client, engines = _engines_of(view)
    blob = cloudpickle.dumps((fn, args, kwargs))
    return _gather(client, [client[engines[0]].apply_async(_run_call, blob)], engines[:1])[0]


def map_on_engines(view: Any, fn: Callable[[Any], Any], iterable: Iterable[Any], workers: int | None,
                   chunksize: int | None) -> list[Any]:
    """``[fn(x) for x in iterable]`` on the view's engines: one contiguous block of items per
    engine, mapped there by ``workers`` children (default: one per CPU of the engine's host)."""
    import cloudpickle

    client, engines = _engines_of(view)
    items = list(iterable)
    if not items:
        return []
    engines = engines[:len(items)]
    size, extra = divmod(len(items), len(engines))
    pending, start = [], 0
    for i, engine in enumerate(engines):
        end = start + size + (1 if i < extra else 0)
        blob = cloudpickle.dumps((fn, items[start:end], workers, chunksize))
        pending.append(client[engine].apply_async(_run_map, blob))
        start = end
    out: list[Any] = []
    for block in _gather(client, pending, engines):
        out.extend(block)
    return out
