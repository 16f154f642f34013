"""Process: exit codes, identity, lifecycle, and the misuse each method refuses."""

from __future__ import annotations

import os
import re
import signal
import sys
import time

import pytest

import procmagic
from procmagic import Process, ProcessStateError

from .helpers import WAIT, gone, python, read_all, run, wait_until


def noop(proc: Process) -> None:
    pass


def wait_for_parent(proc: Process) -> None:
    proc.read(timeout=WAIT)


# -- how the child ends ------------------------------------------------------------------------
def _raising(exc: BaseException):
    def target(proc: Process) -> None:
        raise exc

    return target


@pytest.mark.parametrize(
    "target, code",
    [
        (lambda proc: None, 0),
        (lambda proc: 7, 7),
        (lambda proc: 256 + 3, 3),  # the OS keeps the low 8 bits, as exit(259) would
        (lambda proc: True, 1),
        (_raising(SystemExit(5)), 5),
        (_raising(SystemExit(None)), 0),
        (_raising(SystemExit()), 0),
        (lambda proc: sys.exit(4), 4),
    ],
    ids=["None", "int", "int-masked", "True", "SystemExit(5)", "SystemExit(None)", "SystemExit()", "sys.exit(4)"],
)
def test_exit_code_mapping(target, code):
    status, out = run(target)
    assert status.code == code, out
    assert status.signal is None
    assert status.returncode == code


def test_system_exit_with_a_message_prints_it_and_exits_1():
    status, out = run(_raising(SystemExit("goodbye from the child")))
    assert status.code == 1
    assert out == b"goodbye from the child\n"


def test_uncaught_exception_prints_traceback_and_exits_1():
    def target(proc: Process) -> None:
        raise ValueError("boom in the child")

    status, out = run(target)
    assert status.code == 1
    text = out.decode()
    assert text.startswith("Traceback (most recent call last):"), text
    assert "in target" in text
    assert text.rstrip().endswith("ValueError: boom in the child")


def test_keyboard_interrupt_ends_the_child_as_killed_by_sigint():
    status, out = run(_raising(KeyboardInterrupt()))
    assert status.signal == signal.SIGINT
    assert status.code is None
    assert status.returncode == -signal.SIGINT
    assert b"KeyboardInterrupt" in out


def test_no_atexit_handler_runs_in_the_child(tmp_path):
    log = tmp_path / "atexit.log"
    result = python(
        f"""
        import atexit, os, sys
        from procmagic import Process

        def record():
            with open({str(log)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")

        atexit.register(record)

        def returns(proc): return 0
        def raises(proc): raise RuntimeError("child error")
        def exits(proc): sys.exit(3)
        def interrupted(proc): raise KeyboardInterrupt
        def calls_exit(proc): proc.exit(2)

        for target in (returns, raises, exits, interrupted, calls_exit):
            p = Process(target, pipe=None)
            p.start()
            p.join(timeout=20)
        print(os.getpid())
        """
    )
    assert result.returncode == 0, result.stderr
    parent = result.stdout.strip()
    # The parent's handler ran once, at the parent's own exit; none of the five children ran it.
    assert log.read_text().split() == [parent]


# -- identity ----------------------------------------------------------------------------------
def test_ids_are_small_and_increase_by_one(spawn):
    a, b = spawn(noop), spawn(noop)
    assert a.id >= 1
    assert b.id == a.id + 1
    assert str(a.name) == f"process-{a.id}"


def test_pid_and_pipe_properties_in_parent_and_child(spawn):
    def target(proc: Process) -> None:
        proc.write(f"{proc.id} {proc.pid} {proc.pipe} {os.getpid()} {proc.is_alive()}")

    p = spawn(target)
    assert p.pid is None
    assert isinstance(p.pipe, int) and p.pipe >= 0
    assert p.pipe_type == "dgram" and p.redirect is False
    assert not p.is_alive()
    assert "not started" in repr(p)
    parent_fd = p.pipe
    pid = p.start()
    assert p.pid == pid and pid > 0 and pid != os.getpid()
    assert p.pipe == parent_fd  # the parent keeps its end
    child_id, child_pid, child_fd, child_getpid, alive = p.read(timeout=WAIT).decode().split()
    assert (int(child_id), int(child_pid), int(child_getpid)) == (p.id, pid, pid)
    assert int(child_fd) >= 0 and alive == "True"
    status = p.join(timeout=WAIT)
    assert not p.is_alive()
    assert p.exitstatus is status
    assert f"pid={pid} exited 0" in repr(p)


