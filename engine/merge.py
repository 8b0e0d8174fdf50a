"""A round's policy as one plain model: the base with the round's LoRA adapter merged into its weights.

The folder holds safetensors (under the key names vLLM 0.32 loads), the processor and the chat template, so
HF loads it without PEFT and vLLM serves it as a plain model (no ``enable_lora``). Reached through
``python -m engine.export RUN OUT --merge [--round N]``.
"""
from __future__ import annotations

import json
from pathlib import Path

from evaluation.layout import RunLayout

STAMP = "candor_merged.json"  # in a merged folder: the base and the adapter it was made from


def round_adapter(run_dir: str | Path, round_index: int | None = None) -> tuple[int, Path]:
    """(round, adapter folder) of ``round_index``, or of the newest round whose policy is an adapter."""
    run = RunLayout(run_dir)
    if not run.is_run():
        raise FileNotFoundError(f"{run.root}: not a run directory (no rounds/ folder)")
    trained = [k for k in run.round_numbers() if (run.policy(k) / "adapter_config.json").exists()]
    if not trained:
        raise ValueError(f"{run.root}: no round has a trained policy (rounds/NNN/policy/adapter_config.json)")
    if round_index is None:
        round_index = trained[-1]
    if round_index not in trained:
        raise ValueError(f"--round {round_index}: {run.root} has a trained policy in rounds {trained}")
    return round_index, run.policy(round_index)


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None,
                  dtype: str = "float32") -> Path:
    """Writes base + adapter merged to ``out_dir``. The base defaults to the one the adapter was trained on
    (PEFT records it in adapter_config.json); the processor is the adapter's (it carries the round's pixel
    bounds), else the base's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from engine.zoo_models import save

    adapter, out = Path(adapter_dir), Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty; merge into a new folder")
    base = base_model or json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=getattr(torch, dtype))
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    processor_source = adapter if (adapter / "processor_config.json").exists() else base
    save(merged, AutoProcessor.from_pretrained(processor_source), out)
    (out / STAMP).write_text(json.dumps({"base_model": str(base), "adapter": str(adapter.resolve())}))
    return out


def merged_base(folder: str | Path) -> str | None:
    """The base model a merged policy folder was made from (its ``candor_merged.json``), or None."""
    stamp = Path(folder) / STAMP
    return json.loads(stamp.read_text())["base_model"] if stamp.exists() else None
