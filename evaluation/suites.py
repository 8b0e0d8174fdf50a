"""Evaluation suites: a name, a typed config section, and ``run(handles) -> (metrics, rows)``.

A suite is pure evaluation: the policy (and, for ``labeler``, the claim splitter and the labeler) come in
as plain callables in :class:`Handles`, so the engine runs a suite as one stage and writes
``rounds/NNN/eval/<suite>/metrics.json`` (the metrics) and ``responses.jsonl`` (the rows).
``make_suite(name, section)`` builds one from its config section (a dict, as read from YAML).
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Callable, ClassVar

from evaluation.amber import (AmberData, WordNetLemmatizer, answer_nouns, discriminative_metrics, generative_metrics,
                              score_generative)
from evaluation.chair_coco import ChairVocabulary, chair_metrics, ground_truth, parse_synonyms
from evaluation.coco import CocoAnnotations, image_id_of
from evaluation.hallucination import InputError, read_jsonl, read_text_file
from evaluation.heldout import evaluate_policy
from evaluation.labeler_metrics import claim_metrics, is_heldout
from evaluation.pope import POPE_SETTINGS, build_questions, read_questions, score_setting
from evaluation.shapes import ShapesWorld, load_image

Answerer = Callable[[list[tuple]], list[str]]
# The instruction CHAIR evaluations of LLaVA-class models use (OPERA, VCD) when no prompt file is given.
DETAILED_DESCRIPTION = "Please help me describe the image in detail."
IMAGES_PER_CALL = 64  # full-size COCO images are ~1 MB each decoded; 500 at once would hold ~0.5 GB


@dataclass
class Handles:
    """describe: greedy free-form answers to (image, question); ask: greedy yes/no answers; split: answers ->
    each answer's claims as yes/no questions; verify: (image, question) -> the labeler's p_yes."""

    describe: Answerer
    ask: Answerer
    split: Callable[[list[str]], list[list[str]]] | None = None
    verify: Callable[[list[tuple]], list[float]] | None = None


def _answer(answerer: Callable[[list[tuple]], list], folder: str, names: list[str], questions: list[str]) -> list:
    """The answerer's outputs for (image file under folder, question), IMAGES_PER_CALL images in memory at a time."""
    answers = []
    for start in range(0, len(names), IMAGES_PER_CALL):
        images = [load_image(Path(folder) / name) for name in names[start:start + IMAGES_PER_CALL]]
        answers += answerer(list(zip(images, questions[start:start + IMAGES_PER_CALL])))
    return answers


@dataclass
class ShapesWorldConfig:
    n: int = 64
    seed: int = 0
    prior: float = 0.6
    pope_per_image: int = 1


class ShapesWorldSuite:
    """The native exact-world eval (evaluation.heldout): CHAIR, recall and POPE on held-out scenes."""

    Config: ClassVar[type] = ShapesWorldConfig

    def __init__(self, config: ShapesWorldConfig):
        self.config = config

    def run(self, handles: Handles) -> tuple[dict, list[dict]]:
        world, c = ShapesWorld(self.config.seed, self.config.prior), self.config
        return evaluate_policy(handles.describe, handles.ask, world.eval_set(c.n), world.vocabulary(),
                               world.text_statistics(), c.seed, c.pope_per_image)


@dataclass
class ChairCocoConfig:
    annotations: str = "data/coco/annotations"  # holds instances_<split>.json and captions_<split>.json
    split: str = "val2014"
    images: str = "data/coco/val2014"
    prompts: str | None = None  # jsonl: image_id (or image file name) and question per line
    image_ids: list[int] = field(default_factory=list)  # else these ids with the detailed-description instruction
    n: int = 500  # else a seeded sample of n annotated images
    question: str = DETAILED_DESCRIPTION
    synonyms: str | None = None  # a table in CHAIR's synonyms.txt format; default the 80 COCO categories
    seed: int = 0


