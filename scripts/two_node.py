"""A two-node Ray cluster on this machine, and a run that loses a node mid-round.

    PYTHONPATH=$PWD nice -n 15 .venv/bin/python scripts/two_node.py [--workdir DIR]

Starts a head node (2 CPUs, custom resource ``head``) and a worker node (1 CPU, ``worker``): two raylets
with their own resources, sockets on 127.0.0.1, the dashboard on 127.0.0.1 (for Ray's state API). Then:

1. a relative run directory is refused (the cluster has 2 nodes);
2. a reference small-zoo round with the sampler pinned to the worker node and the trainer to the head
   (``resources.<role>.custom_resources``), its actors' placement read back from ``ray.util.state``;
3. the same round in a second run directory, whose worker node is killed (its raylet and workers, no
   graceful exit) while the sample stage runs: the driver stops (``resources.max_restarts=0``: a lost
   actor is not waited for);
4. the run restarted with the worker node still gone: the planner refuses it, naming the stage;
5. a new worker node joins and the run is restarted: it resumes, and its pairs equal the reference's
   (sha256 over the pairs table).

Every Ray process it starts is stopped at the end (Cluster.shutdown); it prints the evidence as it goes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUND = ["run.rounds=1", "model.zoo=small", "sampling.prompts_per_round=16", "sampling.n=8", "sampling.shard_size=2",
         "eval.n=8", "train.epochs=1", "train.batch_size=4", "feedback.labeler=oracle", "train.save_steps=0",
         "resources.sampler.custom_resources={worker: 1}", "resources.trainer.custom_resources={head: 1}",
         "resources.max_restarts=0", "resources.ready_timeout_s=600"]


def iterate(run_dir: str, address: str, cwd: Path, wait: bool = True):
    cmd = [sys.executable, str(ROOT / "iterate.py"), "--config", str(ROOT / "configs/shapes-rlaifv.yaml"),
           "--run-dir", run_dir, *ROUND, f"resources.ray_address={address}"]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)


def pairs_digest(run_dir: Path) -> tuple[int, str]:
    from engine.store import RunStore

    rows = RunStore(run_dir).read(1, "pairs")
    return len(rows), hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tail(text: str, lines: int = 3) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def machine() -> str:
    """The conditions a wall time depends on: CPU model and count, memory available, load average."""
    import platform

    import psutil

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = psutil.virtual_memory()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} x {cpu}, memory "
            f"{memory.available / 2**30:.1f} of {memory.total / 2**30:.1f} GiB available, load {load}")


def stage_figures(run_dir: Path, stage: str) -> dict:
    """The round-1 figures of ``stage`` from the run's metrics.jsonl (what the run itself recorded)."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return next((line for line in lines if line.get("round") == 1 and line.get("stage") == stage), {})


def placement(address: str, node_names: dict[str, str]) -> list[tuple[str, str, str]]:
    """(actor class, node name, state) of every Candor actor the cluster at ``address`` has seen (named: other
    Ray clusters may run on this machine)."""
    from ray.util.state import list_actors

    return sorted((a.class_name, node_names.get(a.node_id, a.node_id or "-"), a.state)
                  for a in list_actors(address=address, limit=1000) if a.class_name.endswith("Actor"))


