"""Every TRL/PEFT call Candor makes lives here: LoRA DPO of a VLM on a round's preference pairs.

A policy is always the base model plus one LoRA adapter. Round k's adapter continues training from round
k-1's; the reference is either that previous policy (TRL keeps a frozen copy of a pretrained adapter
under the name "ref") or the initial policy (the adapter disabled). Only the language model gets LoRA:
that is what vLLM's LoRA path serves for LLaVA-style models.

Losses: "sigmoid" is TRL's own DPO loss on shuffled pair rows. "mdpo" and "infonce" are Candor's loss code
(engine/losses.py) on batches of whole groups (rows sharing the pairs table's ``group`` column), with
log-probs summed over response tokens and chosen and rejected scored on the same (clean) image.

A trainer that dies mid-round resumes: with ``checkpoint_dir`` and ``save_steps`` > 0 the adapter, the
optimizer and scheduler state and the RNG states are saved every ``save_steps`` steps (safetensors and JSON,
never pickles), and the next call on the same folder continues from the last complete checkpoint.
"""
from __future__ import annotations

import glob
import json
import random
import shutil
import tempfile
from pathlib import Path

from engine.generation import pixel_bounds
from engine.losses import LOSSES, candor_loss
from engine.progress import Progress
from engine.rendezvous import join_group

# The language model's projections, under transformers 5's LLaVA module names.
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
STATE_FILE = "candor_state-{rank}.safetensors"  # one worker's optimizer, scheduler and RNG state in a checkpoint
PAIR_COLUMNS = ("images", "prompt", "chosen", "rejected")


def load_pairs(pairs_dir: str | Path):
    """A round's pairs folder as a datasets.Dataset (images decoded), exactly as TRL's DPOTrainer takes it."""
    from datasets import load_dataset

    files = sorted(glob.glob(str(Path(pairs_dir) / "part-*.parquet")))
    return load_dataset("parquet", data_files=files, split="train")


