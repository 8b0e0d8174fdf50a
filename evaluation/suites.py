"""Evaluation suites: a name, a typed config section, and ``run(handles) -> (metrics, rows)``.

A suite is pure evaluation: the policy (and, for ``labeler``, the claim splitter and the labeler) come in
as plain callables in :class:`Handles`, so the engine runs a suite as one stage and writes
``rounds/NNN/eval/<suite>/metrics.json`` (the metrics) and ``responses.jsonl`` (the rows).
``make_suite(name, section)`` builds one from its config section (a dict, as read from YAML; a string
value, as from a command-line override, is read as YAML); ``suite.check()`` refuses missing files by name
before any model is loaded. ``HEADLINE`` lists each suite's figures for tables, ``LOWER_IS_BETTER`` the
figures that fall as a policy improves.
"""
from __future__ import annotations

import dataclasses
import io
import random
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Callable, ClassVar

import yaml
from PIL import Image

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


# Rates of hallucination (and the labeler's rejections) fall as a policy improves; every other figure rises.
LOWER_IS_BETTER = frozenset({"chair_s", "chair_i", "halbench_response", "halbench_mention", "chair", "hal", "cog",
                             "rejected_answer_share", "rejected_per_answer"})


@dataclass
class Handles:
    """describe: greedy free-form answers to (image, question); ask: greedy yes/no answers; split: answers ->
    each answer's claims as yes/no questions, each a string or (question, negated); verify: (image, question)
    -> the labeler's p_yes; rows(keep): the run's own prompt rows (``id``, ``image_bytes``, ``question``)
    whose id ``keep`` accepts, for a ``labeler`` suite without a prompt file."""

    describe: Answerer
    ask: Answerer
    split: Callable[[list[str]], list[list]] | None = None
    verify: Callable[[list[tuple]], list[float]] | None = None
    rows: Callable[[Callable[[str], bool]], list[dict]] | None = None


def _exists(key: str, path: str | Path | None, kind: str = "file") -> None:
    """Refuses a configured path that is missing, naming the config key and the path."""
    if path and not (Path(path).is_dir() if kind == "folder" else Path(path).is_file()):
        raise InputError(f"{key}: {kind} {path} not found")


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
    seed: int = 0  # POPE's sampling seed
    world_seed: int = 0
    prior: float = 0.6
    pope_per_image: int = 1


class ShapesWorldSuite:
    """The native exact-world eval (evaluation.heldout): CHAIR, recall and POPE on held-out scenes."""

    Config: ClassVar[type] = ShapesWorldConfig

    def __init__(self, config: ShapesWorldConfig):
        self.config = config

    def check(self) -> None:
        pass  # the world is generated: nothing to find on disk

    def run(self, handles: Handles) -> tuple[dict, list[dict]]:
        world, c = ShapesWorld(self.config.world_seed, self.config.prior), self.config
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

    def check(self) -> None:
        c = self.config
        for kind in ("instances", "captions"):
            _exists("eval.chair-coco.annotations", Path(c.annotations) / f"{kind}_{c.split}.json")
        _exists("eval.chair-coco.images", c.images, "folder")
        _exists("eval.chair-coco.prompts", c.prompts)
        _exists("eval.chair-coco.synonyms", c.synonyms)

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
            raise InputError(f"eval.pope.settings: {unknown or 'empty'}; expected some of {', '.join(POPE_SETTINGS)}")

    def check(self) -> None:
        c = self.config
        for setting in c.settings if c.questions else []:
            _exists("eval.pope.questions", Path(c.questions) / f"{c.prefix}_pope_{setting}.json")
        if not c.questions:
            _exists("eval.pope.annotations", Path(c.annotations) / f"instances_{c.split}.json")
        _exists("eval.pope.images", c.images, "folder")

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

    def check(self) -> None:
        c = self.config
        for name in ("annotations.json", "relation.json", "safe_words.txt", c.query_file):
            _exists("eval.amber.folder", Path(c.folder) / name)
        _exists("eval.amber.images", c.images, "folder")
        _exists("eval.amber.wordnet", c.wordnet, "folder")

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
    prompts: str = ""  # jsonl of the user's rows (id, image relative to the file's folder, question); "": the run's data
    fraction: float = 0.05
    seed: int = 0
    n: int = 200  # the first n held-out rows (in the rows' order)