def test_pipe_none_has_no_fd(spawn):
    p = spawn(noop, pipe=None)
    assert p.pipe is None and p.pipe_type is None


@pytest.mark.parametrize("value, kind", [("stream", "stream"), ("dgram", "dgram"), (None, None), ("none", None),
                                         (0, None), (1, "stream"), (2, "dgram"), (" Stream ", "stream")])
def test_pipe_types_accepted(spawn, value, kind):
    assert spawn(noop, pipe=value).pipe_type == kind


def test_redirect_forces_a_stream_pipe(spawn):
    assert spawn(noop, redirect=True, pipe="dgram").pipe_type == "stream"
    assert spawn(noop, redirect=True, pipe=None).pipe_type == "stream"


# -- misuse at construction --------------------------------------------------------------------
@pytest.mark.parametrize("target", [None, 42, "print('hi')"])
def test_non_callable_target_is_refused(target):
    with pytest.raises(TypeError, match="target must be callable"):
        Process(target)


@pytest.mark.parametrize("pipe", ["udp", "SOCK_DGRAM", 3, -1, True, 1.5, b"stream"])
def test_unknown_pipe_type_is_refused(pipe):
    with pytest.raises(ValueError, match=r"unknown pipe type .*use 'stream'.*'dgram'.*None"):
        Process(noop, pipe=pipe)


def test_redirect_must_be_a_bool():
    with pytest.raises(TypeError, match="redirect must be True or False"):
        Process(noop, redirect="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "   ", 5])
def test_bad_name_is_refused(name):
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        Process(noop, name=name)


# -- lifecycle ---------------------------------------------------------------------------------
def test_a_force_that_is_not_a_bool_is_refused_before_any_fork(spawn):
    p = spawn(noop, pipe=None)
    with pytest.raises(TypeError, match=r"force must be True \(fork despite live threads\) or False, not 'yes'"):
        p.start(force="yes")
    assert p.pid is None


def test_start_twice_is_refused_while_the_child_lives(spawn):
    p = spawn(wait_for_parent)
    pid = p.start()
    with pytest.raises(ProcessStateError, match=r"already started and is still running.*join\(\) or kill\(\)"):
        p.start()
    assert p.pid == pid
    p.write(b"go")
    assert p.join(timeout=WAIT).code == 0


def test_restart_after_exit_gives_a_new_child_and_pipe(spawn):
    def target(proc: Process) -> None:
        proc.write(str(os.getpid()))

    p = spawn(target)
    first = p.start()
    assert p.read(timeout=WAIT) == str(first).encode()
    assert p.join(timeout=WAIT).pid == first
    second = p.start()
    assert second != first
    assert p.read(timeout=WAIT) == str(second).encode()
    status = p.join(timeout=WAIT)
    assert status.pid == second and p.exitstatus is status


def test_restart_reaps_an_exited_child_that_was_never_joined(spawn):
    p = spawn(noop, pipe=None)
    first = p.start()
    wait_until(lambda: gone(first), what="first child exit")
    second = p.start()
    assert second != first
    assert p.join(timeout=WAIT).pid == second


def test_join_before_start_is_refused(spawn):
    p = spawn(noop)
    with pytest.raises(ProcessStateError, match=r"never started: call start\(\) before join\(\)"):
        p.join()


def test_join_timeout_raises_timeout_error(spawn):
    p = spawn(wait_for_parent)
    p.start()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"still running after 0.2 s"):
        p.join(timeout=0.2)
    assert time.monotonic() - started < WAIT
    assert p.is_alive()
    p.write(b"go")
    assert p.join(timeout=WAIT).code == 0


@pytest.mark.parametrize("timeout, exc", [(-1, ValueError), ("1", TypeError), (True, TypeError)])
def test_join_bad_timeout(spawn, timeout, exc):
    p = spawn(noop, pipe=None)
    p.start()
    with pytest.raises(exc, match="timeout must be"):
        p.join(timeout=timeout)
    p.join(timeout=WAIT)


