"""BPO's rule-based error injection for general English: a reference answer rewritten with one wrong detail
that still reads plausibly (as BPO's paper does), from a vocabulary of objects that co-occur.

Four kinds of edit, in a seeded order: ``object`` swaps a named object for one that shares a scene with it
and is not named yet (a fork becomes a spoon: the language prior's kind of error), ``color`` changes a
colour, ``count`` a number, ``relation`` a place (left/right, above/below, in front of/behind, on/under).
The default vocabulary is COCO's 80 categories, grouped by the scenes they appear in together; ShapesWorld
descriptions keep their own injector (``feedback.bpo``).
"""
from __future__ import annotations

import random
import re

EDITS = ("object", "color", "count", "relation")
# COCO's 80 categories, each in the scenes where it is seen with the others: objects of a scene co-occur.
COCO_SCENES = {
    "street": ("person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light", "fire hydrant",
               "stop sign", "parking meter", "bench", "umbrella", "handbag", "backpack", "dog"),
    "travel": ("airplane", "train", "boat", "suitcase", "backpack", "handbag", "person", "bench", "clock"),
    "animals": ("horse", "sheep", "cow", "dog", "bird", "elephant", "zebra", "giraffe", "bear"),
    "sports": ("frisbee", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
               "tennis racket", "skis", "snowboard", "bench", "bottle", "backpack"),
    "dining": ("dining table", "cup", "fork", "knife", "spoon", "bowl", "bottle", "wine glass", "pizza",
               "sandwich", "cake", "donut", "hot dog", "chair", "vase", "banana", "apple", "orange"),
    "kitchen": ("refrigerator", "oven", "microwave", "toaster", "sink", "bowl", "cup", "knife", "bottle", "banana",
                "apple", "orange", "broccoli", "carrot", "potted plant", "clock"),
    "living room": ("couch", "chair", "tv", "remote", "potted plant", "book", "clock", "vase", "laptop", "cat",
                    "dog", "teddy bear"),
    "office": ("laptop", "mouse", "keyboard", "cell phone", "book", "cup", "chair", "clock", "scissors", "tie"),
    "bathroom": ("toilet", "sink", "toothbrush", "hair drier", "scissors", "bottle", "cup"),
    "bedroom": ("bed", "teddy bear", "book", "clock", "laptop", "cell phone", "cat", "dog", "remote"),
}
# COCO's supercategories: a swap stays within one where it can (a bike becomes a motorcycle, not a bench).
COCO_KINDS = {
    "vehicle": ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"),
    "outdoor": ("traffic light", "fire hydrant", "stop sign", "parking meter", "bench"),
    "animal": ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
    "accessory": ("backpack", "umbrella", "handbag", "tie", "suitcase"),
    "sports": ("frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
               "surfboard", "tennis racket"),
    "kitchen": ("bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl"),
    "food": ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake"),
    "furniture": ("chair", "couch", "potted plant", "bed", "dining table", "toilet"),
    "electronic": ("tv", "laptop", "mouse", "remote", "keyboard", "cell phone"),
    "appliance": ("microwave", "oven", "toaster", "sink", "refrigerator"),
    "indoor": ("book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"),
}
# How answers name some categories; a swap writes the first name.
NAMES = {"tv": ("television", "tv"), "sports ball": ("ball",), "dining table": ("table", "dining table"),
         "hair drier": ("hair dryer", "hair drier"), "cell phone": ("cell phone", "phone", "cellphone"),
         "bicycle": ("bicycle", "bike"), "motorcycle": ("motorcycle", "motorbike"), "airplane": ("airplane", "plane"),
         "couch": ("couch", "sofa"), "refrigerator": ("refrigerator", "fridge"), "donut": ("donut", "doughnut"),
         "tennis racket": ("tennis racket", "racket"), "potted plant": ("potted plant", "plant"),
         "fire hydrant": ("fire hydrant", "hydrant"), "dog": ("dog", "puppy"), "cat": ("cat", "kitten")}
PERSON_WORDS = {"person", "people", "man", "men", "woman", "women", "boy", "girl", "child", "children", "kid"}
COLORS = ("red", "green", "blue", "yellow", "purple", "pink", "brown", "black", "white", "gray", "silver")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
RELATIONS = {"left": "right", "right": "left", "above": "below", "below": "above", "in front of": "behind",
             "behind": "in front of", "on top of": "underneath", "under": "on", "underneath": "on top of",
             "inside": "outside", "outside": "inside", "near": "far from", "next to": "across from"}
_IRREGULAR_PLURALS = {"person": "people", "knife": "knives", "mouse": "mice", "sheep": "sheep", "skis": "skis",
                      "scissors": "scissors"}


