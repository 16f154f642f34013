"""The core at work, in a plain script: fork, pipe, redirect, signals, alarms, exit statuses.

Run with `make demo`. A later issue makes the demo the tour notebook.
"""

import os
import time

import procmagic
from procmagic import Process, alarm, signal, wait


def greeter(proc):
    print(f"[child {proc.id}] hello from pid {os.getpid()}; C-level output follows")
    os.system("echo '[child] and this line came from /bin/echo'")


def ticker(proc):
    ticks = []
    signal(signal.SIGALRM, lambda signo: ticks.append(time.monotonic()))
    alarm(20_000)  # every 20 ms
    while len(ticks) < 5:
        time.sleep(0.005)
    alarm(0)
    proc.write(f"{len(ticks)} ticks".encode())


def crasher(proc):
    raise ValueError("something went wrong in the child")


print("census:", procmagic.census(), sep="\n")

p = Process(greeter, redirect=True, name="greeter")
p.start()
while chunk := p.read():
    print("parent read:", chunk.decode().rstrip())
print(p.join())

t = Process(ticker, name="ticker")
t.start()
print("ticker says:", t.read(timeout=10).decode(), "| counters:", t.counters["alarm_ticks"])
print(t.join(), "alarm ticks seen by the parent:", t.counters["alarm_ticks"])

c = Process(crasher, redirect=True, name="crasher")
c.start()
print(c.join(timeout=10), "| its stderr:", c.read(65536).decode().strip().splitlines()[-1])
c.close()

s = Process(lambda proc: time.sleep(60), name="sleeper")
s.start()
s.kill(signal.SIGKILL)
print(wait(), "<- reaped by wait(), which only ever waits for procmagic's own children")