def test_parent_only_methods_refuse_in_the_child(spawn):
    def target(proc: Process) -> None:
        refused = []
        for call in (proc.start, proc.join, proc.stop):
            try:
                call()
            except ProcessStateError:
                refused.append(call.__name__)
        proc.write(" ".join(refused))

    p = spawn(target)
    p.start()
    assert p.read(timeout=WAIT) == b"start join stop"
    assert p.join(timeout=WAIT).code == 0


def test_stop_escalates_to_sigkill(spawn):
    def target(proc: Process) -> None:
        procmagic.signal(signal.SIGTERM, signal.SIG_IGN)
        proc.write(b"ignoring SIGTERM")
        time.sleep(WAIT * 3)

    p = spawn(target)
    p.start()
    assert p.read(timeout=WAIT) == b"ignoring SIGTERM"
    status = p.stop(grace=0.2)
    assert status.signal == signal.SIGKILL


def test_with_block_stops_the_child_and_closes_the_pipe():
    with Process(lambda proc: time.sleep(WAIT * 3)) as p:
        p.start()
    assert p.exitstatus is not None and p.exitstatus.signal == signal.SIGTERM
    assert p.pipe is None


# -- exit() and exec() -------------------------------------------------------------------------
def test_exit_in_the_child_flushes_and_ends_it():
    def target(proc: Process) -> None:
        sys.stdout.write("flushed before exit")  # no newline: only exit()'s flush sends it
        proc.exit(5)
        print("never printed")

    status, out = run(target)
    assert status.code == 5
    assert out == b"flushed before exit"


def test_exit_is_refused_in_the_parent(spawn):
    p = spawn(noop)
    with pytest.raises(ProcessStateError, match=r"exit\(\) ends the child.*use kill\(\) or stop\(\)"):
        p.exit(0)


def test_exit_code_out_of_range_is_refused_in_the_child():
    status, out = run(lambda proc: proc.exit(256))
    assert status.code == 1
    assert b"ValueError: exit code must be an int from 0 to 255, got 256" in out


def test_exec_success_replaces_the_child():
    status, out = run(lambda proc: proc.exec("/bin/sh", ["-c", "echo from sh; exit 3"]))
    assert out == b"from sh\n"
    assert status.code == 3 and status.exec_error is None


def test_exec_searches_path():
    status, out = run(lambda proc: proc.exec("sh", ["-c", "echo $0"]))
    assert status.code == 0 and out == b"sh\n"


def test_exec_env_replaces_the_environment():
    status, out = run(lambda proc: proc.exec("env", [], env={"PROCMAGIC_TEST": "42"}))
    assert status.code == 0
    assert out == b"PROCMAGIC_TEST=42\n"


def test_exec_failure_reaches_join_as_oserror(spawn):
    p = spawn(lambda proc: proc.exec("/nonexistent/procmagic-program", ["x"]), redirect=True)
    p.start()
    out = read_all(p)
    with pytest.raises(OSError) as info:
        p.join(timeout=WAIT)
    err = info.value
    assert err.errno == errno_ENOENT()
    assert err.filename == "/nonexistent/procmagic-program"
    assert err.exit_status.code == 127  # type: ignore[attr-defined]
    assert p.exitstatus is err.exit_status  # type: ignore[attr-defined]
    assert "exec failed: No such file or directory" in repr(p.exitstatus)
    assert b"exec failed" in out


def errno_ENOENT() -> int:
    import errno

    return errno.ENOENT


def test_exec_is_refused_in_the_parent(spawn):
    p = spawn(noop)
    with pytest.raises(ProcessStateError, match="must be called inside the child"):
        p.exec("/bin/true")


def test_exec_with_args_as_one_string_is_refused_in_the_child():
    status, out = run(lambda proc: proc.exec("/bin/echo", "hello"))
    assert status.code == 1
    assert b"TypeError: args must be a list of str, not a single str 'hello'" in out


# -- name, affinity, priority ------------------------------------------------------------------
def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def test_name_sets_the_title_seen_in_proc_cmdline(spawn):
    def target(proc: Process) -> None:
        proc.name("procmagic-renamed-child")
        proc.write(str(proc.name))
        proc.read(timeout=WAIT)

    p = spawn(target)
    pid = p.start()
    assert p.read(timeout=WAIT) == b"procmagic-renamed-child"
    assert b"procmagic-renamed-child" in _cmdline(pid)
    p.write(b"done")
    assert p.join(timeout=WAIT).code == 0


