"""Conquer: labelers answer the claim questions; the registry resolves ``feedback.labeler``.

The contract every labeler meets (built-in or plug-in)::

    class MyLabeler:
        def __init__(self, model: str): ...          # feedback.labeler_model, may be ignored
        def __call__(self, images, questions, metadata) -> list[float]: ...

``images`` are PIL images, ``questions`` yes/no questions, ``metadata`` one dict per question with the
prompt's known fields (``gt_objects``, ``layout`` for ShapesWorld). The result is p_yes per question,
normalised over yes and no (a claim is rejected when p_yes <= 0.5, i.e. p_no >= p_yes). A plug-in is named
``python:package.module:ClassName`` and runs in the driver process.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol

from pydantic import model_validator

from evaluation.shapes import oracle_answer
from feedback.plugins import load_object
from feedback.sections import Section

YesNoHandle = Callable[[list[tuple]], list[tuple[float, float]]]
QUESTION_SUFFIX = " Please answer yes or no."


BUILT_IN = ("vlm", "self", "oracle")  # vlm and self are served by the engine (engine/models.py)


class LabelerKeys(Section):
    """The labeler's keys, shared by the sources that check claims (RLAIF-V, AMP), so they sit in ``feedback``
    itself: ``labeler`` (vlm | self | oracle | python:module:Class) and ``labeler_model``, the model it is
    built with (``zoo``, a folder or a hub id; a plug-in receives it as it is written)."""
    labeler: str = "vlm"
    labeler_model: str = "zoo"

    @model_validator(mode="after")
    def _known_labeler(self):
        if self.labeler not in BUILT_IN and not self.labeler.startswith("python:"):
            raise ValueError(f"labeler: expected {' | '.join(BUILT_IN)} | python:module:Class, got {self.labeler!r}")
        return self


class Labeler(Protocol):
    def __call__(self, images: list, questions: list[str], metadata: list[dict]) -> list[float]: ...


class VLMLabeler:
    """A VLM asked "<question> Please answer yes or no."; p_yes from its first-token distribution."""

    def __init__(self, yes_no: YesNoHandle):
        self.yes_no = yes_no

    def __call__(self, images, questions, metadata=None) -> list[float]:
        probs = self.yes_no([(im, q + QUESTION_SUFFIX) for im, q in zip(images, questions)])
        return [p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5 for p_yes, p_no in probs]


class OracleLabeler:
    """ShapesWorld's ground truth: the upper bound a perfect labeler would reach."""

    def __init__(self, model: str = ""):
        pass

    def __call__(self, images, questions, metadata) -> list[float]:
        return [1.0 if oracle_answer(q, m["layout"]) else 0.0 for q, m in zip(questions, metadata)]


def load_plugin(spec: str, model: str) -> Labeler:
    """Instantiates ``python:module:Class`` with ``feedback.labeler_model`` as it is (a plug-in may serve a
    model by any name: an API model, a local server), with errors that name the spec."""
    cls = load_object("feedback.labeler", spec, {})
    if not callable(cls):
        raise ValueError(f"feedback.labeler: {spec!r} is not a class (a labeler is built with the model name)")
    labeler = cls(model)
    if not callable(labeler):
        raise ValueError(f"feedback.labeler: {spec!r} builds objects that cannot be called "
                         "(a labeler is called with images, questions, metadata)")
    return labeler


def checked(p_yes: list[float], expected: int, who: str) -> list[float]:
    """A labeler's output, validated: one finite probability per question (NaN is a counted bad answer)."""
    if len(p_yes) != expected:
        raise ValueError(f"labeler {who} returned {len(p_yes)} answers for {expected} questions")
    return [float(p) if isinstance(p, (int, float)) and math.isfinite(p) and 0 <= p <= 1 else math.nan
            for p in p_yes]
