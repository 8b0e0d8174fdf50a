"""CHAIR as Rohrbach et al.'s released ``chair.py`` computes it, and Object HalBench's two rates.

Matching follows the release step by step: lower-case, tokenize, singularize every word; fold two-word
phrases left to right ("hot dog", "teddy bear", "motor bike"; "baby"/"adult" before an animal and
"passenger" before a jet or train give the animal or vehicle; "toilet seat" gives "toilet"); drop every
"seat" when the text also names a toilet; keep the words of the synonym table, each mapped to its category.
Every occurrence is a mention, as in the release. Ground truth of an image = its instance categories plus
the categories its reference captions mention.

Singularization is :func:`evaluation.hallucination.singularize` (the release used pattern.en), applied to
the table too, so a table word and a text word always meet in the same form.
"""
from __future__ import annotations

from dataclasses import dataclass

from evaluation.chair_synonyms import ANIMAL_WORDS, COCO_SYNONYMS, NON_OBJECT_DOUBLE_WORDS, VEHICLE_WORDS
from evaluation.coco import CocoAnnotations
from evaluation.hallucination import InputError, normalized_words, safe_ratio


def parse_synonyms(text: str, source: str = "synonyms") -> list[list[str]]:
    """Lines of ``category, synonym, ...`` (CHAIR's synonyms.txt format); blank lines skipped."""
    lines = [[s.strip() for s in line.split(",")] for line in text.splitlines() if line.strip()]
    for n, line in enumerate(lines, 1):
        if not all(line):
            raise InputError(f"{source}: line {n} has an empty name between commas")
    return lines


@dataclass(frozen=True)
class Mention:
    word: str      # the (singular) words as the text said them: "puppy", "hot dog"
    category: str  # the category they name: "dog", "hot dog"


class ChairVocabulary:
    """CHAIR's word -> category map and its two-word rules, built from synonym lines."""

    def __init__(self, lines: list[list[str]], source: str = "synonyms"):
        self.category_of: dict[str, str] = {}
        for line in lines:
            for phrase in line:
                key = " ".join(normalized_words(phrase))
                if len(key.split()) > 2:
                    raise InputError(f"{source}: {phrase!r} has more than two words; CHAIR matches one or two")
                if self.category_of.setdefault(key, line[0]) != line[0]:
                    raise InputError(f"{source}: {phrase!r} is listed under both {self.category_of[key]!r} "
                                     f"and {line[0]!r}")
        self.categories = list(dict.fromkeys(line[0] for line in lines))
        self.double_words = {w: w for w in self.category_of if " " in w}
        self.double_words.update({w: w for w in NON_OBJECT_DOUBLE_WORDS})
        for animal in ANIMAL_WORDS:
            self.double_words.update({f"baby {animal}": animal, f"adult {animal}": animal})
        self.double_words.update({f"passenger {v}": v for v in VEHICLE_WORDS})
        self.double_words.update({"bow tie": "tie", "toilet seat": "toilet"})

    @classmethod
    def coco(cls) -> ChairVocabulary:
        return cls(parse_synonyms(COCO_SYNONYMS, "COCO synonyms"), "COCO synonyms")

    def mentions(self, text: str) -> list[Mention]:
        """Every object mention in text, repeats included, in order."""
        words, folded, i = normalized_words(text), [], 0
        while i < len(words):
            pair = " ".join(words[i:i + 2])
            if pair in self.double_words:
                folded.append(self.double_words[pair])
                i += 2
            else:
                folded.append(words[i])
                i += 1
        if "toilet" in folded and "seat" in folded:  # "the seat of the toilet" is no chair
            folded = [w for w in folded if w != "seat"]
        return [Mention(w, self.category_of[w]) for w in folded if w in self.category_of]

    def category(self, name: str, source: str) -> str:
        """The category a COCO category name stands for; InputError naming ``source`` when the table lacks it."""
        key = " ".join(normalized_words(name))
        if key not in self.category_of:
            raise InputError(f"{source}: category {name!r} is not in the CHAIR synonym table")
        return self.category_of[key]


def ground_truth(annotations: CocoAnnotations, image_id: int, vocab: ChairVocabulary) -> set[str]:
    """CHAIR's ground truth: the image's instance categories and every category its captions mention."""
    truth = {vocab.category(name, f"instances of image {image_id}") for name in annotations.categories.get(image_id, [])}
    for caption in annotations.captions.get(image_id, []):
        truth.update(m.category for m in vocab.mentions(caption))
    return truth


def score_answer(response: str, truth: set[str], vocab: ChairVocabulary) -> dict:
    """One answer: its mentions (categories, repeats kept), the hallucinated ones, the truth it covers."""
    mentions = vocab.mentions(response)
    return {"mentioned": [m.category for m in mentions],
            "hallucinated": [m.category for m in mentions if m.category not in truth],
            "covered": sorted({m.category for m in mentions} & truth),
            "unique_words": list(dict.fromkeys(mentions))}


def chair_metrics(responses: list[str], truths: list[set[str]], vocab: ChairVocabulary) -> tuple[dict, list[dict]]:
    """(metrics, per-answer results). CHAIR-i counts every mention, as the release does; Object HalBench's
    rates follow RLAIF-V's eval: ``halbench_response`` = answers with a hallucination / answers naming an
    object, ``halbench_mention`` = hallucinated / all mentions with each distinct word counted once an answer.
    ``mean_length`` is in whitespace-separated words."""
    if len(responses) != len(truths):
        raise InputError(f"chair-coco: {len(responses)} responses but {len(truths)} ground-truth sets")
    results = [score_answer(r, t, vocab) for r, t in zip(responses, truths)]
    mentions = sum(len(r["mentioned"]) for r in results)
    hallucinated = sum(len(r["hallucinated"]) for r in results)
    bad = sum(bool(r["hallucinated"]) for r in results)
    naming = sum(bool(r["mentioned"]) for r in results)
    unique = [m for r in results for m in r["unique_words"]]
    unique_bad = sum(1 for r, t in zip(results, truths) for m in r["unique_words"] if m.category not in t)
    metrics = {"chair_s": safe_ratio(bad, len(results)), "chair_i": safe_ratio(hallucinated, mentions),
               "recall": safe_ratio(sum(len(r["covered"]) for r in results), sum(len(t) for t in truths)),
               "mean_length": safe_ratio(sum(len(r.split()) for r in responses), len(responses)),
               "halbench_response": safe_ratio(bad, naming), "halbench_mention": safe_ratio(unique_bad, len(unique)),
               "n": len(results), "mentions": mentions, "hallucinated": hallucinated}
    return metrics, [{k: v for k, v in r.items() if k != "unique_words"} for r in results]
