"""swoole's ``Process\\Manager`` over procmagic's :class:`~procmagic.core.pool.Pool`."""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable

from .errors import ProcessStateError
from .pool import Pool
from .status import ExitStatus

__all__ = ["Manager"]


class Manager:
    """swoole's ``Process\\Manager``: each function added runs in its own worker of one Pool.

    ``func(pool, worker_id)`` is the worker's body; worker ids follow the order of ``add``.
    Other keyword arguments (``ipc``, ``respawn``, ``backoff``, callbacks, ...) go to the Pool.

    >>> pm = Manager()
    >>> pm.add(lambda pool, wid: print("one")); pm.add_batch(2, lambda pool, wid: print("two", wid))
    >>> pm.start()  # doctest: +SKIP
    """

    def __init__(self, ipc: str | None = None, **pool_options: Any) -> None:
        if "target" in pool_options or "n" in pool_options:
            raise TypeError("a Manager's workers are the functions given to add() and add_batch(), not target= or n=")
        known = [name for name in inspect.signature(Pool).parameters if name not in ("n", "target", "ipc")]
        unknown = sorted(set(pool_options) - set(known))
        if unknown:
            raise TypeError(f"unknown Pool option(s) {unknown}: a Manager takes ipc and {', '.join(known)}")
        Pool(1, self._run, ipc, **pool_options)  # the values are checked now, not at start(); it holds nothing
        self.ipc = ipc
        self.options = pool_options
        self._funcs: list[Callable[[Pool, int], Any]] = []
        self.pool: Pool | None = None

    def add(self, func: Callable[[Pool, int], Any]) -> int:
        """Run ``func(pool, worker_id)`` in a worker of its own; returns that worker's id."""
        if self.pool is not None:
            raise ProcessStateError("add() before start(): the manager's pool is running")
        if not callable(func):
            raise TypeError(f"func must be callable as func(pool, worker_id), not {func!r}")
        self._funcs.append(func)
        return len(self._funcs) - 1

    def add_batch(self, n: int, func: Callable[[Pool, int], Any]) -> list[int]:
        """Run ``func`` in ``n`` workers; returns their ids."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) < 1:
            raise ValueError(f"n must be a number of workers >= 1, not {n!r}")
        return [self.add(func) for _ in range(int(n))]

    def _run(self, pool: Pool, worker_id: int) -> Any:
        return self._funcs[worker_id](pool, worker_id)

    def start(self, block: bool = True) -> Pool:
        """Start one Pool running every function added; see :meth:`Pool.start`."""
        if self.pool is not None:
            raise ProcessStateError("this Manager was started already; make a new one")
        if not self._funcs:
            raise ValueError("nothing to start: add() or add_batch() a function first")
        pool = Pool(len(self._funcs), self._run, self.ipc, **self.options)
        self.pool = pool
        pool.start(block=block)
        return pool

    def _started(self) -> Pool:
        if self.pool is None:
            raise ProcessStateError("the Manager was never started: call start() first")
        return self.pool

    def wait(self, timeout: float | None = None) -> bool:
        return self._started().wait(timeout)

    def send(self, worker_id: int | None, data: bytes | str) -> None:
        self._started().send(worker_id, data)

    def shutdown(self, timeout: float | None = None) -> dict[int, ExitStatus]:
        return self._started().shutdown(timeout)
