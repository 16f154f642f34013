"""Which SysV queues procmagic created, and removing them when their owner is gone.

Swoole's queues leaked until ``msgget`` failed with ENOSPC. Every queue procmagic creates gets a
record: one small JSON file per queue in a directory private to the user (``registry_dir()``),
named ``msq-<msqid>-pid-<owner pid>.json`` and holding the msqid, the key, the creator's uid, the
queue's change time (``ctime``), and the owner's pid and start time (field 22 of
``/proc/<pid>/stat``: with the pid, an identity that survives pid reuse).

A queue is removed:
- by ``free_queue()`` (any process that has it);
- when its owner exits normally: ``atexit`` in a plain process; a procmagic child ends in
  ``os._exit``, so its parent removes the queues it created when it reaps it (the child marks
  its counters slot before it records a queue, or execs, and the parent lists the records only
  for a child that did: see ``counters.MADE_QUEUE``);
- by :func:`sweep_queues`, once its owner is dead (a crash, SIGKILL, a kernel killed).

Before removing anything, the kernel's own line for that msqid in ``/proc/sysvipc/msg`` must
still match the record (same key, same creator uid, which must be this user, same ctime). A
queue procmagic did not create has no record, and a reused msqid no longer matches: neither is
ever touched.
"""

from __future__ import annotations

import atexit
import json
import os
import stat as _stat
import time
from dataclasses import dataclass
from typing import Any, Iterator

import sysv_ipc

from . import counters as _counters
from . import runtime
from .runtime import start_ticks  # (a pid and its start time identify a process)
from .reaper import set_queue_cleanup

__all__ = ["QueueInfo", "queues", "sweep_queues", "registry_dir", "proc_table", "Row", "record", "changed", "forget"]

ENV = "PROCMAGIC_QUEUE_DIR"

_owned: dict[int, Any] = {}  # msqid -> the _Shared of each queue this process created and holds
_atexit_pid: int | None = None


# -- the kernel's view ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One line of ``/proc/sysvipc/msg``."""

    key: int
    id: int
    cbytes: int
    qnum: int
    lspid: int
    lrpid: int
    cuid: int
    stime: int
    rtime: int
    ctime: int


def proc_table() -> dict[int, Row]:
    """The kernel's message queues by msqid (empty where ``/proc/sysvipc/msg`` is missing)."""
    try:
        with open("/proc/sysvipc/msg") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    rows: dict[int, Row] = {}
    if not lines:
        return rows
    names = lines[0].split()
    for line in lines[1:]:
        fields = dict(zip(names, line.split()))
        try:
            row = Row(key=int(fields["key"]), id=int(fields["msqid"]), cbytes=int(fields["cbytes"]),
                      qnum=int(fields["qnum"]), lspid=int(fields["lspid"]), lrpid=int(fields["lrpid"]),
                      cuid=int(fields["cuid"]), stime=int(fields["stime"]), rtime=int(fields["rtime"]),
                      ctime=int(fields["ctime"]))
        except (KeyError, ValueError):
            continue
        rows[row.id] = row
    return rows


def _alive(pid: int, start: int | None) -> bool:
    now = start_ticks(pid)
    return now is not None and (start is None or now == start)


def _matches(record: dict[str, Any], table: dict[int, Row]) -> tuple[bool, bool]:
    """(the recorded msqid exists, and is still the queue recorded)."""
    row = table.get(record["msqid"])
    if row is None:
        return False, False
    uid = os.geteuid()
    return True, row.key == record["key"] and row.cuid == record["uid"] == uid and row.ctime == record["ctime"]


# -- the records ---------------------------------------------------------------------------------
def registry_dir(create: bool = False) -> str | None:
    """This user's record directory: ``$PROCMAGIC_QUEUE_DIR``, else ``queues`` in procmagic's
    private runtime directory (``core.runtime``: ``$XDG_RUNTIME_DIR/procmagic`` or
    ``<tempdir>/procmagic-<uid>``, verified 0700 and this user's). A directory that is a
    symlink, not this user's own, or open to others is never used (None)."""
    if os.environ.get(ENV):
        path = os.environ[ENV]
    else:
        try:
            path = os.path.join(runtime.runtime_dir(), "queues")
        except OSError:
            return None
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
    try:
        runtime.verify_private_dir(path)
    except OSError:
        return None
    return path


def _name(msqid: int, pid: int) -> str:
    return f"msq-{msqid}-pid-{pid}.json"


def _parse(name: str) -> tuple[int, int] | None:
    parts = name[:-5].split("-") if name.endswith(".json") else []
    if len(parts) != 4 or parts[0] != "msq" or parts[2] != "pid":
        return None
    try:
        return int(parts[1]), int(parts[3])
    except ValueError:
        return None


