"""AMP as a preference source: sample -> split -> verify -> pairs, trained with MDPO.

Each prompt gets K ranked answers (``feedback.amp.levels``, default 4), one per *level*:

- incremental generation (the default): round k answers greedily with the policies of rounds k-1, k-2, ...
  and the starting policy (round 0), best assumed first, since each round's policy was trained further.
  When fewer than K checkpoints exist (round 1 has only the starting policy), the remaining levels are
  filled by sampling the current policy at rising temperatures (``sampling.temperature`` x 1, 1.5, 2, ...),
  placed after the checkpoints: hotter sampling is assumed to hallucinate more.
- ``feedback.amp.models``: K models (paths or hub ids) listed best first, each answering greedily.

The assumed order is then checked: RLAIF-V's split and verify stages score every answer, S = -(rejected
claims), and the levels are re-ranked by S (ties keep the level order). Identical answers count once (the
better-ranked one). A prompt's distinct answers form one group holding all K(K-1)/2 pairs with their
ranks, for ``train.loss=mdpo`` (or plain DPO on every pair with ``sigmoid``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, model_validator

from feedback.inputs import decode_image
from feedback.pairs import preference_row
from feedback.rlaifv import CLAIM_CHECK_KEYS, claim_check_stages, verify_summary
from feedback.sections import Section
from feedback.sources import RoundContext, Stage


@dataclass(frozen=True)
class Level:
    """Who answers at one level: ``policy`` is a round index or a model name; temperature 0 is greedy."""
    policy: int | str
    temperature: float
    label: str


def levels(round_index: int, count: int, models: list[str], temperature: float) -> list[Level]:
    """The K levels of round ``round_index``, in their assumed order (best first)."""
    if models:
        return [Level(name, 0.0, f"model {name}") for name in models]
    checkpoints = [Level(j, 0.0, f"round {j}") for j in range(round_index - 1, -1, -1)][:count]
    current = round_index - 1
    hotter = [temperature * (1 + 0.5 * i) for i in range(count - len(checkpoints))]
    fill = [Level(current, t, f"round {current} at T={t:g}") for t in hotter]
    return checkpoints + fill


def sample_stage(ctx: RoundContext, generate, prompts: list[dict]) -> list[dict]:
    """One answer per level per prompt (``sample`` is the level's index)."""
    f, s = ctx.cfg.feedback, ctx.cfg.sampling
    items = [(decode_image(p["image_bytes"]), p["question"]) for p in prompts]
    rows = []
    for index, level in enumerate(levels(ctx.round, f.amp.levels, f.amp.models, s.temperature)):
        seeds = [ctx.seed("sample", p["id"], index) for p in prompts] if level.temperature > 0 else None
        answers = generate(items, n=1, temperature=level.temperature, seeds=seeds, policy=level.policy) if items else []
        rows += [{"prompt_id": p["id"], "sample": index, "level": level.label, "response": texts[0]}
                 for p, texts in zip(prompts, answers)]
    return sorted(rows, key=lambda r: (r["prompt_id"], r["sample"]))


def ranked_groups(verified: list[dict], prompts: dict[str, dict], round_index: int) -> tuple[list[dict], dict]:
    """All pairs of each prompt's distinct answers ranked by labeler score (ties: level order)."""
    by_prompt: dict[str, list[dict]] = {}
    for row in verified:
        if not row["unscored"]:
            by_prompt.setdefault(row["prompt_id"], []).append(row)
    pairs, duplicates, reordered, groups = [], 0, 0, 0
    for prompt_id in sorted(by_prompt):
        ranked, seen = [], set()
        for row in sorted(by_prompt[prompt_id], key=lambda r: (-r["score"], r["sample"])):
            text = row["response"].strip()
            if text in seen or not text:
                duplicates += 1
                continue
            seen.add(text)
            ranked.append(row)
        if len(ranked) < 2:
            continue
        groups += 1
        reordered += [r["sample"] for r in ranked] != sorted(r["sample"] for r in ranked)
        for i, better in enumerate(ranked):
            for j in range(i + 1, len(ranked)):
                worse = ranked[j]
                pairs.append(preference_row(prompts[prompt_id], better["response"].strip(), worse["response"].strip(),
                                            id=f"{prompt_id}:{better['sample']}>{worse['sample']}",
                                            round_index=round_index, source="amp", group=prompt_id, ranks=(i, j),
                                            scores=(better["score"], worse["score"])))
    return pairs, {"groups": groups, "duplicates_dropped": duplicates, "groups_reranked": reordered}


def pairs_stage(ctx: RoundContext, _, prompts: list[dict]) -> tuple[list[dict], dict]:
    verified = ctx.read("verify")
    pairs, info = ranked_groups(verified, ctx.prompts, ctx.round)
    return pairs, {**info, **verify_summary(verified)}


class AMPSection(Section):
    """feedback.amp: ``levels`` ranked answers per prompt, from earlier rounds' checkpoints or from ``models``
    (one per level, best first)."""
    levels: Annotated[int, Field(ge=2)] = 4  # AMP ranks at least 2 levels
    models: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_model_per_level(self):
        if self.models and len(self.models) != self.levels:
            raise ValueError(f"models: lists {len(self.models)} models but feedback.amp.levels is {self.levels}")
        return self


class AMP:
    """Multi-level preferences from earlier checkpoints (or several models), re-ranked by claim checks."""
    name = "amp"
    losses = ("mdpo", "sigmoid")
    section = AMPSection
    shared_keys = CLAIM_CHECK_KEYS

    def stages(self, cfg) -> list[Stage]:
        return [Stage("sample", sample_stage, uses="policy", sharded=True), *claim_check_stages(cfg),
                Stage("pairs", pairs_stage)]
