"""Prompt rows the policy's tokenizer says would fail in the model, skipped with a reason before any work.

A question that contains one of the model's special tokens as text (the image token ``<image>``, Qwen's
``<|vision_start|>`` or ``<|image_pad|>``, a chat-turn marker) would be read as that token by vLLM and the
processor, and a question whose tokens plus ``sampling.max_tokens`` exceed ``model.max_model_len`` is
refused by vLLM; either used to stop the run on every rerun. The count is the question's own tokens: the
chat template and the image's tokens come on top, so a question just under the limit can still be too long
for the model (vLLM then names the request).
"""
from __future__ import annotations


class TokenScreen:
    """``problem(question)``: why a question cannot go to the policy, or None."""

    def __init__(self, model: str, max_model_len: int, max_tokens: int):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        added = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        special = set(self.tokenizer.all_special_tokens) | {t.content for t in added.values() if t.special}
        self.special = sorted((t for t in special if t), key=len, reverse=True)
        self.max_model_len, self.max_tokens = max_model_len, max_tokens

    def problem(self, question: str) -> str | None:
        found = next((t for t in self.special if t in question), None)
        if found:
            return f"question contains the model's special token {found!r}"
        tokens = len(self.tokenizer(question, add_special_tokens=False)["input_ids"])
        if tokens + self.max_tokens > self.max_model_len:
            return (f"question of {tokens} tokens plus sampling.max_tokens {self.max_tokens} exceeds "
                    f"model.max_model_len {self.max_model_len}")
        return None

    def screen(self, rows: list[dict]) -> tuple[list[dict], dict[str, str]]:
        kept, skipped = [], {}
        for row in rows:
            problem = self.problem(row["question"])
            if problem:
                skipped[row["id"]] = problem
            else:
                kept.append(row)
        return kept, skipped
