"""Tiny random-initialised models of the exact classes the GPU configs name, built locally in seconds.

``build_arch(name, out)`` writes a folder that HF (``AutoModelForImageTextToText``, ``AutoProcessor``) and
vLLM 0.32 on the CPU both load as they load the real checkpoint:

- ``llava-1.5``: ``LlavaForConditionalGeneration`` with llava-1.5-7b-hf's geometry (CLIP at 336 px, patch 14,
  576 image tokens, features of the second-to-last layer) and its ``USER: <image>\\n... ASSISTANT:`` format.
- ``llava-next``: ``LlavaNextForConditionalGeneration`` as llava-v1.6-34b-hf (the LLaVA config's labeler):
  the same CLIP geometry with any-resolution tiles (grid pinpoints up to 672x672) and ChatML.
- ``qwen2.5-vl``: ``Qwen2_5_VLForConditionalGeneration``: dynamic resolution bounded by ``min_pixels`` /
  ``max_pixels``, 14 px patches merged 2x2, ``<|vision_start|><|image_pad|><|vision_end|>``, window attention
  and M-RoPE (sections summing to half the head dim), and Qwen's chat template with its default system turn.

Weights are random: these models exercise code paths (shapes, token expansion, key names, LoRA targets),
not answer quality. Each tokenizer is a byte-level BPE trained here with the ``tokenizers`` library on
ShapesWorld's grammar, carrying the real model's special tokens, so every text round-trips. The text model
keeps head_dim 32, which vLLM's CPU attention supports.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.generation import chat_prompt
from engine.zoo_models import CHAT_TEMPLATE as LLAVA_TEMPLATE  # llava-1.5's conversation format
from engine.zoo_models import CLIP_MEAN, CLIP_STD, save
from evaluation.shapes import grammar_text
from feedback.labelers import QUESTION_SUFFIX

HIDDEN, LAYERS, HEAD_DIM = 64, 2, 32
CLIP_SIZE, CLIP_PATCH = 336, 14
LLAVA_IMAGE_TOKENS = (CLIP_SIZE // CLIP_PATCH) ** 2  # 576, as llava-1.5-7b-hf
# llava-v1.6's any-resolution grid: tiles of 336 px, up to 2x2 (the 34B's list minus the 1x3 shapes).
NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
# Qwen2.5-VL's processor defaults: 4 to 1280 merged 28x28 patches.
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 56 * 56, 28 * 28 * 1280

# llava-v1.6-34b-hf's template: ChatML, images before the text of a turn.
CHATML_IMAGE_FIRST = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2.5-VL-Instruct's template (images and text only): a default system turn, vision tokens in place.
QWEN_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TokenizerSpec:
    """The real model's special tokens: the ones the tokenizer names, and the added ones in id order."""
    bos: str | None
    eos: str
    pad: str
    unk: str | None
    added: tuple[str, ...]
    add_bos: bool
    template: str
    extra: dict


LLAMA_TOKENS = TokenizerSpec(bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", add_bos=True,
                             added=("<unk>", "<s>", "</s>", "<image>", "<pad>"), template=LLAVA_TEMPLATE,
                             extra={"image_token": "<image>"})
YI_CHATML_TOKENS = TokenizerSpec(bos="<|startoftext|>", eos="<|im_end|>", pad="<unk>", unk="<unk>", add_bos=False,
                                 added=("<unk>", "<|startoftext|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>",
                                        "<image>"), template=CHATML_IMAGE_FIRST, extra={"image_token": "<image>"})
QWEN_TOKENS = TokenizerSpec(bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None, add_bos=False,
                            added=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                                   "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
                                   "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                                   "<|image_pad|>", "<|video_pad|>"), template=QWEN_TEMPLATE,
                            extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                   "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"})


