"""Score and pair: S(y) = -(rejected claims); pairs with a margin, a per-prompt cap, and length balancing.

RLAIF-V's recipe (its steps 4-5: score answers by rejected claims, pair by score). ``share_score`` is the
alternative score -(rejected claims) / (claims), the share of an answer's claims that are wrong: CHAIR-i's
measure, which does not punish an answer for naming more true things (docs/recipe.md). Pairs of every source come out through
``preference_row`` in TRL's conversational DPO format (``images``, ``prompt``, ``chosen``, ``rejected``) so
a round's pairs folder trains as is, plus Candor's columns: ids, scores, ``source``, and ``group`` /
``chosen_rank`` / ``rejected_rank`` (rows of one ranking or one chosen-vs-k-rejected set share a group;
rank 0 is the group's best answer) for the multi-answer losses.
"""
from __future__ import annotations

import itertools
import random

from evaluation.seeds import hash_seed


def answer_score(p_yes: list[float], negated: list[bool]) -> int:
    """-(number of rejected claims); a claim is rejected when p_no >= p_yes (negated claims flip that)."""
    return -sum((p > 0.5) if neg else (p <= 0.5) for p, neg in zip(p_yes, negated))


def share_score(score: int, claims: int) -> float:
    """-(rejected claims) / (claims) from ``answer_score``'s count; an answer with no claim scores 0."""
    return score / claims if claims else 0.0


def candidate_pairs(scores: list[float], margin: float = 0.0) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs whose scores differ by at least ``margin``; ties are always dropped (a
    share score's ties are exact: equal fractions of small integers are the same float)."""
    pairs = []
    for i, j in itertools.combinations(range(len(scores)), 2):
        if scores[i] != scores[j] and abs(scores[i] - scores[j]) >= margin:
            pairs.append((i, j) if scores[i] > scores[j] else (j, i))
    return pairs


def cap_pairs(pairs: list, limit: int, seed: int, key: str) -> list:
    """At most ``limit`` pairs of one prompt, drawn at random with a seed derived from the prompt."""
    if len(pairs) <= limit:
        return list(pairs)
    rng = random.Random(hash_seed(seed, key))
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


def pairs_schema():
    """The pairs table's schema: image bytes stored as datasets' Image feature, messages as TRL's chat format."""
    from datasets import Features, Image, List, Value

    message = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
    return Features({"id": Value("string"), "prompt_id": Value("string"), "round": Value("int64"),
                     "images": List(Image()), "prompt": message, "chosen": message, "rejected": message,
                     "chosen_score": Value("float64"), "rejected_score": Value("float64"), "source": Value("string"),
                     "group": Value("string"), "chosen_rank": Value("int64"),
                     "rejected_rank": Value("int64")}).arrow_schema


def preference_row(prompt: dict, chosen: str, rejected: str, *, id: str, round_index: int, source: str, group: str,
                   ranks: tuple[int, int] = (0, 1), scores: tuple[int, int] = (0, -1)) -> dict:
    """One pairs-table row; ``prompt`` is a prompt row (``id``, ``image_bytes``, ``question``)."""
    prompt_msg, chosen_msg = conversation(prompt["question"], chosen)
    _, rejected_msg = conversation(prompt["question"], rejected)
    return {"id": id, "prompt_id": prompt["id"], "round": round_index,
            "images": [{"bytes": prompt["image_bytes"], "path": None}], "prompt": prompt_msg, "chosen": chosen_msg,
            "rejected": rejected_msg, "chosen_score": scores[0], "rejected_score": scores[1], "source": source,
            "group": group, "chosen_rank": ranks[0], "rejected_rank": ranks[1]}


def build_pairs(answers: dict[str, list[dict]], prompts: dict[str, dict], max_per_prompt: int, seed: int,
                balance: bool = True, round_index: int = 0, min_margin: float = 0.0) -> list[dict]:
    """answers: prompt id -> [{'sample', 'response', 'score'}]; prompts: id -> prompt row; pairs whose scores
    differ by less than ``min_margin`` are not made.

    Returns pairs-table rows; each pair is its own group (RLAIF-V makes no rankings).
    """
    chosen_rejected = []
    for prompt_id in sorted(answers):
        rows = sorted(answers[prompt_id], key=lambda r: r["sample"])
        pairs = cap_pairs(candidate_pairs([r["score"] for r in rows], min_margin), max_per_prompt, seed, prompt_id)
        chosen_rejected += [(prompt_id, rows[i], rows[j]) for i, j in pairs]
    if balance:
        keep = length_balance([(len(c["response"].split()), len(r["response"].split())) for _, c, r in chosen_rejected])
        chosen_rejected = [pair for pair, k in zip(chosen_rejected, keep) if k]
    result = []
    for prompt_id, chosen, rejected in chosen_rejected:
        pair_id = f"{prompt_id}:{chosen['sample']}>{rejected['sample']}"
        result.append(preference_row({**prompts[prompt_id], "id": prompt_id}, chosen["response"], rejected["response"],
                                     id=pair_id, round_index=round_index, source="rlaifv", group=pair_id,
                                     scores=(chosen["score"], rejected["score"])))
    return result


def contrast_groups(chosen: dict[str, str], negatives: dict[str, list[str]], prompts: dict[str, dict], source: str,
                    round_index: int) -> tuple[list[dict], dict]:
    """One group per prompt: its chosen answer against each of its distinct negatives (ranks 1..m).

    Negatives identical to the chosen answer carry no preference; they, repeats and empty ones are dropped
    and counted. Negatives are never paired with each other.
    """
    pairs, identical, repeated = [], 0, 0
    for prompt_id in sorted(chosen):
        best, kept = chosen[prompt_id].strip(), []
        if not best:
            continue
        for text in (t.strip() for t in negatives.get(prompt_id, [])):
            if text == best:
                identical += 1
            elif text in kept or not text:
                repeated += 1
            else:
                kept.append(text)
        for rank, text in enumerate(kept, 1):
            pairs.append(preference_row(prompts[prompt_id], best, text, id=f"{prompt_id}:0>{rank}",
                                        round_index=round_index, source=source, group=prompt_id, ranks=(0, rank)))
    return pairs, {"identical_dropped": identical, "repeats_dropped": repeated,
                   "prompts_with_pairs": len({p["prompt_id"] for p in pairs})}