class ChairCocoSuite:
    """CHAIR (Rohrbach et al.) and Object HalBench's rates on COCO images (evaluation.chair_coco)."""

    Config: ClassVar[type] = ChairCocoConfig

    def __init__(self, config: ChairCocoConfig):
        self.config = config

    def prompts(self, annotations: CocoAnnotations) -> list[tuple[int, str]]:
        """(image id, question) pairs from the prompt file, the id list, or a seeded sample."""
        c = self.config
        if c.prompts:
            pairs = []
            for lineno, row in read_jsonl(Path(c.prompts)):
                image_id = row.get("image_id", image_id_of(str(row.get("image", ""))))
                if isinstance(image_id, str):  # "310196" or "COCO_val2014_000000310196.jpg"
                    image_id = int(image_id) if image_id.isdigit() else image_id_of(image_id)
                if image_id is None or "question" not in row:
                    raise InputError(f"{c.prompts}:{lineno}: needs 'question' and an 'image_id' or a COCO image name")
                pairs.append((int(image_id), row["question"]))
            return pairs
        ids = c.image_ids or sorted(random.Random(c.seed).sample(sorted(annotations.file_names),
                                                                 min(c.n, len(annotations.file_names))))
        return [(i, c.question) for i in ids]

    def run(self, handles: Handles) -> tuple[dict, list[dict]]:
        c = self.config
        vocab = (ChairVocabulary(parse_synonyms(read_text_file(Path(c.synonyms)), c.synonyms), c.synonyms)
                 if c.synonyms else ChairVocabulary.coco())
        annotations = CocoAnnotations.load(c.annotations, c.split)
        pairs = self.prompts(annotations)
        responses = _answer(handles.describe, c.images, [annotations.file_name(i) for i, _ in pairs],
                            [q for _, q in pairs])
        truths = [ground_truth(annotations, i, vocab) for i, _ in pairs]
        metrics, results = chair_metrics(responses, truths, vocab)
        rows = [{"id": str(i), "image_id": i, "prompt": q, "response": r, "gt_objects": sorted(t), **result}
                for (i, q), r, t, result in zip(pairs, responses, truths, results)]
        return metrics, rows


@dataclass
class PopeConfig:
    questions: str | None = None  # folder of released files <prefix>_pope_<setting>.json; else built from COCO
    prefix: str = "coco"
    images: str = "data/coco/val2014"
    annotations: str = "data/coco/annotations"
    split: str = "val2014"
    n_images: int = 500
    per_image: int = 3
    settings: list[str] = field(default_factory=lambda: list(POPE_SETTINGS))
    answer_rule: str = "pope"  # POPE's own reading; "first-word" is the ShapesWorld eval's
    seed: int = 0


class PopeSuite:
    """POPE per setting (evaluation.pope); ``pope_f1`` is the mean F1 over the settings."""

    Config: ClassVar[type] = PopeConfig

    def __init__(self, config: PopeConfig):
        self.config = config
        unknown = [s for s in config.settings if s not in POPE_SETTINGS]
        if unknown or not config.settings:
            raise InputError(f"pope.settings: {unknown or 'empty'}; expected some of {', '.join(POPE_SETTINGS)}")

    def questions(self) -> dict[str, list[dict]]:
        c = self.config
        if c.questions:
            return {s: read_questions(Path(c.questions) / f"{c.prefix}_pope_{s}.json") for s in c.settings}
        built = build_questions(CocoAnnotations.load(c.annotations, c.split), c.n_images, c.per_image, c.seed)
        return {s: built[s] for s in c.settings}

    def run(self, handles: Handles) -> tuple[dict, list[dict]]:
        metrics, rows = {}, []
        for setting, questions in self.questions().items():
            answers = _answer(handles.ask, self.config.images, [q["image"] for q in questions],
                              [q["text"] for q in questions])
            scores = score_setting(answers, questions, self.config.answer_rule)
            metrics.update({f"pope_{setting}_{k}": v for k, v in scores.items()})
            rows += [{"id": f"{setting}-{q.get('question_id', n)}", "setting": setting, "image": q["image"],
                      "prompt": q["text"], "label": q["label"], "response": a}
                     for n, (q, a) in enumerate(zip(questions, answers), 1)]
        metrics["pope_f1"] = sum(metrics[f"pope_{s}_f1"] for s in self.config.settings) / len(self.config.settings)
        return metrics, rows


@dataclass
class AmberConfig:
    folder: str = "data/amber/data"  # the AMBER repository's data/ folder
    images: str = "data/amber/image"
    query_file: str = "query/query_all.json"
    wordnet: str = "/usr/share/wordnet"


