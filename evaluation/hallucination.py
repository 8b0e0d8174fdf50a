"""Hallucination metrics: CHAIR over free-form answers and POPE-style yes/no probes.

All matching goes through an :class:`ObjectVocabulary`, so one code path scores ShapesWorld ("red circle")
and COCO-style annotations ("dog" with "puppy"). Needs only the stdlib and NLTK's data-free regexp tokenizer.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nltk.tokenize import RegexpTokenizer


class InputError(ValueError):
    """Bad input given by a user: the message names the input (file path, field) and what is wrong."""


# Words (with an optional inner apostrophe) and single punctuation marks. Punctuation is kept as a
# token so a phrase never matches across it ("red. circle"); hyphens and apostrophes are plain
# separators so "hot-dog" still reads as "hot dog".
_TOKENIZER = RegexpTokenizer(r"\w+(?:'\w+)*|[^\w\s'\-]")
_IRREGULAR = {"men": "man", "women": "woman", "children": "child", "feet": "foot", "teeth": "tooth",
              "mice": "mouse", "knives": "knife", "shelves": "shelf", "leaves": "leaf", "buses": "bus",
              "tomatoes": "tomato", "potatoes": "potato", "cookies": "cookie", "movies": "movie",
              "geese": "goose", "taxis": "taxi", "calves": "calf"}
_KEEP_ENDINGS = ("ss", "us", "is")  # glass, bus, tennis: a final s that is not a plural
_ES_ENDINGS = ("sses", "ches", "shes", "xes")
_POPE_KINDS = ("random", "popular", "adversarial")


def singularize(word: str) -> str:
    """Rule-based singular of one lower-case word: circles->circle, boxes->box, puppies->puppy.

    Words of up to three letters or ending in "ss", "us", "is" are kept (glass, bus); a few irregular
    plurals are listed. Singular words map to themselves, so vocabulary and answers share one normalisation.
    """
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or not word.endswith("s") or word.endswith(_KEEP_ENDINGS):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(_ES_ENDINGS):
        return word[:-2]
    return word[:-1]


def normalized_words(text: str) -> list[str]:
    """Lower-cased tokens, singularized, possessive "'s" dropped; punctuation marks stay tokens of their own."""
    text = text.lower().replace("\u2019", "'")
    return [singularize(re.sub(r"'s$", "", tok)) for tok in _TOKENIZER.tokenize(text)]


@dataclass(frozen=True)
class ObjectVocabulary:
    """Canonical object name -> surface phrases (singular, 1+ words; the name itself is implicitly one).

    A phrase listed under two different canonical names is ambiguous and raises :class:`InputError`.
    """

    synonyms: dict[str, tuple[str, ...]]
    _index: dict[tuple[str, ...], str] = field(init=False, repr=False, compare=False)
    _longest: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, ...], str] = {}
        for canonical, phrases in self.synonyms.items():
            for phrase in (canonical, *phrases):
                key = tuple(normalized_words(phrase))
                if not key:
                    raise InputError(f"object vocabulary: phrase {phrase!r} of {canonical!r} has no words")
                if index.setdefault(key, canonical) != canonical:
                    raise InputError(f"object vocabulary: phrase {phrase!r} is listed under both "
                                     f"{index[key]!r} and {canonical!r}")
        object.__setattr__(self, "synonyms", {c: tuple(p) for c, p in self.synonyms.items()})
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_longest", max(map(len, index), default=0))

    def canonical(self, name: str) -> str:
        """Canonical object for a whole phrase ("puppies" -> "dog"); InputError if it is not in the vocabulary."""
        if (key := tuple(normalized_words(name))) not in self._index:
            raise InputError(f"object {name!r} is not in the object vocabulary")
        return self._index[key]

    def mentions(self, text: str) -> list[str]:
        """Canonical objects mentioned in text: unique, in order of first mention.

        Lower-cases, tokenizes with NLTK, singularizes each word, and matches phrases longest-first
        ("large red circle" mentions "red circle"; "hot dog" wins over "dog" when both are listed).
        Punctuation never glues words, and no phrase spans it.
        """
        tokens, found, i = normalized_words(text), {}, 0
        while i < len(tokens):
            length = next((n for n in range(min(self._longest, len(tokens) - i), 0, -1)
                           if tuple(tokens[i:i + n]) in self._index), 0)
            if length:
                found.setdefault(self._index[tuple(tokens[i:i + length])])
            i += max(length, 1)
        return list(found)

    @classmethod
    def from_json(cls, path) -> ObjectVocabulary:
        """Reads ``{"canonical": ["synonym", ...], ...}``.

        A missing, unreadable or malformed file raises InputError naming the path.
        """
        try:
            data = json.loads(read_text_file(Path(path)))
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                                 for v in data.values()):
            raise InputError(f"{path}: expected a JSON object mapping each object name to a list of synonym strings")
        try:
            return cls({name: tuple(phrases) for name, phrases in data.items()})
        except InputError as err:
            raise InputError(f"{path}: {err}") from None


def read_text_file(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: file does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot be read ({err})") from None


def per_answer(response: str, gt: list[str], vocab: ObjectVocabulary) -> dict:
    """One answer against its ground truth: ``{'mentioned', 'hallucinated', 'covered'}``, canonical names.

    ``hallucinated``: mentioned objects not in the ground truth; ``covered``: unique canonicalised
    ground-truth objects the answer mentions, in ground-truth order.
    """
    truth = list(dict.fromkeys(vocab.canonical(name) for name in gt))
    mentioned = vocab.mentions(response)
    return {"mentioned": mentioned, "hallucinated": [m for m in mentioned if m not in truth],
            "covered": [t for t in truth if t in mentioned]}


def safe_ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def chair(responses: list[str], gt_objects: list[list[str]], vocab: ObjectVocabulary) -> dict:
    """CHAIR over a set of answers: ``{'chair_s', 'chair_i', 'recall', 'n', 'mentions', 'hallucinated'}``.

    Mentions are unique canonical objects per answer. chair_i = hallucinated mentions / mentions,
    chair_s = answers with >=1 hallucinated object / answers, recall = ground-truth objects mentioned /
    ground-truth objects, each 0.0 on a zero denominator; ``mentions`` and ``hallucinated`` are the
    totals behind chair_i. Ground-truth names are canonicalised through the vocabulary; an unknown
    name or a length mismatch raises InputError.
    """
    if len(responses) != len(gt_objects):
        raise InputError(f"chair: {len(responses)} responses but {len(gt_objects)} ground-truth object lists")
    mentions = hallucinated = bad_answers = covered = truth = 0
    for response, gt in zip(responses, gt_objects):
        result = per_answer(response, gt, vocab)
        mentions += len(result["mentioned"])
        hallucinated += len(result["hallucinated"])
        bad_answers += bool(result["hallucinated"])
        covered += len(result["covered"])
        truth += len({vocab.canonical(name) for name in gt})
    return {"chair_s": safe_ratio(bad_answers, len(responses)), "chair_i": safe_ratio(hallucinated, mentions),
            "recall": safe_ratio(covered, truth), "n": len(responses), "mentions": mentions, "hallucinated": hallucinated}


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; InputError naming file and line otherwise."""
    rows = []
    for lineno, line in enumerate(read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{lineno}: invalid JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object")
        rows.append((lineno, row))
    return rows


def load_annotations(path) -> list[dict]:
    """Reads a JSONL file of ``{'id', 'gt_objects', 'response'}`` records (an eval's responses.jsonl).

    Blank lines are skipped. A missing file, a directory, invalid JSON, or a record missing a field
    or holding one of the wrong type raises InputError naming the file (and line number).
    """
    path = Path(path)
    records = []
    for lineno, record in read_jsonl(path):
        missing = [key for key in ("id", "gt_objects", "response") if key not in record]
        if missing:
            raise InputError(f"{path}:{lineno}: missing field {', '.join(map(repr, missing))}")
        gt = record["gt_objects"]
        if not isinstance(gt, list) or not all(isinstance(name, str) for name in gt):
            raise InputError(f"{path}:{lineno}: field 'gt_objects' must be a list of strings")
        if not isinstance(record["response"], str):
            raise InputError(f"{path}:{lineno}: field 'response' must be a string")
        records.append(record)
    return records


def parse_yes_no(text: str) -> bool | None:
    """True/False when the first word is yes/no (any case, surrounding punctuation ignored), else None."""
    first = re.match(r"[\W_]*([a-z]+)", text.lower())
    return {"yes": True, "no": False}.get(first.group(1)) if first else None


def pope_questions(gt_objects: list[list[str]], objects: list[str], kind: str, per_image: int, seed: int,
                   frequency: dict[str, int] | None = None,
                   cooccurrence: dict[str, dict[str, int]] | None = None) -> list[dict]:
    """POPE-style yes/no questions, balanced per image; deterministic for a seed.

    Image ``i`` gets up to ``per_image`` present objects (label True, seeded sample) and as many absent
    ones from ``objects`` (label False); with fewer absent candidates it gets fewer of both. Absent
    objects are chosen by ``kind``: 'random' (uniform), 'popular' (highest ``frequency``) or
    'adversarial' (highest ``cooccurrence`` summed over the image's present objects), ties broken by
    the seeded generator. Items are ``{'image_index', 'object', 'label', 'kind', 'question'}``, present
    ones first. An unknown kind or missing statistics raise InputError.
    """
    if kind not in _POPE_KINDS:
        raise InputError(f"pope_questions: unknown kind {kind!r}; expected one of {', '.join(_POPE_KINDS)}")
    needed = {"popular": ("frequency", frequency), "adversarial": ("cooccurrence", cooccurrence)}
    if kind in needed and needed[kind][1] is None:
        raise InputError(f"pope_questions: kind {kind!r} needs the {needed[kind][0]} statistics")
    rng = random.Random(seed)
    universe = list(dict.fromkeys(objects))
    items = []
    for i, gt in enumerate(gt_objects):
        present = list(dict.fromkeys(gt))
        absent = [o for o in universe if o not in present]
        count = max(0, min(per_image, len(present), len(absent)))
        rng.shuffle(absent)  # the stable sort below keeps this order among equal scores
        if kind == "popular":
            absent.sort(key=lambda o: -frequency.get(o, 0))
        elif kind == "adversarial":
            absent.sort(key=lambda o: -sum(cooccurrence.get(p, {}).get(o, 0) for p in present))
        chosen = [(o, True) for o in rng.sample(present, count)] + [(o, False) for o in absent[:count]]
        items += [{"image_index": i, "object": o, "label": label, "kind": kind,
                   "question": f"Is there a {o} in the image?"} for o, label in chosen]
    return items


def pope_scores(answers: list[str], labels: list[bool],
                parse: Callable[[str], bool | None] = parse_yes_no) -> dict:
    """``{'accuracy', 'precision', 'recall', 'f1', 'yes_ratio', 'n', 'unparsed'}``, "yes" the positive class.

    ``parse`` reads an answer as True (yes), False (no) or None; an answer read as None counts as "no" and
    in ``unparsed``. Zero divisions give 0.0; a length mismatch raises InputError.
    """
    if len(answers) != len(labels):
        raise InputError(f"pope_scores: {len(answers)} answers but {len(labels)} labels")
    parsed = [parse(a) for a in answers]
    # keys are (said yes, label)
    counts = Counter((p is True, bool(label)) for p, label in zip(parsed, labels))
    tp, fp, fn, tn = counts[True, True], counts[True, False], counts[False, True], counts[False, False]
    precision, recall = safe_ratio(tp, tp + fp), safe_ratio(tp, tp + fn)
    return {"accuracy": safe_ratio(tp + tn, len(answers)), "precision": precision, "recall": recall,
            "f1": safe_ratio(2 * precision * recall, precision + recall), "yes_ratio": safe_ratio(tp + fp, len(answers)),
            "n": len(answers), "unparsed": parsed.count(None)}


def cooccurrence_stats(object_lists: list[list[str]]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """(frequency, cooccurrence) for :func:`pope_questions`: ``frequency[a]`` counts the lists holding
    ``a``, ``cooccurrence[a][b]`` (symmetric, a != b) those holding both; duplicates in a list count once.
    """
    frequency: Counter[str] = Counter()
    partners: dict[str, Counter[str]] = {}
    for objs in object_lists:
        unique = list(dict.fromkeys(objs))
        frequency.update(unique)
        for a in unique:
            partners.setdefault(a, Counter()).update(b for b in unique if b != a)
    return dict(frequency), {a: dict(counts) for a, counts in partners.items()}
