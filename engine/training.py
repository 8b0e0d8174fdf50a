"""Every TRL/PEFT call Candor makes lives here: LoRA DPO of a VLM on a round's preference pairs.

A policy is always the base model plus one LoRA adapter. Round k's adapter continues training from round
k-1's; the reference is either that previous policy (TRL keeps a frozen copy of a pretrained adapter
under the name "ref") or the initial policy (the adapter disabled). Only the language model gets LoRA:
that is what vLLM's LoRA path serves for LLaVA-style models.
"""
from __future__ import annotations

import glob
import json
import shutil
import tempfile
from pathlib import Path

# The language model's projections, under transformers 5's LLaVA module names.
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def load_pairs(pairs_dir: str | Path):
    """A round's pairs folder as a datasets.Dataset (images decoded), exactly as TRL's DPOTrainer takes it."""
    from datasets import load_dataset

    files = sorted(glob.glob(str(Path(pairs_dir) / "part-*.parquet")))
    return load_dataset("parquet", data_files=files, split="train")


def train_dpo(base_model: str, pairs_dir: str | Path, out_dir: str | Path, *, previous_adapter: str | None,
              reference: str, beta: float, lr: float, epochs: int, batch_size: int, lora_r: int, lora_alpha: int,
              threads: int, seed: int, use_cpu: bool = True) -> dict:
    """Trains one round's adapter and saves it (safetensors) to ``out_dir``; returns the round's DPO figures."""
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(base_model)
    model = AutoModelForImageTextToText.from_pretrained(base_model, dtype=torch.float32)
    peft_config = None
    if previous_adapter:
        model = PeftModel.from_pretrained(model, previous_adapter, is_trainable=True)
    else:
        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=LORA_TARGETS)
    dataset = load_pairs(pairs_dir)
    scratch = tempfile.mkdtemp(prefix="candor-dpo-")
    args = DPOConfig(output_dir=scratch, per_device_train_batch_size=batch_size, num_train_epochs=epochs,
                     learning_rate=lr, beta=beta, loss_type=["sigmoid"], max_length=None, bf16=False,
                     use_cpu=use_cpu, gradient_checkpointing=False, report_to=[], save_strategy="no",
                     logging_steps=1, seed=seed, data_seed=seed, dataloader_num_workers=0, lr_scheduler_type="constant",
                     warmup_steps=0)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         peft_config=peft_config)
    if reference == "initial" and "ref" in trainer.model.peft_config:
        trainer.model.delete_adapter("ref")  # with no "ref" adapter TRL disables adapters: the initial policy
    trainer.train()
    out_dir = Path(out_dir)
    trainer.model.save_pretrained(out_dir, selected_adapters=["default"], safe_serialization=True)
    processor.save_pretrained(out_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    steps = [h for h in trainer.state.log_history if "loss" in h]
    last_epoch = [h for h in steps if h.get("epoch", 0) > epochs - 1] or steps
    figures = {
        "pairs": len(dataset),
        "steps": len(steps),
        "loss_first": steps[0]["loss"] if steps else None,
        "loss_last": steps[-1]["loss"] if steps else None,
        "reward_accuracy": _mean(last_epoch, "rewards/accuracies"),
        "reward_margin": _mean(last_epoch, "rewards/margins"),
    }
    (out_dir / "candor_train.json").write_text(json.dumps(figures, indent=1))
    return figures


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if key in r]
    return sum(values) / len(values) if values else None
