"""What a ShapesWorld run's rounds teach and where their hallucinations come from.

    python scripts/diagnose_run.py RUN [RUN ...]

Per round: the pairs (count, mean words of chosen and rejected, mean score margin, share whose rejected answer
names a partner object of the language prior that the chosen one does not), the DPO figures, and the held-out
answers (words, CHAIR-i, and each hallucinated mention classed as a *partner* of a present object, the
language prior's doing, or *other*; the *perception errors* among the others share their colour or their
shape with a present object: a misread object). Then, for runs whose rounds checked claims, the pairs
by the labeler's margin (rejected claims between chosen and rejected), each judged by ShapesWorld's truth: right
when the oracle's score of the same two answers ranks them the same way, tie when it scores them equal, wrong
when it ranks them the other way. The figures behind docs/recipe.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed

from evaluation.layout import RunLayout  # noqa: E402  (after the path line)
from evaluation.shapes import ShapesWorld, oracle_answer, partner, shares_colour_or_shape  # noqa: E402
from feedback.pairs import answer_score  # noqa: E402


def _text(message: list[dict]) -> str:
    return " ".join(c["text"] for m in message for c in m["content"] if c.get("text"))


def pair_figures(layout: RunLayout, k: int, vocab) -> dict:
    prompts = {p["id"]: p for p in layout.read_stage(k, "prompts")}
    pairs = layout.read_stage(k, "pairs")
    if not pairs:
        return {"pairs": 0}
    partner_pairs, chosen_words, rejected_words, margins = 0, [], [], []
    for row in pairs:
        chosen, rejected = _text(row["chosen"]), _text(row["rejected"])
        gt = set(prompts[row["prompt_id"]]["gt_objects"])
        partners = {partner(o) for o in gt} - gt
        partner_pairs += bool(partners & (set(vocab.mentions(rejected)) - set(vocab.mentions(chosen))))
        chosen_words.append(len(chosen.split()))
        rejected_words.append(len(rejected.split()))
        margins.append(row["chosen_score"] - row["rejected_score"])
    n = len(pairs)
    return {"pairs": n, "chosen_words": sum(chosen_words) / n, "rejected_words": sum(rejected_words) / n,
            "chosen_shorter": sum(c < r for c, r in zip(chosen_words, rejected_words)) / n,
            "margin": sum(margins) / n, "partner_pairs": partner_pairs / n}


def truth_by_margin(layout: RunLayout, k: int) -> dict[str, list[int]]:
    """Round ``k``'s pairs by labeler margin ("1", "2", "3+") -> [right, tie, wrong] by ShapesWorld's truth."""
    prompts = {p["id"]: p for p in layout.read_stage(k, "prompts")}
    truth = {(row["prompt_id"], row["response"]): answer_score(
        [float(oracle_answer(q, prompts[row["prompt_id"]]["layout"])) for q in row["questions"]], row["negated"])
        for row in layout.read_stage(k, "split")}
    counts = {"1": [0, 0, 0], "2": [0, 0, 0], "3+": [0, 0, 0]}
    for row in layout.read_stage(k, "pairs"):
        margin = row["chosen_score"] - row["rejected_score"]
        gap = truth[row["prompt_id"], _text(row["chosen"])] - truth[row["prompt_id"], _text(row["rejected"])]
        counts["1" if margin < 2 else "2" if margin < 3 else "3+"][0 if gap > 0 else 1 if gap == 0 else 2] += 1
    return counts


def eval_figures(rows: list[dict], vocab) -> dict:
    mentions = partner_errors = other_errors = perception_errors = words = 0
    for row in rows:
        gt = set(row["gt_objects"])
        partners = {partner(o) for o in gt}
        found = vocab.mentions(row["response"])
        mentions += len(found)
        partner_errors += sum(o not in gt and o in partners for o in found)
        others = [o for o in found if o not in gt and o not in partners]
        other_errors += len(others)
        perception_errors += sum(shares_colour_or_shape(o, gt) for o in others)
        words += len(row["response"].split())
    return {"words": words / len(rows), "chair_i": (partner_errors + other_errors) / max(1, mentions),
            "partner_share": partner_errors / max(1, partner_errors + other_errors),
            "hallucinated": partner_errors + other_errors, "perception": perception_errors, "mentions": mentions}


def main(runs: list[str]) -> None:
    vocab = ShapesWorld.vocabulary()
    print("| run | round | pairs | chosen / rejected words | chosen shorter | margin | partner pairs | DPO loss first→last "
          "| reward acc | answer words | CHAIR-i | partner share of hallucinations | perception errors / mentions |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        layout = RunLayout(run)
        train = {m["round"]: m for m in layout.metrics() if m.get("stage") == "train"}
        for k in layout.round_numbers():
            evaluated = layout.read_eval(k, "shapesworld")
            if evaluated is None:
                break
            e = eval_figures(evaluated[1], vocab)
            p = pair_figures(layout, k, vocab) if k and layout.is_done(k, "pairs") else {"pairs": 0}
            t = train.get(k, {})
            pairs = (f"{p['pairs']} | {p['chosen_words']:.1f} / {p['rejected_words']:.1f} | {p['chosen_shorter']:.0%} | "
                     f"{p['margin']:.2f} | {p['partner_pairs']:.0%}") if p["pairs"] else "- | - | - | - | -"
            loss = f"{t['loss_first']:.3f}→{t['loss_last']:.3f}" if t.get("loss_first") is not None else "-"
            acc = f"{t['reward_accuracy']:.2f}" if t.get("reward_accuracy") is not None else "-"
            print(f"| {layout.root.name} | {k} | {pairs} | {loss} | {acc} | {e['words']:.1f} | {e['chair_i']:.1%} | "
                  f"{e['partner_share']:.0%} of {e['hallucinated']} | {e['perception']} / {e['mentions']} |")
    print("\n| run | round | pairs by labeler margin: right / tie / wrong by ShapesWorld's truth, margin 1 | 2 | 3+ |")
    print("|---|---|---|---|---|")
    for run in runs:
        layout = RunLayout(run)
        for k in layout.round_numbers():
            if k and layout.is_done(k, "split") and layout.is_done(k, "pairs"):
                cells = [f"{n}: " + " / ".join(f"{c / max(1, n):.0%}" for c in counts) for counts in
                         truth_by_margin(layout, k).values() for n in [sum(counts)]]
                print(f"| {layout.root.name} | {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