def build_tokenizer(spec: TokenizerSpec):
    """A byte-level BPE learnt on ShapesWorld's sentences, yes/no answers and the chat roles, so every word
    the tests use (and "Yes"/"No", which the labeler path needs as single tokens) is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    corpus = grammar_text() + [QUESTION_SUFFIX.strip(), "USER ASSISTANT system user assistant",
                               "You are a helpful assistant."] + ["Yes", "No", "yes", "no", " Yes", " No"] * 20
    trainer = trainers.BpeTrainer(vocab_size=1024, min_frequency=1, special_tokens=list(spec.added),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(corpus, trainer)
    if spec.add_bos:
        bos = core.token_to_id(spec.bos)
        core.post_processor = processors.TemplateProcessing(single=f"{spec.bos} $A", pair=f"{spec.bos} $A $B",
                                                            special_tokens=[(spec.bos, bos)])
    else:
        core.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=spec.bos, eos_token=spec.eos,
                                   unk_token=spec.unk, pad_token=spec.pad, extra_special_tokens=spec.extra,
                                   model_max_length=32768, chat_template=spec.template)


def _text_kwargs(tokenizer) -> dict:
    heads = HIDDEN // HEAD_DIM
    return dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                num_hidden_layers=LAYERS, num_attention_heads=heads, num_key_value_heads=heads,
                max_position_embeddings=8192, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)


def _clip_vision():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
                            num_attention_heads=HIDDEN // HEAD_DIM, image_size=CLIP_SIZE, patch_size=CLIP_PATCH,
                            projection_dim=HIDDEN)


def _clip_images(cls, **kwargs):
    return cls(size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE},
               image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), **kwargs)


def llava15(tokenizer):
    from transformers import (CLIPImageProcessor, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)

    config = LlavaConfig(vision_config=_clip_vision(), text_config=LlamaConfig(head_dim=HEAD_DIM, **_text_kwargs(tokenizer)),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-2,
                         image_seq_length=LLAVA_IMAGE_TOKENS, projector_hidden_act="gelu")
    processor = LlavaProcessor(image_processor=_clip_images(CLIPImageProcessor), tokenizer=tokenizer,
                               patch_size=CLIP_PATCH, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=tokenizer.chat_template)
    return LlavaForConditionalGeneration(config), processor


def llava_next(tokenizer):
    from transformers import (LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessor, LlavaNextProcessor)

    config = LlavaNextConfig(vision_config=_clip_vision(),
                             text_config=LlamaConfig(head_dim=HEAD_DIM, **_text_kwargs(tokenizer)),
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                             vision_feature_select_strategy="default", vision_feature_layer=-2,
                             image_grid_pinpoints=NEXT_PINPOINTS, image_seq_length=LLAVA_IMAGE_TOKENS,
                             projector_hidden_act="gelu")
    images = _clip_images(LlavaNextImageProcessor, image_grid_pinpoints=NEXT_PINPOINTS)
    processor = LlavaNextProcessor(image_processor=images, tokenizer=tokenizer, patch_size=CLIP_PATCH,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=tokenizer.chat_template)
    return LlavaNextForConditionalGeneration(config), processor


def qwen25_vl(tokenizer):
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig, Qwen2_5_VLVisionConfig

    vision = Qwen2_5_VLVisionConfig(depth=LAYERS, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                                    num_heads=HIDDEN // HEAD_DIM, out_hidden_size=HIDDEN, patch_size=14,
                                    spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                                    fullatt_block_indexes=[LAYERS - 1])
    # M-RoPE: the rotary half of each head split over (time, height, width), as 16/24/24 of 64 in the 7B.
    rope = {"rope_type": "default", "type": "mrope", "mrope_section": [4, 6, 6], "rope_theta": 1000000.0}
    text = Qwen2_5_VLTextConfig(rope_parameters=rope, **_text_kwargs(tokenizer))
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in
           (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    images = Qwen2VLImageProcessor(min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS, patch_size=14,
                                   merge_size=2, temporal_patch_size=2, image_mean=list(CLIP_MEAN),
                                   image_std=list(CLIP_STD))
    # The processor class demands a video processor; Candor sends images only.
    processor = Qwen2_5_VLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=tokenizer.chat_template)
    return Qwen2_5_VLForConditionalGeneration(config), processor


ARCHS = {"llava-1.5": (LLAMA_TOKENS, llava15), "llava-next": (YI_CHATML_TOKENS, llava_next),
         "qwen2.5-vl": (QWEN_TOKENS, qwen25_vl)}


def build_arch(name: str, out: str | Path, seed: int = 0, warm_up_steps: int = 0) -> Path:
    """Writes the tiny ``name`` model (one of ARCHS) with its tokenizer, processor and chat template to ``out``;
    ``warm_up_steps`` > 0 first teaches it ShapesWorld's sentences (``warm_up``)."""
    if name not in ARCHS:
        raise ValueError(f"architecture {name!r}: expected one of {', '.join(ARCHS)}")
    spec, make = ARCHS[name]
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(spec)
    model, processor = make(tokenizer)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    if warm_up_steps:
        warm_up(model, processor, warm_up_steps, seed)
    out = Path(out)
    save(model, processor, out)  # the zoo's saver: safetensors under the key names vLLM 0.32 expects
    (out / "candor_arch.json").write_text(json.dumps({"arch": name, "seed": seed}))
    return out


def warm_up(model, processor, steps: int, seed: int, batch_size: int = 8, lr: float = 3e-3) -> None:
    """A few captioning steps on ShapesWorld through the model's own processor, so a random model answers in
    the world's sentences ("There is a small red circle at the top left.") that the rule splitter turns into
    claims: a round then has claims to check and pairs to train on. The loss covers the answer and its end."""
    from evaluation.shapes import ShapesWorld

    world = ShapesWorld(seed)
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "right"
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        examples = [world.policy_example(step * batch_size + j) for j in range(batch_size)]
        images = [image for image, _, _ in examples]
        prompts = [chat_prompt(processor, question) for _, question, _ in examples]
        batch = processor(text=[p + a + tokenizer.eos_token for p, (_, _, a) in zip(prompts, examples)],
                          images=images, return_tensors="pt", padding=True)
        prompt_lengths = processor(text=prompts, images=images, return_tensors="pt", padding=True)["attention_mask"].sum(1)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        for row, length in enumerate(prompt_lengths.tolist()):
            labels[row, :length] = -100
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
