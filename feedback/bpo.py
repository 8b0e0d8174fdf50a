"""BPO as a preference source: sample -> inject -> pairs, no labeler.

Positives are the prompts' reference answers (the ``reference`` column: ShapesWorld's captions or a user
dataset's annotations). Negatives show the policy's language prior in two ways:

- ``sample``, image weakening: the policy answers an image noised to ``feedback.bpo.noise_step`` (~900 of 1000,
  little of the image is left) at ``feedback.bpo.temperature``; what it says then comes from the prior.
- ``inject``, error injection: the reference rewritten with wrong details that still read plausibly. The
  rule injector (the CPU default) edits ShapesWorld's grammar: it swaps a colour, a shape, a size or a
  position, adds an object (the language prior's partner of one in the image when it is absent) or drops
  one. A reference in any other English (a user dataset's annotations) gets ``feedback.inject``'s edits:
  an object swapped for one that co-occurs with it (COCO's categories), a colour, a count or a place
  changed. The LLM injector asks a text model (``feedback.injector_model``) for the same kinds of edit.

Each prompt's rows form one group: the reference against each negative (negatives are never paired with
each other); negatives identical to the reference, repeated, or longer than ``bpo.max_length_ratio`` times
the reference are dropped and counted. Prompts without a reference are skipped.
"""
from __future__ import annotations

import random
import re
from typing import Annotated

from pydantic import Field, model_validator

from evaluation.shapes import COLORS, OBJECTS, POSITIONS, SHAPES, SIZES, Obj, describe, partner
from feedback.augment import diffusion_noise
from feedback.claims import in_shapes_grammar, sentences
from feedback.inject import english_inject
from feedback.inputs import decode_image
from feedback.pairs import contrast_groups
from feedback.sections import DiffusionStep, NonNegative, Section
from feedback.sources import RoundContext, Stage

EDITS = ("color", "shape", "size", "position", "add", "drop")
_OBJECT = re.compile(rf"\b(?:(?P<size>{'|'.join(SIZES)}) )?(?P<color>{'|'.join(COLORS)}) (?P<shape>{'|'.join(SHAPES)})\b")
_POSITION = re.compile(rf"\b(?:{'|'.join(POSITIONS)})\b")
# One worked example: a 135M-parameter instruct model (SmolLM2) asked without one comments on the task
# instead of rewriting the description.
INJECT_PROMPT = (
    "Change one detail of an image description: {change}. Reply with the changed description only.\n\n"
    "Description: There is a small red circle at the top left. A large blue square is at the bottom right.\n"
    "Changed: There is a small red circle at the top left. A large green square is at the bottom right.\n\n"
    "Description: {reference}\nChanged:"
)
_PREAMBLE = re.compile(r"^(?:the )?(?:(?:image|original|changed|new) )*description(?: is| was)?:\s*", re.I)
_CHANGES = {"color": "change the colour of one object", "shape": "change the kind of one object",
            "size": "change the size of one object", "position": "move one object to another place",
            "add": "add one object that is not in the image", "drop": "leave out one of the objects"}


