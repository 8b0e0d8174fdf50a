"""RLAIF-V as a preference source: sample -> split -> verify -> pairs.

The functions are pure over tables (lists of row dicts). Model calls arrive as the handles of
feedback/sources.py: ``generate(items, *, n, temperature, seeds=...)`` samples n answers per (image,
question), ``labeler(images, questions, metadata)`` returns p_yes per question, ``complete(prompts,
max_tokens=256)`` is the LLM splitter's text model. Nothing here knows about
Ray or vLLM. Seeds are derived from (run seed, round, stage, prompt id), so a stage redone after a crash, in
any sharding, produces the same rows. ``split_stage`` and ``verify_stage`` are reused by AMP.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from functools import partial
from typing import Annotated, Literal

from pydantic import Field

from feedback.claims import llm_split, split_claims
from feedback.inputs import decode_image
from feedback.labelers import checked
from feedback.llm_claims import DROP_REASONS
from feedback.pairs import answer_score, build_pairs, share_score
from feedback.sections import ByRound, Positive
from feedback.sources import RoundContext, Stage, derive_seed


def sample_answers(prompts: list[dict], generate, run_seed: int, round_index: int) -> list[dict]:
    """n answers per prompt with identical decoding; only the per-prompt seed differs between prompts."""
    seeds = [derive_seed(run_seed, round_index, "sample", p["id"]) for p in prompts]
    answers = generate([(decode_image(p["image_bytes"]), p["question"]) for p in prompts], seeds)
    return [{"prompt_id": p["id"], "sample": i, "response": text}
            for p, texts in zip(prompts, answers) for i, text in enumerate(texts)]


def split_answers(samples: list[dict], splitter=split_claims) -> list[dict]:
    rows = []
    for s in samples:
        claims = splitter(s["response"])
        rows.append({"prompt_id": s["prompt_id"], "sample": s["sample"], "response": s["response"],
                     "claims": [c.text for c in claims], "questions": [c.question for c in claims],
                     "negated": [c.negated for c in claims]})
    return rows


def verify_claims(split_rows: list[dict], prompts: dict[str, dict], labeler, labeler_name: str) -> list[dict]:
    """Asks every claim question of a shard in one labeler call; questions of one answer sit together so
    the labeler's engine shares their image prefix."""
    images, questions, metadata, owners = [], [], [], []
    decoded = {}
    for index, row in enumerate(split_rows):
        prompt = prompts[row["prompt_id"]]
        if row["prompt_id"] not in decoded:
            decoded[row["prompt_id"]] = decode_image(prompt["image_bytes"])
        for question in row["questions"]:
            images.append(decoded[row["prompt_id"]])
            questions.append(question)
            metadata.append({"gt_objects": prompt.get("gt_objects"), "layout": prompt.get("layout")})
            owners.append(index)
    p_yes = checked(labeler(images, questions, metadata) if questions else [], len(questions), labeler_name)
    per_row = defaultdict(list)
    for owner, p in zip(owners, p_yes):
        per_row[owner].append(p)
    result = []
    for index, row in enumerate(split_rows):
        probs = per_row[index]
        bad = sum(p != p for p in probs)  # NaN from the labeler: the answer can't be scored
        result.append({"prompt_id": row["prompt_id"], "sample": row["sample"], "response": row["response"],
                       "p_yes": probs, "claims": len(probs), "unscored": bad > 0,
                       "score": answer_score(probs, row["negated"]) if not bad else 0})
    return result


def make_pairs(verified: list[dict], prompts: dict[str, dict], max_per_prompt: int, seed: int,
               balance: bool, round_index: int, score: str = "rejected", min_margin: float = 0.0) -> list[dict]:
    answers = defaultdict(list)
    for row in verified:
        if not row["unscored"]:
            if score == "rejected_share":
                row = {**row, "score": share_score(row["score"], row["claims"])}
            answers[row["prompt_id"]].append(row)
    return build_pairs(answers, prompts, max_per_prompt, derive_seed(seed, round_index, "pairs"), balance, round_index,
                       min_margin)


# ---- the stages ---------------------------------------------------------------------------------------
def sample_stage(ctx: RoundContext, generate, prompts: list[dict]) -> list[dict]:
    s = ctx.cfg.sampling

    def sample(items, seeds):
        return generate(items, n=s.n, temperature=s.temperature, max_tokens=s.max_tokens, seeds=seeds)
    return sample_answers(prompts, sample, ctx.cfg.run.seed, ctx.round)


