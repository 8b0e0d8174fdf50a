"""ShapesWorld: a synthetic image world where hallucination is measured exactly.

Each 64x64 image holds 1-3 coloured shapes on a 2x2 grid; every scene knows its objects, so any answer
can be checked word by word. The world carries a *language prior*: in the text the policy is trained on,
an object's partner (another colour and shape) is mentioned with probability ``prior`` even when the
partner is absent. A policy trained on that text learns to see objects and to hallucinate partners, the
way LLaVA learns co-occurrence from COCO captions.

Splits are seeded streams: ``train`` (the policy and labeler corpora), ``prompts`` (the alignment rounds'
prompt pool) and ``eval`` (the held-out set). Scene ``i`` of a split is a pure function of
``(seed, split, i)``.
"""
from __future__ import annotations

import json
import random
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, UnidentifiedImageError

from evaluation.hallucination import InputError, ObjectVocabulary, cooccurrence_stats
from evaluation.seeds import hash_seed

COLORS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
OBJECTS = tuple(f"{c} {s}" for c in COLORS for s in SHAPES)
SPLITS = ("train", "prompts", "eval")
_SPLIT_OF_BUCKET = ("eval", "prompts") + ("train",) * 8
IMAGE_SIZE = 64
DESCRIBE = "Describe the image in detail."
NUMBERS = ("no", "one", "two", "three", "four")

_RGB = {"red": (215, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 215), "yellow": (225, 195, 30)}
# Shapes are drawn with uneven frequency so POPE's "popular" negatives mean something.
_SHAPE_WEIGHTS = (0.35, 0.3, 0.2, 0.15)
_SYNONYMS = {"square": ("box",), "circle": ("disc", "ring"), "diamond": ("rhombus",)}
_TEMPLATES = (
    "There is a {size} {name} at the {pos}.",
    "A {size} {name} is at the {pos}.",
    "I see a {size} {name} in the {pos}.",
)


def partner(name: str) -> str:
    """The object the language prior attaches to ``name``: next colour, opposite shape."""
    color, shape = name.split()
    return f"{COLORS[(COLORS.index(color) + 1) % 4]} {SHAPES[(SHAPES.index(shape) + 2) % 4]}"


def shares_colour_or_shape(name: str, others) -> bool:
    """Whether ``name`` has the colour or the shape of one of ``others``: a hard negative, or a misread object."""
    color, shape = name.split()
    return any(color == other.split()[0] or shape == other.split()[1] for other in others)


@dataclass(frozen=True)
class Obj:
    color: str
    shape: str
    size: str
    cell: int  # index into POSITIONS
    jitter: tuple[int, int] = (0, 0)

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]


