"""train_dpo's memory controls change memory, not maths: gradient checkpointing on and off, and 2 accumulated
batches of 1 against one batch of 2, give the same losses, gradient norms and adapters; max_length cuts
completions and never an image's tokens."""
import json

import pytest
import torch
from test_training import TRAIN, adapter_weights, write_pairs

from engine.training import train_dpo


def run(small_zoo, tmp_path, name, **kwargs):
    """Two optimizer steps of sigmoid DPO on 4 pairs; returns each step's logged figures and the adapter."""
    out = tmp_path / name
    train_dpo(str(small_zoo["policy"]), tmp_path / "pairs", out, previous_adapter=None, epochs=1, **TRAIN, **kwargs)
    steps = [h for h in json.loads((out / "candor_train.json").read_text())["log_history"] if "loss" in h]
    return steps, adapter_weights(out)


def assert_same_training(a, b, tolerance):
    (steps_a, weights_a), (steps_b, weights_b) = a, b
    assert len(steps_a) == len(steps_b) == 2
    for one, other in zip(steps_a, steps_b):
        assert one["loss"] == pytest.approx(other["loss"], rel=tolerance)
        assert one["grad_norm"] == pytest.approx(other["grad_norm"], rel=tolerance)
        assert one["grad_norm"] > 0
    assert weights_a.keys() == weights_b.keys()
    # Adam divides by the root of the squared gradient, so an element whose gradient is near 0 amplifies
    # float rounding into its step (the CI machine once differed by 4.0e-5 on 1 of 1024 elements); a real
    # bug moves many elements by a whole step (lr), so 2% of one step is the bar.
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=tolerance, atol=0.02 * TRAIN["lr"])


def test_gradient_checkpointing_gives_the_same_losses_gradients_and_adapter(small_zoo, tmp_path):
    write_pairs(tmp_path / "pairs", "pairs", prompts=4)
    plain = run(small_zoo, tmp_path, "plain", batch_size=2)
    checkpointed = run(small_zoo, tmp_path, "checkpointed", batch_size=2, gradient_checkpointing=True)
    assert_same_training(plain, checkpointed, 1e-5)


def test_two_accumulated_batches_of_one_equal_one_batch_of_two(small_zoo, tmp_path):
    write_pairs(tmp_path / "pairs", "pairs", prompts=4)
    whole = run(small_zoo, tmp_path, "whole", batch_size=2)
    accumulated = run(small_zoo, tmp_path, "accumulated", batch_size=1, grad_accum_steps=2)
    assert_same_training(whole, accumulated, 1e-5)


def test_max_length_cuts_completions_and_never_image_tokens(small_zoo, tmp_path):
    from transformers import AutoProcessor

    from engine.training import CappedCollator, load_pairs
    from engine.zoo_models import IMAGE_TOKENS

    write_pairs(tmp_path / "pairs", "pairs", prompts=2)
    processor = AutoProcessor.from_pretrained(small_zoo["policy"])
    rows = [{key: row[key] for key in ("images", "prompt", "chosen", "rejected")} for row in load_pairs(tmp_path / "pairs")]
    whole = CappedCollator(processor, None)([dict(r) for r in rows])
    prompt = int((whole["attention_mask"] * (1 - whole["completion_mask"])).sum(dim=1).max())
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    capped = CappedCollator(processor, prompt + 3)([dict(r) for r in rows])
    assert capped["input_ids"].shape == (4, prompt + 3)  # chosen and rejected of 2 pairs
    assert torch.equal(capped["input_ids"], whole["input_ids"][:, : prompt + 3])
    assert ((capped["input_ids"] == image_id).sum(dim=1) == IMAGE_TOKENS).all()
    assert (capped["completion_mask"].sum(dim=1) <= 3).all() and (capped["completion_mask"].sum(dim=1) > 0).all()
    with pytest.raises(ValueError, match=f"train.max_length={prompt}: a prompt .* has {prompt} tokens"):
        CappedCollator(processor, prompt)([dict(r) for r in rows])
    # and a capped DPO run trains on what is left of each answer
    figures = train_dpo(str(small_zoo["policy"]), tmp_path / "pairs", tmp_path / "out", previous_adapter=None,
                        epochs=1, batch_size=2, max_length=prompt + 3, **TRAIN)
    assert figures["steps"] == 1


def test_bad_memory_settings_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="grad_accum_steps=0"):
        train_dpo("no-model", tmp_path, tmp_path, previous_adapter=None, epochs=1, batch_size=2, grad_accum_steps=0, **TRAIN)
    with pytest.raises(ValueError, match="max_length=0"):
        train_dpo("no-model", tmp_path, tmp_path, previous_adapter=None, epochs=1, batch_size=2, max_length=0, **TRAIN)
