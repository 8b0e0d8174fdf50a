"""Evaluation suites by name (``eval.suites``): a built-in or a ``python:module:function`` plug-in.

A suite is ``suite(cfg, describe, ask) -> (metrics, rows)``: ``describe`` answers (image, question) items
greedily at up to ``sampling.max_tokens`` tokens, ``ask`` answers yes/no questions (4 tokens); ``metrics``
(a dict of figures) becomes ``rounds/NNN/eval/<suite>/metrics.json`` and ``rows`` (one dict per item, at
least ``id``, ``prompt``, ``response``) its ``responses.jsonl``. The other registries live beside what
they name: preference sources in feedback/sources.py, labelers in feedback/labelers.py, losses in
engine/losses.py; all plug-ins load through feedback/plugins.py.
"""
from __future__ import annotations

from evaluation.heldout import evaluate_policy
from evaluation.shapes import ShapesWorld
from feedback.plugins import load_object


def shapesworld_suite(cfg, describe, ask) -> tuple[dict, list[dict]]:
    """CHAIR and POPE on ``eval.n`` held-out ShapesWorld scenes (evaluation/heldout.py)."""
    world = ShapesWorld(cfg.data.world_seed, cfg.data.prior)
    return evaluate_policy(describe, ask, world.eval_set(cfg.eval.n), world.vocabulary(), world.text_statistics(),
                           cfg.run.seed)


SUITES = {"shapesworld": "engine.registries:shapesworld_suite"}


def load_suite(spec: str):
    suite = load_object("eval.suites", spec, SUITES)
    if not callable(suite):
        raise ValueError(f"eval.suites: {spec!r} is not callable (a suite is suite(cfg, describe, ask))")
    return suite