class AmberSuite:
    """AMBER's generative (CHAIR, Cover, Hal, Cog) and discriminative tasks (evaluation.amber)."""

    Config: ClassVar[type] = AmberConfig

    def __init__(self, config: AmberConfig):
        self.config = config

    def run(self, handles: Handles) -> tuple[dict, list[dict]]:
        c = self.config
        data, lemma = AmberData(c.folder, c.query_file), WordNetLemmatizer(c.wordnet)
        generative = [q for q in data.queries if data.entries[q["id"]]["type"] == "generative"]
        discriminative = [q for q in data.queries if data.entries[q["id"]]["type"] != "generative"]
        rows, metrics = [], {}
        if generative:
            answers = self._answer(handles.describe, generative)
            results = [score_generative(answer_nouns(a, lemma, data.objects), data.entries[q["id"]], data)
                       for q, a in zip(generative, answers)]
            metrics.update(generative_metrics(results))
            rows += [{"id": q["id"], "image": q["image"], "prompt": q["query"], "response": a,
                      "hallucinated": r["hallucinated"]} for q, a, r in zip(generative, answers, results)]
        if discriminative:
            answers = self._answer(handles.ask, discriminative)
            metrics.update(discriminative_metrics(answers, [data.entries[q["id"]] for q in discriminative]))
            rows += [{"id": q["id"], "image": q["image"], "prompt": q["query"], "response": a,
                      "truth": data.entries[q["id"]]["truth"]} for q, a in zip(discriminative, answers)]
        return metrics, rows

    def _answer(self, answerer: Answerer, queries: list[dict]) -> list[str]:
        return _answer(answerer, self.config.images, [q["image"] for q in queries], [q["query"] for q in queries])


@dataclass
class LabelerConfig:
    prompts: str = ""  # jsonl of the user's rows: id, image (path, relative to the file's folder), question
    fraction: float = 0.05
    seed: int = 0


class LabelerSuite:
    """The user's held-out rows (evaluation.labeler_metrics.is_heldout), answered by the policy and checked
    claim by claim by the run's labeler: needs ``split`` and ``verify`` handles."""

    Config: ClassVar[type] = LabelerConfig

    def __init__(self, config: LabelerConfig):
        self.config = config

    def items(self) -> list[dict]:
        c = self.config
        if not c.prompts:
            raise InputError("labeler.prompts: a jsonl file of the user's rows (id, image, question) is needed")
        rows = read_jsonl(Path(c.prompts))
        for lineno, row in rows:
            if not {"id", "image", "question"} <= set(row):
                raise InputError(f"{c.prompts}:{lineno}: a row needs 'id', 'image' and 'question'")
        return [r for _, r in rows if is_heldout(str(r["id"]), c.fraction, c.seed)]

    def run(self, handles: Handles) -> tuple[dict, list[dict]]:
        if handles.split is None or handles.verify is None:
            raise InputError("labeler suite: the engine must pass the split and verify handles")
        items = self.items()
        folder = Path(self.config.prompts).parent
        answers = _answer(handles.describe, str(folder), [it["image"] for it in items], [it["question"] for it in items])
        claims = handles.split(answers)
        flat = [(it["image"], q) for it, questions in zip(items, claims) for q in questions]
        p_flat = _answer(handles.verify, str(folder), [name for name, _ in flat], [q for _, q in flat])
        ends = list(accumulate(len(questions) for questions in claims))
        p_yes = [p_flat[end - len(questions):end] for end, questions in zip(ends, claims)]
        metrics, verdicts = claim_metrics(p_yes)
        rows = [{"id": it["id"], "prompt": it["question"], "response": a, "claims": q, "p_yes": p, **v}
                for it, a, q, p, v in zip(items, answers, claims, p_yes, verdicts)]
        return metrics, rows


SUITES: dict[str, type] = {"shapesworld": ShapesWorldSuite, "chair-coco": ChairCocoSuite, "pope": PopeSuite,
                           "amber": AmberSuite, "labeler": LabelerSuite}


def make_suite(name: str, section: dict | None = None):
    """The suite called ``name`` with its config section; unknown names and keys raise InputError."""
    if name not in SUITES:
        raise InputError(f"eval.suites: unknown suite {name!r}; expected one of {', '.join(SUITES)}")
    cls, section = SUITES[name], section or {}
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise InputError(f"eval.{name}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    for key, value in section.items():
        default = fields[key].default if fields[key].default is not dataclasses.MISSING else fields[key].default_factory()
        expected = (str, type(None)) if default is None else (int, float) if isinstance(default, float) else type(default)
        if not isinstance(value, expected) or (isinstance(value, bool) and not isinstance(default, bool)):
            raise InputError(f"eval.{name}.{key}: {value!r} is not of the expected kind (default {default!r})")
    return cls(cls.Config(**section))