def train_dpo(base_model: str, pairs_dir: str | Path, out_dir: str | Path, *, previous_adapter: str | None,
              reference: str, beta: float, lr: float, epochs: int, batch_size: int, lora_r: int, lora_alpha: int,
              threads: int, seed: int, use_cpu: bool = True, loss: str = "sigmoid", sft_weight: float = 0.0,
              ld_alpha: float = 1.0,
              checkpoint_dir: str | Path | None = None, save_steps: int = 0, rank: int = 0, world_size: int = 1,
              master: str = "127.0.0.1:29500", dtype: str = "float32", gradient_checkpointing: bool = False,
              grad_accum_steps: int = 1, max_length: int | None = None, min_pixels: int | None = None,
              max_pixels: int | None = None) -> dict:
    """Trains one round's adapter and saves it (safetensors) to ``out_dir``; returns the round's DPO figures.

    ``batch_size`` counts pair rows; the grouped losses put as many whole groups in a step as fit in it (at
    least one). ``out_dir/candor_train.json`` holds the figures plus TRL's per-step ``log_history``.

    Data parallel: ``world_size`` processes (e.g. a group of trainer actors) each call this with their
    ``rank`` and the same ``master`` (from ``engine.rendezvous.rendezvous``: a file on one node, "host:port" of
    a TCP store across nodes); they join one torch.distributed group (gloo on CPU, NCCL on GPUs) and each trains on 1/world_size of every step's batches, so the
    global batch is ``world_size * batch_size`` rows (or groups' worth). Rank 0 writes ``out_dir``. A
    process joins at most one group in its life (accelerate keeps its state per process).

    ``sft_weight`` adds TRL's "sft" term (mean NLL of the chosen tokens) to the sigmoid loss; ``ld_alpha`` < 1
    is LD-DPO (TRL's ``ld_alpha``): tokens past the shorter answer's length count that much in both log-probs.

    ``dtype`` (``model.dtype``) is the base model's dtype on GPUs, with bf16 mixed precision for bfloat16; on
    the CPU training stays in float32. PEFT keeps the LoRA weights themselves in float32.

    Memory (docs/real-models.md): ``gradient_checkpointing`` recomputes activations in the backward pass
    instead of keeping them (same loss and gradients); ``grad_accum_steps`` sums the gradients of that many
    batches before one optimizer step (a step of ``grad_accum_steps * batch_size`` rows); ``max_length`` caps
    prompt + completion tokens by cutting completions only: an image's tokens are never cut, and a prompt
    that alone reaches the cap is an error. ``min_pixels``/``max_pixels`` bound a dynamic-resolution image
    (Qwen2.5-VL) as the sampler's vLLM engine does.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}: expected one of {', '.join(LOSSES)}")
    if grad_accum_steps < 1:
        raise ValueError(f"grad_accum_steps={grad_accum_steps}: expected at least 1")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length={max_length}: expected a positive token count or None")
    if loss != "sigmoid":  # Candor's grouped losses score plain summed log-probs: TRL's sft term and LD-DPO stay out
        sft_weight, ld_alpha = 0.0, 1.0
    if world_size > 1:
        join_group(rank, world_size, master, use_cpu, threads)
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(base_model, **pixel_bounds(min_pixels, max_pixels))
    dataset = load_pairs(pairs_dir)
    train_rows, per_step, collator = dataset, batch_size, CappedCollator(processor, max_length)
    if loss != "sigmoid":
        train_rows = grouped_pairs(dataset)
        if loss == "infonce" and set(dataset["chosen_rank"]) != {0}:
            raise ValueError(f"pairs table in {pairs_dir}: loss=infonce needs chosen_rank 0 on every row "
                             "(one chosen against k rejected per group)")
        per_step = max(1, batch_size // max(len(rows) for rows in train_rows["rows"]))
        collator = GroupCollator(processor, dataset, max_length)
    load_dtype = torch.float32 if use_cpu or dtype == "float32" else dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForImageTextToText.from_pretrained(base_model, dtype=load_dtype)
    peft_config = None
    if previous_adapter:
        model = PeftModel.from_pretrained(model, previous_adapter, is_trainable=True)
    else:
        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=LORA_TARGETS)
    saving = bool(checkpoint_dir) and save_steps > 0
    # TRL wants an output_dir even when nothing is saved; it writes nothing there then
    scratch = None if saving else tempfile.mkdtemp(prefix="candor-dpo-")
    args = DPOConfig(output_dir=str(checkpoint_dir) if saving else scratch, per_device_train_batch_size=per_step,
                     num_train_epochs=epochs, learning_rate=lr, beta=beta, max_length=None,
                     loss_type=["sigmoid", "sft"] if sft_weight else ["sigmoid"],
                     loss_weights=[1.0, sft_weight] if sft_weight else None, ld_alpha=None if ld_alpha == 1 else ld_alpha,
                     bf16=not use_cpu and dtype == "bfloat16", use_cpu=use_cpu, report_to=[],
                     gradient_checkpointing=gradient_checkpointing, gradient_accumulation_steps=grad_accum_steps,
                     # non-reentrant checkpointing needs no input that requires grad (LoRA freezes the embeddings)
                     gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
                     save_strategy="steps" if saving else "no", save_steps=max(1, save_steps), save_total_limit=1,
                     remove_unused_columns=loss == "sigmoid", logging_steps=1, seed=seed, data_seed=seed,
                     dataloader_num_workers=0, lr_scheduler_type="constant", warmup_steps=0,
                     ddp_find_unused_parameters=False, disable_tqdm=True)
    trainer = _trainer_class()(candor_loss_name=loss, model=model, args=args, train_dataset=train_rows,
                               data_collator=collator, processing_class=processor, peft_config=peft_config,
                               callbacks=[_progress_callback()] if rank == 0 else None)
    if reference == "initial" and "ref" in trainer.model.peft_config:
        trainer.model.delete_adapter("ref")  # with no "ref" adapter TRL disables adapters: the initial policy
    resume = last_checkpoint(checkpoint_dir, world_size) if checkpoint_dir else None
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        if scratch:
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
        "resumed_from_step": int(Path(resume).name.split("-")[1]) if resume else 0,
    }
    if trainer.accelerator.is_main_process:
        out_dir = Path(out_dir)
        trainer.model.save_pretrained(out_dir, selected_adapters=["default"], safe_serialization=True)
        processor.save_pretrained(out_dir)
        (out_dir / "candor_train.json").write_text(json.dumps({**figures, "loss": loss, "world_size": world_size,
                                                               "log_history": trainer.state.log_history}, indent=1))
    return figures


def _progress_callback():
    """DPO steps done / total, rate and ETA through engine.progress (TRL's tqdm bar is off: under Ray the
    trainer's output is a log, where a bar redrawn in place becomes thousands of lines)."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.progress = Progress(state.max_steps - state.global_step, "train: DPO steps")

        def on_step_end(self, args, state, control, **kwargs):
            self.progress.update()

        def on_train_end(self, args, state, control, **kwargs):
            self.progress.close()

    return ProgressCallback()


def last_checkpoint(checkpoint_dir: str | Path, world_size: int = 1) -> str | None:
    """The newest complete ``checkpoint-N`` under ``checkpoint_dir`` (one a kill left half-written is skipped):
    its trainer state, adapter and every worker's optimizer/RNG state are all there."""
    complete = []
    for path in Path(checkpoint_dir).glob("checkpoint-*"):
        try:
            step = int(path.name.split("-")[1])
            json.loads((path / "trainer_state.json").read_text())  # written last: present and whole = complete
        except (ValueError, OSError):
            continue
        states = [path / STATE_FILE.format(rank=r) for r in range(world_size)]
        if all(p.exists() for p in states) and (path / "adapter_model.safetensors").exists():
            complete.append((step, str(path)))
    return max(complete)[1] if complete else None


def grouped_pairs(pairs):
    """One row per group (rows sharing the ``group`` column): the indices of its rows in ``pairs``, and its
    image, which marks the dataset as a vision one for TRL (TRL takes only datasets.Dataset)."""
    missing = {"group", "chosen_rank", "rejected_rank"} - set(pairs.column_names)
    if missing:
        raise ValueError(f"pairs table: grouped losses need the columns {sorted(missing)}")
    by_group: dict[str, list[int]] = {}
    for index, group in enumerate(pairs["group"]):
        by_group.setdefault(group, []).append(index)
    members = list(by_group.values())
    return pairs.select([rows[0] for rows in members]).select_columns(["images"]).add_column("rows", members)


SEQUENCE_KEYS = ("input_ids", "attention_mask", "completion_mask", "token_type_ids", "mm_token_type_ids")


class CappedCollator:
    """TRL's vision preference collator, then at most ``max_length`` tokens per row cut from the completions'
    end. TRL's own cap cuts wherever the limit falls, image tokens included ("image features and image tokens
    do not match"), so a prompt that alone reaches the cap is refused here instead."""

    def __init__(self, processor, max_length: int | None):
        from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

        self.collate = DataCollatorForVisionPreference(processor=processor, max_length=None)
        self.max_length = max_length

    def __call__(self, rows: list[dict]) -> dict:
        batch = self.collate(rows)
        if self.max_length is None or batch["input_ids"].size(1) <= self.max_length:
            return batch
        # Rows are flushed left: prompt tokens, then completion tokens, then padding.
        prompt = (batch["attention_mask"] * (1 - batch["completion_mask"])).sum(dim=1).max().item()
        if prompt >= self.max_length:
            raise ValueError(f"train.max_length={self.max_length}: a prompt (image tokens included) has {prompt} "
                             "tokens, leaving no room for its answer; raise train.max_length or lower max_pixels")
        for key in SEQUENCE_KEYS:
            if key in batch:
                batch[key] = batch[key][:, : self.max_length]
        return batch


class GroupCollator:
    """TRL's vision preference collator over the rows of whole groups, plus each row's group and chosen rank."""

    def __init__(self, processor, pairs, max_length: int | None = None):
        self.collate_pairs = CappedCollator(processor, max_length)
        self.pairs = pairs

    def __call__(self, groups: list[dict]) -> dict:
        import torch

        rows = [self.pairs[i] for group in groups for i in group["rows"]]
        batch = self.collate_pairs([{key: row[key] for key in PAIR_COLUMNS} for row in rows])
        batch["group"] = torch.tensor([g for g, group in enumerate(groups) for _ in group["rows"]])
        batch["chosen_rank"] = torch.tensor([row["chosen_rank"] for row in rows])
        return batch


def _trainer_class():
    """DPOTrainer with Candor's grouped losses and pickle-free checkpoints (built lazily: TRL imports slowly)."""
    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from transformers import Trainer
    from trl import DPOTrainer

    class CandorDPOTrainer(DPOTrainer):
        def __init__(self, *, candor_loss_name: str, **kwargs):
            self.candor_loss_name = candor_loss_name
            super().__init__(**kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.candor_loss_name == "sigmoid":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            group, chosen_rank = inputs.pop("group"), inputs.pop("chosen_rank")
            policy_chosen, policy_rejected = summed_logps(model, inputs).chunk(2)
            ref_chosen, ref_rejected = self.compute_ref_log_probs(model, inputs)
            loss = candor_loss(self.candor_loss_name, policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                               chosen_rank, group, self.beta)
            chosen = self.accelerator.gather(self.beta * (policy_chosen - ref_chosen).detach())
            rejected = self.accelerator.gather(self.beta * (policy_rejected - ref_rejected).detach())
            metrics = self._metrics["train" if model.training else "eval"]
            metrics["rewards/chosen"].append(chosen.mean().item())
            metrics["rewards/rejected"].append(rejected.mean().item())
            metrics["rewards/accuracies"].append((chosen > rejected).float().mean().item())
            metrics["rewards/margins"].append((chosen - rejected).mean().item())
            return (loss, None) if return_outputs else loss

        # ---- checkpoints: the adapter, optimizer/scheduler and RNG state, as safetensors and JSON ----------
        def _save_checkpoint(self, model, trial):
            Trainer._save_checkpoint(self, model, trial)  # TRL's override only adds a model card

        def _save(self, output_dir=None, state_dict=None):
            self.accelerator.unwrap_model(self.model).save_pretrained(
                output_dir, selected_adapters=["default"], safe_serialization=True)

        def _save_optimizer_and_scheduler(self, output_dir):
            pass  # written together with the RNG state, in one file, by _save_rng_state (called right after)

        def _save_scaler(self, output_dir):
            pass  # fp32 training has no gradient scaler

        def _save_rng_state(self, output_dir):
            rng = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state(),
                   "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.lr_scheduler.state_dict(), "rng": rng}
            tensors: dict = {}
            skeleton = _split_tensors(state, tensors)
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(self._state_file(output_dir)), metadata={"skeleton": json.dumps(skeleton)})

        def _state_file(self, checkpoint) -> Path:
            return Path(checkpoint) / STATE_FILE.format(rank=self.args.process_index)

        def _load_optimizer_and_scheduler(self, checkpoint):
            if checkpoint is None:
                return
            state = read_state(self._state_file(checkpoint))
            self.optimizer.load_state_dict(state["optimizer"])
            self.lr_scheduler.load_state_dict(state["scheduler"])

        def _load_rng_state(self, checkpoint):
            if checkpoint is None:
                return
            rng = read_state(self._state_file(checkpoint))["rng"]
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
            torch.random.set_rng_state(rng["cpu"])
            if rng["cuda"]:
                torch.cuda.set_rng_state_all(rng["cuda"])

    def read_state(path: Path) -> dict:
        with safe_open(str(path), framework="pt") as f:
            skeleton = json.loads(f.metadata()["skeleton"])
        return _join_tensors(skeleton, load_file(str(path)))

    return CandorDPOTrainer


def summed_logps(model, inputs):
    """Each sequence's log-prob summed over its completion tokens (TRL's fused LM head skips the rest)."""
    model_kwargs = {key: value for key, value in inputs.items() if key != "completion_mask"}
    labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
    log_probs = model(**model_kwargs, labels=labels, use_cache=False, fused_lm_head=True).log_probs
    return log_probs[:, -(inputs["completion_mask"].size(1) - 1):].sum(dim=1)


def _split_tensors(value, tensors: dict):
    """A JSON skeleton of a nested state with every tensor/array moved into ``tensors`` under a key."""
    import numpy as np
    import torch

    if isinstance(value, (torch.Tensor, np.ndarray)):
        key = f"t{len(tensors)}"
        if isinstance(value, np.ndarray):  # numpy's RNG keys are uint32: kept as int64, cast back on load
            tensors[key] = torch.from_numpy(value.astype(np.int64))
            return {"__tensor__": key, "numpy": str(value.dtype)}
        tensors[key] = value.detach().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, dict):
        return {"__dict__": [[_split_tensors(k, tensors), _split_tensors(v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__tuple__" if isinstance(value, tuple) else "__list__": [_split_tensors(v, tensors) for v in value]}
    return value


def _join_tensors(skeleton, tensors: dict):
    if isinstance(skeleton, dict) and "__tensor__" in skeleton:
        tensor = tensors[skeleton["__tensor__"]]
        return tensor.numpy().astype(skeleton["numpy"]) if "numpy" in skeleton else tensor
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {_join_tensors(k, tensors): _join_tensors(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, dict) and "__tuple__" in skeleton:
        return tuple(_join_tensors(v, tensors) for v in skeleton["__tuple__"])
    if isinstance(skeleton, dict) and "__list__" in skeleton:
        return [_join_tensors(v, tensors) for v in skeleton["__list__"]]
    return skeleton


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if key in r]
    return sum(values) / len(values) if values else None
