"""Held-out evaluation of a policy: CHAIR on detailed descriptions and POPE on yes/no probes.

The policy comes in as two plain callables (no model code here): ``describe`` answers a list of
(image, question) greedily, ``ask`` answers yes/no questions. Returns ``eval/<suite>/metrics.json``'s figures
and ``eval/<suite>/responses.jsonl``'s rows (evaluation/layout.py).
"""
from __future__ import annotations

from typing import Callable

from evaluation.hallucination import ObjectVocabulary, chair, pope_questions, pope_scores

Answerer = Callable[[list[tuple]], list[str]]
POPE_KINDS = ("random", "popular", "adversarial")


def greedy_handles(generate: Callable[[list[tuple], int], list[list[str]]], max_tokens: int) -> tuple[Answerer, Answerer]:
    """(describe, ask) from a greedy ``generate(items, max_tokens) -> [[answer], ...]``; a yes/no needs 4 tokens."""
    def describe(items):
        return [answers[0] for answers in generate(items, max_tokens)]

    def ask(items):
        return [answers[0] for answers in generate(items, 4)]

    return describe, ask


def native_pope_questions(gt: list[list[str]], vocab: ObjectVocabulary, statistics: tuple[dict, dict],
                          seed: int, per_image: int) -> dict[str, list[dict]]:
    """The held-out eval's POPE questions per kind (scripts/export_benchmarks.py writes the same ones out)."""
    frequency, cooccurrence = statistics
    return {kind: pope_questions(gt, sorted(vocab.synonyms), kind, per_image, seed,
                                 frequency=frequency, cooccurrence=cooccurrence) for kind in POPE_KINDS}


def evaluate_policy(describe: Answerer, ask: Answerer, items: list[dict], vocab: ObjectVocabulary,
                    statistics: tuple[dict, dict], seed: int = 0, pope_per_image: int = 1) -> tuple[dict, list[dict]]:
    """items: dicts with ``id``, ``image``, ``question``, ``gt_objects``; statistics: (frequency, cooccurrence)."""
    responses = describe([(it["image"], it["question"]) for it in items])
    gt = [it["gt_objects"] for it in items]
    metrics = {k: v for k, v in chair(responses, gt, vocab).items()}
    f1s = []
    for kind, questions in native_pope_questions(gt, vocab, statistics, seed, pope_per_image).items():
        answers = ask([(items[q["image_index"]]["image"], q["question"]) for q in questions])
        scores = pope_scores(answers, [q["label"] for q in questions])
        metrics.update({f"pope_{kind}_{k}": v for k, v in scores.items()})
        f1s.append(scores["f1"])
    metrics["pope_f1"] = sum(f1s) / len(f1s)
    rows = [{"id": it["id"], "gt_objects": it["gt_objects"], "prompt": it["question"], "response": r}
            for it, r in zip(items, responses)]
    return metrics, rows


def format_metrics(metrics: dict) -> str:
    """One line of the headline figures, as printed by the demo and at the end of every round."""
    return (f"CHAIR-s {metrics['chair_s']:.1%}  CHAIR-i {metrics['chair_i']:.1%}  recall {metrics['recall']:.1%}  "
            f"POPE F1 {metrics['pope_f1']:.3f} (adversarial {metrics['pope_adversarial_f1']:.3f})  n {metrics['n']}")