def split_stage(ctx: RoundContext, complete, prompts: list[dict]) -> list[dict]:
    """One shard's answers divided into claims: rule-based, or with ``complete`` (feedback.splitter=llm) RLAIF-V's
    LLM divide step (questions by ``feedback.splitter_rewrite_model`` when set), an answer repeated within the
    shard asked once. Greedy decoding of the same shard gives the same claims whether the stage ran whole or
    was resumed shard by shard."""
    samples = ctx.rows("sample", prompts)
    if complete is None:
        return split_answers(samples)
    f = ctx.cfg.feedback
    rewrite = partial(complete, model=f.splitter_rewrite_model) if f.splitter_rewrite_model else None
    responses = list(dict.fromkeys(s["response"] for s in samples))
    by_response = dict(zip(responses, llm_split(responses, complete, f.splitter_max_tokens, rewrite)))
    rows = split_answers(samples, splitter=lambda response: by_response[response].claims)
    for row in rows:  # the listed facts the screen dropped, kept in the table so a resumed stage counts them too
        split = by_response[row["response"]]
        row["dropped_facts"], row["dropped_reasons"] = [f for f, _ in split.dropped], [why for _, why in split.dropped]
        row["split_by_rule"] = split.by_rule
    return rows


def llm_split_figures(rows) -> dict:
    """The LLM split stage's counted skips, from its whole table: listed facts dropped by reason, per answer row,
    the answers the rule splitter divided because the LLM left them no fact, and the answers with no claim."""
    reasons, by_rule, empty = Counter(), 0, 0
    for row in rows:
        reasons.update(row.get("dropped_reasons") or ())  # a shard written before the screen has none
        by_rule += bool(row.get("split_by_rule"))
        empty += not row["questions"]
    return {"facts_dropped": sum(reasons.values()), **{f"facts_dropped_{why}": reasons[why] for why in DROP_REASONS},
            "answers_split_by_rule": by_rule, "answers_without_claims": empty}


def verify_stage(ctx: RoundContext, labeler, prompts: list[dict]) -> list[dict]:
    return verify_claims(ctx.rows("split", prompts), ctx.prompts, labeler, ctx.cfg.feedback.labeler)


def pairs_stage(ctx: RoundContext, _, prompts: list[dict]) -> tuple[list[dict], dict]:
    verified, f = ctx.read("verify"), ctx.cfg.feedback
    r = f.rlaifv.for_round(ctx.round)
    pairs = make_pairs(verified, ctx.prompts, r.max_pairs_per_prompt, ctx.cfg.run.seed, r.length_balance, ctx.round,
                       r.score, r.min_margin)
    return pairs, verify_summary(verified)


def verify_summary(verified: list[dict]) -> dict:
    """The labeler's figures for a round's pairs marker: answers, unscored answers, mean score, claims."""
    scores = [r["score"] for r in verified if not r["unscored"]]
    return {"answers": len(verified), "unscored": sum(r["unscored"] for r in verified),
            "mean_score": round(sum(scores) / max(1, len(scores)), 4), "claims": sum(r["claims"] for r in verified)}


# The generic feedback keys the claim-checking sources (RLAIF-V, AMP) read: feedback.labeler*, feedback.splitter*.
CLAIM_CHECK_KEYS = ("labeler", "splitter")


def claim_check_stages(cfg) -> list[Stage]:
    """split -> verify: every answer of the sample table divided into claims and checked by the labeler."""
    llm = cfg.feedback.splitter == "llm"
    return [Stage("split", split_stage, uses="text" if llm else "", sharded=True,
                  model=cfg.feedback.splitter_model if llm else "", summary=llm_split_figures if llm else None),
            Stage("verify", verify_stage, uses="labeler", sharded=True)]


class RLAIFVSection(ByRound):
    """feedback.rlaifv: at most ``max_pairs_per_prompt`` pairs per prompt; ``length_balance`` keeps as many pairs
    with a longer chosen answer as with a shorter one; ``score`` ranks a prompt's answers by their rejected claims
    (``rejected``, RLAIF-V's) or by the share of their claims rejected (``rejected_share``: naming one more true
    object does not lower it; feedback/pairs.py); ``min_margin`` drops pairs whose scores differ by less (in
    rejected claims for ``rejected``, in share for ``rejected_share``): a labeler that errs on one claim in ten
    makes one-claim pairs the noisiest (docs/recipe.md). ``from_round`` changes any of them from a round on
    (``{2: {min_margin: 0}}``)."""
    max_pairs_per_prompt: Positive = 2
    length_balance: bool = True
    score: Literal["rejected", "rejected_share"] = "rejected"
    min_margin: Annotated[float, Field(ge=0)] = 0.0
    ROUND_KEYS = ("max_pairs_per_prompt", "length_balance", "score", "min_margin")


class RLAIFV:
    """Deconfounded sampling, claim-level checks by a labeler, pairs by score."""
    name = "rlaifv"
    section = RLAIFVSection
    shared_keys = CLAIM_CHECK_KEYS
    losses = ("sigmoid", "infonce")  # each pair is its own group: InfoNCE with k = 1 is DPO

    def stages(self, cfg) -> list[Stage]:
        return [Stage("sample", sample_stage, uses="policy", sharded=True), *claim_check_stages(cfg),
                Stage("pairs", pairs_stage)]
