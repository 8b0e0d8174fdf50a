"""train_dpo on the small zoo: Candor's grouped losses on top of TRL, TRL's sigmoid path on tables with the
new pairs columns, and a trainer SIGKILLed mid-round that resumes from its last checkpoint to the same adapter
as an uninterrupted run."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.shapes import ShapesWorld
from feedback.pairs import conversation

ROOT = Path(__file__).resolve().parent.parent
TRAIN = dict(reference="initial", beta=0.1, lr=5e-3, lora_r=4, lora_alpha=8, threads=1, seed=0)


def write_pairs(pairs_dir: Path, kind: str, prompts: int) -> None:
    """A round's pairs table (contract 1) from ShapesWorld prompts, each scene's own description ranked best and
    other scenes' descriptions as worse answers. kind: "pairs" (one pair per prompt), "mdpo" (K = 4 levels,
    all 6 pairs) or "infonce" (one chosen against 3 rejected)."""
    from datasets import Dataset, Features, Image, List, Value

    items = ShapesWorld(0, 0.6).prompt_pool(prompts + 3)
    rows = []
    for i, item in enumerate(items[:prompts]):
        levels = [items[i + shift]["reference"] for shift in range(4)]  # level 0 describes this image
        ranks = {"pairs": [(0, 1)], "infonce": [(0, 1), (0, 2), (0, 3)],
                 "mdpo": [(a, b) for a in range(4) for b in range(a + 1, 4)]}[kind]
        buffer = io.BytesIO()
        item["image"].save(buffer, format="PNG")
        for chosen_rank, rejected_rank in ranks:
            prompt, chosen = conversation(item["question"], levels[chosen_rank])
            _, rejected = conversation(item["question"], levels[rejected_rank])
            rows.append({"id": f"{item['id']}:{chosen_rank}>{rejected_rank}", "prompt_id": item["id"], "round": 1,
                         "images": [{"bytes": buffer.getvalue(), "path": None}], "prompt": prompt, "chosen": chosen,
                         "rejected": rejected, "chosen_score": -chosen_rank, "rejected_score": -rejected_rank,
                         "source": "test", "group": item["id"], "chosen_rank": chosen_rank,
                         "rejected_rank": rejected_rank})
    message = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
    features = Features({"id": Value("string"), "prompt_id": Value("string"), "round": Value("int64"),
                         "images": List(Image()), "prompt": message, "chosen": message, "rejected": message,
                         "chosen_score": Value("int64"), "rejected_score": Value("int64"), "source": Value("string"),
                         "group": Value("string"), "chosen_rank": Value("int64"), "rejected_rank": Value("int64")})
    pairs_dir.mkdir(parents=True)
    Dataset.from_list(rows, features=features).to_parquet(str(pairs_dir / "part-00000.parquet"))


def adapter_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def test_grouped_batches_hold_whole_groups_with_their_ranks(small_zoo, tmp_path):
    from transformers import AutoProcessor

    from engine.training import GroupCollator, grouped_pairs, load_pairs

    write_pairs(tmp_path / "pairs", "mdpo", prompts=3)
    pairs = load_pairs(tmp_path / "pairs")
    groups = grouped_pairs(pairs)
    assert groups["rows"] == [list(range(0, 6)), list(range(6, 12)), list(range(12, 18))]
    batch = GroupCollator(AutoProcessor.from_pretrained(small_zoo["policy"]), pairs)([groups[0], groups[2]])
    assert batch["group"].tolist() == [0] * 6 + [1] * 6
    assert batch["chosen_rank"].tolist() == [0, 0, 0, 1, 1, 2] * 2
    assert batch["input_ids"].shape[0] == 24  # 12 chosen rows, then their 12 rejected rows


def test_grouped_losses_need_the_group_columns():
    from datasets import Dataset

    from engine.training import grouped_pairs

    with pytest.raises(ValueError, match=r"\['chosen_rank', 'group', 'rejected_rank'\]"):
        grouped_pairs(Dataset.from_dict({"prompt": ["a"], "chosen": ["b"], "rejected": ["c"]}))


def test_unknown_loss_is_rejected_before_any_work(tmp_path):
    from engine.training import train_dpo

    with pytest.raises(ValueError, match="loss='kto'"):
        train_dpo("no-model", tmp_path, tmp_path, previous_adapter=None, epochs=1, batch_size=2, loss="kto", **TRAIN)


def test_infonce_refuses_groups_whose_chosen_is_not_the_best(small_zoo, tmp_path):
    from engine.training import train_dpo

    write_pairs(tmp_path / "pairs", "mdpo", prompts=1)  # MDPO rows: chosen ranks 0, 1 and 2
    with pytest.raises(ValueError, match="loss=infonce needs chosen_rank 0"):
        train_dpo(str(small_zoo["policy"]), tmp_path / "pairs", tmp_path / "out", previous_adapter=None, epochs=1,
                  batch_size=6, loss="infonce", **TRAIN)


@pytest.mark.parametrize("loss, kind", [("sigmoid", "pairs"), ("mdpo", "mdpo"), ("infonce", "infonce")])
def test_each_loss_trains_and_reports_rewards(small_zoo, tmp_path, loss, kind):
    from engine.training import train_dpo

    write_pairs(tmp_path / "pairs", kind, prompts=4)
    out = tmp_path / "adapter"
    figures = train_dpo(str(small_zoo["policy"]), tmp_path / "pairs", out, previous_adapter=None, epochs=2,
                        batch_size=6, loss=loss, **TRAIN)
    rows = {"pairs": 4, "mdpo": 24, "infonce": 12}[kind]
    steps_per_epoch = {"pairs": 1, "mdpo": 4, "infonce": 2}[kind]  # 6 rows, or as many whole groups as fit
    assert figures["pairs"] == rows and figures["steps"] == 2 * steps_per_epoch
    assert 0.0 <= figures["reward_accuracy"] <= 1.0 and figures["reward_margin"] is not None
    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    saved = json.loads((out / "candor_train.json").read_text())
    losses = [row["loss"] for row in saved["log_history"] if "loss" in row]
    assert saved["loss"] == loss and len(losses) == figures["steps"] and losses[0] == figures["loss_first"]
    # A step holds one group (mdpo) or two: single steps differ by group, so the epochs' means are compared
    assert sum(losses[steps_per_epoch:]) < sum(losses[:steps_per_epoch])


def test_last_checkpoint_skips_one_a_kill_left_half_written(tmp_path):
    from engine.training import last_checkpoint

    for step, state in ((4, "{}"), (8, '{"global_step": 8'), (12, None)):  # 8: cut mid-write; 12: no state yet
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in ("adapter_model.safetensors", "candor_state-0.safetensors", "candor_state-1.safetensors"):
            (folder / name).write_bytes(b"x")
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    (tmp_path / "checkpoint-4" / "candor_state-1.safetensors").unlink()  # worker 1 died before its state
    assert last_checkpoint(tmp_path, world_size=2) is None
    assert last_checkpoint(tmp_path / "missing") is None


# The child trains with checkpoints and SIGKILLs itself when it has done argv[2] steps: steps since the last
# checkpoint are lost.
KILLED_CHILD = """
import json, os, signal, sys
import engine.training as training
make = training._trainer_class
def dying_trainer():
    class Dying(make()):
        def training_step(self, *args, **kwargs):
            if self.state.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)
            return super().training_step(*args, **kwargs)
    return Dying
