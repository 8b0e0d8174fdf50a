"""Process lifetimes: stopping a whole Ray cluster that Candor's tests or scripts started (every process of its
session), and workers that end with the process that started them.

Ray renames some of its processes (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) and the raylet puts
each worker in its own process group, so neither matching command lines nor killing one process group
finds them all; left behind, they made the next local cluster's job submission fail ("No available
agent"). A session survives both: start the cluster's first process with ``start_new_session=True`` and
stop it with ``stop_session(that pid)``. Ray's job supervisor runs a job's entrypoint in a session of its
own, which ends with the job.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading

import psutil


def session_processes(session: int) -> list[psutil.Process]:
    """The live processes of session ``session`` (its leader's pid), this process excluded."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return found


def stop_session(session: int, grace: float = 20) -> list[psutil.Process]:
    """SIGTERMs every process of ``session``, SIGKILLs those alive after ``grace`` seconds; returns what is
    still alive after that (empty when the session is gone whole)."""
    processes = session_processes(session)
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return session_processes(session)


def exit_with_parent() -> None:
    """Ends this process (a ``multiprocessing`` worker, such as a zoo build) when the process that started it
    dies, even by SIGKILL: an orphaned build would train on, holding a core, and the next build of the same
    model would share its folder."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (multiprocessing.connection.wait([parent.sentinel]), os._exit(1)),
                         daemon=True).start()
