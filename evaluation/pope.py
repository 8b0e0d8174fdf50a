"""POPE (Li et al. 2023): released question files read as they are, or built from COCO annotations.

A released file (``coco_pope_random.json`` ...) holds one JSON object a line:
``{"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
"label": "yes"}``. Answers are read with POPE's own rule (:func:`pope_answer`) unless told otherwise.
"""
from __future__ import annotations

import random
from pathlib import Path

from evaluation.coco import CocoAnnotations
from evaluation.hallucination import (InputError, cooccurrence_stats, parse_yes_no, pope_questions, pope_scores,
                                      read_jsonl)

POPE_SETTINGS = ("random", "popular", "adversarial")


def pope_answer(text: str) -> bool:
    """POPE's evaluate.py: keep the first sentence, drop commas; "no"/"No"/"not" among its words is a no."""
    words = text.split(".")[0].replace(",", "").split(" ")
    return not ({"No", "no", "not"} & set(words))


# "first-word" is the ShapesWorld eval's reading (an answer that starts with neither word is a no).
ANSWER_RULES = {"pope": pope_answer, "first-word": parse_yes_no}


def answer_parser(rule: str):
    if rule not in ANSWER_RULES:
        raise InputError(f"pope: unknown answer_rule {rule!r}; expected one of {', '.join(ANSWER_RULES)}")
    return ANSWER_RULES[rule]


def read_questions(path: str | Path) -> list[dict]:
    """A released POPE question file; every line needs ``image``, ``text`` and a ``label`` of yes or no."""
    rows = read_jsonl(Path(path))
    for lineno, row in rows:
        missing = [k for k in ("image", "text", "label") if k not in row]
        if missing:
            raise InputError(f"{path}:{lineno}: question lacks {', '.join(missing)}")
        if row["label"] not in ("yes", "no"):
            raise InputError(f"{path}:{lineno}: label {row['label']!r}; expected 'yes' or 'no'")
    return [row for _, row in rows]


def build_questions(annotations: CocoAnnotations, images: int = 500, per_image: int = 3,
                    seed: int = 0) -> dict[str, list[dict]]:
    """POPE's construction: ``images`` images with at least ``per_image`` annotated categories (seeded sample);
    each gets ``per_image`` present and as many absent categories per setting. Popular and adversarial
    statistics (frequency, co-occurrence) come from every annotated image, as POPE takes them from the whole set.
    Returns setting -> questions in the released format."""
    eligible = sorted(i for i, cats in annotations.categories.items() if len(cats) >= per_image)
    if len(eligible) < images:
        raise InputError(f"pope: only {len(eligible)} annotated images have {per_image}+ categories; "
                         f"{images} were asked for (lower pope.images)")
    chosen = sorted(random.Random(seed).sample(eligible, images))
    frequency, cooccurrence = cooccurrence_stats(list(annotations.categories.values()))
    truth = [annotations.categories[i] for i in chosen]
    built = {}
    for setting in POPE_SETTINGS:
        items = pope_questions(truth, annotations.category_names, setting, per_image, seed,
                               frequency=frequency, cooccurrence=cooccurrence)
        built[setting] = [{"question_id": n, "image": annotations.file_name(chosen[q["image_index"]]),
                           "text": q["question"], "label": "yes" if q["label"] else "no"}
                          for n, q in enumerate(items, 1)]
    return built


def score_setting(answers: list[str], questions: list[dict], rule: str = "pope") -> dict:
    """Accuracy, precision, recall, F1 ("yes" positive) and yes-ratio of one setting's answers."""
    return pope_scores(answers, [q["label"] == "yes" for q in questions], parse=answer_parser(rule))
