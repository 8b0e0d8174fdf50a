"""engine.status: where a run stands, read from the run directory alone (here: stopped mid-sample in round 2)."""
import subprocess
import sys

import pytest

from engine.status import status


def test_status_shows_stages_current_shards_and_last_metrics(tiny_run):
    text = status(tiny_run)
    lines = text.splitlines()
    assert lines[0] == f"run {tiny_run}: rounds 1..2 planned, 1 finished"
    assert lines[1] == "round 000: eval/shapesworld ✓ 30s"
    assert lines[2].startswith("round 001: prompts ✓ 0s | sample ✓ 12s | split ✓ 0s | verify ✓ 8s | pairs ✓ 0s")
    assert lines[2].endswith("train ✓ 20s | eval/shapesworld ✓ 30s")
    assert lines[3] == "round 002: prompts ✓ 0s | sample … 1/2 shards (50%)"
    assert "now: round 2 sample: 1/2 shards (50%)" in lines
    assert "last eval (round 1): chair_s 0.400  chair_i 0.200  recall 0.810  pope_f1 0.500" in lines
    assert lines[-1] == "last stage finished: round 2 prompts: rows=4, skipped=0, seconds=0.5"


def test_status_of_a_trainer_with_checkpoints_names_its_last_step(tiny_run):
    for step in (2, 10):
        (tiny_run / f"rounds/002/train/checkpoints/checkpoint-{step}").mkdir(parents=True)
    assert "train … last checkpoint at step 10" in status(tiny_run)


def test_command_line_prints_status_and_refuses_a_folder_that_is_no_run(tiny_run, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "engine.status", str(tiny_run)], capture_output=True, text=True)
    assert ok.returncode == 0 and "now: round 2 sample" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "engine.status", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert bad.returncode == 1 and "not a run directory" in bad.stderr
    with pytest.raises(FileNotFoundError, match="nowhere"):
        status(tmp_path / "nowhere")