training._trainer_class = dying_trainer
training.train_dpo(**json.loads(sys.argv[1]))
"""


@pytest.mark.parametrize("loss, kind, previous, save_steps, killed_after", [
    ("sigmoid", "pairs", False, 3, 7),  # resumes at step 6: an epoch boundary
    ("mdpo", "mdpo", True, 4, 9),  # resumes at step 8: mid-epoch, the first 2 batches of epoch 2 are skipped
])
def test_killed_trainer_resumes_from_its_last_checkpoint(small_zoo, tmp_path, loss, kind, previous, save_steps,
                                                         killed_after):
    """Round 1 (a fresh adapter, initial reference) and a later round (the previous adapter trained on against
    itself as reference, TRL's "ref" copy) both resume to the uninterrupted result (6 steps an epoch)."""
    from engine.training import last_checkpoint, train_dpo

    write_pairs(tmp_path / "pairs", kind, prompts=6 if kind == "mdpo" else 12)
    call = dict(base_model=str(small_zoo["policy"]), pairs_dir=str(tmp_path / "pairs"), previous_adapter=None,
                epochs=2, batch_size=6 if kind == "mdpo" else 2, loss=loss, **TRAIN)  # 12 steps
    if previous:
        train_dpo(out_dir=tmp_path / "previous", **{**call, "epochs": 1})
        call.update(previous_adapter=str(tmp_path / "previous"), reference="previous")
    checkpoints = tmp_path / "checkpoints"
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD,
                            json.dumps({**call, "out_dir": str(tmp_path / "killed"), "checkpoint_dir": str(checkpoints),
                                        "save_steps": save_steps}), str(killed_after)],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert child.returncode == -9, child.stderr[-2000:]
    saved = killed_after // save_steps * save_steps
    assert Path(last_checkpoint(checkpoints)).name == f"checkpoint-{saved}"
    names = {p.name for p in (checkpoints / f"checkpoint-{saved}").iterdir()}
    assert {"adapter_model.safetensors", "candor_state-0.safetensors", "trainer_state.json"} <= names
    assert not [name for name in names if name.endswith((".pt", ".pth", ".bin", ".pkl"))]  # no pickles

    resumed = train_dpo(out_dir=tmp_path / "resumed", checkpoint_dir=checkpoints, save_steps=save_steps, **call)
    uninterrupted = train_dpo(out_dir=tmp_path / "whole", **call)
    assert resumed["resumed_from_step"] == saved and uninterrupted["resumed_from_step"] == 0
    history = json.loads((tmp_path / "resumed/candor_train.json").read_text())["log_history"]
    whole = json.loads((tmp_path / "whole/candor_train.json").read_text())["log_history"]
    assert [r["step"] for r in history if "loss" in r] == list(range(1, 13))
    assert [r["loss"] for r in history if "loss" in r] == pytest.approx([r["loss"] for r in whole if "loss" in r],
                                                                         rel=1e-5, abs=1e-6)
    a, b = adapter_weights(tmp_path / "resumed"), adapter_weights(tmp_path / "whole")
    assert a.keys() == b.keys() and all(a[k].allclose(b[k], rtol=1e-5, atol=1e-6) for k in a)


