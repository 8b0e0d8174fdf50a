"""Pre-flight estimate of each role's GPU memory, from the config alone (no GPU, no download).

``python -m engine.memory CONFIG [--gpu-gb 80]`` prints, per role, what one GPU holds and warns, naming the
config key to change, where that exceeds the card. The arithmetic is in docs/real-models.md; in short:

- trainer (LoRA DPO): base weights in ``model.dtype``; LoRA weights, gradients and AdamW's two moments in
  float32 (16 bytes per LoRA parameter, plus 4 for the frozen "ref" copy of a previous round's adapter);
  activations of the language model for 2 x ``train.batch_size`` sequences (chosen and rejected) of T
  tokens, where T is ``train.max_length`` or image tokens + 64 prompt tokens + ``sampling.max_tokens``:
  every layer keeps about (6h + 2·kv + 4i) values per token without gradient checkpointing, only its
  h-wide input with it (plus one layer recomputed); plus the logits (2 + 4 bytes per vocabulary entry and
  token: bf16 and their float32 log-softmax). The vision tower and projector are frozen and need no grad, so
  autograd keeps none of their activations.
- vLLM engines (sampler, labeler, splitter): weights / the role's ``resources.<role>.tensor_parallel_size``
  (default ``model.tensor_parallel_size``) per GPU, in the role's dtype; vLLM then
  fills ``model.gpu_memory_utilization`` of the card, the rest above the weights becoming KV cache
  (2 · layers · kv · bytes per token, also split over tensor parallel GPUs), which must hold at least one
  request of ``model.max_model_len`` tokens.

The YAML is read directly (only the keys above), so the estimate runs on any config file. A model is a
folder with a ``config.json`` (parameters counted on the meta device) or one of the hub ids in ``KNOWN``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

GB = 1e9
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}
LORA_TARGETS = 7  # q, k, v, o, gate, up, down (engine/training.py's LORA_TARGETS)
PROMPT_TOKENS = 64  # chat template + question, beside the image's tokens
ADAMW_BYTES = 16  # float32 LoRA weight + gradient + two moments


@dataclass(frozen=True)
class Geometry:
    """What the estimate needs of a model: total parameters, its text model's shape, tokens per image."""
    params: float
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    kv_dim: int  # key/value heads x head_dim
    image_tokens: int = 0


# Published configs (config.json on the hub) of the models the GPU configs name.
KNOWN = {
    "llava-hf/llava-1.5-7b-hf": Geometry(7.06e9, 32, 4096, 11008, 32064, 32 * 128, 576),
    "llava-hf/llava-v1.6-34b-hf": Geometry(34.8e9, 60, 7168, 20480, 64064, 8 * 128, 2928),
    "Qwen/Qwen2.5-VL-7B-Instruct": Geometry(8.29e9, 28, 3584, 18944, 152064, 4 * 128, 1280),
    "Qwen/Qwen2.5-VL-32B-Instruct": Geometry(33.5e9, 64, 5120, 27648, 152064, 8 * 128, 1280),
    "meta-llama/Meta-Llama-3-8B-Instruct": Geometry(8.03e9, 32, 4096, 14336, 128256, 8 * 128),
    "Qwen/Qwen2.5-7B-Instruct": Geometry(7.62e9, 28, 3584, 18944, 152064, 4 * 128),
}


def geometry(model: str) -> Geometry:
    """The Geometry of a hub id in KNOWN or of a model folder (its config.json; weights are not read)."""
    if model in KNOWN:
        return KNOWN[model]
    config_file = Path(model) / "config.json"
    if not config_file.exists():
        raise ValueError(f"model {model!r}: not a folder with a config.json and not one of the known hub ids "
                         f"({', '.join(KNOWN)}); give a local copy of its config.json")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(model)
    text = config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    auto = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    with torch.device("meta"):
        params = sum(p.numel() for p in auto.from_config(config).parameters())
    return Geometry(float(params), text.num_hidden_layers, text.hidden_size, text.intermediate_size, text.vocab_size,
                    kv_heads * head_dim, getattr(config, "image_seq_length", 0) or 0)


def lora_params(g: Geometry, rank: int) -> float:
    """LoRA on every layer's 7 projections: r x (inputs + outputs) each."""
    q_o = 2 * (g.hidden + g.hidden)
    k_v = 2 * (g.hidden + g.kv_dim)
    mlp = 3 * (g.hidden + g.intermediate)
    return float(rank * g.layers * (q_o + k_v + mlp))


def trainer_memory(g: Geometry, *, dtype: str, batch_size: int, tokens: int, lora_r: int,
                   gradient_checkpointing: bool, reference: str) -> dict:
    """Bytes of one trainer GPU, by part (see the module docstring)."""
    act_bytes = BYTES[dtype]
    sequences = 2 * batch_size * tokens  # chosen and rejected rows of one micro-batch, in tokens
    per_layer = g.hidden if gradient_checkpointing else 6 * g.hidden + 2 * g.kv_dim + 4 * g.intermediate
    recompute = (6 * g.hidden + 2 * g.kv_dim + 4 * g.intermediate) if gradient_checkpointing else 0
    lora = lora_params(g, lora_r)
    return {
        "weights": g.params * BYTES[dtype],
        "lora_optimizer": lora * (ADAMW_BYTES + (4 if reference == "previous" else 0)),
        "activations": sequences * (g.layers * per_layer + recompute) * act_bytes,
        "logits": sequences * g.vocab * (act_bytes + 4),
    }


