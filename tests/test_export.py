"""engine.export: the run's pairs as one HF dataset with claims; TRL's DPOTrainer trains on it unchanged."""
import subprocess
import sys

import pytest

from engine.export import export_preferences


def test_export_keeps_trl_columns_and_adds_scores_claims_round_source(tiny_run, tmp_path):
    from datasets import load_from_disk

    export_preferences(tiny_run, tmp_path / "export")
    dataset = load_from_disk(str(tmp_path / "export"))
    assert len(dataset) == 4
    assert {"images", "prompt", "chosen", "rejected", "chosen_score", "rejected_score", "round", "source",
            "chosen_claims", "rejected_claims"} <= set(dataset.column_names)
    row = dataset[0]
    assert row["round"] == 1 and row["source"] == "rlaifv" and row["images"][0].size == (64, 64)
    assert row["chosen"][0]["role"] == "assistant"
    assert [c["accepted"] for c in row["chosen_claims"]] == [True]
    assert [(c["claim"], c["accepted"]) for c in row["rejected_claims"]][1] == ("There is a green diamond.", False)
    assert row["rejected_claims"][1]["question"] == "Is there a green diamond in the image?"


def test_export_refuses_a_folder_that_is_no_run_and_a_non_empty_target(tiny_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        export_preferences(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    result = subprocess.run([sys.executable, "-m", "engine.export", str(tiny_run), str(tmp_path / "full")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "is not empty" in result.stderr


def test_trl_dpo_trainer_trains_on_the_export_unchanged(tiny_run, tmp_path, small_zoo):
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    subprocess.run([sys.executable, "-m", "engine.export", str(tiny_run), str(tmp_path / "export")], check=True)
    torch.set_num_threads(1)
    model = AutoModelForImageTextToText.from_pretrained(small_zoo["policy"], dtype=torch.float32)
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), per_device_train_batch_size=2, max_steps=2, bf16=False,
                     use_cpu=True, report_to=[], save_strategy="no", logging_steps=1, max_length=None)
    trainer = DPOTrainer(model=model, args=args, train_dataset=load_from_disk(str(tmp_path / "export")),
                         processing_class=AutoProcessor.from_pretrained(small_zoo["policy"]),
                         peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses)
