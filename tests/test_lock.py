"""The run directory's lock: one driver at a time, the holder named, a dead holder's lock taken over."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.lock import RunLock, RunLocked

ROOT = Path(__file__).resolve().parent.parent
HOLDER = """
import sys, time
from engine.lock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def hold_in_child(path: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_holder_is_refused_with_the_first_ones_pid_host_and_start(tmp_path):
    path = tmp_path / "run" / "driver.lock"
    child = hold_in_child(path)
    try:
        start = time.time()
        with pytest.raises(RunLocked, match=rf"another driver is running on this run directory \(pid {child.pid} "
                                            rf"on host {socket.gethostname()}, started 20"):
            RunLock(path).acquire()
        assert time.time() - start < 1  # refused at once, not after a wait
    finally:
        child.kill()
        child.wait()


def test_the_lock_of_a_killed_holder_is_taken_over_and_names_the_new_holder(tmp_path):
    path = tmp_path / "run" / "driver.lock"
    child = hold_in_child(path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert json.loads(path.read_text())["pid"] == child.pid  # the dead holder's record is still there
    with RunLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(RunLocked):  # held: even this process cannot take it twice through another handle
            RunLock(path).acquire()
    with RunLock(path):  # released on exit
        pass
