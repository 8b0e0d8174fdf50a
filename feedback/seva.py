"""SeVa as a preference source: sample -> pairs, no labeler.

The policy answers each prompt greedily on the clean image (the chosen answer) and on ``feedback.seva.k`` augmented
copies of it (``feedback.seva.augment``; diffusion noise at ``feedback.seva.noise_step``): what changes under the
corruption is what the policy makes up from its language prior, so the augmented answers are the rejected
ones. Answers identical to the clean one carry no preference and are dropped (counted). Training is on the
clean image. With k > 1 a prompt's rows form one group, one chosen against its k rejected, for the
InfoNCE loss (``train.loss=infonce``); with the sigmoid loss every row is an ordinary DPO pair.
"""
from __future__ import annotations

from typing import Literal

from feedback.augment import augment
from feedback.inputs import decode_image
from feedback.pairs import contrast_groups
from feedback.sections import DiffusionStep, Positive, Section
from feedback.sources import RoundContext, Stage


def sample_stage(ctx: RoundContext, generate, prompts: list[dict]) -> list[dict]:
    """Greedy answers on the clean image (variant 0) and on k seeded augmentations (variants 1..k)."""
    f = ctx.cfg.feedback.seva
    items, rows = [], []
    for p in prompts:
        image = decode_image(p["image_bytes"])
        for variant in range(f.k + 1):
            seen = augment(image, f.augment, ctx.seed("augment", p["id"], variant), f.noise_step) if variant else image
            items.append((seen, p["question"]))
            rows.append({"prompt_id": p["id"], "variant": variant, "augmentation": f.augment if variant else "clean"})
    answers = generate(items, n=1, temperature=0.0)
    return [{**row, "response": texts[0]} for row, texts in zip(rows, answers)]


def pairs_stage(ctx: RoundContext, _, prompts: list[dict]) -> tuple[list[dict], dict]:
    chosen, negatives = {}, {}
    for row in sorted(ctx.read("sample"), key=lambda r: (r["prompt_id"], r["variant"])):
        if row["variant"] == 0:
            chosen[row["prompt_id"]] = row["response"]
        else:
            negatives.setdefault(row["prompt_id"], []).append(row["response"])
    return contrast_groups(chosen, negatives, ctx.prompts, "seva", ctx.round)


class SeVaSection(Section):
    """feedback.seva: ``k`` augmented images per prompt of kind ``augment``, diffusion noise at step
    ``noise_step`` of 1000."""
    augment: Literal["diffusion", "moco", "crop", "flip"] = "diffusion"
    noise_step: DiffusionStep = 500
    k: Positive = 1


class SeVa:
    """Self-supervised visual preference: clean-image answer over augmented-image answers."""
    name = "seva"
    section = SeVaSection
    shared_keys = ()
    losses = ("sigmoid", "infonce")

    def stages(self, cfg) -> list[Stage]:
        return [Stage("sample", sample_stage, uses="policy", sharded=True), Stage("pairs", pairs_stage)]
