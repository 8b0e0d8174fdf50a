"""The LLM split stage (SmolLM2-135M through the engine's text actor) runs shard by shard: a driver SIGKILLed
right after the first split shard, rerun with the same command, gives the same claims as a run whose split
stage was never interrupted. Opt-in: three runs with a vLLM text engine take many minutes on 2 cores."""
import os
import signal
import subprocess

import pytest

from engine.processes import stop_session
from engine.store import RunStore
from test_loop import ENV, ROOT, command

pytestmark = pytest.mark.skipif(os.environ.get("CANDOR_LLM_SPLIT") != "1",
                                reason="three runs with the LLM splitter take minutes: set CANDOR_LLM_SPLIT=1")
# Two split shards of 4 prompts x 2 answers; the policy's answers stay short, so SmolLM2's fact lists do too.
LLM = ["run.rounds=1", "feedback.splitter=llm", "feedback.splitter_model=smollm2", "feedback.splitter_max_tokens=96",
       "sampling.prompts_per_round=8", "sampling.n=2", "sampling.shard_size=4", "eval.n=8", "model.max_model_len=512"]


def run_until(run_dir, fault: str | None) -> int:
    """The run's command; with ``fault`` its driver SIGKILLs itself there (engine/faults.py)."""
    env = {**ENV, "CANDOR_FAULT": fault} if fault else ENV
    proc = subprocess.Popen(command(run_dir, *LLM), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    status = proc.wait(timeout=1800)
    stop_session(proc.pid, grace=5)  # the Ray processes a killed driver leaves behind
    return status


def claims(run_dir) -> list[tuple]:
    return [(r["prompt_id"], r["sample"], r["response"], tuple(r["claims"]), tuple(r["questions"]), tuple(r["negated"]))
            for r in RunStore(run_dir).read(1, "split")]


def test_llm_split_killed_after_its_first_shard_resumes_to_the_same_claims(small_zoo, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # The reference's split stage runs uninterrupted; its driver stops before verify writes (saves the round).
    assert run_until(whole, "write:verify:0@1") == -signal.SIGKILL
    assert RunStore(whole).done_info(1, "split")["shards_run"] == 2
    assert run_until(killed, "wrote:split:0@1") == -signal.SIGKILL
    store = RunStore(killed)
    assert store.has_shard(1, "split", 0) and not store.has_shard(1, "split", 1) and not store.is_done(1, "split")
    assert run_until(killed, None) == 0  # the same command: the round finishes
    info = store.done_info(1, "split")
    assert (info["shards"], info["shards_run"]) == (2, 1)  # only the missing shard was split again
    counted = [key for key in info if key.startswith("facts_dropped") or key.startswith("answers_")]
    assert len(counted) == 6  # the screen's skips, counted from the whole table: as many as in the reference
    assert {key: info[key] for key in counted} == {key: RunStore(whole).done_info(1, "split")[key] for key in counted}
    resumed = claims(killed)
    assert resumed == claims(whole) and len(resumed) == 8 * 2
    assert sum(len(c[4]) for c in resumed) > 0  # the split asked questions the labeler checked
    assert store.is_done(1, "eval/shapesworld")
