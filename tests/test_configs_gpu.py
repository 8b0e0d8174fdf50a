"""Every config in configs/ loads and validates; the GPU configs name hub models and ask Ray for GPUs."""
from pathlib import Path

import pytest

from engine.actors import actor_options
from engine.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
GPU_CONFIGS = [p for p in CONFIGS if p.name.startswith(("llava-", "qwen"))]


def test_the_real_model_configs_exist():
    assert {p.name for p in GPU_CONFIGS} >= {"llava-1.5-7b-rlaifv.yaml", "qwen2.5-vl-7b-rlaifv.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_validates(path):
    load_config(path)  # raises ConfigError naming the key on anything wrong


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=[p.name for p in GPU_CONFIGS])
def test_gpu_config_uses_hub_models_bf16_and_reserves_tensor_parallel_gpus(path):
    cfg = load_config(path)
    assert cfg.run.name == path.stem
    for model in (cfg.model.policy, cfg.feedback.labeler_model, cfg.feedback.splitter_model):
        assert "/" in model and not Path(model).exists()
    assert cfg.model.dtype == "bfloat16" and cfg.feedback.splitter == "llm"
    # each role its own GPUs: the big labeler spans 2 (tensor parallel), the 7B policy and the trainer 1 each
    assert cfg.resources.labeler.tensor_parallel_size == 2 and actor_options(cfg, "labeler")["num_gpus"] == 2
    assert actor_options(cfg, "sampler")["num_gpus"] == 1 and actor_options(cfg, "trainer")["num_gpus"] == 1
    assert cfg.train.gradient_checkpointing
