"""The run store: whole-or-nothing shards and markers, a stage's metrics line written with its marker, and
the fault points engine/faults.py puts around every write."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.store import RunStore
from evaluation.layout import StageNotDone

ROOT = Path(__file__).resolve().parent.parent


def test_shards_markers_and_metrics_are_atomic_and_idempotent(tmp_path):
    store = RunStore(tmp_path)
    assert not store.is_done(1, "sample") and not store.has_shard(1, "sample", 0)
    store.write_shard(1, "sample", 1, [{"a": 2}])
    store.write_shard(1, "sample", 0, [{"a": 1}])
    with pytest.raises(StageNotDone, match="rounds/001/sample: stage 'sample' of round 1 is not done"):
        store.read(1, "sample")  # a half-written stage is never read as if it were whole
    assert not list(store.stage_dir(1, "sample").glob(".*tmp*"))
    store.mark_done(1, "sample", {"rows": 2})
    assert store.read(1, "sample") == [{"a": 1}, {"a": 2}]
    assert store.is_done(1, "sample") and store.done_info(1, "sample") == {"rows": 2}
    assert store.metrics() == [{"round": 1, "stage": "sample", "rows": 2}]  # the marker brings its metrics line
    store.append_metrics({"round": 1, "stage": "eval", "x": 1})
    store.append_metrics({"round": 1, "stage": "eval", "x": 2})
    store.mark_done(1, "sample", {"rows": 2})  # a stage redone after a crash: still one line
    assert sorted(store.metrics(), key=str) == sorted([{"round": 1, "stage": "eval", "x": 2},
                                                       {"round": 1, "stage": "sample", "rows": 2}], key=str)
    assert store.stage_dir(1, "sample") == tmp_path / "rounds" / "001" / "sample"


# A child process that writes two shards of round 1 and marks the stage done, under CANDOR_FAULT.
WRITER = """
import sys
import pytest

from engine.store import RunStore
from evaluation.layout import StageNotDone
store = RunStore(sys.argv[1])
for shard in (0, 1):
    store.write_shard(1, "sample", shard, [{"shard": shard}])
store.mark_done(1, "sample", {"shards": 2})
store.write_json("rounds/001/eval/metrics.json", {"n": 1})
"""


def write_under_fault(tmp_path, fault: str) -> tuple[int, RunStore]:
    env = {**os.environ, "CANDOR_FAULT": fault}
    result = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT, env=env, timeout=60)
    return result.returncode, RunStore(tmp_path)


def test_fault_between_shards_kills_with_the_first_shard_whole(tmp_path):
    status, store = write_under_fault(tmp_path, "wrote:sample:0")
    assert status == -signal.SIGKILL
    assert store.shards(1, "sample") == [store.shard(1, "sample", 0)] and not store.is_done(1, "sample")


def test_fault_before_a_shard_leaves_no_trace_of_it(tmp_path):
    status, store = write_under_fault(tmp_path, "write:sample:0@1")
    assert status == -signal.SIGKILL and not store.stage_dir(1, "sample").exists()


def test_fault_before_the_marker_leaves_the_metrics_line_and_no_marker(tmp_path):
    status, store = write_under_fault(tmp_path, "done:sample")
    assert status == -signal.SIGKILL and not store.is_done(1, "sample") and store.has_shard(1, "sample", 1)
    assert store.metrics() == [{"round": 1, "stage": "sample", "shards": 2}]


def test_fault_for_another_round_or_point_does_not_fire(tmp_path):
    status, store = write_under_fault(tmp_path, "done:sample@2")
    assert status == 0 and store.is_done(1, "sample") and store.read_json("rounds/001/eval/metrics.json") == {"n": 1}


def test_fault_before_a_json_file(tmp_path):
    status, store = write_under_fault(tmp_path, "write:rounds/001/eval/metrics.json")
    assert status == -signal.SIGKILL and store.is_done(1, "sample")
    assert not (tmp_path / "rounds/001/eval").exists()


def test_a_relative_run_directory_writes_its_layout_paths_inside_it(tmp_path, monkeypatch):
    """The default run directory (runs/NAME) is relative: an evaluation's files, addressed by their layout
    paths, land in the run and its marker can vouch for them."""
    monkeypatch.chdir(tmp_path)
    store = RunStore("runs/demo")
    metrics = store.eval_metrics(0, "shapesworld")
    store.write_json(metrics, {"n": 1})
    store.mark_done(0, "eval/shapesworld", {"n": 1}, [metrics])
    assert (tmp_path / "runs/demo/rounds/000/eval/shapesworld/metrics.json").is_file()
    assert store.verify(0, "eval/shapesworld") == {} and not (tmp_path / "runs/demo/runs").exists()
