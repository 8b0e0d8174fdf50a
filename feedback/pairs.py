"""Score and pair: S(y) = -(rejected claims); pairs with a margin, a per-prompt cap, and length balancing.

Exactly RLAIF-V's recipe (DESIGN.md §1.1 steps 4-5). Pairs come out in TRL's conversational DPO format
(``images``, ``prompt``, ``chosen``, ``rejected``) so a round's pairs folder trains as is.
"""
from __future__ import annotations

import itertools
import json
import random
import zlib


def answer_score(p_yes: list[float], negated: list[bool]) -> int:
    """-(number of rejected claims); a claim is rejected when p_no >= p_yes (negated claims flip that)."""
    return -sum((p > 0.5) if neg else (p <= 0.5) for p, neg in zip(p_yes, negated))


def candidate_pairs(scores: list[int], margin: int = 1) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs whose scores differ by at least ``margin``; ties are dropped."""
    pairs = []
    for i, j in itertools.combinations(range(len(scores)), 2):
        if abs(scores[i] - scores[j]) >= margin:
            pairs.append((i, j) if scores[i] > scores[j] else (j, i))
    return pairs


def cap_pairs(pairs: list, limit: int, seed: int, key: str) -> list:
    """At most ``limit`` pairs of one prompt, drawn at random with a seed derived from the prompt."""
    if len(pairs) <= limit:
        return list(pairs)
    rng = random.Random(zlib.crc32(json.dumps([seed, key]).encode()))
    return sorted(rng.sample(pairs, limit))


def length_balance(lengths: list[tuple[int, int]]) -> list[bool]:
    """Which pairs to keep so that mean chosen and mean rejected lengths are closest.

    Pairs whose chosen answer is shorter than the rejected one by more than a cut-off are dropped; the
    cut-off is the one (among the observed shortfalls, or none) that minimises |mean chosen - mean rejected|,
    preferring the loosest cut-off on ties so that as many pairs as possible are kept.
    """
    if not lengths:
        return []
    shortfalls = sorted({max(0, r - c) for c, r in lengths}, reverse=True)
    best_keep, best_gap = None, None
    for cut in shortfalls:
        keep = [r - c <= cut for c, r in lengths]
        kept = [lr for lr, k in zip(lengths, keep) if k]
        gap = abs(sum(c for c, _ in kept) / len(kept) - sum(r for _, r in kept) / len(kept))
        if best_gap is None or gap < best_gap - 1e-9:
            best_keep, best_gap = keep, gap
    return best_keep


def conversation(question: str, answer: str) -> tuple[list[dict], list[dict]]:
    """TRL's conversational prompt and completion for one image+question and one answer."""
    prompt = [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": question}]}]
    completion = [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    return prompt, completion


def build_pairs(answers: dict[str, list[dict]], prompts: dict[str, dict], max_per_prompt: int, seed: int,
                balance: bool = True, round_index: int = 0) -> list[dict]:
    """answers: prompt id -> [{'sample', 'response', 'score'}]; prompts: id -> {'image_bytes', 'question'}.

    Returns dataset rows in TRL's DPO format plus Candor's columns (scores, ids, round).
    """
    chosen_rejected = []
    for prompt_id in sorted(answers):
        rows = sorted(answers[prompt_id], key=lambda r: r["sample"])
        pairs = cap_pairs(candidate_pairs([r["score"] for r in rows]), max_per_prompt, seed, prompt_id)
        chosen_rejected += [(prompt_id, rows[i], rows[j]) for i, j in pairs]
    if balance:
        keep = length_balance([(len(c["response"].split()), len(r["response"].split())) for _, c, r in chosen_rejected])
        chosen_rejected = [pair for pair, k in zip(chosen_rejected, keep) if k]
    result = []
    for prompt_id, chosen, rejected in chosen_rejected:
        prompt, chosen_msg = conversation(prompts[prompt_id]["question"], chosen["response"])
        _, rejected_msg = conversation(prompts[prompt_id]["question"], rejected["response"])
        result.append({
            "id": f"{prompt_id}:{chosen['sample']}>{rejected['sample']}", "prompt_id": prompt_id, "round": round_index,
            "images": [{"bytes": prompts[prompt_id]["image_bytes"], "path": None}],
            "prompt": prompt, "chosen": chosen_msg, "rejected": rejected_msg,
            "chosen_score": chosen["score"], "rejected_score": rejected["score"],
        })
    return result