@dataclass(frozen=True)
class Scene:
    id: str
    objects: tuple[Obj, ...]

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]

    def render(self) -> Image.Image:
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (235, 235, 235))
        draw = ImageDraw.Draw(image)
        half = IMAGE_SIZE // 2
        for o in self.objects:
            cx = (o.cell % 2) * half + half // 2 + o.jitter[0]
            cy = (o.cell // 2) * half + half // 2 + o.jitter[1]
            r = 8 if o.size == "small" else 13  # smaller shapes were learned far more slowly
            box = (cx - r, cy - r, cx + r, cy + r)
            fill = _RGB[o.color]
            if o.shape == "circle":
                draw.ellipse(box, fill=fill)
            elif o.shape == "square":
                draw.rectangle(box, fill=fill)
            elif o.shape == "triangle":
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
            else:
                draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
        return image


def _rng(*parts) -> random.Random:
    return random.Random(hash_seed(*parts))


def _random_object(rng: random.Random, cell: int) -> Obj:
    return Obj(rng.choice(COLORS), rng.choices(SHAPES, _SHAPE_WEIGHTS)[0], rng.choice(SIZES), cell,
               (rng.randint(-2, 2), rng.randint(-2, 2)))


def describe(objects, rng: random.Random) -> str:
    """A detailed description in the world's grammar: one sentence per object, in reading order."""
    return " ".join(rng.choice(_TEMPLATES).format(size=o.size, name=o.name, pos=o.position)
                    for o in sorted(objects, key=lambda o: o.cell))


class ShapesWorld:
    """Deterministic scene generator, text generator and loader for one world seed and prior strength."""

    def __init__(self, seed: int = 0, prior: float = 0.6):
        self.seed = seed
        self.prior = prior

    def scene(self, split: str, index: int) -> Scene:
        if split not in SPLITS:
            raise InputError(f"unknown ShapesWorld split {split!r}; expected one of {SPLITS}")
        rng = _rng(self.seed, split, index)
        while True:
            cells = rng.sample(range(4), rng.randint(1, 3))
            objects: list[Obj] = []
            for cell in cells:
                obj = _random_object(rng, cell)
                while obj.name in {o.name for o in objects}:  # an object appears at most once per scene
                    obj = _random_object(rng, cell)
                objects.append(obj)
            # A scene's layout hashes to one split, so no image is in two splits, without any shift
            # between their distributions.
            layout = sorted((o.name, o.size, o.cell, o.jitter) for o in objects)
            if _SPLIT_OF_BUCKET[zlib.crc32(repr(layout).encode()) % 10] == split:
                return Scene(f"{split}-{index:06d}", tuple(objects))

    def text_objects(self, scene: Scene, rng: random.Random) -> list[Obj]:
        """The objects the training *text* talks about: the scene's own plus prior-driven partners."""
        objects = list(scene.objects)
        for o in rng.sample(list(scene.objects), len(scene.objects)):
            free = sorted(set(range(4)) - {x.cell for x in objects})
            mate = partner(o.name)
            if free and mate not in {x.name for x in objects} and rng.random() < self.prior:
                color, shape = mate.split()
                objects.append(Obj(color, shape, rng.choice(SIZES), rng.choice(free)))
        return objects

    def policy_example(self, index: int) -> tuple[Image.Image, str, str]:
        """(image, question, answer) from the policy corpus: answers follow the prior-laden text."""
        scene = self.scene("train", index)
        rng = _rng(self.seed, "policy-text", index)
        objects = self.text_objects(scene, rng)
        kind = rng.random()
        if kind < 0.55:
            question, answer = DESCRIBE, describe(objects, rng)
        elif kind < 0.8:
            # Random absent objects, as for the labeler: with half of them hard the policy never left the
            # yes/no plateau and answered "No." to every POPE probe (F1 0.0-0.02).
            question, answer = existence_question(objects, rng, hard=0.0)
        else:
            question, answer = short_question(objects, rng)
        return scene.render(), question, answer

    def labeler_example(self, index: int, attribute_share: float = 0.6) -> tuple[Image.Image, str, str]:
        """(image, question, answer) from the labeler corpus: yes/no existence and attribute checks, and some
        clean captions (to keep the captioner's eyes).

        Absent objects are drawn at random, not hard: trained on hard negatives from the start the labeler sat
        at chance for 1000 steps (57% on hard held-out questions); on random ones it leaves the yes/no plateau
        within ~300 steps and then answers the hard held-out questions too (docs/recipe.md). Size and position
        checks are ``attribute_share`` of the corpus: at 10% the labeler got 60-65% of the policy's own such claims
        right, at 40% (3000 steps) 83% of held-out ones, at 60% (6000 steps) 90-92%.
        """
        scene = self.scene("train", index)
        rng = _rng(self.seed, "labeler-text", index)
        kind = rng.random()
        if kind < 0.1:
            return scene.render(), DESCRIBE, describe(scene.objects, rng)
        if kind < 1.0 - attribute_share:
            question, answer = existence_question(list(scene.objects), rng, hard=0.0)
        else:
            question, answer = attribute_question(list(scene.objects), rng)
        return scene.render(), f"{question} Please answer yes or no.", answer

    def prompt_pool(self, count: int, start: int = 0) -> list[dict]:
        """Alignment prompts ``start..start+count-1``: image, question, reference answer and ground truth."""
        items = []
        for i in range(start, start + count):
            scene = self.scene("prompts", i)
            rng = _rng(self.seed, "prompt-text", i)
            items.append({"id": scene.id, "image": scene.render(), "question": DESCRIBE,
                          "reference": describe(scene.objects, rng), "gt_objects": scene.names,
                          "layout": layout(scene)})
        return items

    def eval_set(self, count: int) -> list[dict]:
        """Held-out description prompts with their ground-truth objects."""
        return [{"id": s.id, "image": s.render(), "question": DESCRIBE, "gt_objects": s.names}
                for s in (self.scene("eval", i) for i in range(count))]

    def claim_questions(self, count: int, hard: float = 0.7, split: str = "eval", start: int = 0) -> list[dict]:
        """Balanced yes/no existence questions on ``split`` scenes ``start..``; ``hard`` of the absent ones
        share a colour or shape with a present object."""
        return self._checks(count, split, start, lambda objects, i: existence_question(
            objects, _rng(self.seed, "claims", i), hard=hard, present=i % 2 == 0))

    def attribute_checks(self, count: int, split: str = "eval", start: int = 0) -> list[dict]:
        """Yes/no size and position questions (as the claim splitter asks them) on ``split`` scenes ``start..``."""
        return self._checks(count, split, start, lambda objects, i: attribute_question(
            objects, _rng(self.seed, "attribute-checks", i)))

    def _checks(self, count: int, split: str, start: int, ask) -> list[dict]:
        """Labelled yes/no items: ``ask(objects, index)`` gives one scene's (question, "Yes."/"No.")."""
        items = []
        for i in range(start, start + count):
            scene = self.scene(split, i)
            question, answer = ask(list(scene.objects), i)
            items.append({"id": scene.id, "image": scene.render(), "question": question, "label": answer == "Yes."})
        return items

    def text_statistics(self, count: int = 4000) -> tuple[dict, dict]:
        """Object frequency and co-occurrence in the policy's training text (POPE popular/adversarial)."""
        return cooccurrence_stats([[o.name for o in self.text_objects(self.scene("train", i), _rng(self.seed, "stats", i))]
                                   for i in range(count)])

    @staticmethod
    def vocabulary() -> ObjectVocabulary:
        return ObjectVocabulary({name: tuple(f"{name.split()[0]} {syn}" for syn in
                                             _SYNONYMS.get(name.split()[1], ())) for name in OBJECTS})

    def write_split(self, items: list[dict], folder: str | Path) -> Path:
        """Materialises items (from eval_set / prompt_pool) as PNG files plus ``items.jsonl``."""
        folder = Path(folder)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        with open(folder / "items.jsonl", "w") as f:
            for item in items:
                path = folder / "images" / f"{item['id']}.png"
                item["image"].save(path)
                row = {k: v for k, v in item.items() if k != "image"}
                f.write(json.dumps({**row, "image": str(path.relative_to(folder))}) + "\n")
        return folder


def existence_question(objects: list[Obj], rng: random.Random, hard: float = 0.5,
                       present: bool | None = None) -> tuple[str, str]:
    """A POPE-style question about a present or absent object; hard negatives share colour or shape."""
    names = {o.name for o in objects}
    if present is None:
        present = rng.random() < 0.5
    if present:
        return f"Is there a {rng.choice(sorted(names))} in the image?", "Yes."
    absent = [n for n in OBJECTS if n not in names]
    near = [n for n in absent if shares_colour_or_shape(n, names)]
    pool = near if near and rng.random() < hard else absent
    return f"Is there a {rng.choice(pool)} in the image?", "No."


def attribute_question(objects: list[Obj], rng: random.Random) -> tuple[str, str]:
    """A yes/no check of one object's size or position; about an absent object the answer is "No."."""
    o = rng.choice(objects) if rng.random() < 0.8 else _random_object(rng, rng.randrange(4))
    same = [x for x in objects if x.name == o.name]
    o, present = (same[0], True) if same else (o, False)
    truthful = rng.random() < 0.5
    if rng.random() < 0.5:
        size = o.size if truthful else SIZES[1 - SIZES.index(o.size)]
        return f"Is the {o.name} {size}?", "Yes." if present and truthful else "No."
    position = o.position if truthful else POSITIONS[(o.cell + rng.randint(1, 3)) % 4]
    preposition = rng.choice(("at", "in"))  # the description grammar uses both
    return f"Is the {o.name} {preposition} the {position}?", "Yes." if present and truthful else "No."


def short_question(objects: list[Obj], rng: random.Random) -> tuple[str, str]:
    """Colour, count and position questions, answered in the world's grammar."""
    kind = rng.randrange(4)
    o = rng.choice(objects)
    if kind == 0:
        n = len(objects)
        return "How many shapes are there?", f"There {'is' if n == 1 else 'are'} {NUMBERS[n]} shape{'s' if n > 1 else ''}."
    if kind == 1:
        return f"Where is the {o.name}?", f"The {o.name} is at the {o.position}."
    if kind == 2 and [x.shape for x in objects].count(o.shape) == 1:
        return f"What color is the {o.shape}?", f"The {o.shape} is {o.color}."
    cell = rng.randrange(4)
    there = [x for x in objects if x.cell == cell]
    if there:
        return f"What is at the {POSITIONS[cell]}?", f"There is a {there[0].size} {there[0].name} at the {POSITIONS[cell]}."
    return f"What is at the {POSITIONS[cell]}?", f"There is nothing at the {POSITIONS[cell]}."


def grammar_text() -> list[str]:
    """Every word the world's grammar can produce, as sentences (for building the tokenizer's vocabulary)."""
    lines = [t.format(size=s, name=n, pos=p) for t in _TEMPLATES for s in SIZES for n in OBJECTS for p in POSITIONS]
    lines += [DESCRIBE, "Please answer yes or no.", "Yes. No.", "How many shapes are there?",
              "There is one shape. There are two three four shapes.", "What color is the", "Where is the",
              "What is at the", "There is nothing at the", "Is there a in the image?", "Is the small large at"]
    lines += [f"{c} {syn}" for c in COLORS for syns in _SYNONYMS.values() for syn in syns] + list(COLORS) + list(SHAPES)
    return lines


def load_image(path: str | Path) -> Image.Image:
    """Opens an image as RGB, raising InputError that names the file when it is missing or not an image."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def load_split(folder: str | Path) -> list[dict]:
    """Reads a folder written by ``write_split``; every image is opened so a bad file is reported by name."""
    folder = Path(folder)
    index = folder / "items.jsonl"
    if not index.is_file():
        raise InputError(f"{index}: ShapesWorld split index not found")
    items = []
    for n, line in enumerate(index.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            image_path = folder / row["image"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{index}:{n}: bad item line ({e})") from None
        items.append({**row, "image": load_image(image_path)})
    return items


def layout(scene: Scene) -> list[dict]:
    """A scene's objects as plain rows (name, size, position), as stored in prompt tables."""
    return [{"name": o.name, "size": o.size, "position": o.position} for o in scene.objects]


_ORACLE_PATTERNS = (
    (re.compile(r"^is there an? (?P<name>\w+ \w+) in the image\?$"), lambda m, o: True),
    (re.compile(r"^is the (?P<name>\w+ \w+) (?P<size>small|large)\?$"), lambda m, o: o["size"] == m["size"]),
    (re.compile(r"^is the (?P<name>\w+ \w+) (?:at|in) the (?P<pos>\w+ \w+)\?$"), lambda m, o: o["position"] == m["pos"]),
)


def oracle_answer(question: str, objects: list[dict]) -> bool:
    """The true answer to a claim question in the world's grammar; anything unverifiable is False."""
    q = question.strip().lower()
    for pattern, check in _ORACLE_PATTERNS:
        match = pattern.match(q)
        if match:
            found = [o for o in objects if o["name"] == match["name"]]
            return bool(found) and check(match, found[0])
    return False
