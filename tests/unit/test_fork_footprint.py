"""What a child leaves alone so that it touches few of the pages it shares with its parent
(issue 13; the costs themselves are measured in bench/, never asserted here): finished
Processes it has nothing to close in, and the objects it inherited (frozen for the collector).
Each test checks that leaving them alone never loses what the child must still do."""

from __future__ import annotations

import gc
import time

from procmagic import Process

from .helpers import WAIT


def read_to_end(proc: Process) -> None:
    while proc.read():
        pass


def sleep_long(proc: Process) -> None:
    time.sleep(60)


def test_a_restarted_process_is_closed_in_later_children_again(spawn):
    # Run 1 ends with the pipe closed: the Process is reaped and holds nothing, so later
    # children skip it. Run 2 opens a new pipe: a child forked after that must close this
    # Process's end of it, or its own child would never read end of file.
    p = spawn(read_to_end, pipe="stream")
    p.start()
    p.close()
    assert p.join(timeout=WAIT).code == 0
    p.start()
    q = spawn(sleep_long, pipe=None)
    q.start()
    try:
        p.close()  # the only other copy of this end would be in q's child
        assert p.join(timeout=WAIT).code == 0
    finally:
        q.kill()
        q.join(timeout=WAIT)


def test_a_finished_process_with_its_pipe_open_is_still_closed_in_children(spawn):
    p = spawn(read_to_end, pipe="stream")
    p.start()
    q = spawn(sleep_long, pipe=None)
    q.start()
    try:
        p.close()
        assert p.join(timeout=WAIT).code == 0
    finally:
        q.kill()
        q.join(timeout=WAIT)


def test_the_child_freezes_what_it_inherited(spawn):
    def target(proc: Process) -> None:
        proc.write(str(gc.get_freeze_count()).encode())

    before = gc.get_freeze_count()
    p = spawn(target)
    p.start()
    frozen = int(p.read(timeout=WAIT))
    assert p.join(timeout=WAIT).code == 0
    assert frozen > 0, "the child's collector would walk every object it inherited"
    assert gc.get_freeze_count() == before, "the parent's own collector must be left as it was"
