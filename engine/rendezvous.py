"""How the data-parallel trainers of a round meet (``resources.trainer.actors`` > 1): rank 0 picks the place,
every rank joins one torch.distributed group there before TRL and accelerate start, and leaves it after.

On one node the group meets through a file (torch's FileStore) and opens no TCP port of its own: torch's
TCPStore, the other way, listens on every interface (``::``) whatever MASTER_ADDR says, with no setting for
its bind address. Across nodes only the TCPStore works, so a multi-node cluster keeps it (docs/cluster.md).
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path


def rendezvous(host: str | None) -> str:
    """Where a data-parallel group of trainers meets, chosen by rank 0 before any rank joins.

    ``host`` None (every rank on this node): ``file://`` of a new file in a new private folder, for torch's
    FileStore. A fresh name per group: a FileStore file left by a killed group would break the next
    rendezvous. Otherwise ``host:port`` for a TCPStore at rank 0 on ``host``, the one store that ranks on
    other nodes can reach (a file would need storage every node mounts, with working locks)."""
    if host is None:
        return "file://" + str(Path(tempfile.mkdtemp(prefix="candor-rendezvous-")) / "store")
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return f"{host}:{port}"


def join_group(rank: int, world_size: int, master: str, use_cpu: bool, threads: int) -> None:
    """Joins the group at ``master`` (see ``rendezvous``): a file store is joined here, before accelerate looks
    (accelerate uses a process group that already exists); a TCP one through the environment (env://)."""
    import torch

    # Under Ray each GPU actor sees only its own GPU (cuda:0); a plain multi-GPU launch sees them all.
    gpus = 0 if use_cpu else torch.cuda.device_count()
    # OMP_NUM_THREADS set keeps accelerate from raising torch's threads to all cores in every CPU worker.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank % gpus if gpus else rank),
                      OMP_NUM_THREADS=str(threads))
    if master.startswith("file://"):
        # Every rank on one node: accelerate asks a CPU group for MASTER_ADDR only when it spans nodes.
        os.environ["LOCAL_WORLD_SIZE"] = str(world_size)
        torch.distributed.init_process_group("gloo" if use_cpu else "nccl", init_method=master, rank=rank,
                                             world_size=world_size)
    else:
        host, port = master.rsplit(":", 1)
        os.environ.update(MASTER_ADDR=host, MASTER_PORT=port)


def leave_group(master: str, rank: int) -> None:
    """After training: rank 0 removes a file rendezvous's folder once every rank is past the barrier (done with
    the store). The file is not left to FileStore, which removes it when its last user frees it: the trainer's
    DDP model keeps the group alive until the actor is killed. A group that failed is killed as it is and
    leaves its folder (private, never reused) in the temporary directory."""
    import torch

    if master.startswith("file://"):
        torch.distributed.barrier()
        if rank == 0:
            shutil.rmtree(Path(master.removeprefix("file://")).parent, ignore_errors=True)
