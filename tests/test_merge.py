"""python -m engine.export RUN OUT --merge: the merged policy loads in HF without PEFT and, served by vLLM
as a plain model, answers greedily as the base model serving the round's LoRA adapter does."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.config import load_config
from evaluation.shapes import DESCRIBE, ShapesWorld

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_with_adapter(small_zoo, tmp_path):
    """A run folder whose round 1 policy is a LoRA adapter (random B, so it changes answers) on the small zoo."""
    from transformers import AutoProcessor

    from test_archs import make_adapter

    policy = tmp_path / "run" / "rounds" / "001" / "policy"
    make_adapter(small_zoo["policy"], policy, alpha=8)
    AutoProcessor.from_pretrained(small_zoo["policy"]).save_pretrained(policy)
    return tmp_path / "run", policy


def test_merged_policy_loads_without_peft_and_answers_as_the_adapter(small_zoo, run_with_adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from engine.generation import Adapter, VLLMEngine

    run, adapter = run_with_adapter
    merged = tmp_path / "merged"
    result = subprocess.run([sys.executable, "-m", "engine.export", str(run), str(merged), "--merge"],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "round 1's policy merged" in result.stdout
    assert not (merged / "adapter_config.json").exists() and (merged / "chat_template.jinja").exists()
    # a round of a ShapesWorld run, merged, is still judged (and aligned further) on ShapesWorld
    assert load_config(ROOT / "configs" / "shapes-rlaifv.yaml", [f"model.policy={merged}"]).model.policy == str(merged)

    world = ShapesWorld()
    items = [(world.scene("eval", i).render(), DESCRIBE) for i in range(6)]
    processor = AutoProcessor.from_pretrained(merged)
    inputs = processor(text=[processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DESCRIBE}]}],
        add_generation_prompt=True, tokenize=False)], images=[items[0][0]], return_tensors="pt")
    plain = AutoModelForImageTextToText.from_pretrained(merged, dtype=torch.float32)
    lora = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(small_zoo["policy"],
                                                                                dtype=torch.float32), str(adapter))
    base = AutoModelForImageTextToText.from_pretrained(small_zoo["policy"], dtype=torch.float32)
    with torch.no_grad():
        merged_logits, lora_logits, base_logits = (m(**inputs).logits for m in (plain, lora, base))
    torch.testing.assert_close(merged_logits, lora_logits, atol=1e-4, rtol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 0.1  # the adapter changed the model

    served = VLLMEngine(str(small_zoo["policy"]), max_model_len=256, enable_lora=True, max_lora_rank=8,
                        enforce_eager=True, seed=0)
    with_adapter = served.generate(items, max_tokens=24, adapter=Adapter(str(adapter), 1))
    without = served.generate(items, max_tokens=24)
    del served
    as_plain = VLLMEngine(str(merged), max_model_len=256, enforce_eager=True, seed=0).generate(items, max_tokens=24)
    assert as_plain == with_adapter and as_plain != without


def test_merge_refuses_a_round_without_a_policy_and_a_non_empty_target(run_with_adapter, tmp_path):
    from engine.merge import merge_adapter, round_adapter

    run, adapter = run_with_adapter
    assert round_adapter(run) == (1, adapter)
    with pytest.raises(ValueError, match=r"--round 2: .* has a trained policy in rounds \[1\]"):
        round_adapter(run, 2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="is not empty"):
        merge_adapter(adapter, tmp_path / "full")
    shutil.rmtree(run / "rounds" / "001")
    (run / "rounds" / "001").mkdir()
    with pytest.raises(ValueError, match="no round has a trained policy"):
        round_adapter(run)
    result = subprocess.run([sys.executable, "-m", "engine.export", str(run), str(tmp_path / "o"), "--round", "1"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "--round goes with --merge" in result.stderr
