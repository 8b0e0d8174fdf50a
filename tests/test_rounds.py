"""The sequencer on the in-process executor (no Ray): one real round on the small zoo, then what resume does
with a finished round whose artifacts were damaged, and the DPO loss guard."""
import json
import math

import pytest

from engine.config import load_config
from engine.executor import InProcessExecutor
from engine.models import Models
from engine.round_stages import NonFiniteLoss, check_finite_loss
from engine.rounds import Rounds
from engine.run import model_resolver, resolve_models
from engine.store import RunStore

TINY = ["model.zoo=small", "sampling.prompts_per_round=8", "sampling.n=4", "sampling.shard_size=4", "eval.n=4",
        "train.epochs=1", "train.batch_size=4", "feedback.labeler=oracle", "run.rounds=1", "train.save_steps=0"]


def sequencer(run_dir, log):
    cfg = load_config("configs/shapes-rlaifv.yaml", TINY)
    policy, labeler = resolve_models(cfg)
    store, executor = RunStore(run_dir), InProcessExecutor(cfg)
    models = Models(cfg, executor, store, policy, labeler, resolve_model=model_resolver(policy))
    return Rounds(cfg, store, models, executor, log=log), store


@pytest.fixture(scope="module")
def one_round(small_zoo, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rounds") / "run"
    lines = []
    rounds, store = sequencer(run_dir, lines.append)
    rounds.run()
    return rounds, store, lines


def test_a_round_is_its_stage_list_and_every_stage_has_one_marker(one_round):
    rounds, store, lines = one_round
    assert [s.name for s in rounds.stages(0)] == ["eval/shapesworld"]
    assert [s.name for s in rounds.stages(1)] == ["prompts", "sample", "split", "verify", "pairs", "train",
                                                   "eval/shapesworld"]
    for k in (0, 1):
        for stage in rounds.stages(k):
            assert store.is_done(k, stage.name) and not store.verify(k, stage.name), (k, stage.name)
    metrics, responses = store.read_eval(1, "shapesworld")
    assert metrics["n"] == 4 and len(responses) == 4 and {"id", "prompt", "response"} <= set(responses[0])
    vouched = store.done_info(1, "train")["files"]
    assert "rounds/001/policy/adapter_model.safetensors" in vouched
    assert vouched["rounds/001/policy/adapter_model.safetensors"]["size"] > 0
    assert set(store.done_info(1, "sample")["files"]) == {"rounds/001/sample/part-00000.parquet",
                                                          "rounds/001/sample/part-00001.parquet"}
    assert (store.round_dir(1) / "eval" / "shapesworld" / "metrics.json").exists()


@pytest.mark.parametrize("damage", ["truncated adapter", "removed policy"])
def test_a_damaged_policy_redoes_its_train_stage_and_is_never_served_as_the_base_model(one_round, damage, tmp_path):
    _, store, _ = one_round
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(store.root, run_dir)
    adapter = run_dir / "rounds/001/policy/adapter_model.safetensors"
    expected = adapter.read_bytes()
    if damage == "truncated adapter":
        adapter.write_bytes(expected[: len(expected) // 2])
    else:
        shutil.rmtree(adapter.parent)
    lines = []
    rounds, store = sequencer(run_dir, lines.append)
    [train] = [stage for stage in rounds.stages(1) if stage.name == "train"]
    assert not rounds.finished(1, train) and not store.is_done(1, "train")  # the marker no longer vouches
    with pytest.raises(RuntimeError, match="before its train stage finished"):
        rounds.models.adapter(1)  # the base model is never served in its place
    rounds.run()
    assert any(line.startswith("[round 001] train: redone") for line in lines), lines
    assert [line.split(":")[0] for line in lines if not line.startswith("[round 001] train: redone")] == [
        "[round 001] train"]  # only the train stage ran again
    assert adapter.read_bytes() == expected and not store.verify(1, "train")
    assert rounds.models.adapter(1).path == str(adapter.parent.resolve())


def test_a_non_finite_dpo_loss_stops_the_round_and_removes_the_half_made_policy(tmp_path):
    out = tmp_path / "policy.tmp"
    out.mkdir()
    (out / "candor_train.json").write_text(json.dumps({"log_history": [{"loss": 0.7}, {"loss": math.nan}]}))
    with pytest.raises(NonFiniteLoss, match="round 2: DPO loss became nan.*round 1's policy stays"):
        check_finite_loss(out, {"loss_first": 0.7, "loss_last": 0.6}, 2)
    assert not out.exists()
    fine = tmp_path / "fine"
    fine.mkdir()
    check_finite_loss(fine, {"loss_first": 0.7, "loss_last": 0.6}, 2)
    assert fine.exists()