class LabelerSuite:
    """The user's held-out rows (evaluation.labeler_metrics.is_heldout), answered by the policy and checked
    claim by claim by the run's labeler: needs the ``split`` and ``verify`` handles, and ``rows`` when no
    prompt file is named."""

    Config: ClassVar[type] = LabelerConfig

    def __init__(self, config: LabelerConfig):
        self.config = config
        is_heldout("", config.fraction, config.seed)  # a fraction outside [0, 1] is refused here

    def check(self) -> None:
        _exists("eval.labeler.prompts", self.config.prompts)

    def is_heldout(self, row_id: str) -> bool:
        return is_heldout(str(row_id), self.config.fraction, self.config.seed)

    def items(self, handles: Handles) -> list[dict]:
        """The held-out rows, each with its ``image`` (a PIL image)."""
        c = self.config
        if not c.prompts:
            if handles.rows is None:
                raise InputError("eval.labeler.prompts: no prompt file, and the caller gave no rows of its data")
            rows = handles.rows(self.is_heldout)[:c.n]
            return [{**r, "image": Image.open(io.BytesIO(r["image_bytes"])).convert("RGB")} for r in rows]
        rows = read_jsonl(Path(c.prompts))
        for lineno, row in rows:
            if not {"id", "image", "question"} <= set(row):
                raise InputError(f"{c.prompts}:{lineno}: a row needs 'id', 'image' and 'question'")
        held = [r for _, r in rows if self.is_heldout(r["id"])][:c.n]
        folder = Path(c.prompts).parent
        return [{**r, "image": load_image(folder / r["image"])} for r in held]

    def run(self, handles: Handles) -> tuple[dict, list[dict]]:
        if handles.split is None or handles.verify is None:
            raise InputError("labeler suite: the caller must pass the split and verify handles")
        items = self.items(handles)
        answers = handles.describe([(it["image"], it["question"]) for it in items])
        claims = [[c if isinstance(c, tuple) else (c, False) for c in found] for found in handles.split(answers)]
        p_flat = handles.verify([(it["image"], q) for it, found in zip(items, claims) for q, _ in found])
        ends = list(accumulate(len(found) for found in claims))
        p_yes = [p_flat[end - len(found):end] for end, found in zip(ends, claims)]
        metrics, verdicts = claim_metrics(p_yes, [[neg for _, neg in found] for found in claims])
        rows = [{"id": it["id"], "prompt": it["question"], "response": a, "questions": [q for q, _ in found],
                 "negated": [neg for _, neg in found], "p_yes": p, **v}
                for it, a, found, p, v in zip(items, answers, claims, p_yes, verdicts)]
        return metrics, rows


SUITES: dict[str, type] = {"shapesworld": ShapesWorldSuite, "chair-coco": ChairCocoSuite, "pope": PopeSuite,
                           "amber": AmberSuite, "labeler": LabelerSuite}
HEADLINE = {"shapesworld": ("chair_s", "chair_i", "recall", "pope_f1"),
            "chair-coco": ("chair_s", "chair_i", "recall", "halbench_response", "halbench_mention", "mean_length"),
            "pope": ("pope_random_f1", "pope_popular_f1", "pope_adversarial_f1", "pope_f1"),
            "amber": ("chair", "cover", "hal", "cog", "existence_accuracy", "all_f1"),
            "labeler": ("rejected_answer_share", "rejected_per_answer", "claims_per_answer")}


def resolve_metric(spec: str, suites: list[str]) -> tuple[str, str]:
    """A best-round metric as (suite, metric): ``suite/metric``, or a bare metric of shapesworld when it runs,
    else of the first suite (``chair_i`` keeps meaning shapesworld's CHAIR-i)."""
    suite, _, metric = spec.rpartition("/")
    suite = suite or ("shapesworld" if "shapesworld" in suites else suites[0])
    if suite not in suites or not metric:
        raise InputError(f"eval.best_metric: {spec!r} must be <suite>/<metric> with a suite of eval.suites "
                         f"({', '.join(suites)})")
    return suite, metric


def make_suite(name: str, section: dict | None = None, cls: type | None = None):
    """The suite called ``name`` (or of class ``cls``, a plug-in) with its config section; unknown names and
    keys, and values of the wrong kind, raise InputError naming ``eval.<name>.<key>``."""
    if cls is None and name not in SUITES:
        raise InputError(f"eval.suites: unknown suite {name!r}; expected one of {', '.join(SUITES)}")
    cls, section = cls or SUITES[name], dict(section or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise InputError(f"eval.{name}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    for key, value in section.items():
        if isinstance(value, str) and fields[key].type not in ("str", "str | None"):
            section[key] = value = yaml.safe_load(value)  # a command-line override: "50", "[random]", "none"
        default = fields[key].default if fields[key].default is not dataclasses.MISSING else fields[key].default_factory()
        expected = (str, type(None)) if default is None else (int, float) if isinstance(default, float) else type(default)
        if not isinstance(value, expected) or (isinstance(value, bool) and not isinstance(default, bool)):
            raise InputError(f"eval.{name}.{key}: {value!r} is not of the expected kind (default {default!r})")
    return cls(cls.Config(**section))
