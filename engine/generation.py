"""Every vLLM call Candor makes lives here, so a vLLM upgrade touches one file.

``VLLMEngine`` wraps one ``vllm.LLM`` holding a base model resident; a policy adapter (LoRA) is chosen
per call with a ``LoRARequest``. It offers the three model handles the methods need: sample answers,
score yes/no questions from the first-token distribution, and log-probabilities of given answers.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

# On a 2-core CPU: 1 GiB of KV cache (unset, vLLM grabs ~8 GiB), both cores for OpenMP (the default keeps
# one back), and the engine in-process (3 s start instead of 20 s, 1.2 GB less memory). The CPU backend
# warns on every request that it keeps its thread binding, so only errors are logged. oneDNN keeps a
# compiled kernel for each tensor shape it meets, up to 1024 of them: a resident sampler grew 8 MB a round
# from that cache alone (RELIABILITY.md §6), so it keeps 64. setdefault keeps whatever a user or a GPU
# config sets.
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_LOGGING_LEVEL": "ERROR", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}
YES_WORDS, NO_WORDS = ("yes", "Yes", "YES"), ("no", "No", "NO")


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter on disk and the integer id vLLM caches it under (a fresh id per round)."""
    path: str
    id: int


class VLLMEngine:
    """One vLLM engine for one base model: a VLM answering image+question prompts in its chat format, or a
    text-only instruct LLM, which serves ``complete`` only."""

    def __init__(self, model: str, *, dtype: str = "float32", max_model_len: int = 512, seed: int = 0,
                 enable_lora: bool = False, max_lora_rank: int = 16, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, enable_prefix_caching: bool = True,
                 trust_remote_code: bool = False, max_logprobs: int = 20, enforce_eager: bool = False,
                 max_num_batched_tokens: int | None = None, mm_processor_cache_gb: float = 4.0, cpu: bool = True,
                 min_pixels: int | None = None, max_pixels: int | None = None):
        if cpu:
            for key, value in CPU_ENV.items():
                os.environ.setdefault(key, value)
        from transformers import AutoConfig, AutoProcessor, AutoTokenizer
        from vllm import LLM

        # A text-only LLM (the splitter, error injection) has no vision config, no processor and no image limit.
        self.multimodal = hasattr(AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code), "vision_config")
        if self.multimodal:
            self.processor = AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code)
            self.tokenizer = self.processor.tokenizer
        else:
            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        extra = {"distributed_executor_backend": "uni"} if cpu else {}
        if self.multimodal:
            extra.update(limit_mm_per_prompt={"image": 1}, mm_processor_cache_gb=mm_processor_cache_gb)
            # Dynamic-resolution models (Qwen2.5-VL) size an image's token count by these pixel bounds.
            pixels = pixel_bounds(min_pixels, max_pixels)
            if pixels:
                extra["mm_processor_kwargs"] = pixels
        self.llm = LLM(model=model, dtype=dtype, max_model_len=max_model_len, seed=seed, enable_lora=enable_lora,
                       max_lora_rank=max_lora_rank, tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=enable_prefix_caching,
                       trust_remote_code=trust_remote_code, max_logprobs=max_logprobs,
                       enforce_eager=enforce_eager, max_num_batched_tokens=max_num_batched_tokens,
                       **extra)
        marker = "\x00question\x00"
        rendered = self._render(marker) if self.multimodal else ""
        self._around = rendered.split(marker) if rendered.count(marker) == 1 else None
        self._yes_ids = _single_token_ids(self.tokenizer, YES_WORDS)
        self._no_ids = _single_token_ids(self.tokenizer, NO_WORDS)
        self.max_logprobs = max_logprobs

    def prompt(self, question: str) -> str:
        """The model's chat prompt for one image and one question, ending where the answer starts.

        The chat template is rendered once around a marker and the question spliced in: a claim check is a
        one-token request, and rendering requests (template, tokenising, image processing) was a fifth of the
        labeler's time in a profile (BENCHMARKS.md). Templates that alter the question are rendered per call.
        """
        if self._around is None:
            return self._render(question)
        return question.join(self._around)

    def _render(self, question: str) -> str:
        return chat_prompt(self.processor, question)

    def _requests(self, items):
        return [{"prompt": self.prompt(q), "multi_modal_data": {"image": image}} for image, q in items]

    @staticmethod
    def _lora(adapter: Adapter | None):
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(f"adapter-{adapter.id}", adapter.id, adapter.path)

    def generate(self, items, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 96,
                 seeds: list[int] | None = None, adapter: Adapter | None = None) -> list[list[str]]:
        """n answers per (image, question); every request decodes identically, only its seed differs."""
        from vllm import SamplingParams

        seeds = seeds or [None] * len(items)
        params = [SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=s) for s in seeds]
        outputs = self.llm.generate(self._requests(items), params, lora_request=self._lora(adapter), use_tqdm=False)
        return [[c.text.strip() for c in out.outputs] for out in outputs]

    def complete(self, prompts: list[str], max_tokens: int = 256) -> list[str]:
        """Greedy chat completions of text-only prompts (the LLM splitter and error injection)."""
        from vllm import SamplingParams

        if self.multimodal:
            texts = [self.processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": p}]}],
                                                        add_generation_prompt=True, tokenize=False) for p in prompts]
        else:
            texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                        tokenize=False) for p in prompts]
        outputs = self.llm.generate(texts, SamplingParams(max_tokens=max_tokens, temperature=0.0), use_tqdm=False)
        return [out.outputs[0].text.strip() for out in outputs]

    def yes_no(self, items, adapter: Adapter | None = None) -> list[tuple[float, float]]:
        """(p_yes, p_no) of the first answer token for each (image, yes/no question), as RLAIF-V scores claims.

        Questions about one image share its prompt prefix, so with prefix caching the image is encoded once.
        """
        from vllm import SamplingParams

        # Only token ids are read: detokenising the top-k alternatives of every check is wasted work.
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.max_logprobs, detokenize=False)
        outputs = self.llm.generate(self._requests(items), params, lora_request=self._lora(adapter), use_tqdm=False)
        result = []
        for out in outputs:
            top = out.outputs[0].logprobs[0]
            p_yes = sum(_prob(top, i) for i in self._yes_ids)
            p_no = sum(_prob(top, i) for i in self._no_ids)
            result.append((p_yes, p_no))
        return result


def chat_prompt(processor, question: str) -> str:
    """The model's own generation prompt for one image and one question (as vLLM and TRL render it): the one
    rendering the engine, the zoo, the architectures' warm-up and the bench share."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def pixel_bounds(min_pixels: int | None, max_pixels: int | None) -> dict:
    """The processor kwargs that bound a dynamic-resolution image (only the bounds that are set): the same
    keys for vLLM's ``mm_processor_kwargs`` and for HF's ``AutoProcessor.from_pretrained``."""
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if value is not None and value <= 0:
            raise ValueError(f"{name}={value}: expected a positive pixel count")
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ValueError(f"min_pixels={min_pixels} > max_pixels={max_pixels}")
    return {name: value for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if value is not None}


def _single_token_ids(tokenizer, words) -> list[int]:
    ids = set()
    for word in words:
        for variant in (word, " " + word):
            encoded = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
                ids.add(encoded[0])
    return sorted(ids)


def _prob(top: dict, token_id: int) -> float:
    return math.exp(top[token_id].logprob) if token_id in top else 0.0
