"""The process stack `make run` and `make test` start their children with: how it stops them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from ale_site.localstack import Stack, StopSignals

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(300)"
# A leader that leaves a child in its group behind when SIGTERM ends it.
LEAVES_A_CHILD = (
    "import subprocess, sys, time\n"
    f"child = subprocess.Popen([sys.executable, '-c', {IGNORES_SIGTERM!r}], stdout=subprocess.PIPE)\n"
    "child.stdout.readline()\n"
    "print(f'up {child.pid}', flush=True)\n"
    "time.sleep(300)\n"
)


def spawn_ready(stack: Stack, code: str) -> subprocess.Popen:
    proc = stack.spawn("child", [sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"up\n"
    return proc


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_it_kills_a_group_that_ignores_sigterm_once_the_grace_is_over():
    stack = Stack()
    proc = spawn_ready(stack, IGNORES_SIGTERM)
    started = time.monotonic()
    stack.stop(grace=1)
    assert time.monotonic() - started < 4
    assert gone(proc.pid) and not stack.processes


def test_it_stops_what_a_child_left_behind_in_its_group():
    stack = Stack()
    leader = stack.spawn("leader", [sys.executable, "-c", LEAVES_A_CHILD], stdout=subprocess.PIPE)
    word, pid = leader.stdout.readline().split()
    assert word == b"up"
    stack.stop(grace=1)
    assert gone(leader.pid) and gone(int(pid))


def test_an_interrupt_during_stop_does_not_cut_it_short():
    stack = Stack()
    proc = spawn_ready(stack, IGNORES_SIGTERM)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    # A second Ctrl-C while the clean-up waits for the child.
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        stack.stop(grace=1.5)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert gone(proc.pid) and not stack.processes


def test_a_stop_signal_while_a_child_starts_waits_until_it_is_recorded():
    signals = StopSignals()
    stack = Stack(signals=signals)
    with pytest.raises(KeyboardInterrupt):
        with signals.held():
            signals(signal.SIGTERM, None)  # arrives while the child is being started
            proc = stack.spawn("child", [sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE)
    # Raised once the start was over: the child is recorded, so the clean-up stops it.
    assert stack.processes == [("child", proc)]
    signals(signal.SIGTERM, None)  # a second signal is ignored
    stack.stop(grace=1)
    assert gone(proc.pid)
