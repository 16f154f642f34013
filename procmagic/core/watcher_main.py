"""The watcher's program (see watcher.py), run as a script: ``python -I -S watcher_main.py FD
GRACE SID READY_FD``. It imports nothing of procmagic, so it starts in milliseconds and never
depends on the parent's state.

It reads ``+PGID`` / ``-PGID`` lines from FD until end of file, which comes when the parent that
holds the write end exits or is killed. Then it stops every group still registered that has a
member in session SID (so a group id recycled by a stranger is never hit): SIGTERM, GRACE
seconds, SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
import time

__all__ = ["main", "PACE"]

#: Seconds between two reads of the parent's lines (see main).
PACE = 0.05


def _members(pgid: int, sid: int) -> list[int]:
    """Live (not zombie) processes of group ``pgid`` in session ``sid``, from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(name))
    return found


def _signal_all(groups: list[int], sig: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass


def main(argv: list[str]) -> None:
    fd, grace, sid, ready = int(argv[1]), float(argv[2]), int(argv[3]), int(argv[4])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C or a kernel's interrupt
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        os.write(ready, str(os.getpid()).encode())
    except OSError:
        pass  # the parent is gone already (it never asked for this pid): still do the job
    os.close(ready)
    groups: set[int] = set()
    buf = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            break  # the parent is gone
        # Nothing acts on the groups before end of file, and the lines wait in the pipe: reading
        # at most every PACE seconds spares each fork and reap a wake-up of this process (two
        # context switches per spawn on a busy machine); the parent never blocks on a full pipe.
        time.sleep(PACE)
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    live = [g for g in groups if _members(g, sid)]
    _signal_all(live, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = [g for g in live if _members(g, sid)]
    _signal_all(live, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv)