RANK_CHILD = "import json, sys; from engine.training import train_dpo; train_dpo(**json.loads(sys.argv[1]))"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("loss, kind, batch", [("sigmoid", "pairs", 2), ("mdpo", "mdpo", 6)])
def test_two_data_parallel_workers_follow_one_worker_with_the_doubled_batch(small_zoo, tmp_path, loss, kind, batch):
    """Two gloo workers with batch b each take the same steps as one worker with batch 2b: same losses, same
    adapter (DDP averages the two halves' gradients; each worker gets every other b-row slice of the order)."""
    from engine.training import train_dpo

    write_pairs(tmp_path / "pairs", kind, prompts=8 if kind == "pairs" else 4)
    call = dict(base_model=str(small_zoo["policy"]), pairs_dir=str(tmp_path / "pairs"), previous_adapter=None,
                epochs=2, loss=loss, **TRAIN)
    master = f"127.0.0.1:{free_port()}"
    workers = [subprocess.Popen([sys.executable, "-c", RANK_CHILD, json.dumps(
                   {**call, "out_dir": str(tmp_path / "two"), "batch_size": batch, "rank": rank, "world_size": 2,
                    "master": master})], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    one = train_dpo(out_dir=tmp_path / "one", batch_size=2 * batch, **call)
    two = json.loads((tmp_path / "two/candor_train.json").read_text())
    assert two["world_size"] == 2 and two["steps"] == one["steps"] == 4
    two_losses = [r["loss"] for r in two["log_history"] if "loss" in r]
    one_losses = [r["loss"] for r in json.loads((tmp_path / "one/candor_train.json").read_text())["log_history"]
                  if "loss" in r]
    assert two_losses == pytest.approx(one_losses, rel=1e-4, abs=1e-5)
    a, b = adapter_weights(tmp_path / "two"), adapter_weights(tmp_path / "one")
    assert a.keys() == b.keys() and all(a[k].allclose(b[k], rtol=1e-3, atol=1e-4) for k in a)  # Adam: tiny noise, lr-sized steps