def _replace(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _swap_attribute(text: str, rng: random.Random, attribute: str) -> str | None:
    """One object's colour, shape or size changed, never into an object the text already names."""
    mentions = [m for m in _OBJECT.finditer(text) if m[attribute]]
    if not mentions:
        return None
    m = rng.choice(mentions)
    named = {f"{x['color']} {x['shape']}" for x in _OBJECT.finditer(text)}
    values = {"color": COLORS, "shape": SHAPES, "size": SIZES}[attribute]

    def renamed(value: str) -> str:  # the object's name after the change
        return f"{value} {m['shape']}" if attribute == "color" else f"{m['color']} {value}"
    options = [v for v in values if v != m[attribute] and (attribute == "size" or renamed(v) not in named)]
    return _replace(text, m.start(attribute), m.end(attribute), rng.choice(options)) if options else None


def _reading_order(parts: list[str]) -> str:
    """Sentences sorted by the place they name, as the world's descriptions are, so that an edited answer
    is not told apart by its order alone; text whose sentences do not all name a place stays as it is."""
    places = [_POSITION.search(part) for part in parts]
    if all(places):
        parts = [part for _, part in sorted(zip(places, parts), key=lambda pair: POSITIONS.index(pair[0][0]))]
    return " ".join(parts)


def _move(text: str, rng: random.Random) -> str | None:
    places = list(_POSITION.finditer(text))
    if not places:
        return None
    m = rng.choice(places)
    used = {p[0] for p in places}
    options = [p for p in POSITIONS if p not in used] or [p for p in POSITIONS if p != m[0]]
    return _reading_order(sentences(_replace(text, m.start(), m.end(), rng.choice(options))))


def _add(text: str, rng: random.Random) -> str | None:
    named = [f"{x['color']} {x['shape']}" for x in _OBJECT.finditer(text)]
    free = [p for p in POSITIONS if p not in {m[0] for m in _POSITION.finditer(text)}]
    if not named or not free:
        return None
    partners = [partner(n) for n in named if partner(n) not in named]  # what the language prior would add
    color, shape = rng.choice(partners or [o for o in OBJECTS if o not in named]).split()
    added = describe([Obj(color, shape, rng.choice(SIZES), POSITIONS.index(rng.choice(free)))], rng)
    return _reading_order(sentences(text) + [added])


def _drop(text: str, rng: random.Random) -> str | None:
    parts = sentences(text)
    with_objects = [i for i, s in enumerate(parts) if _OBJECT.search(s)]
    if len(with_objects) < 2:
        return None  # dropping the only object leaves no description
    del parts[rng.choice(with_objects)]
    return " ".join(parts)


_RULES = {"color": lambda t, r: _swap_attribute(t, r, "color"), "shape": lambda t, r: _swap_attribute(t, r, "shape"),
          "size": lambda t, r: _swap_attribute(t, r, "size"), "position": _move, "add": _add, "drop": _drop}


def edit_kinds(count: int, seed: int) -> list[str]:
    """The edits a prompt's negatives get: distinct kinds in a seeded order (repeating past six)."""
    order = random.Random(seed).sample(EDITS, len(EDITS))
    return [order[i % len(order)] for i in range(count)]


def rule_inject(reference: str, count: int, seed: int) -> list[str]:
    """Up to ``count`` distinct wrong rewrites of a reference: ShapesWorld's edits for a description in its
    grammar, the general English ones otherwise; kinds that do not apply (no second object to drop, no free
    place to add one) give way to the next kind."""
    if not in_shapes_grammar(reference):
        return english_inject(reference, count, seed)
    rng = random.Random(seed)
    result = []
    for kind in edit_kinds(len(EDITS), seed):
        text = _RULES[kind](reference, rng)
        if text and text != reference and text not in result:
            result.append(text)
        if len(result) == count:
            break
    return result


def llm_inject(references: list[str], count: int, seeds: list[int], complete) -> list[list[str]]:
    """``count`` rewrites per reference by a text model, each asked for a different kind of error."""
    asks = [(i, INJECT_PROMPT.format(change=_CHANGES[kind], reference=ref))
            for i, (ref, seed) in enumerate(zip(references, seeds)) for kind in edit_kinds(count, seed)]
    result = [[] for _ in references]
    for (i, _), text in zip(asks, complete([prompt for _, prompt in asks]) if asks else []):
        lines = text.strip().splitlines()
        result[i].append(_PREAMBLE.sub("", lines[0] if lines else "").strip().strip('"'))
    return result


# ---- the stages ---------------------------------------------------------------------------------------
def weaken_stage(ctx: RoundContext, generate, prompts: list[dict]) -> list[dict]:
    """The policy's answers on heavily noised images (``bpo.weakened`` per prompt)."""
    f = ctx.cfg.feedback.bpo
    prompts = [p for p in prompts if p.get("reference")]
    items = [(diffusion_noise(decode_image(p["image_bytes"]), f.noise_step, ctx.seed("weaken", p["id"])),
              p["question"]) for p in prompts]
    answers = generate(items, n=f.weakened, temperature=f.temperature,
                       seeds=[ctx.seed("sample", p["id"]) for p in prompts]) if items else []
    return [{"prompt_id": p["id"], "kind": "weakened", "response": text} for p, texts in zip(prompts, answers) for text in texts]


def inject_stage(ctx: RoundContext, complete, prompts: list[dict]) -> tuple[list[dict], dict]:
    """Error-injected references (``bpo.injected`` per prompt); ``complete`` is the LLM injector's model."""
    f = ctx.cfg.feedback
    prompts = [p for p in prompts if p.get("reference")]
    seeds = [ctx.seed("inject", p["id"]) for p in prompts]
    if complete is None:
        rewrites = [rule_inject(p["reference"], f.bpo.injected, seed) for p, seed in zip(prompts, seeds)]
    else:
        rewrites = llm_inject([p["reference"] for p in prompts], f.bpo.injected, seeds, complete)
    rows = [{"prompt_id": p["id"], "kind": "injected", "response": text} for p, texts in zip(prompts, rewrites) for text in texts]
    return rows, {"injector": f.injector}


def pairs_stage(ctx: RoundContext, _, prompts: list[dict]) -> tuple[list[dict], dict]:
    f = ctx.cfg.feedback.bpo
    references = {p["id"]: p["reference"] for p in prompts if p.get("reference")}
    negatives: dict[str, list[str]] = {}
    too_long = 0
    for stage in [name for name, count in (("sample", f.weakened), ("inject", f.injected)) if count]:
        for row in ctx.read(stage):
            limit = f.max_length_ratio * max(1, len(references[row["prompt_id"]].split()))
            if len(row["response"].split()) > limit:
                too_long += 1
            else:
                negatives.setdefault(row["prompt_id"], []).append(row["response"])
    pairs, info = contrast_groups(references, negatives, ctx.prompts, "bpo", ctx.round)
    return pairs, {**info, "too_long_dropped": too_long, "no_reference": len(prompts) - len(references)}


class BPOSection(Section):
    """feedback.bpo: ``weakened`` answers per prompt on an image noised to ``noise_step`` of 1000, sampled at
    ``temperature``; ``injected`` error-injected references (by ``feedback.injector``); negatives over
    ``max_length_ratio`` times the reference's length are dropped."""
    noise_step: DiffusionStep = 900
    temperature: Annotated[float, Field(ge=0, le=5)] = 0.2
    weakened: NonNegative = 1
    injected: NonNegative = 2
    max_length_ratio: Annotated[float, Field(gt=0)] = 2.0

    @model_validator(mode="after")
    def _some_negative(self):
        if self.weakened + self.injected < 1:
            raise ValueError("weakened: weakened + injected must be >= 1 (at least one negative per prompt)")
        return self


class BPO:
    """Bootstrapped preferences: the annotation over answers that expose the language prior."""
    name = "bpo"
    losses = ("sigmoid", "infonce")
    section = BPOSection
    shared_keys = ("injector",)  # the generic feedback.injector* keys

    def stages(self, cfg) -> list[Stage]:
        f = cfg.feedback
        llm = f.injector == "llm"
        stages = [Stage("sample", weaken_stage, uses="policy", sharded=True)] if f.bpo.weakened else []
        if f.bpo.injected:
            stages.append(Stage("inject", inject_stage, uses="text" if llm else "", model=f.injector_model if llm else ""))
        return stages + [Stage("pairs", pairs_stage)]
