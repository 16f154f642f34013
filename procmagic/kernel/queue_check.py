"""``--queue KEY`` joins a system-wide SysV queue: say so when that queue is not one procmagic
made for this user, or when other users may read it (its messages are then theirs to read, and
to forge). A warning, not a refusal: sharing a queue with another program is legitimate."""

from __future__ import annotations

import os
import pwd

from ..core.queue import queues

__all__ = ["queue_warning"]


def _row(key: int) -> dict[str, str] | None:
    """The line of /proc/sysvipc/msg for ``key``, by column name, or None."""
    try:
        with open("/proc/sysvipc/msg") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    if not lines:
        return None
    names = lines[0].split()
    for line in lines[1:]:
        fields = dict(zip(names, line.split()))
        try:
            if int(fields["key"]) == key:
                return fields
        except (KeyError, ValueError):
            continue
    return None


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def queue_warning(key: int) -> str | None:
    """A warning about joining the existing queue ``key``, or None (no such queue yet: procmagic
    creates it 0600; or one procmagic made for this user, closed to others)."""
    row = _row(key)
    if row is None:
        return None
    try:
        msqid, uid, cuid, mode = int(row["msqid"]), int(row["uid"]), int(row["cuid"]), int(row["perms"], 8)
    except (KeyError, ValueError):
        return None
    ours = cuid == os.geteuid() and any(q.id == msqid for q in queues())
    if ours and not mode & 0o066:
        return None
    problems = []
    if not ours:
        problems.append("procmagic did not create it")
    if mode & 0o066:
        problems.append("other users may read or write its messages")
    return (f"[procmagic] warning: --queue {key & 0xFFFFFFFF:#010x} joins an existing queue (id {msqid}, owner {_user(uid)}, "
            f"created by {_user(cuid)}, mode {mode:04o}): {' and '.join(problems)}. Use --queue without a key "
            "for a private queue.")
