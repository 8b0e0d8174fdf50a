"""The pre-flight memory estimate: hand-computed figures for LLaVA-1.5-7B, folders counted exactly, the CLI
on both GPU configs warning by key name."""
from pathlib import Path

import pytest

from engine.memory import KNOWN, estimate, geometry, lora_params, main, trainer_memory

ROOT = Path(__file__).resolve().parent.parent
LLAVA = KNOWN["llava-hf/llava-1.5-7b-hf"]


def test_llava_7b_trainer_by_hand():
    # LoRA r 64 on 32 layers: q,o 2*(4096+4096) + k,v 2*(4096+4096) + gate,up,down 3*(4096+11008) = 78,080
    assert lora_params(LLAVA, 64) == 64 * 32 * 78_080
    parts = trainer_memory(LLAVA, dtype="bfloat16", batch_size=8, tokens=1152, lora_r=64,
                           gradient_checkpointing=False, reference="previous")
    tokens = 2 * 8 * 1152
    assert parts["weights"] == 7.06e9 * 2
    assert parts["lora_optimizer"] == 64 * 32 * 78_080 * 20  # AdamW 16 bytes + the frozen "ref" copy 4
    assert parts["activations"] == tokens * 32 * (6 * 4096 + 2 * 4096 + 4 * 11008) * 2  # 90.6 GB
    assert parts["logits"] == tokens * 32064 * 6
    on = trainer_memory(LLAVA, dtype="bfloat16", batch_size=8, tokens=1152, lora_r=64,
                        gradient_checkpointing=True, reference="initial")
    assert on["activations"] == tokens * (32 * 4096 + 76_800) * 2  # layer inputs + one layer recomputed: 7.7 GB
    assert on["lora_optimizer"] == 64 * 32 * 78_080 * 16


def test_a_model_folder_is_counted_exactly(tmp_path):
    from transformers import AutoModelForImageTextToText

    from engine.archs import build_arch

    folder = build_arch("qwen2.5-vl", tmp_path / "qwen")
    g = geometry(str(folder))
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert g.params == sum(p.numel() for p in model.parameters())
    assert (g.layers, g.hidden, g.kv_dim) == (2, 64, 64)
    with pytest.raises(ValueError, match="model 'org/unknown': not a folder with a config.json"):
        geometry("org/unknown")


def test_gradient_checkpointing_and_max_length_bring_the_7b_trainer_under_80_gb():
    cfg = {"model": {"policy": "llava-hf/llava-1.5-7b-hf", "dtype": "bfloat16", "tensor_parallel_size": 1},
           "train": {"batch_size": 8, "lora_r": 64}, "sampling": {"max_tokens": 512}}
    _, warnings = estimate(cfg)
    assert warnings == ["trainer needs ~111 GB, more than a 80 GB GPU: set train.gradient_checkpointing: true"]
    cfg["train"]["max_length"] = 640  # activations 2*8*640 tokens * 32 layers * 76,800 * 2 bytes = 50.3 GB
    assert estimate(cfg)[1] == []
    del cfg["train"]["max_length"]
    cfg["train"]["gradient_checkpointing"] = True
    lines, warnings = estimate(cfg)
    assert warnings == [] and "total               28.5 GB of 80 GB" in "\n".join(lines)
    # 69.6 GB of bf16 weights on one GPU, over the 68 GB that vLLM may take of it
    cfg["feedback"] = {"labeler_model": "llava-hf/llava-v1.6-34b-hf"}
    cfg["model"]["gpu_memory_utilization"] = 0.85
    _, warnings = estimate(cfg, gpu_gb=80)
    assert len(warnings) == 1 and warnings[0].startswith("labeler weights need 70 GB per GPU")
    assert warnings[0].endswith("raise resources.labeler.tensor_parallel_size")
    cfg["resources"] = {"labeler": {"tensor_parallel_size": 2}}  # the labeler's own, the policy's stays 1
    lines, warnings = estimate(cfg, gpu_gb=80)
    assert warnings == [] and "labeler (llava-hf/llava-v1.6-34b-hf, bfloat16, tensor parallel 2)" in "\n".join(lines)
    assert "sampler (llava-hf/llava-1.5-7b-hf, bfloat16, tensor parallel 1)" in "\n".join(lines)


@pytest.mark.parametrize("config", ["llava-1.5-7b-rlaifv.yaml", "qwen2.5-vl-7b-rlaifv.yaml"])
def test_cli_prints_every_role_of_the_gpu_configs(config, capsys):
    assert main([str(ROOT / "configs" / config)]) == 0
    out = capsys.readouterr().out
    for role in ("trainer", "sampler", "labeler", "splitter"):
        assert f"\n{role} (" in "\n" + out
    assert "WARNING" not in out  # gradient checkpointing on, the big labelers over 2 GPUs: every role fits
