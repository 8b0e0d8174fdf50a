"""The real architectures, tiny: each loads in HF and in vLLM on the CPU, serves a PEFT-made LoRA adapter,
answers the labeler's yes/no question, and trains a TRL DPO step with PEFT through engine/training.py."""
import json

import pytest
import torch
from PIL import Image

from engine.archs import ARCHS, LLAVA_IMAGE_TOKENS, build_arch
from evaluation.shapes import DESCRIBE, ShapesWorld
from feedback.labelers import QUESTION_SUFFIX

BIG = (2000, 1500)  # a photo-sized image (width, height)
MAX_PIXELS = 128 * 28 * 28  # at most 128 merged 28x28 patches


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request, tmp_path_factory):
    return request.param, build_arch(request.param, tmp_path_factory.mktemp(request.param))


def make_adapter(model_dir, out, alpha=64):
    """A PEFT LoRA adapter on the language model with random (non-zero) B, so serving it changes answers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from engine.training import LORA_TARGETS

    torch.manual_seed(1)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=alpha, target_modules=LORA_TARGETS, init_lora_weights=False))
    peft.save_pretrained(out, safe_serialization=True)
    return str(out)


def image_tokens(engine, image) -> int:
    """How many image placeholder tokens vLLM expands one image into (from the prompt vLLM ran)."""
    from vllm import SamplingParams

    image_id = engine.tokenizer.convert_tokens_to_ids(engine.processor.image_token)
    [out] = engine.llm.generate([{"prompt": engine.prompt(DESCRIBE), "multi_modal_data": {"image": image}}],
                                SamplingParams(max_tokens=1), use_tqdm=False)
    return sum(token == image_id for token in out.prompt_token_ids)


def test_hf_loads_the_exact_class_with_the_real_special_tokens(arch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    name, folder = arch
    expected = {"llava-1.5": "LlavaForConditionalGeneration", "llava-next": "LlavaNextForConditionalGeneration",
                "qwen2.5-vl": "Qwen2_5_VLForConditionalGeneration"}[name]
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    assert type(model).__name__ == expected
    text = model.config.get_text_config()
    assert text.hidden_size // text.num_attention_heads == 32  # a head_dim vLLM's CPU attention supports
    messages = [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": DESCRIBE}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == {"llava-1.5": f"USER: <image>\n{DESCRIBE} ASSISTANT:",
                      "llava-next": f"<|im_start|>user\n<image>\n{DESCRIBE}<|im_end|>\n<|im_start|>assistant\n",
                      "qwen2.5-vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                    f"<|vision_start|><|image_pad|><|vision_end|>{DESCRIBE}<|im_end|>\n"
                                    "<|im_start|>assistant\n"}[name]
    inputs = processor(text=[prompt], images=[ShapesWorld().scene("eval", 0).render()], return_tensors="pt")
    image_id = model.config.image_token_id if name == "qwen2.5-vl" else model.config.image_token_index
    n_image = int((inputs["input_ids"] == image_id).sum())
    if name == "llava-1.5":
        assert n_image == LLAVA_IMAGE_TOKENS == 576
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[1] == inputs["input_ids"].shape[1] and n_image > 0


def test_vllm_serves_it_with_a_lora_adapter_and_scores_yes_no(arch, tmp_path):
    from engine.generation import Adapter, VLLMEngine

    name, folder = arch
    adapter = Adapter(make_adapter(folder, tmp_path / "adapter"), 1)
    engine = VLLMEngine(str(folder), max_model_len=4096, enable_lora=True, max_lora_rank=8, enforce_eager=True,
                        max_num_batched_tokens=8192)
    image = ShapesWorld().scene("eval", 1).render()
    base = engine.generate([(image, DESCRIBE)], max_tokens=8)
    tuned = engine.generate([(image, DESCRIBE)], max_tokens=8, adapter=adapter)
    assert base != tuned  # the adapter reached the language model
    assert engine._yes_ids and engine._no_ids  # "Yes"/"No" are single tokens, as in the real tokenizers
    for p_yes, p_no in engine.yes_no([(image, "Is there a red circle in the image?" + QUESTION_SUFFIX)] * 2,
                                     adapter=adapter):
        assert 0.0 <= p_yes + p_no <= 1.0 + 1e-6
    big = Image.new("RGB", BIG, (200, 30, 30))
    tokens = image_tokens(engine, big)
    if name == "llava-next":  # any-resolution: the base view plus 2x2 tiles of 336 px
        assert tokens > 4 * LLAVA_IMAGE_TOKENS
    if name == "qwen2.5-vl":  # the default max_pixels (1280 merged patches)
        assert tokens == 30 * 41  # smart_resize: 840 x 1148 px
    del engine


def test_trl_dpo_step_with_peft_through_train_dpo(arch, tmp_path):
    from test_training import TRAIN, adapter_weights, write_pairs

    from engine.training import train_dpo

    name, folder = arch
    write_pairs(tmp_path / "pairs", "pairs", prompts=2)
    figures = train_dpo(str(folder), tmp_path / "pairs", tmp_path / "out", previous_adapter=None, epochs=1,
                        batch_size=2, **TRAIN)
    assert figures["steps"] == 1 and figures["loss_first"] == pytest.approx(0.6931, abs=1e-3)  # LoRA B starts at 0
    weights = adapter_weights(tmp_path / "out")
    assert weights and all(".language_model." in key for key in weights)  # the LoRA targets exist in this class
    assert json.loads((tmp_path / "out" / "candor_train.json").read_text())["pairs"] == 2


def test_qwen_max_pixels_bounds_the_image_tokens_in_vllm_and_in_training(tmp_path):
    from transformers import AutoProcessor

    from test_training import TRAIN

    from engine.generation import VLLMEngine, pixel_bounds
    from engine.training import train_dpo

    folder = build_arch("qwen2.5-vl", tmp_path / "qwen")
    engine = VLLMEngine(str(folder), max_model_len=4096, enforce_eager=True, max_pixels=MAX_PIXELS)
    big = Image.new("RGB", BIG, (30, 200, 30))
    served = image_tokens(engine, big)
    del engine
    processor = AutoProcessor.from_pretrained(folder, **pixel_bounds(None, MAX_PIXELS))
    grid = processor.image_processor(images=[big], return_tensors="pt")["image_grid_thw"][0]
    trained = int(grid.prod()) // 4  # 2x2 patches merge into one token
    # smart_resize keeps 4:3 within 128 * 28^2 pixels: 13 x 9 merged patches (364 x 252 px)
    assert served == trained == 13 * 9
    # train_dpo's processor carries the same bound: a DPO step on the 2000x1500 image fits max_length=200
    write_big_pairs(tmp_path / "pairs", big)
    figures = train_dpo(str(folder), tmp_path / "pairs", tmp_path / "out", previous_adapter=None, epochs=1,
                        batch_size=1, max_pixels=MAX_PIXELS, max_length=200, **TRAIN)
    assert figures["steps"] == 1
    assert AutoProcessor.from_pretrained(tmp_path / "out").image_processor.size["longest_edge"] == MAX_PIXELS
    with pytest.raises(ValueError, match=r"train.max_length=100: a prompt \(image tokens included\) has 1[0-9]{2} "):
        train_dpo(str(folder), tmp_path / "pairs", tmp_path / "out2", previous_adapter=None, epochs=1,
                  batch_size=1, max_pixels=MAX_PIXELS, max_length=100, **TRAIN)
    with pytest.raises(ValueError, match="min_pixels=10 > max_pixels=5"):
        pixel_bounds(10, 5)


def write_big_pairs(pairs_dir, image):
    """One preference pair on a photo-sized image."""
    import io

    from datasets import Dataset, Features

    from feedback.pairs import conversation, pairs_schema

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    prompt, chosen = conversation(DESCRIBE, "There is a large green square at the top left.")
    _, rejected = conversation(DESCRIBE, "There is a small red circle at the bottom right.")
    row = {"id": "big:0>1", "prompt_id": "big", "round": 1, "images": [{"bytes": buffer.getvalue(), "path": None}],
           "prompt": prompt, "chosen": chosen, "rejected": rejected, "chosen_score": 0, "rejected_score": -1,
           "source": "test", "group": "big", "chosen_rank": 0, "rejected_rank": 1}
    pairs_dir.mkdir(parents=True)
    Dataset.from_list([row], features=Features.from_arrow_schema(pairs_schema())).to_parquet(str(pairs_dir / "part-00000.parquet"))
