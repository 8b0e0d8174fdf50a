"""Fault injection for the kill-anywhere resume tests: the process SIGKILLs itself at one named point.

The run store calls ``point(name, round_index)`` before and after each shard write, before each JSON/JSONL
write and before each ``_SUCCESS``. ``CANDOR_FAULT`` names the point to die at, either for any round
(``write:sample:1``, ``done:pairs``) or for one round (``done:eval@0``). Point names:

    write:<stage>:<shard>   before shard <shard> of <stage> is written
    wrote:<stage>:<shard>   after it is written (between shards of a sharded stage)
    done:<stage>            before the stage's ``_SUCCESS``
    write:<relative path>   before a JSON/JSONL file of the run (e.g. write:rounds/001/eval/metrics.json)

SIGKILL (not an exception) because that is what a crash, the OOM killer or a preempted node does: no
``finally`` block and no atexit handler runs.
"""
from __future__ import annotations

import os
import signal

ENV = "CANDOR_FAULT"


def point(name: str, round_index: int | None = None) -> None:
    """Dies here when ``CANDOR_FAULT`` is ``name`` or ``name@<round_index>``."""
    wanted = os.environ.get(ENV)
    if wanted and (wanted == name or (round_index is not None and wanted == f"{name}@{round_index}")):
        os.kill(os.getpid(), signal.SIGKILL)
