"""One driver per run directory: ``RUN/driver.lock``, held with ``flock`` for as long as the driver lives.

A second driver on the same run directory (a resubmitted ``ray job submit`` while the first job still runs,
say) is refused at once with the holder's pid, host and start time, before it writes anything. The lock is
the kernel's, tied to the open file: when the holder dies, even by SIGKILL, the kernel releases it, so a
lock left by a dead process is simply taken by the next driver (no pid guessing, no race between two
drivers that both find it stale). The file's text only names the holder for that message. ``flock`` is
per machine: two drivers on two machines sharing a network file system are not kept apart by it.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


class RunLocked(RuntimeError):
    """Another live driver holds the run directory."""


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory's lock (creating the directory) or raises RunLocked."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self.path)
            os.close(fd)
            raise RunLocked(f"{self.path.parent}: another driver is running on this run directory "
                            f"({holder}); wait for it to finish or stop it, or use another --run-dir") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock; the file stays, naming the last holder
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text())
        return f"pid {h['pid']} on host {h['host']}, started {h['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder not recorded yet"
