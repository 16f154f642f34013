"""Which engines a ``%%spawn --engines`` runs on: ``--engines TARGETS`` and ``--view VAR``.

ipyparallel is imported here, lazily: without it, ``--engines`` says how to install it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TargetError", "INSTALL_HINT", "require_ipyparallel", "parse_targets", "resolve", "client_of_cluster", "push"]

INSTALL_HINT = ("%%spawn --engines needs ipyparallel, which is not installed in this kernel's environment: "
                "pip install 'procmagic[engines]' (or pip install ipyparallel), then restart the kernel")



class TargetError(ValueError):
    """A bad --engines, --view or --push: the rule, the bad value and the fix."""


_default_client: Any = None
_cluster_clients: dict[int, Any] = {}


def require_ipyparallel() -> Any:
    try:
        import ipyparallel
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ipyparallel


def parse_targets(text: str) -> str | int | list[int]:
    """``all``; a count ``N`` (the first N engines by id); or ids ``0,2,5`` (one id alone: ``3,``)."""
    value = text.strip().lower()
    if value == "all":
        return "all"
    rule = ("--engines must be 'all', a count N of engines (the first N by id), or engine ids separated by "
            "commas (0,2,5; one id alone: 3,)")
    if "," in value:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise TargetError(f"{rule}, not {text!r}")
        ids: list[int] = []
        for p in parts:
            if int(p) not in ids:
                ids.append(int(p))
        return ids
    if not value.isdigit() or int(value) < 1:
        raise TargetError(f"{rule}, not {text!r}")
    return int(value)


def resolve(user_ns: dict[str, Any], view_name: str | None, targets: str | int | list[int]) -> tuple[Any, list[int]]:
    """The client and the engine ids to run on. ``view_name`` names a Client, DirectView or
    Cluster in the notebook; without it, the default ``ipyparallel.Client()`` (made once)."""
    global _default_client
    ipp = require_ipyparallel()
    if view_name is None:
        if _default_client is None:
            try:
                _default_client = ipp.Client()
            except Exception as exc:
                raise TargetError(f"--engines: no ipyparallel cluster found for the default Client() ({exc}); start "
                                 "one (ipcluster start, or ipyparallel.Cluster) or name it with --view VAR") from None
        client, allowed = _default_client, None
    else:
        if view_name not in user_ns:
            raise TargetError(f"--view {view_name}: no such variable in the notebook; it must name an ipyparallel "
                             "Client, DirectView or Cluster")
        obj = user_ns[view_name]
        if isinstance(obj, ipp.Client):
            client, allowed = obj, None
        elif isinstance(obj, ipp.DirectView):
            client = obj.client
            allowed = _view_targets(obj.targets, sorted(client.ids))
        elif isinstance(obj, ipp.Cluster):
            client, allowed = client_of_cluster(obj), None
        else:
            raise TargetError(f"--view {view_name} must be an ipyparallel Client, DirectView or Cluster, not "
                             f"{type(obj).__name__}")
    ids = sorted(client.ids)
    if allowed is not None:
        ids = [i for i in ids if i in set(allowed)]
    if not ids:
        raise TargetError("--engines: the cluster has no engines registered yet (wait for them, e.g. "
                         "client.wait_for_engines(n))")
    if targets == "all":
        return client, ids
    if isinstance(targets, int):
        if targets > len(ids):
            raise TargetError(f"--engines {targets}: only {len(ids)} engines are available ({ids})")
        return client, ids[:targets]
    assert not isinstance(targets, str)  # "all" and counts were handled above: ids remain
    missing = [i for i in targets if i not in ids]
    if missing:
        raise TargetError(f"--engines: no engine with id {', '.join(map(str, missing))}; available: {ids}")
    return client, list(targets)


def client_of_cluster(cluster: Any) -> Any:
    """One client per Cluster object, made on first use."""
    client = _cluster_clients.get(id(cluster))
    if client is None:
        client = _cluster_clients[id(cluster)] = cluster.connect_client_sync()
    return client


def push(client: Any, engines: list[int], user_ns: dict[str, Any], names: list[str], timeout: float = 60.0) -> None:
    """``--push a,b``: send these notebook variables to the engines (cloudpickle), before the fork."""
    import cloudpickle

    from . import agent

    blobs: dict[str, bytes] = {}
    for name in names:
        if name not in user_ns:
            raise TargetError(f"--push {name}: no such variable in the notebook")
        try:
            blobs[name] = cloudpickle.dumps(user_ns[name])
        except Exception as exc:
            raise TargetError(f"--push {name}: cannot be pickled with cloudpickle ({type(exc).__name__}: {exc})") from None
    ar = client[engines].apply_async(agent.receive, blobs)
    ar.get(timeout=timeout)


def _view_targets(targets: Any, ids: list[int]) -> list[int] | None:
    """A DirectView's targets as engine ids (None: all of them)."""
    if targets is None or targets == "all":
        return None
    if isinstance(targets, int):
        return [targets]
    if isinstance(targets, slice):
        return ids[targets]
    return [int(t) for t in targets]