def test_name_given_at_creation_is_the_title_from_the_start(spawn):
    p = spawn(wait_for_parent, name="procmagic-named-at-start")
    assert p.name == "procmagic-named-at-start"
    pid = p.start()
    wait_until(lambda: b"procmagic-named-at-start" in _cmdline(pid), what="title in cmdline")
    p.write(b"done")
    status = p.join(timeout=WAIT)
    assert status.name == "procmagic-named-at-start"
    assert repr(status).startswith("ExitStatus(name='procmagic-named-at-start', id=")


def test_name_called_in_the_parent_renames_before_start(spawn):
    p = spawn(noop)
    p.name("later-name")
    assert p.name == "later-name"
    with pytest.raises(ValueError, match="a process name must be a non-empty str"):
        p.name("")


def test_affinity_before_and_after_start(spawn):
    cpus = sorted(os.sched_getaffinity(0))
    one = [cpus[-1]]

    def target(proc: Process) -> None:
        proc.write(" ".join(map(str, sorted(os.sched_getaffinity(0)))))
        proc.read(timeout=WAIT)

    p = spawn(target)
    assert p.get_affinity() == cpus
    p.set_affinity(one)
    assert p.get_affinity() == one
    p.start()
    assert p.read(timeout=WAIT) == " ".join(map(str, one)).encode()
    assert p.get_affinity() == one
    p.set_affinity(cpus)
    assert p.get_affinity() == cpus
    p.write(b"done")
    p.join(timeout=WAIT)
    with pytest.raises(ProcessStateError, match="has exited"):
        p.get_affinity()


@pytest.mark.parametrize("cpus, exc, message", [
    ([10**6], ValueError, "are not all available"),
    ([], ValueError, "are not all available"),
    (None, TypeError, "cpus must be an iterable of CPU numbers"),
    (["a"], TypeError, "cpus must be an iterable of CPU numbers"),
])
def test_bad_affinity_is_refused(spawn, cpus, exc, message):
    with pytest.raises(exc, match=message):
        spawn(noop).set_affinity(cpus)


def test_priority_before_and_after_start(spawn):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    first, second = min(base + 2, 19), min(base + 4, 19)

    def target(proc: Process) -> None:
        proc.write(str(os.getpriority(os.PRIO_PROCESS, 0)))
        proc.read(timeout=WAIT)

    p = spawn(target)
    assert p.get_priority() == base
    p.set_priority(first)
    assert p.get_priority() == first
    p.start()
    assert p.read(timeout=WAIT) == str(first).encode()
    p.set_priority(second)
    assert p.get_priority() == second
    p.write(b"done")
    p.join(timeout=WAIT)
    with pytest.raises(ProcessStateError, match="has exited"):
        p.set_priority(second)


@pytest.mark.parametrize("nice", [20, -21, True, 1.5, "5"])
def test_bad_priority_is_refused(spawn, nice):
    with pytest.raises(ValueError, match="priority must be a nice value from -20 to 19"):
        spawn(noop).set_priority(nice)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may lower nice values")
def test_lowering_priority_without_privilege_says_so(spawn):
    p = spawn(wait_for_parent)
    p.start()
    with pytest.raises(PermissionError, match="only a privileged process can"):
        p.set_priority(-20)
    p.write(b"done")
    p.join(timeout=WAIT)


# -- a failed fork -----------------------------------------------------------------------------
def test_failed_fork_raises_oserror_and_leaks_nothing():
    """Run unprivileged with RLIMIT_NPROC at 1, where fork() fails with EAGAIN."""
    code = """
        import os, resource, sys
        from procmagic import Process
        if os.geteuid() == 0:  # root ignores RLIMIT_NPROC: become nobody, who runs nothing else
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
        p = Process(lambda proc: None)
        fds = sorted(os.listdir("/proc/self/fd"))
        try:
            p.start()
        except OSError as exc:
            print(exc.errno, exc)
        else:
            p.join()
            print("forked")
        assert sorted(os.listdir("/proc/self/fd")) == fds, (fds, os.listdir("/proc/self/fd"))
        p.close()
        """
    result = python(code)
    if result.stdout.strip() == "forked":
        pytest.skip("fork() did not fail under RLIMIT_NPROC=1 here")
    assert result.returncode == 0, result.stderr
    assert re.match(r"11 \[Errno 11\] fork\(\) failed, nothing was started: .*too many processes", result.stdout)