def plural(name: str) -> str:
    head, _, last = name.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        last = _IRREGULAR_PLURALS[last]
    elif re.search(r"(s|sh|ch|x)$", last):
        last += "es"
    elif re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}".strip()


class Vocabulary:
    """Object categories, how answers name them, and which co-occur (share a scene)."""

    def __init__(self, scenes: dict[str, tuple[str, ...]], names: dict[str, tuple[str, ...]] | None = None,
                 kinds: dict[str, tuple[str, ...]] | None = None):
        names, kinds = names or {}, kinds or {}
        self.categories = sorted({c for members in scenes.values() for c in members})
        kind_of = {c: kind for kind, members in kinds.items() for c in members}
        self.partners = {}
        for c in self.categories:
            together = sorted({o for members in scenes.values() if c in members for o in members} - {c})
            alike = [o for o in together if kind_of.get(o, o) == kind_of.get(c, c)]
            self.partners[c] = alike or together
        self.written = {c: names.get(c, (c,))[0] for c in self.categories}
        surface = {}
        for c in self.categories:
            for name in names.get(c, (c,)) + (c,):
                surface[name], surface[plural(name)] = (c, False), (c, True)
        self.surface = surface
        words = sorted(surface, key=len, reverse=True)
        self.pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.I)

    def mentions(self, text: str) -> list[re.Match]:
        return [m for m in self.pattern.finditer(text) if m[1].lower() not in PERSON_WORDS]


COCO = Vocabulary(COCO_SCENES, NAMES, COCO_KINDS)


def _with_article(text: str, start: int, word: str) -> str:
    """ "a apple" -> "an apple": the article before a replaced word follows it."""
    before = re.search(r"\b(an?)\s+$", text[:start], re.I)
    if not before:
        return text
    article = "an" if word[0].lower() in "aeiou" else "a"
    article = article.capitalize() if before[1][0].isupper() else article
    return text[:before.start(1)] + article + text[before.end(1):]


def _swap_object(text: str, rng: random.Random, vocab: Vocabulary) -> str | None:
    found = vocab.mentions(text)
    named = {vocab.surface[m[1].lower()][0] for m in found}
    options = [(m, p) for m in found for p in vocab.partners[vocab.surface[m[1].lower()][0]] if p not in named]
    if not options:  # every partner is named already: any partner still makes a wrong answer
        options = [(m, p) for m in found for p in vocab.partners[vocab.surface[m[1].lower()][0]]]
    if not options:
        return None
    m, partner = rng.choice(options)
    word = vocab.written[partner]
    word = plural(word) if vocab.surface[m[1].lower()][1] else word
    word = word.capitalize() if m[1][0].isupper() else word
    return _with_article(text[:m.start()] + word + text[m.end():], m.start(), word)


def _replace_word(text: str, rng: random.Random, words, choose) -> str | None:
    found = list(re.finditer(r"\b(" + "|".join(map(re.escape, sorted(words, key=len, reverse=True))) + r")\b",
                             text, re.I))
    if not found:
        return None
    m = rng.choice(found)
    new = choose(m[1].lower())
    new = new.capitalize() if m[1][0].isupper() else new
    return _with_article(text[:m.start()] + new + text[m.end():], m.start(), new)


def _recolor(text: str, rng: random.Random, _) -> str | None:
    return _replace_word(text, rng, COLORS, lambda old: rng.choice([c for c in COLORS if c != old]))


def _recount(text: str, rng: random.Random, _) -> str | None:
    def other(old: str) -> str:
        n = NUMBERS.index(old)
        return NUMBERS[n + 1] if n == 0 or (n + 1 < len(NUMBERS) and rng.random() < 0.5) else NUMBERS[n - 1]
    return _replace_word(text, rng, NUMBERS, other)


def _move(text: str, rng: random.Random, _) -> str | None:
    return _replace_word(text, rng, RELATIONS, RELATIONS.__getitem__)


_RULES = {"object": _swap_object, "color": _recolor, "count": _recount, "relation": _move}


def english_inject(reference: str, count: int, seed: int, vocab: Vocabulary = COCO) -> list[str]:
    """Up to ``count`` distinct wrong rewrites of a free-form answer, each of another kind of edit (kinds that
    find nothing to change give way to the next)."""
    rng = random.Random(seed)
    result = []
    for kind in random.Random(seed).sample(EDITS, len(EDITS)):
        text = _RULES[kind](reference, rng, vocab)
        if text and text != reference and text not in result:
            result.append(text)
        if len(result) == count:
            break
    return result
