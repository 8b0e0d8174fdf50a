"""What a zoo model is: its word-level tokenizer, LLaVA processor and chat template, the LLaVA architecture at
the recipe's size, and how its weights are saved so HF and vLLM both load them."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from evaluation.shapes import IMAGE_SIZE, grammar_text

SPECIAL = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
CHAT_FORMAT = ("USER", "ASSISTANT", ":")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PATCH = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2
# LLaVA-1.5's conversation format; TRL needs the generation prompt to be a prefix of the full chat.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} "
    "{% else %}ASSISTANT: {% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{{ c['text'] }}{% endfor %}{% endif %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for line in grammar_text() + list(CHAT_FORMAT)
                    for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(line)})
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL) + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words, glues punctuation back
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                        special_tokens=[("<s>", vocab["<s>"])])
    core.add_special_tokens(list(SPECIAL))
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens={"image_token": "<image>"},
                                   model_max_length=512)


def build_processor():
    from transformers import CLIPImageProcessor, LlavaProcessor

    images = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    return LlavaProcessor(image_processor=images, tokenizer=build_tokenizer(), patch_size=PATCH,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)


def build_model(recipe, tokenizer):
    """A random-initialised LlavaForConditionalGeneration of ``recipe``'s size (a ZooRecipe)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    h = recipe.hidden
    vision = CLIPVisionConfig(hidden_size=h, intermediate_size=2 * h, num_hidden_layers=recipe.layers,
                              num_attention_heads=h // recipe.head_dim, image_size=IMAGE_SIZE, patch_size=PATCH,
                              projection_dim=h)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=h, intermediate_size=2 * h,
                       num_hidden_layers=recipe.layers, num_attention_heads=h // recipe.head_dim,
                       num_key_value_heads=h // recipe.head_dim, head_dim=recipe.head_dim,
                       max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         image_seq_length=IMAGE_TOKENS, projector_hidden_act="gelu")
    return LlavaForConditionalGeneration(config)


def deepened(model, extra: int):
    """``model`` with ``extra`` text layers on top whose output projections are zero, so it computes what
    ``model`` did: the labeler keeps the policy's eyes and words and gains depth to bind an object to its
    size and place (with the policy's 2 layers it answered 67% of false positions at another object's cell)."""
    from transformers import LlavaForConditionalGeneration

    config = copy.deepcopy(model.config)  # the policy's own config stays as it was
    config.text_config.num_hidden_layers += extra
    deeper = LlavaForConditionalGeneration(config)
    missing, unexpected = deeper.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(".layers." in key for key in missing), (missing, unexpected)
    with torch.no_grad():
        for layer in deeper.model.language_model.layers[-extra:]:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return deeper


def pixel_values(images) -> torch.Tensor:
    """CLIP normalisation of 64x64 RGB images, equal to the processor's output (checked in a test)."""
    array = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
    array = (array - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def save(model, processor, out: Path) -> None:
    """Saves weights as safetensors under the names both HF and vLLM load (shards and their index too)."""
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)

    # transformers 5 writes the CLIP tower without its ``vision_model`` level; vLLM 0.32 expects it, and HF
    # reads both spellings.
    def rename(key: str) -> str:
        if "vision_tower." in key and "vision_tower.vision_model." not in key:
            return key.replace("vision_tower.", "vision_tower.vision_model.", 1)
        return key

    for weights in sorted(out.glob("model*.safetensors")):
        save_file({rename(k): v for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    index = out / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {rename(k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2))