def interrupt(cluster, worker, names: dict, workdir: Path, start: float) -> None:
    """Steps 1-4 of the module docstring."""
    import ray

    result = iterate("runs/relative", cluster.address, workdir)
    print(f"\n[two-node] 1. relative run directory: exit {result.returncode}\n{tail(result.stderr, 1)}")
    assert result.returncode == 2 and "relative, on a cluster of 2 nodes" in result.stderr

    reference, resumed = workdir / "reference", workdir / "resumed"
    result = iterate(str(reference), cluster.address, workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"\n[two-node] 2. reference round: exit 0 in {time.time() - start:.0f}s (since the cluster started); "
          f"the plan it printed:")
    print("\n".join("    " + line for line in result.stdout.splitlines() if line.startswith(("[candor] plan", "  "))
                    and "{" in line))
    where = placement(cluster.address, names)
    print("  actors (class, node, state) from ray.util.state.list_actors:")
    print("\n".join(f"    {c:<14} {n:<7} {s}" for c, n, s in where))
    nodes_of = {c: {n for cls, n, _ in where if cls == c} for c in ("SamplerActor", "TrainerActor")}
    assert nodes_of == {"SamplerActor": {"worker"}, "TrainerActor": {"head"}}, nodes_of

    driver = iterate(str(resumed), cluster.address, workdir, wait=False)
    first_shard = resumed / "rounds/001/sample/part-00000.parquet"
    while not first_shard.exists() and driver.poll() is None:
        time.sleep(0.05)
    def shards() -> int:
        return len(list(first_shard.parent.glob("part-*.parquet")))

    at_kill = shards()
    cluster.remove_node(worker, allow_graceful=False)
    output = driver.communicate(timeout=900)[0]
    errors = [line for line in output.splitlines() if "Error" in line and "state-dump" not in line]
    print(f"\n[two-node] 3. worker node killed with {at_kill} of 8 sample shards written ({shards()} when the driver "
          f"stopped: answers already on their way were kept); the driver: exit {driver.returncode}\n"
          f"{tail(chr(10).join(errors[-1:]) or output, 1)[:600]}")
    sample_done = (resumed / "rounds/001/sample/_SUCCESS").exists()
    print(f"  sample stage finished before the kill: {sample_done}; pairs made: "
          f"{(resumed / 'rounds/001/pairs/_SUCCESS').exists()}")
    assert driver.returncode != 0
    while any(n["Alive"] and "worker" in n["Resources"] for n in ray.nodes()):  # the GCS's health check
        time.sleep(1)

    result = iterate(str(resumed), cluster.address, workdir)
    print(f"\n[two-node] 4. restarted without the worker node: exit {result.returncode}\n{tail(result.stderr, 1)}")
    assert result.returncode == 2 and "worker" in result.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/candor-two-node", help="run directories (deleted first)")
    parser.add_argument("--resume-only", action="store_true",
                        help="step 5 only, on a fresh cluster, for a workdir whose run was interrupted before")
    args = parser.parse_args()
    # Every Ray socket on 127.0.0.1 (DESIGN.md §4); the raylets' workers import this checkout.
    # A raylet on a loaded 2-core machine took over Ray's 60 s to register. Ray adds a niceness of 15 to its
    # workers: on top of this script's `nice -n 15` the actors ran at 19 and got no core (as connect_ray does).
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "300")
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Ray's memory monitor kills a worker when the machine passes 95% of its memory, whoever uses it: on a
    # machine shared with other runs it killed this demo's sampler. The kernel's OOM killer still guards.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", VLLM_LOGGING_LEVEL="ERROR",
                      PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    ray_constants.ENABLE_RAY_CLUSTER = False
    workdir = Path(args.workdir).resolve()
    if not args.resume_only:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
    print(f"[two-node] start: {machine()}; Ray's memory monitor: "
          f"{'off' if os.environ['RAY_memory_monitor_refresh_ms'] == '0' else 'on'}", flush=True)
    import psutil

    if psutil.virtual_memory().available < 4 * 2**30:  # said before the runs: a kill for memory is no node kill
        print("[two-node] warning: under 4 GiB of memory available; the kernel may kill a sampler", flush=True)
    start = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"head": 1}, "node_ip_address": "127.0.0.1", "include_dashboard": True,
        "dashboard_host": "127.0.0.1"})
    try:
        worker = cluster.add_node(num_cpus=1, resources={"worker": 1}, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, log_to_driver=False)
        names = {}
        print(f"[two-node] cluster at {cluster.address}, dashboard {cluster.webui_url}:")
        for node in ray.nodes():
            names[node["NodeID"]] = "head" if "head" in node["Resources"] else "worker"
            own = {k: v for k, v in node["Resources"].items() if k in ("CPU", "head", "worker")}
            print(f"  node {node['NodeID'][:12]} ({names[node['NodeID']]}): raylet {node['NodeManagerAddress']}:"
                  f"{node['NodeManagerPort']}, resources {own}")

        reference, resumed = workdir / "reference", workdir / "resumed"
        if not args.resume_only:
            interrupt(cluster, worker, names, workdir, start)
            cluster.add_node(num_cpus=1, resources={"worker": 1}, node_ip_address="127.0.0.1")
        result = iterate(str(resumed), cluster.address, workdir)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        print(f"\n[two-node] 5. a new worker node joined; restarted: exit 0 ({time.time() - start:.0f}s since the "
              "cluster started)")
        for name in ("sample", "pairs"):
            figures = {run.name: stage_figures(run, name) for run in (reference, resumed)}
            keys = ("shards", "shards_run") if name == "sample" else ("rows", "claims", "mean_score")
            print("\n".join(f"  {run:<9} {name}: " + " ".join(f"{k}={f.get(k)}" for k in keys)
                            for run, f in figures.items()))
        a, b = pairs_digest(reference), pairs_digest(resumed)
        print(f"[two-node] pairs (rows, sha256[:16]): reference {a[0]} {a[1]}, resumed {b[0]} {b[1]}: "
              f"{'the same' if a == b else 'DIFFERENT'}")
        print(f"[two-node] done in {time.time() - start:.0f}s; {machine()}")
        return 0 if a == b else 1
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
