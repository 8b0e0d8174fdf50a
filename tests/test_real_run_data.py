"""Real-run data defaults: the GPU configs train on a dataset and judge on chair-coco, pope and labeler; a real
policy is refused ShapesWorld's prompts; dataset rows are de-duplicated by (image, question) and shuffled
with run.seed."""
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from engine.config import ConfigError, load_config
from engine.prompt_data import load_prompt_rows

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "configs/shapes-rlaifv.yaml")
GPU_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.name.startswith(("llava-", "qwen")))


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=[p.name for p in GPU_CONFIGS])
def test_gpu_configs_read_a_dataset_and_judge_on_the_standard_benchmarks_and_held_out_rows(path):
    cfg = load_config(path)
    assert cfg.data.source == "dataset" and cfg.data.path
    assert cfg.eval.suites == ["chair-coco", "pope", "labeler"] and cfg.eval.best_metric == "chair-coco/chair_i"
    assert cfg.eval.chair_coco["prompts"].endswith("obj_halbench_300_with_image.jsonl")
    assert cfg.eval.pope["questions"] and 0 < cfg.eval.labeler["fraction"] < 1


@pytest.mark.parametrize("policy", ["llava-hf/llava-1.5-7b-hf", "FOLDER"])
def test_a_real_policy_on_shapesworld_prompts_is_refused_with_the_reason(policy, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    policy = str(tmp_path) if policy == "FOLDER" else policy
    with pytest.raises(ConfigError, match="data.source: ShapesWorld's synthetic scenes train and judge Candor's "
                                          "ShapesWorld models only.*set data.source=dataset"):
        load_config(CONFIG, [f"model.policy={policy}"])
    assert load_config(CONFIG, [f"model.policy={policy}", "data.source=dataset"]).model.policy == policy
    merged = tmp_path / "merged"  # a round merged into its base (engine.export --merge) keeps its base's world
    merged.mkdir()
    (merged / "candor_merged.json").write_text(json.dumps({"base_model": str(tmp_path), "adapter": "a"}))
    with pytest.raises(ConfigError, match="a round merged from either"):
        load_config(CONFIG, [f"model.policy={merged}"])
    (tmp_path / "candor_arch.json").write_text(json.dumps({"arch": "llava", "seed": 0}))  # a warmed-up tiny arch
    assert load_config(CONFIG, [f"model.policy={tmp_path}"]).data.source == "shapesworld"
    assert load_config(CONFIG, [f"model.policy={merged}"]).data.source == "shapesworld"


def _png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_dataset_rows_are_deduplicated_by_image_and_question_and_shuffled_with_the_run_seed(tmp_path):
    from datasets import Dataset

    # RLAIF-V repeats a prompt under another id: same image bytes, same question
    rows = [("a", "red", "Describe."), ("b", "red", "Describe."), ("c", "red", "Count."), ("d", "blue", "Describe."),
            *((f"x{i}", (i, i, i), "Describe.") for i in range(12))]
    Dataset.from_dict({"id": [r[0] for r in rows], "image": [_png(r[1]) for r in rows],
                       "question": [r[2] for r in rows]}).to_parquet(str(tmp_path / "data.parquet"))
    path = tmp_path / "data.parquet"
    ids = [r["id"] for r in load_prompt_rows(path, seed=0)]
    assert sorted(ids) == sorted(r[0] for r in rows if r[0] != "b")  # the repeat goes, the first stays
    assert ids != [r[0] for r in rows if r[0] != "b"]  # shuffled
    assert ids == [r["id"] for r in load_prompt_rows(path, seed=0)] != [r["id"] for r in load_prompt_rows(path, seed=1)]
    window = [r["id"] for r in load_prompt_rows(path, seed=0, start=10, count=10)]
    assert window == (ids + ids)[10:20]  # rounds take consecutive windows of the shuffled rows, wrapping
    assert [r["id"] for r in load_prompt_rows(path)] == [r[0] for r in rows]  # no seed: the file's order