def engine_memory(g: Geometry, *, dtype: str, tensor_parallel_size: int, gpu_gb: float, utilization: float) -> dict:
    """Bytes of one GPU of a vLLM engine: its weight shard, and the KV cache vLLM fills the rest with."""
    weights = g.params * BYTES[dtype] / tensor_parallel_size
    budget = gpu_gb * GB * utilization
    kv_per_token = 2 * g.layers * g.kv_dim * BYTES[dtype] / tensor_parallel_size
    return {"weights": weights, "kv_cache": max(0.0, budget - weights),
            "kv_tokens": max(0.0, budget - weights) / kv_per_token if kv_per_token else 0.0}


def estimate(cfg: dict, gpu_gb: float = 80.0) -> tuple[list[str], list[str]]:
    """(report lines, warnings) for a config dict as read from its YAML."""
    model, train, sampling, feedback = (cfg.get(k) or {} for k in ("model", "train", "sampling", "feedback"))
    resources = cfg.get("resources") or {}

    def setting(role: str, key: str, default):
        """resources.<role>.<key>, else model.<key> (engine/resources.py), checked like the config does."""
        value = (resources.get(role) or {}).get(key) or model.get(key) or default
        if key == "dtype" and value not in BYTES:
            raise ValueError(f"resources.{role}.dtype / model.dtype={value!r}: expected one of {', '.join(BYTES)}")
        return value
    dtype = setting("trainer", "dtype", "float32")
    policy = geometry(model["policy"])
    image_tokens = policy.image_tokens
    if model.get("max_pixels"):  # Qwen2.5-VL: one token per 28x28 merged patch
        image_tokens = min(image_tokens or model["max_pixels"] // 784, model["max_pixels"] // 784)
    tokens = train.get("max_length") or image_tokens + PROMPT_TOKENS + sampling.get("max_tokens", 512)
    checkpointing = bool(train.get("gradient_checkpointing", False))
    parts = trainer_memory(policy, dtype=dtype, batch_size=train.get("batch_size", 8), tokens=tokens,
                           lora_r=train.get("lora_r", 16), gradient_checkpointing=checkpointing,
                           reference=train.get("reference", "previous"))
    lines = [f"trainer ({model['policy']}, {dtype}, batch {train.get('batch_size', 8)} x 2 sequences x {tokens} tokens,"
             f" gradient checkpointing {'on' if checkpointing else 'off'}, accumulation {train.get('grad_accum_steps', 1)}):"]
    lines += [f"  {name:<15} {value / GB:8.1f} GB" for name, value in parts.items()]
    total = sum(parts.values())
    lines.append(f"  {'total':<15} {total / GB:8.1f} GB of {gpu_gb:.0f} GB")
    warnings = []
    if total > gpu_gb * GB:
        fix = ("train.gradient_checkpointing: true" if not checkpointing else
               "a lower train.batch_size (with a higher train.grad_accum_steps) or train.max_length")
        warnings.append(f"trainer needs ~{total / GB:.0f} GB, more than a {gpu_gb:.0f} GB GPU: set {fix}")
    utilization = model.get("gpu_memory_utilization", 0.9)
    roles = [("sampler", "sampler", model["policy"]), ("labeler", "labeler", feedback.get("labeler_model")),
             ("splitter", "text", feedback.get("splitter_model") if feedback.get("splitter") == "llm" else None)]
    for role, key, name in roles:
        if not name or name in ("zoo", "self"):
            continue
        g = policy if name == model["policy"] else geometry(name)
        tp, dtype = setting(key, "tensor_parallel_size", 1), setting(key, "dtype", "float32")
        parts = engine_memory(g, dtype=dtype, tensor_parallel_size=tp, gpu_gb=gpu_gb, utilization=utilization)
        lines.append(f"{role} ({name}, {dtype}, tensor parallel {tp}): weights {parts['weights'] / GB:.1f} GB per GPU, "
                     f"KV cache {parts['kv_cache'] / GB:.1f} GB ({parts['kv_tokens']:,.0f} tokens) "
                     f"within {utilization:.0%} of {gpu_gb:.0f} GB")
        if parts["kv_tokens"] < model.get("max_model_len", 4096):  # vLLM refuses to start below one request
            warnings.append(f"{role} weights need {parts['weights'] / GB:.0f} GB per GPU, leaving too little of "
                            f"{utilization:.0%} of a {gpu_gb:.0f} GB GPU for one request's KV cache "
                            f"(model.max_model_len): raise resources.{key}.tensor_parallel_size")
    return lines, warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.memory", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a Candor YAML config")
    parser.add_argument("--gpu-gb", type=float, default=80.0, help="memory of one GPU in GB (default 80)")
    args = parser.parse_args(argv)
    lines, warnings = estimate(yaml.safe_load(Path(args.config).read_text()) or {}, args.gpu_gb)
    print("\n".join(lines))
    for warning in warnings:
        print(f"WARNING: {warning}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
