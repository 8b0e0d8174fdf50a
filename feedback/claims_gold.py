"""The divide step's gold set and its scorer.

``feedback/gold/claims_gold.jsonl``: descriptions of everyday scenes in the styles of LLaVA-1.5 ("The image
features ...") and Qwen2.5-VL (paragraphs and Markdown lists), each with the atomic claims a careful
annotator asks as yes/no questions (``negated`` for a claim the description denies) and its object mentions.
Items have ``split`` dev (looked at while building the rule splitter) or heldout (scored only at the end).

Scoring compares normalised questions: lower case, letters and digits only, articles dropped, "are"/"do" read
as "is"/"does" and plural nouns as singular ("Are there trees in the image?" = "Is there a tree in the
image?"; "Are there two trees ...?" stays a different question), the negation flag part of the key.
Claim precision = matched / predicted, recall = matched / gold, summed over items; object-mention coverage =
the share of gold object mentions that get an existence question ("Is there a <object> in the image?").
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from evaluation.hallucination import InputError
from feedback import claims_lexicon as lex

GOLD = Path(__file__).parent / "gold" / "claims_gold.jsonl"
_DROP = {"a", "an", "the"}
_SAME = {"are": "is", "do": "does"}


def load_gold(path: str | Path = GOLD, split: str | None = None) -> list[dict]:
    items = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            item["claims"] = [(c["question"], bool(c["negated"])) for c in item["claims"]]
            if not isinstance(item["text"], str) or not isinstance(item["objects"], list):
                raise TypeError("text must be a string and objects a list")
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}:{n}: bad gold item ({type(e).__name__}: {e})") from None
        if split is None or item["split"] == split:
            items.append(item)
    return items


def normalize(question: str) -> str:
    words = [_SAME.get(w, w) for w in re.findall(r"[a-z0-9]+", question.lower()) if w not in _DROP]
    return " ".join(lex.noun_lemma(w) if w not in ("is", "does", "there") and lex.is_noun(w) else w for w in words)


def score(items: list[dict], split_answer) -> dict:
    """Claim precision/recall and object-mention coverage of ``split_answer`` (text -> [(question, negated)])."""
    matched = predicted = gold = objects = covered = 0
    for item in items:
        ours = {(normalize(q), neg) for q, neg in split_answer(item["text"])}
        theirs = {(normalize(q), neg) for q, neg in item["claims"]}
        matched, predicted, gold = matched + len(ours & theirs), predicted + len(ours), gold + len(theirs)
        objects += len(item["objects"])
        covered += sum((normalize(f"Is there a {o} in the image?"), False) in ours for o in item["objects"])
    return {"items": len(items), "claims_gold": gold, "claims_predicted": predicted,
            "precision": round(matched / max(1, predicted), 4), "recall": round(matched / max(1, gold), 4),
            "object_coverage": round(covered / max(1, objects), 4)}


def differences(item: dict, split_answer) -> tuple[list[str], list[str]]:
    """(questions only the splitter asks, gold questions it misses) of one item, for reading."""
    ours = {(normalize(q), neg): q for q, neg in split_answer(item["text"])}
    theirs = {(normalize(q), neg): q for q, neg in item["claims"]}
    return [q for k, q in ours.items() if k not in theirs], [q for k, q in theirs.items() if k not in ours]