def _list(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _load(path: str) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # never through a symlink
    except OSError:
        return None
    try:
        with os.fdopen(fd) as f:
            st = os.fstat(f.fileno())
            if not _stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                return None
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(
        isinstance(record.get(k), int) for k in ("msqid", "key", "uid", "ctime", "owner_pid")
    ):
        return None
    return record


def _dump(path: str, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` through a new private file (O_EXCL, O_NOFOLLOW, 0600)."""
    tmp: str | None = None
    try:
        tmp, f = runtime.open_private(os.path.dirname(path), f"{os.path.basename(path)}.{os.getpid()}.tmp")
        with f:
            json.dump(record, f)
        os.replace(tmp, path)  # readers see the old record or the new one, never half of one
    except OSError:
        if tmp is not None:
            _unlink(tmp)


def _records() -> Iterator[tuple[str, dict[str, Any]]]:
    directory = registry_dir()
    if directory is None:
        return
    for name in sorted(_list(directory)):
        if _parse(name) is not None:
            record = _load(os.path.join(directory, name))
            if record is not None:
                yield os.path.join(directory, name), record


def record(shared: Any) -> None:
    """Note a queue this process just created, and remove it at this process's normal exit."""
    global _atexit_pid
    # First, before any record exists: in a procmagic child this tells the parent to look for
    # this child's records when it reaps it (see counters.MADE_QUEUE).
    _counters.for_this_process().mark_queue()
    pid = os.getpid()
    _owned[shared.id] = shared
    if _atexit_pid != pid:
        atexit.register(_remove_own_queues)
        _atexit_pid = pid
    directory = registry_dir(create=True)
    if directory is None:
        return
    for name in _list(directory):  # older records of this msqid are stale: it is ours now
        parsed = _parse(name)
        if parsed and parsed[0] == shared.id:
            _unlink(os.path.join(directory, name))
    _dump(os.path.join(directory, _name(shared.id, pid)), {
        "version": 1, "msqid": shared.id, "key": shared.key, "uid": shared.uid, "ctime": shared.ctime,
        "owner_pid": pid, "owner_start": start_ticks(pid), "created": time.time(),
    })


def changed(shared: Any) -> None:
    """The queue's ctime changed (a new capacity): keep its record matching."""
    directory = registry_dir()
    if directory is None:
        return
    for name in _list(directory):
        parsed = _parse(name)
        if parsed and parsed[0] == shared.id:
            path = os.path.join(directory, name)
            rec = _load(path)
            if rec is not None and rec["key"] == shared.key:
                rec["ctime"] = shared.ctime
                _dump(path, rec)


def forget(msqid: int) -> None:
    """The queue was removed: drop it and every record of its msqid."""
    _owned.pop(msqid, None)
    directory = registry_dir()
    if directory is None:
        return
    for name in _list(directory):
        parsed = _parse(name)
        if parsed and parsed[0] == msqid:
            _unlink(os.path.join(directory, name))


def _remove(msqid: int) -> bool:
    try:
        sysv_ipc.remove_message_queue(msqid)
    except sysv_ipc.ExistentialError:
        return False
    return True


def _remove_own_queues() -> None:
    """atexit: remove the queues this process created and did not free."""
    pid = os.getpid()
    for msqid, shared in list(_owned.items()):
        _owned.pop(msqid, None)
        if shared.freed or shared.owner_pid != pid:
            continue
        try:
            same = shared.mq.cuid == shared.uid and shared.mq.last_change_time == shared.ctime
        except sysv_ipc.Error:
            forget(msqid)  # gone already
            continue
        if not same:  # a capacity set elsewhere (its record follows), or a reused msqid
            directory = registry_dir()
            rec = _load(os.path.join(directory, _name(msqid, pid))) if directory else None
            same = rec is not None and _matches(rec, proc_table())[1]
        if same:
            try:
                shared.mq.remove()
            except sysv_ipc.Error:
                pass
            shared.freed = True
            forget(msqid)


# -- the public view -----------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueInfo:
    """One queue procmagic created (``procmagic.queues()``)."""

    id: int
    key: int
    owner_pid: int
    owner_alive: bool
    mine: bool  # created by this process, which still holds it
    messages: int
    bytes: int
    created: float | None  # epoch seconds


def queues() -> list[QueueInfo]:
    """The queues procmagic created for this user that still exist, oldest record first."""
    table = proc_table()
    out = []
    for _, rec in _records():
        exists, same = _matches(rec, table)
        if not same:
            continue
        row, pid = table[rec["msqid"]], rec["owner_pid"]
        out.append(QueueInfo(id=row.id, key=row.key, owner_pid=pid, owner_alive=_alive(pid, rec.get("owner_start")),
                             mine=pid == os.getpid() and row.id in _owned, messages=row.qnum, bytes=row.cbytes,
                             created=rec.get("created")))
    return out


def sweep_queues() -> list[int]:
    """Remove the queues procmagic created whose owner is dead; returns their msqids.

    Only this user's records are read. A queue goes only when its owner (pid and start time)
    is gone and the kernel still shows the queue recorded (key, creator uid, change time). A
    record whose queue is gone, or whose msqid now names another queue, is dropped and nothing
    else is touched.
    """
    table = proc_table()
    removed = []
    for path, rec in _records():
        if _alive(rec["owner_pid"], rec.get("owner_start")):
            continue
        exists, same = _matches(rec, table)
        if same:
            try:
                if _remove(rec["msqid"]):
                    removed.append(rec["msqid"])
            except sysv_ipc.Error:
                continue  # not ours to remove after all: keep the record, touch nothing
        _unlink(path)
    return removed


def _remove_queues_of(pid: int) -> None:
    """A procmagic child was reaped: remove the queues it created (it ended in ``os._exit``)."""
    directory = registry_dir()
    if directory is None:
        return
    table: dict[int, Row] | None = None
    for name in _list(directory):
        parsed = _parse(name)
        if parsed is None or parsed[1] != pid:
            continue
        path = os.path.join(directory, name)
        rec = _load(path)
        if rec is None or _alive(pid, rec.get("owner_start")):  # a new process with a reused pid
            continue
        table = proc_table() if table is None else table
        if _matches(rec, table)[1]:
            try:
                _remove(rec["msqid"])
            except sysv_ipc.Error:
                continue
        _unlink(path)


def _after_fork_in_child() -> None:
    _owned.clear()  # the parent's queues stay the parent's


# The registry calls this at the reap of a child that may have made a queue: one whose counters
# slot says it recorded one (or exec'd), or whose slot it could not read.
set_queue_cleanup(_remove_queues_of)
os.register_at_fork(after_in_child=_after_fork_in_child)
