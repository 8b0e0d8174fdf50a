"""Evaluation on the user's own data, with no ground truth: the run's labeler checks held-out answers claim by claim.

Two pure pieces: which rows are held out (:func:`is_heldout`, a hash of the row id, so a row is held out
in every round and on every machine, and never becomes a training prompt), and the figures over the
labeler's verdicts (:func:`claim_metrics`). A claim is rejected when p_yes <= 0.5 (p_no >= p_yes), a
negated claim ("there is no dog": asked "Is there a dog?") when p_yes > 0.5: the rule the feedback stage uses.
"""
from __future__ import annotations

import hashlib

from evaluation.hallucination import InputError, safe_ratio

REJECT_AT = 0.5


def is_heldout(row_id: str, fraction: float, seed: int) -> bool:
    """True for about ``fraction`` of row ids: SHA-256 of ``"<seed>:<row_id>"`` read as a number in [0, 1)."""
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"held-out fraction must be within [0, 1], got {fraction}")
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def claim_metrics(p_yes: list[list[float]], negated: list[list[bool]] | None = None) -> tuple[dict, list[dict]]:
    """Figures over answers given as their claims' p_yes (and which claims are negated): ``{'rejected_answer_share',
    'rejected_per_answer', 'claims_per_answer', 'n'}`` and one row per answer (``claims``, ``rejected``). An
    answer with no claim has nothing rejected; a p_yes outside [0, 1] raises InputError naming the answer."""
    rows = []
    for n, probabilities in enumerate(p_yes):
        if any(not 0.0 <= p <= 1.0 for p in probabilities):
            raise InputError(f"labeler: answer {n} has a p_yes outside [0, 1]: {probabilities}")
        flips = negated[n] if negated else [False] * len(probabilities)
        rows.append({"claims": len(probabilities),
                     "rejected": sum((p > REJECT_AT) if neg else (p <= REJECT_AT) for p, neg in zip(probabilities, flips))})
    metrics = {"rejected_answer_share": safe_ratio(sum(r["rejected"] > 0 for r in rows), len(rows)),
               "rejected_per_answer": safe_ratio(sum(r["rejected"] for r in rows), len(rows)),
               "claims_per_answer": safe_ratio(sum(r["claims"] for r in rows), len(rows)), "n": len(rows)}
    return metrics, rows
