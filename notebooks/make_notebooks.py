"""Write the teaching notebooks (``notebooks/0N-*.ipynb``) from the cells below, without outputs.

The notebooks are generated so that they stay clean (no outputs, no stray metadata, stable cell
ids the tests can find) and reviewable as plain text. Edit the cells here, then run

    .venv/bin/python notebooks/make_notebooks.py

``tests/notebooks/test_notebooks.py`` fails when a committed notebook differs from what this
script writes, and executes every notebook top to bottom in a fresh kernel.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat

HERE = Path(__file__).resolve().parent


def md(cell_id: str, text: str) -> dict[str, Any]:
    return {"id": cell_id, "type": "markdown", "source": textwrap.dedent(text).strip()}


def code(cell_id: str, text: str, *, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": cell_id, "type": "code", "source": textwrap.dedent(text).strip(), "tags": list(tags)}


# ------------------------------------------------------------------------------------------------
TOUR = [
    md("title", """
        # A tour of procmagic

        procmagic forks the Jupyter kernel you are talking to and runs a cell in the copy. It is
        Swoole's `swoole_process` brought to notebooks: the child gets a pipe and, if you want, a
        message queue to talk to the notebook; you can signal it, set alarms in it and get a real
        exit status back; and a guard refuses to fork when forking would be dangerous.

        This tour takes about ten seconds to run top to bottom. Each section shows one idea; the
        other notebooks in this folder go deeper.
        """),
    code("load", "%load_ext procmagic"),
    md("snapshot-md", """
        ## A fork is a snapshot of the kernel

        `fork()` makes a copy of the whole kernel process: its memory, your variables, the modules
        you imported, open files. The copy (the *child*) runs the body of a `%%spawn` cell; the
        original (the kernel, the *parent*) waits for it, or not (see `--bg` below). Memory is
        copied lazily (copy-on-write), so forking takes a millisecond or two even when the kernel
        holds gigabytes.

        Because it is a copy, nothing the child does changes the notebook.
        """),
    code("state", """
        import os
        scores = {"alice": 3, "bob": 5}
        print("the kernel is pid", os.getpid())
        """),
    code("first-spawn", """
        %%spawn
        print("the child is pid", os.getpid(), "and its parent is", os.getppid())
        scores["carol"] = 7          # changes the child's copy only
        print("in the child:", scores)
        """),
    md("snapshot-after-md", """
        The child saw `os` and `scores` without importing or defining anything: it *is* the kernel
        as it was when the cell ran. Above the output, procmagic shows a panel for the spawn (in
        JupyterLab a live widget: pid, state, CPU, memory, and buttons to interrupt, terminate or
        kill the child). The last line, `[procmagic] spawn-1 (id 1, pid …) exited 0 after …`, is
        the child's exit status, shown when it ended. In the notebook `scores` is untouched:
        """),
    code("state-after", "scores"),
    md("output-md", """
        ## Where output goes, and `--redirect`

        A forked child's output is a classic trap in Jupyter: ipykernel drops what a child sends
        on the kernel's sockets, and text written at the file-descriptor level lands in whichever
        cell happens to be running. procmagic carries everything the child prints over sockets of
        its own, and the kernel publishes it *in the cell that spawned the child*.

        Without options, Python's `print` and `sys.stderr` travel on procmagic's channel and
        C-level writes to fds 1 and 2 on a socket of their own. With `--redirect` the child's
        fds 0, 1 and 2 *are* its pipe to the notebook (as `swoole_process` does with
        `redirect_stdin_stdout`): `print`, `printf` in C code, `os.system` and every subprocess
        arrive in order, and the notebook can feed the child's stdin.
        """),
    code("redirect", """
        %%spawn --redirect
        import subprocess, sys
        print("print() from Python", flush=True)
        print("a line on stderr", file=sys.stderr, flush=True)
        subprocess.run(["echo", "a subprocess writes to the same pipe"])
        exit_code = os.system("uname -s")
        """),
    md("status-md", """
        ## Exit statuses: how a child ended

        Every child ends in exactly one of two ways: it *exits* with a code (0 for success), or it
        is *killed by a signal*. procmagic reports which, with the wall time, CPU time and peak
        memory (from `wait4`). The body's `sys.exit(n)` is the exit code; an uncaught exception
        shows its traceback in the cell and exits 1 (see `06-debugging-with-fork`). `--out VAR`
        hands you the child's `Process` object in the notebook.
        """),
    code("exit-3", """
        %%spawn --out quitter
        import sys
        print("giving up with code 3")
        sys.exit(3)
        """),
    code("exit-3-status", "quitter.exitstatus"),
    code("killed", """
        %%spawn --name doomed
        import signal
        os.kill(os.getpid(), signal.SIGKILL)   # nothing runs after this, not even a finally:
        """),
    md("bg-md", """
        ## Background children: `--bg`, `%procs`, `%wait`

        With `--bg` the cell returns at once and the child keeps running. Its output still lands
        in *its own* cell, even while other cells run: procmagic remembers which cell spawned it
        (the cell's parent header) and publishes everything under it. `%procs` lists the children,
        `%kill` signals them and `%wait` waits for them and shows how they ended.

        A notebook that runs top to bottom, like this one, should `%wait` for its background
        children so that their output is complete before the notebook ends.
        """),
    code("bg", """
        %%spawn --bg --name counter
        import time
        for i in range(1, 6):
            print(f"counting {i}/5", flush=True)
            time.sleep(0.4)
        """),
    code("meanwhile", """
        print("this cell runs while the child counts in the cell above")
        """),
    code("procs", "%procs"),
    code("wait", "%wait counter"),
    md("guard-md", """
        ## The guard: why procmagic sometimes refuses to fork

        `fork()` copies only the thread that calls it. If another thread holds a lock at that
        moment (the import lock, a logging handler's lock, `malloc`'s lock inside some C library),
        the child gets the lock *locked*, with no thread left to release it, and hangs the first
        time it needs it. That is why Python 3.12+ warns about forking a process with threads.

        A kernel always has threads, but ipykernel's own (IOPub, heartbeat, control, output
        capture, …) never run in the child and hold nothing it needs. procmagic's guard counts
        every live thread, allows the kernel's, and refuses when anything else is alive.
        `%forkcheck` shows what it sees:
        """),
    code("forkcheck-ok", "%forkcheck"),
    md("guard-thread-md", """
        Now start a thread of our own, the kind a library might start behind your back:
        """),
    code("start-thread", """
        import threading
        stop = threading.Event()
        watcher = threading.Thread(target=stop.wait, name="my-watcher")
        watcher.start()
        """),
    code("forkcheck-refused", "%forkcheck"),
    md("refusal-md", """
        The verdict is now *refused*, and `%%spawn` raises `ForkRefused` naming the thread. In
        your own notebook you would simply see that as the cell's error; here we run the magic
        through `run_cell_magic` and catch the refusal, so that the tour goes on when you run
        all cells.
        """),
    code("refusal", """
        import procmagic
        try:
            get_ipython().run_cell_magic("spawn", "", "print('never printed')")
        except procmagic.ForkRefused as refusal:
            print(refusal)
        """),
    md("guard-fix-md", """
        The fix is the one the message gives: stop the thread (or pass `--force` and accept the
        risk; `06-debugging-with-fork` shows a child deadlocking that way).
        """),
    code("stop-thread", """
        stop.set()
        watcher.join()
        """),
    code("spawn-again", """
        %%spawn
        print("the thread is gone: forking is safe again")
        """),
    md("next", """
        ## Where next

        - `02-pipes-and-redirect`: stream and dgram pipes, `write`/`read`, feeding stdin, `exec`.
        - `03-message-queues`: SysV queues, balance and orient modes, producers and consumers.
        - `04-signals-and-alarms`: handlers, interval timers, time-outs, `kill`/`wait`, zombies.
        - `05-worker-pools`: `%%spawn -n N`, work queues, respawn and shutdown.
        - `06-debugging-with-fork`: experiments on a copy of your state, crashes, deadlocks.

        The documentation (`make docs`, then `build/site/index.html`) has the full reference.
        """),
]

# ------------------------------------------------------------------------------------------------
PIPES = [
    md("title", """
        # Pipes and redirection

        Every procmagic child can have a pipe to its parent: a Unix socketpair, made before the
        fork, with one end in each process (as in `swoole_process`). It comes in three kinds:

        | `pipe=` | what it is | use it for |
        |---|---|---|
        | `"dgram"` (default) | a datagram socketpair: message boundaries are kept | messages: one `write` is one `read` |
        | `"stream"` | a byte stream, like a shell pipe | bulk bytes, text lines, stdio |
        | `None` | no pipe | children that only print, or talk through a queue |

        This notebook uses both the plain-Python API (`procmagic.Process`, the same in a script)
        and the `%%spawn` magic.
        """),
    code("load", """
        %load_ext procmagic
        import sys, time
        from procmagic import Process
        """),
    md("kinds-md", """
        ## Stream versus dgram

        The child below writes three words, then exits. The parent reads until end of file
        (`read()` returns `b""`). On the dgram pipe each `write` arrives as its own message; on
        the stream pipe the bytes run together, and you would need your own framing (lines,
        length prefixes) to split them again.
        """),
    code("kinds", """
        def talk(p):
            for word in [b"one", b"two", b"three"]:
                p.write(word)

        for kind in ["dgram", "stream"]:
            p = Process(talk, pipe=kind)
            p.start()
            p.join()                      # the child has exited; what it wrote waits in the pipe
            received = []
            while (chunk := p.read()):    # b"" means end of file
                received.append(chunk)
            print(f"{kind:6}: {received}")
        """),
    md("kinds-after-md", """
        A datagram must fit in the socket's buffer (some hundreds of KB on Linux): for bulk data,
        use a stream. `read()` never blocks forever once the child is gone: Swoole's own
        implementation keeps the child's end open in the parent, so a read after the child died
        hangs; procmagic closes it at once.
        """),
    md("both-ways-md", """
        ## Talking both ways with a running child

        With `%%spawn`, `proc` in the body is the child's own `Process`: `proc.write()` and
        `proc.read()` use the child's end of the pipe. `--out echo` gives the notebook the other
        end. Here the child is a small echo server running in the background:
        """),
    code("echo-server", """
        %%spawn --bg --name echo --out echo
        while True:
            message = proc.read()          # waits for the notebook
            if not message:                # end of file: the notebook closed its side
                break
            proc.write(message.upper())
        print("echo: end of file, bye")
        """),
    code("echo-talk", """
        for word in ["ping", "hello, child"]:
            echo.write(word)               # str is sent as UTF-8
            print(echo.read(timeout=5))
        echo.close("write")                # the child's read() now returns b""
        """),
    code("echo-wait", "%wait echo"),
    md("timeouts-md", """
        ## Time-outs and non-blocking reads

        `read(timeout=S)` raises `TimeoutError` when nothing arrives in time; `set_timeout(S)`
        makes that the default. After `set_blocking(False)`, `read()` and `write()` raise
        `BlockingIOError` instead of waiting. `stop()` ends a child: SIGTERM, then SIGKILL after a
        grace period.
        """),
    code("timeouts", """
        quiet = Process(lambda p: time.sleep(5))
        quiet.start()
        try:
            quiet.read(timeout=0.3)
        except TimeoutError as err:
            print("TimeoutError:", err)
        quiet.set_blocking(False)
        try:
            quiet.read()
        except BlockingIOError as err:
            print("BlockingIOError:", err)
        print(quiet.stop(grace=1))
        """),
    md("redirect-md", """
        ## Redirect: the pipe becomes stdin, stdout and stderr

        With `redirect=True` procmagic `dup2`s the child's end of a stream pipe onto its file
        descriptors 0, 1 and 2. Whatever the child prints, at any level, comes out of the
        parent's `read()`; whatever the parent `write()`s is the child's stdin. `close("write")`
        shuts the parent's sending side, which the child reads as end of file.
        """),
    code("shout", """
        def shout(p):
            for line in sys.stdin:
                print(line.strip().upper(), flush=True)

        p = Process(shout, redirect=True)
        p.start()
        p.write("hello\\nworld\\n")
        p.close("write")                  # end of file on the child's stdin
        output = b""
        while (chunk := p.read(timeout=5)):
            output += chunk
        print(output.decode(), p.join())
        """),
    md("spawn-redirect-md", """
        `%%spawn --redirect` does the same, and procmagic reads the pipe for you: the child's
        output streams into the cell, so the notebook's `read()` on it is refused (it would steal
        output from the cell). `write()` still feeds the child's stdin, here while the child runs
        in the background:
        """),
    code("upper-spawn", """
        %%spawn --redirect --bg --name upper --out upper
        import sys
        for line in sys.stdin:
            print("child read:", line.strip().upper(), flush=True)
        print("stdin closed, exiting")
        """),
    code("upper-feed", """
        upper.write("first line\\n")
        upper.write("second line\\n")
        upper.close("write")
        """),
    code("upper-wait", "%wait upper"),
    md("exec-md", """
        ## `exec`: replace the child with another program

        `proc.exec(path, args)` replaces the child's program, as `swoole_process::exec` does
        (`args` excludes `argv[0]`; `path` is looked up in `PATH`). It keeps the pid, the process
        group and the pipe, so with a redirect the program's output is the pipe's, and its exit
        code is the child's.
        """),
    code("exec-core", """
        p = Process(lambda p: p.exec("sh", ["-c", "echo hello from sh; exit 4"]), redirect=True)
        p.start()
        print(p.read(timeout=5), p.join())
        """),
    code("exec-spawn", """
        %%spawn --redirect
        proc.exec("uname", ["-s", "-m"])
        """),
    md("exec-fail-md", """
        If `exec` fails (no such program, not executable), the error travels back to the parent
        over a close-on-exec pipe, as in CPython's `subprocess`, and `join()` raises the same
        `OSError`; the status is on the exception. (The child also reports it on its stderr, which
        for a plain `Process` is the kernel's: that line may show up here too.)
        """),
    code("exec-fail", """
        p = Process(lambda p: p.exec("no-such-program"))
        p.start()
        try:
            p.join()
        except OSError as err:
            print(repr(err))
            print(err.exit_status)
        """),
]

# ------------------------------------------------------------------------------------------------
QUEUES = [
    md("title", """
        # Message queues

        A pipe joins two processes. A *message queue* is a mailbox that lives in the operating
        system: any number of processes can put messages in and take them out, each message has a
        positive *type*, and a reader can ask for one type only. `swoole_process` offers System V
        queues (`useQueue`, `push`, `pop`); procmagic does too, through the `sysv_ipc` package.

        Worth knowing about SysV queues before using them:

        - a message is at most `kernel.msgmax` bytes (8192 here) and a queue holds `kernel.msgmnb`
          bytes (16 KiB); raising that needs privilege. A full queue makes `push` wait;
        - a queue has no file descriptor, so an event loop cannot watch it;
        - a queue outlives the process that made it. Swoole made them world-writable and let them
          leak until the system ran out; procmagic makes them private to your user (`0o600`),
          records every queue it creates and removes it when it is freed, when its owner exits,
          or with `sweep_queues()` once its owner is dead.
        """),
    code("load", """
        %load_ext procmagic
        import time
        from procmagic import Process, queues, sweep_queues
        """),
    md("basics-md", """
        ## Push, pop, and a look inside

        `use_queue()` with no key creates a private queue. `nowait=True` makes `pop` raise
        `QueueEmpty` (and `push` raise `QueueFull`) instead of waiting. `stat_queue()` is
        swoole's `statQueue`: what waits, the capacity, who sent and received last.
        """),
    code("basics", """
        box = Process(lambda p: None)           # a Process that owns the queue handle; never started
        box.use_queue(nowait=True)
        for i in range(3):
            box.push(f"job {i}")
        print(box.stat_queue())
        print([box.pop() for _ in range(3)])
        try:
            box.pop()
        except Exception as err:
            print(type(err).__name__ + ":", err)
        """),
    code("full", """
        chunk = b"x" * 8192                      # the largest message allowed here
        try:
            for n in range(1, 4):
                box.push(chunk)
                print(f"pushed message {n}")
        except Exception as err:
            print(type(err).__name__ + ":", err)
        print("queues this kernel made:", [q.id for q in queues() if q.mine])
        box.free_queue()
        print("after free_queue():     ", [q.id for q in queues() if q.mine])
        """),
    md("balance-md", """
        ## Balance mode: producers and consumers

        In `mode="balance"` (the default) `pop()` takes the oldest message of any type, so
        whichever consumer is free takes the next job: that is how a queue shares work.

        `%%spawn --queue` gives all the children of a spawn one private queue, reachable in the
        body as `proc.push()` / `proc.pop()`, removed when the spawn ends. With `-n 4`, worker 0
        is the producer here and workers 1 to 3 are cooks. Each cook stops at the "closing time"
        note, so the producer pushes one per cook.
        """),
    code("kitchen", """
        %%spawn -n 4 --queue --name kitchen
        import time
        if proc.worker == 0:
            for order in range(12):
                proc.push(f"order {order}")
            for _ in range(3):
                proc.push("closing time")
            print("producer: 12 orders and 3 closing notes pushed")
        else:
            served = []
            while (note := proc.pop().decode()) != "closing time":
                served.append(note.split()[1])
                time.sleep(0.05)                 # cooking takes a while
            print(f"cook {proc.worker} served orders {', '.join(served)}")
        """),
    md("kitchen-after-md", """
        Each line is labelled with the worker that printed it (`[1]`, `[2]`, …). Which cook got
        which order depends on timing; together they served all twelve. The queue is gone:
        """),
    code("kitchen-gone", "[q.id for q in queues() if q.mine]"),
    md("parent-producer-md", """
        The notebook can be the producer too. `--out` gives it the workers' `Process` objects, and
        any of them reaches the spawn's queue; here three background workers wait for jobs that
        the next cell sends.
        """),
    code("crew", """
        %%spawn --bg -n 3 --queue --name crew --out crew
        import time
        done = 0
        while (job := proc.pop()) != b"stop":
            done += int(job)
            time.sleep(0.02)
        print(f"worker {proc.worker}: total {done}")
        """),
    code("crew-feed", """
        for n in range(1, 31):
            crew[0].push(str(n))
        for _ in crew:
            crew[0].push("stop")
        print("pushed the numbers 1..30 (they add up to 465) and one stop per worker")
        """),
    code("crew-wait", "%wait crew"),
    md("orient-md", """
        ## Orient mode: addressed messages

        In `mode="orient"` every message is typed with its receiver's id and each process pops
        only its own (swoole's `MSGQUEUE_ORIENT`). In the parent, `p.push(data)` goes to `p`'s
        child and `p.pop()` takes what children sent to the parent; in a child, `proc.push()` goes
        to the parent and `proc.pop()` takes what was sent to `proc.id`. `to=` addresses any
        process explicitly.

        Two children share one queue here (`use_queue(q)` joins an existing queue). Each one only
        sees the numbers sent to it.
        """),
    code("orient", """
        def squarer(p):
            while (msg := p.pop()) != b"stop":
                n = int(msg)
                p.push(f"{p.name} squared {n}: {n * n}")

        a = Process(squarer, name="a")
        b = Process(squarer, name="b")
        q = a.use_queue(mode="orient")
        b.use_queue(q, mode="orient")
        a.start(); b.start()
        a.push("2"); a.push("3")
        b.push("10")
        a.push("stop"); b.push("stop")
        for _ in range(3):
            print(a.pop())                     # everything addressed to the parent
        print(a.join())
        print(b.join())
        a.free_queue()
        """),
    md("counters-md", """
        ## Traffic counters

        Each child counts its pushes and pops (and bytes) in a small block of shared memory that
        the parent reads at any moment, without a system call on the hot path. These are the
        figures the `%procs` dashboard's queue part is built on:
        """),
    code("counters", """
        for p in (a, b):
            c = p.counters
            print(p.name, {k: c[k] for k in ("pushes", "pops", "bytes_pushed", "bytes_popped")})
        """),
    md("hygiene-md", """
        ## Cleaning up

        - A private `%%spawn --queue` is removed when the spawn ends.
        - A queue you create with `use_queue()` lives until `free_queue()`, or until the kernel
          exits (procmagic removes it then).
        - `queues()` lists the queues procmagic made for your user that still exist (`mine` marks
          this kernel's);
          `sweep_queues()` removes those whose owner died without cleaning up (a kernel killed
          with SIGKILL, say). It recognises them by the records procmagic keeps, and never touches
          anyone else's queue.
        """),
    code("hygiene", """
        print("queues this kernel still has:", [q for q in queues() if q.mine])
        print("leftovers of dead owners swept:", sweep_queues())
        """),
]

# ------------------------------------------------------------------------------------------------
SIGNALS = [
    md("title", """
        # Signals, alarms, time-outs and zombies

        A signal is the operating system's way of poking a process: `SIGTERM` asks it to end,
        `SIGKILL` ends it without asking, `SIGUSR1` means whatever the program decides, `SIGALRM`
        is a timer going off. A process can install a *handler* for most signals; `SIGKILL` and
        `SIGSTOP` can never be caught.

        procmagic's `signal()`, `alarm()`, `kill()` and `wait()` follow `swoole_process`'s, in
        Python's idiom.
        """),
    code("load", """
        %load_ext procmagic
        import asyncio, os, time, warnings
        import psutil
        from procmagic import Process, alarm, kill, signal, wait
        """),
    md("handlers-md", """
        ## Handlers in a child

        The child below handles `SIGUSR1` (it counts) and `SIGTERM` (it cleans up and exits 0
        instead of dying). A signal sent *before* the handler is installed would still meet the
        default action, so the child tells the notebook over its pipe when it is ready, and the
        notebook waits for that before signalling.
        """),
    code("patient", """
        %%spawn --bg --name patient --out patient
        import time
        from procmagic import signal
        count = 0
        def on_usr1(signum):
            global count
            count += 1
            print(f"got {signal.Signals(signum).name} #{count}", flush=True)
        def on_term(signum):
            print("SIGTERM: cleaning up, exiting 0", flush=True)
            raise SystemExit(0)
        signal(signal.SIGUSR1, on_usr1)
        signal(signal.SIGTERM, on_term)
        proc.write("ready")
        while True:
            time.sleep(0.1)
        """),
    code("patient-ready", """
        print(patient.read(timeout=5))             # wait until the handlers are in place
        kill(patient.pid, signal.SIGUSR1)          # procmagic.kill, swoole's Process::kill
        time.sleep(0.2)
        """),
    code("patient-kill-usr1", "%kill -s USR1 patient"),
    code("patient-kill-term", "%kill patient"),
    code("patient-wait", "%wait patient"),
    md("reserved-md", """
        `signal(sig, None)` restores the default, `signal.SIG_IGN` ignores a signal, and a
        second registration replaces the first. Some signals are refused, with the reason:
        """),
    code("reserved", """
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGKILL):
            try:
                signal(sig, print)
            except ValueError as err:
                print(err)
        """),
    md("alarms-md", """
        ## Alarms: interval timers and their ticks

        `alarm(usec)` starts a repeating interval timer, in microseconds like swoole's (it is
        `setitimer`): every `usec` the process gets `SIGALRM`; `alarm(0)` clears it. Install a
        handler first: at its default action the first tick would kill the process, so procmagic
        refuses an alarm without one.
        """),
    code("alarm-refused", """
        try:
            alarm(100_000)
        except ValueError as err:
            print(err)
        """),
    code("metronome", """
        %%spawn --bg --name metronome --out metronome
        import time
        from procmagic import signal, alarm
        ticks = 0
        def tick(signum):
            global ticks
            ticks += 1
        signal(signal.SIGALRM, tick)
        alarm(100_000)            # every 100 ms
        time.sleep(1.55)
        alarm(0)
        print(f"{ticks} ticks in 1.55 s")
        """),
    md("ticks-md", """
        While it runs, the notebook can watch the ticks: procmagic counts them in shared memory
        (the same counters as the queues' traffic), with the timer's interval.
        """),
    code("ticks", """
        time.sleep(0.5)
        counters = metronome.counters
        print(f"after about 0.5 s: {counters['alarm_ticks']} ticks, interval {counters['alarm_interval_us']} us")
        """),
    code("metronome-wait", "%wait metronome"),
    md("timeout-md", """
        ## Time-outs

        `%%spawn --timeout S` sends SIGTERM after `S` seconds, then SIGKILL if the child is still
        alive after a grace period (`%config ProcMagics.term_grace`, 2 s by default). The status
        says it timed out. The second child ignores SIGTERM, so it takes the SIGKILL.
        """),
    code("timeout", """
        %%spawn --timeout 0.5
        import time
        time.sleep(30)
        """),
    code("timeout-stubborn", """
        %%spawn --timeout 0.5
        import time
        from procmagic import signal
        signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(30)
        """),
    md("kill-wait-md", """
        ## `kill` and `wait` from Python

        `kill(pid, sig)` sends a signal and answers whether it was sent; signal 0 only probes.
        `wait()` reaps the next of *procmagic's* children to end and returns its `ExitStatus`.
        Unlike swoole's `wait()` (and `os.wait()`), it never reaps a child that belongs to someone
        else, such as `subprocess`'s or `multiprocessing`'s.
        """),
    code("kill-wait", """
        sleepers = [Process(lambda p: time.sleep(60), name=f"sleeper-{i}") for i in range(3)]
        for s in sleepers:
            s.start()
        print("alive?", kill(sleepers[0].pid, 0))
        kill(sleepers[0].pid, signal.SIGTERM)
        kill(sleepers[1].pid, signal.SIGKILL)
        sleepers[2].kill(signal.SIGHUP)            # the same, from the Process
        for _ in range(3):
            print(wait())
        print("anything left?", wait(blocking=False))
        """),
    md("zombie-md", """
        ## What a zombie is, and why procmagic leaves none

        When a process ends, the kernel keeps a small record of it (its pid and exit status) until
        its parent collects it with `wait`. Until then it is a *zombie*: dead, but still in the
        process table. A Jupyter kernel never collects children it did not expect, so every child
        forked by hand stays a zombie until the kernel exits: 200 forks, 200 zombies.

        Here is one, made with a raw `os.fork()` (safe only because the child exits at once and
        touches nothing):
        """),
    code("zombie", """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # Python 3.12+ warns about fork
            pid = os.fork()
        if pid == 0:
            os._exit(0)
        time.sleep(0.2)
        print(f"pid {pid} is a {psutil.Process(pid).status()}")
        print("collected:", os.waitpid(pid, 0))
        print("still there?", psutil.pid_exists(pid))
        """),
    md("no-zombie-md", """
        procmagic opens a *pidfd* for each child (a file descriptor that becomes readable when the
        child ends) and the kernel's event loop watches it, so each child is reaped as soon as it
        ends and the kernel is idle, with no `SIGCHLD` handler and no `waitpid(-1)` that could steal
        other libraries' children. `await asyncio.sleep` below lets the loop run:
        """),
    code("no-zombie-spawn", """
        %%spawn --bg --name brief --out brief
        pass
        """),
    code("no-zombie-check", """
        await asyncio.sleep(0.3)
        print(brief.exitstatus)
        print("still in the process table?", psutil.pid_exists(brief.pid))
        zombies = [c.pid for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]
        print("zombie children of this kernel:", zombies)
        """),
]

# ------------------------------------------------------------------------------------------------
POOLS = [
    md("title", """
        # Worker pools

        Forking is the cheapest way to run the same code many times in parallel on Linux: each
        worker starts with everything the notebook has, and nothing has to be pickled to get
        there. This notebook covers fan-out with `%%spawn -n N`, a shared work queue, and the
        pools (`Pool`, `Manager`) that keep workers alive (respawn) and stop them (shutdown).
        """),
    code("load", """
        %load_ext procmagic
        import os, time
        from procmagic import signal
        from procmagic import Manager, Pool
        """),
    md("fanout-md", """
        ## `%%spawn -n N`: one body, N workers

        Every worker runs the same body; `proc.worker` is its index (0 … N-1), so each can take its
        share of the data. Output lines are labelled with the worker. Each worker sends its result
        back on its pipe, and `--out` gives the notebook the list of workers to collect from:
        a fan-out, then a fan-in. The data (`numbers`) is not sent anywhere: every worker already
        has it, because it is a copy of the kernel.
        """),
    code("data", """
        numbers = list(range(1, 2_000_001))
        N = 4
        """),
    code("fanout", """
        %%spawn -n 4 --name summer --out summers
        share = numbers[proc.worker::N]
        total = sum(x * x for x in share)
        proc.write(str(total))
        print(f"{len(share)} numbers, sum of squares {total}")
        """),
    code("fanin", """
        parts = [int(w.read(timeout=5)) for w in summers]
        print("sum of squares from the workers:", sum(parts))
        print("checked in the kernel:          ", sum(x * x for x in numbers))
        """),
    md("workqueue-md", """
        ## A work queue

        Splitting by index is fine when every item costs the same. When they do not, let the
        workers *take* work from a shared queue (`--queue`, balance mode): a free worker takes the
        next job, so a slow job does not hold up a whole share. The notebook pushes jobs of uneven
        size and one "stop" per worker.
        """),
    code("workqueue", """
        %%spawn --bg -n 3 --queue --name crew --out crew
        import time
        done = []
        while (job := proc.pop()) != b"stop":
            seconds = int(job) / 100
            time.sleep(seconds)                  # a job of uneven size
            done.append(job.decode())
        print(f"worker {proc.worker} did jobs {' '.join(done)}")
        """),
    code("workqueue-feed", """
        for size in [30, 2, 2, 2, 25, 2, 2, 2, 2, 20, 2, 2]:
            crew[0].push(str(size))
        for _ in crew:
            crew[0].push("stop")
        """),
    code("workqueue-wait", "%wait crew"),
    md("pool-md", """
        ## `Pool`: workers that are kept running

        `%%spawn -n N` runs a body N times and is done. A *pool* (Swoole's `Process\\Pool`) keeps
        N workers alive and sends them messages: each worker runs `on_message(pool, data)` for
        every message it receives, and `pool.send(worker_id, data)` addresses one worker (over a
        SysV queue in orient mode, with `ipc="queue"`). The notebook supervises the pool with
        `pool.wait(timeout)`, a loop that sleeps on the workers' pidfds (procmagic starts no
        thread), and stops it with `shutdown()`.

        Pool workers are plain `Process` children, not `%%spawn` children: in a kernel, what they
        print would land wherever the kernel's own output capture puts it. So we run each pool
        *inside* a `%%spawn` cell: the spawned child is the pool's parent, the workers inherit its
        output, and everything lands in this cell. The notebook stays free while the pool runs,
        and the pool cannot outlive the kernel.
        """),
    code("pool", """
        %%spawn --name squares
        def on_message(pool, data):
            n = int(data)
            print(f"worker {pool.worker_id}: {n} squared is {n * n}", flush=True)

        pool = Pool(3, ipc="queue", on_message=on_message, name="squares")
        pool.start(block=False)                      # block=True would supervise until shutdown
        for n in range(6):
            pool.send(n % 3, str(n))                 # worker n % 3 gets n
        pool.wait(timeout=0.5)                       # supervise for half a second
        print(pool)
        for worker_id, status in sorted(pool.shutdown(timeout=2).items()):
            print(worker_id, status)
        """),
    md("respawn-md", """
        ## Respawn, with a back-off

        When a worker ends, the pool forks a new one in its place. Swoole does that at once, so a
        worker that crashes as it starts becomes a fork storm: thousands of forks a second.
        procmagic waits first, and doubles the wait each time the same worker fails again
        (`backoff`, up to `max_backoff`); a worker that lived a while starts again from the
        shortest wait. Below, worker 1 crashes as soon as it starts; watch the gaps grow.
        """),
    code("respawn", """
        %%spawn --name flaky
        started = time.monotonic()

        def work(pool, worker_id):
            if worker_id == 1:
                time.sleep(0.05)
                os._exit(3)                          # a crash
            while True:
                time.sleep(0.1)

        def on_worker_exit(pool, worker_id, status):
            print(f"{time.monotonic() - started:5.2f} s  worker {worker_id} {status.how}")

        pool = Pool(2, work, on_worker_exit=on_worker_exit, backoff=0.1, max_backoff=1.0, name="flaky")
        pool.start(block=False)
        pool.wait(timeout=2)
        final = pool.shutdown(timeout=1)
        print("after shutdown:", {wid: st.how for wid, st in final.items()})
        """),
    md("manager-md", """
        ## `Manager`: different functions, one pool

        Swoole's `Process\\Manager` runs a *different* function in each worker: `add(func)` one,
        `add_batch(n, func)` n of them; each runs as `func(pool, worker_id)`. With
        `respawn=False` a worker that returns is not replaced, and `wait()` returns True once they
        all have.
        """),
    code("manager", """
        %%spawn --name manager
        def fetch(pool, worker_id):
            print(f"worker {worker_id}: fetching", flush=True)

        def index(pool, worker_id):
            print(f"worker {worker_id}: indexing", flush=True)

        manager = Manager(respawn=False)
        manager.add(fetch)
        manager.add_batch(2, index)
        manager.start(block=False)
        print("all done:", manager.wait(timeout=10))
        print([(wid, st.how) for wid, st in manager.pool.statuses])
        """),
    md("shutdown-md", """
        ## Shutdown: asking, then insisting

        To stop workers, ask first (SIGTERM, which a worker may handle to finish cleanly), and
        insist after a grace period (SIGKILL, which it cannot refuse). `Process.stop(grace)` does
        exactly that; `%kill` and `%wait` do it by hand for `%%spawn` children, and a kernel
        shutdown or restart does it for every child left. Below, worker 1 ignores SIGTERM and is
        killed after the grace period.
        """),
    code("shutdown-spawn", """
        %%spawn --bg -n 3 --name service --out service
        import time
        from procmagic import signal
        if proc.worker == 1:
            signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn worker
        proc.write("up")
        while True:
            time.sleep(0.1)
        """),
    code("shutdown", """
        for w in service:
            w.read(timeout=5)                        # every worker is up and set
        started = time.monotonic()
        for w in service:
            print(w.stop(grace=1.0))
        print(f"all stopped in {time.monotonic() - started:.1f} s")
        """),
    code("shutdown-wait", "%wait service"),
]

# ------------------------------------------------------------------------------------------------
DEBUGGING = [
    md("title", """
        # Debugging with fork

        A fork is a free snapshot of everything the notebook holds. That makes it a good tool for
        debugging: try a risky change on a copy and throw the copy away, let a crash happen
        somewhere it cannot hurt the kernel, and see exactly how a process died. It also shows,
        by breaking on purpose, why procmagic refuses to fork while threads are alive.
        """),
    code("load", """
        %load_ext procmagic
        import procmagic
        """),
    md("copy-md", """
        ## Try a risky change on a copy

        Say the notebook holds data that took a long time to build, and a function you are not
        sure about changes it in place. Run it in a child: the child works on its own copy of the
        data (copy-on-write: only the pages it changes are copied), and the notebook's stays as
        it was, whatever happens.
        """),
    code("state", """
        orders = [{"id": i, "price": 10.0 + i} for i in range(5)]

        def apply_discount(rows, percent):
            for row in rows:                      # changes the rows in place!
                row["price"] = round(row["price"] * (1 - percent / 100), 2)
            return rows
        """),
    code("try-on-copy", """
        %%spawn --out trial
        import json
        apply_discount(orders, 20)
        print("in the child:", [o["price"] for o in orders])
        del orders[0]                             # even this touches only the copy
        proc.write(json.dumps(orders))            # send back what we want to keep
        print("sent", len(orders), "orders back")
        """),
    code("after-copy", """
        import json
        print("in the kernel:", [o["price"] for o in orders])
        kept = json.loads(trial.read())
        print("what the child sent back:", [o["id"] for o in kept])
        """),
    md("crash-md", """
        ## A crashing child: its traceback and its exit status

        An exception the body does not catch ends the child with exit code 1, and its traceback
        appears in the cell as an ordinary error, formatted by IPython: you read it the way you
        read any traceback in a notebook. The kernel itself is unaffected.

        (This cell is tagged `raises-exception`, which tells tools that run notebooks top to
        bottom that the error is expected.)
        """),
    code("crash", """
        %%spawn --name crasher
        def parse(record):
            return int(record["quantity"])

        for record in [{"quantity": "3"}, {"quantity": "three"}]:
            print("parsed", parse(record))
        """, tags=("raises-exception",)),
    code("crash-status", """
        status = procmagic.get("crasher").exitstatus
        print(status)
        print("code:", status.code, "| signal:", status.signal, "| ok:", status.ok)
        """),
    md("segv-md", """
        A crash in C code is harsher: the process is killed by a signal (`SIGSEGV` for a bad
        memory access), Python gets no chance to raise, and there is no traceback unless you ask
        for one. `faulthandler` prints Python's stack on such a crash, at the file-descriptor
        level, which procmagic carries to the cell like any other output.

        Look at the bottom of that stack: below the body's frames are IPython's, ipykernel's and
        procmagic's own `spawn`. The child really is the kernel, forked in the middle of running
        the `%%spawn` cell.
        """),
    code("segv", """
        %%spawn --name segfault
        import ctypes, faulthandler
        faulthandler.enable()
        def read_address_zero():
            return ctypes.string_at(0)            # dereferences a NULL pointer
        read_address_zero()
        """),
    code("segv-status", """
        status = procmagic.get("segfault").exitstatus
        print(status.how, "| signal:", status.signal, "| returncode:", status.returncode)
        """),
    md("hang-md", """
        A child that hangs does not hang the notebook if you give it a `--timeout`: it is sent
        SIGTERM, then SIGKILL, and the cell goes on.
        """),
    code("hang", """
        %%spawn --timeout 1
        while True:
            pass
        """),
    md("deadlock-md", """
        ## Why forking with live threads is refused

        `fork()` copies the memory of the whole process but only *one* thread: the one that
        called it. A lock held by any other thread at that instant is copied as held, and no
        thread in the child will ever release it.

        The thread below holds `lock` for three seconds. `--force` tells procmagic to fork anyway
        (you get a `ForkWarning` naming the thread). The child then tries to take the lock and
        waits forever: the thread that would release it does not exist in the child. Only the
        time-out ends it.
        """),
    code("lock-holder", """
        import threading, time
        lock = threading.Lock()

        def hold_the_lock():
            with lock:
                time.sleep(3)

        holder = threading.Thread(target=hold_the_lock, name="lock-holder")
        holder.start()
        time.sleep(0.1)                           # make sure it holds the lock
        """),
    code("deadlock", """
        %%spawn --force --timeout 1
        print("child: taking the lock...", flush=True)
        with lock:
            print("never printed: the lock is never released in the child")
        """),
    md("deadlock-after-md", """
        In your own code the lock is rarely yours: it is the `logging` module's, the import
        system's, or one inside a C library (`malloc`, OpenSSL, BLAS), held for a microsecond by a
        thread that happens to be running at the instant of the fork. Such a child hangs only
        sometimes, which is worse. That is why the guard refuses instead of hoping, and names each
        thread so you can stop it. `%forkcheck` shows the same census at any time:
        """),
    code("forkcheck", "%forkcheck"),
    code("holder-join", """
        holder.join()
        """),
    md("executor-md", """
        A common culprit is a `concurrent.futures.ThreadPoolExecutor` whose threads stay alive
        after the work is done. The refusal says so, and how to fix it:
        """),
    code("executor", """
        from concurrent.futures import ThreadPoolExecutor
        executor = ThreadPoolExecutor(max_workers=2)
        print(list(executor.map(abs, [-1, -2, -3])))
        try:
            get_ipython().run_cell_magic("spawn", "", "print('never printed')")
        except procmagic.ForkRefused as refusal:
            print(refusal)
        executor.shutdown(wait=True)
        """),
    code("after-executor", """
        %%spawn
        print("executor shut down: forking is safe again")
        """),
]

NOTEBOOKS = {
    "01-tour.ipynb": TOUR,
    "02-pipes-and-redirect.ipynb": PIPES,
    "03-message-queues.ipynb": QUEUES,
    "04-signals-and-alarms.ipynb": SIGNALS,
    "05-worker-pools.ipynb": POOLS,
    "06-debugging-with-fork.ipynb": DEBUGGING,
}


def build(cells: list[dict[str, Any]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    seen = set()
    for cell in cells:
        if cell["id"] in seen:
            raise ValueError(f"duplicate cell id {cell['id']!r}")
        seen.add(cell["id"])
        if cell["type"] == "markdown":
            node = nbformat.v4.new_markdown_cell(cell["source"], id=cell["id"])
        else:
            node = nbformat.v4.new_code_cell(cell["source"], id=cell["id"])
            if cell["tags"]:
                node.metadata["tags"] = cell["tags"]
        nb.cells.append(node)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The text of notebook ``name`` as this script writes it."""
    return nbformat.writes(build(NOTEBOOKS[name])) + "\n"


def main() -> int:
    for name in NOTEBOOKS:
        path = HERE / name
        text = render(name)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
