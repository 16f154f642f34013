"""The child record: everything the parent knows about one started child, in one place.

``fork.py`` creates it the instant ``os.fork`` returns in the parent and registers it before
the parent's signals are unblocked, so no interrupt can separate a live child from its record.
The registry (``reaper.py``) then owns its life: it reaps the child once, records the status
with the time the exit was seen, closes the pidfd and the error pipe, and fires the done
callbacks exactly once.

States: *running* (``status is None``) -> *reaped* (``status`` set, pidfd and error pipe closed,
callbacks fired). A ``Process`` started again gets a new record; the old one stays as it was.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from . import counters as _counters
from .status import ExitStatus

if TYPE_CHECKING:
    from .process import Process

__all__ = ["ChildRecord", "DoneCallback"]

DoneCallback = Callable[[ExitStatus], Any]


@dataclass(eq=False, slots=True)
class ChildRecord:
    """One started child, as its parent sees it. Times are ``time.monotonic()`` seconds.

    Slotted: one is made right after every fork, when each page written costs a copy-on-write
    fault; without an instance dict it costs ~7 faults instead of ~16."""

    owner: Any  # the Process: a strong reference while it runs, a weak one once reaped
    pid: int
    started_at: float
    errpipe: int | None = None  # read end of the close-on-exec pipe an exec() failure comes back on
    pidfd: int | None = None  # readable once the child has exited; None where pidfd_open is missing
    pgid: int = 0  # the child leads its own process group: pgid == pid
    exited_at: float | None = None  # when it ended: its own mark (counters), else when the reap saw it
    status: ExitStatus | None = None
    stop_reason: str | None = None  # why it was stopped: "timeout", "interrupt", "kill", ...
    claimed: bool = False  # join() reported it: wait() must not report it again
    counts: bytes | None = None  # its counters slot as the reap found it (counters.decode reads it)
    callbacks: list[DoneCallback] = field(default_factory=list)
    # Users of the pidfd besides the registry (loop readers, pollers): it is closed only once
    # none is left, so a thread polling it never sees its number reused.
    holds: int = 0

    @property
    def process(self) -> "Process":
        owner = self.owner
        return owner() if isinstance(owner, weakref.ref) else owner  # type: ignore[no-any-return,return-value]

    @property
    def made_queue(self) -> bool | None:
        """Whether the child may have made a SysV queue, as its counters slot said at the reap;
        None while that is not known (not reaped yet, or no slot)."""
        counts = self.counts
        return None if counts is None else _counters.marks(counts)[1]

    def let_go(self) -> None:
        """After the reap: the registry no longer keeps the Process alive (the Process holds
        its record, so a strong reference back would be a cycle left to the garbage collector,
        and a dropped spawn's children would linger in ``procs()``)."""
        if not isinstance(self.owner, weakref.ref):
            self.owner = weakref.ref(self.owner)

    def take_exec_error(self) -> OSError | None:
        """Read and close the error pipe (once): the OSError of a failed ``exec()`` in the
        child, which wrote "errno:path:strerror" there (see ``Process.exec``), else None."""
        fd = self.errpipe
        if fd is None:
            return None
        self.errpipe = None
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
        if not data:
            return None
        errno_text, _, rest = data.decode("utf-8", "replace").partition(":")
        path, _, strerror = rest.partition(":")
        try:
            number = int(errno_text)
        except ValueError:
            number = 0
        return OSError(number, strerror or os.strerror(number), path)
