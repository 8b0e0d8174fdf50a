"""Kill anywhere, run the same command again, get the uninterrupted run's result (issue 5).

CI drives a representative part of scripts/kill_matrix.py (the full matrix, every stage boundary and
middle, runs from the script; RELIABILITY.md has its table): one run directory is killed four times in a row
with SIGKILL, each time further on and at a different kind of point, with the same command run after each
kill: between the two shards of ``sample``, after all ``verify`` shards but before its ``_SUCCESS``, inside
``train`` once the trainer has saved a checkpoint, and just before round 1's eval ``_SUCCESS``. Chained, the
kills cost one run plus a restart each instead of a run each. The result must equal an uninterrupted run:
every stage table, the adapter's tensors (within 1e-6), the evaluations, no duplicated or lost rows; and no
kill may cost a shard that was already written whole.
"""
import importlib.util
import signal
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("kill_matrix", ROOT / "scripts/kill_matrix.py")
kill_matrix = sys.modules["kill_matrix"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kill_matrix)
KILLS = {k.name: k for k in kill_matrix.KILLS}


@pytest.fixture(scope="module")
def reference(small_zoo, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("resume") / "reference"
    assert kill_matrix.run_iterate(run_dir) == 0, (run_dir.parent / "reference.log").read_text()[-3000:]
    return run_dir


def killed(run_dir: Path, name: str) -> None:
    kill = KILLS[name]
    status = kill_matrix.run_iterate(run_dir, kill.fault,
                                     kill_when=None if kill.fault else kill_matrix.trainer_checkpointed)
    assert status == -signal.SIGKILL, f"{name}: exit status {status}, not killed; see {run_dir}.log"


def test_four_kills_in_a_row_then_the_same_command_equals_the_uninterrupted_run(reference, tmp_path):
    from engine.store import RunStore

    run_dir = tmp_path / "killed"
    store = RunStore(run_dir)

    killed(run_dir, "sample-mid")
    assert store.has_shard(1, "sample", 0) and not store.has_shard(1, "sample", 1)

    killed(run_dir, "verify-end")
    assert store.done_info(1, "sample")["shards_run"] == 1  # the shard written before the kill was kept
    assert store.has_shard(1, "verify", 1) and not store.is_done(1, "verify")

    killed(run_dir, "train-mid")
    assert store.done_info(1, "verify")["shards_run"] == 0  # both shards were whole: nothing redone
    assert store.is_done(1, "pairs") and not store.is_done(1, "train")

    killed(run_dir, "eval1-end")
    assert store.done_info(1, "train")["resumed_from_step"] >= 1  # the trainer went on from its checkpoint
    assert store.eval_metrics(1, "shapesworld").exists() and not store.is_done(1, "eval/shapesworld")

    before = kill_matrix.snapshot(run_dir)
    assert kill_matrix.run_iterate(run_dir) == 0
    work = kill_matrix.rerun_work(before, kill_matrix.snapshot(run_dir))
    assert work["redone"] == {"eval@1": 1}, work  # only the eval whose marker the last kill prevented
    differences = kill_matrix.compare(reference, run_dir)
    assert not differences["tables_differ"] and not differences["evals_differ"], differences
    assert not differences["metrics_lines_missing"], differences
    assert differences["adapter_max_abs_diff"] <= kill_matrix.ADAPTER_TOLERANCE, differences
    assert differences["duplicated_rows"] == differences["lost_rows"] == differences["extra_rows"] == 0
    assert differences["pairs"] > 0
    assert not list(run_dir.rglob(".*.tmp-*")) and not (run_dir / "rounds/001/policy.tmp").exists()


def test_actor_death_mid_stage_is_survived(small_zoo, tmp_path):
    """SIGKILL of the sampler actor's process after the first sample shard: the run still finishes whole."""
    from engine.store import RunStore

    run_dir = tmp_path / "actor-death"
    store, victims = RunStore(run_dir), []

    def kill_the_sampler_once(run_dir, processes):
        if not victims and store.has_shard(1, "sample", 0):
            for p in processes:
                try:
                    if "SamplerActor" in " ".join(p.cmdline()):
                        p.kill()
                        victims.append(p.pid)
                except psutil.Error:
                    pass
        return False  # the driver lives on: it is the one that must cope

    status = kill_matrix.run_iterate(run_dir, kill_when=kill_the_sampler_once, extra=[
        "sampling.prompts_per_round=8", "sampling.shard_size=4", "eval.n=4"])
    assert victims, "no sampler actor was found to kill"
    assert status == 0, (run_dir.parent / "actor-death.log").read_text()[-3000:]
    keys = [(r["prompt_id"], r["sample"]) for r in store.read(1, "sample")]
    assert len(keys) == len(set(keys)) == 8 * 4 and store.is_done(1, "eval/shapesworld")
