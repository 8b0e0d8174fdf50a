"""Evaluation suites by name (``eval.suites``), and what the engine hands them.

There is one suite registry, ``evaluation.suites.SUITES`` (shapesworld, chair-coco, pope, amber, labeler);
a plug-in ``python:module:Class`` follows the same protocol: a ``Config`` dataclass (its section's keys),
``check()`` and ``run(handles) -> (metrics, rows)``. This module adds the engine's part: each suite's
section filled with the run's defaults (``eval.<suite>``; ShapesWorld's world, prior and size come from
``data`` and ``eval.n``), the checks made before any work, the held-out rule that keeps the ``labeler``
suite's rows out of training, and the model handles a suite gets (engine/models.py). A run's eval stage and
the standalone evaluator (``python -m evaluation``) both score through :func:`evaluate_suite`. The other
registries live beside what they name: preference sources in feedback/sources.py, labelers in
feedback/labelers.py, losses in engine/losses.py; all plug-ins load through feedback/plugins.py.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable

from engine.config import Config
from evaluation.hallucination import InputError
from evaluation.heldout import greedy_handles
from evaluation.suites import SUITES, Handles, make_suite, resolve_metric
from feedback.claims import llm_split_claims, split_claims
from feedback.plugins import load_object


def suite_class(spec: str) -> type:
    """A built-in suite's class, or a plug-in's (errors name ``eval.suites``)."""
    if spec in SUITES:
        return SUITES[spec]
    if not spec.startswith("python:"):
        raise ValueError(f"eval.suites: unknown suite {spec!r}; expected {' | '.join(SUITES)} | python:module:Class")
    cls = load_object("eval.suites", spec, {})
    if not all(hasattr(cls, member) for member in ("Config", "check", "run")):
        raise ValueError(f"eval.suites: {spec!r} is not a suite class (Config, check(), run(handles); "
                         "evaluation/suites.py)")
    return cls


def suite_section(cfg: Config, name: str) -> dict:
    """The suite's config section with the run's defaults beneath what the user wrote."""
    defaults = {"shapesworld": {"n": cfg.eval.n, "world_seed": cfg.data.world_seed, "prior": cfg.data.prior,
                                "seed": cfg.run.seed}}.get(name, {})
    return {**defaults, **(getattr(cfg.eval, name.replace("-", "_"), None) or {})}


def build_suite(cfg: Config, name: str):
    try:
        return make_suite(name, suite_section(cfg, name), suite_class(name))
    except InputError as e:
        raise ValueError(str(e)) from None


def best_metric(cfg: Config) -> tuple[str, str]:
    """``eval.best_metric`` as (suite, metric) (evaluation.suites.resolve_metric)."""
    try:
        return resolve_metric(cfg.eval.best_metric, cfg.eval.suites)
    except InputError as e:
        raise ValueError(str(e)) from None


def check_eval_config(cfg: Config) -> None:
    """Config-time checks (no file is read): every suite loads and its section's keys and kinds are right,
    the best-round metric names a configured suite, and the oracle labeler is not asked to judge user rows."""
    suites = cfg.eval.suites
    if len(set(suites)) != len(suites) or not suites:
        raise ValueError(f"eval.suites: expected one or more distinct suites, got {suites!r}")
    for name in suites:
        build_suite(cfg, name)
    best_metric(cfg)
    if "labeler" in suites and cfg.feedback.labeler == "oracle":
        raise ValueError("eval.suites: the labeler suite checks answers with the run's labeler, and the oracle "
                         "knows ShapesWorld's scene layouts only; use feedback.labeler=vlm or self")


def check_suite_files(cfg: Config) -> None:
    """Before any work: every file and folder the suites' sections name exists (InputError names the key)."""
    for name in cfg.eval.suites:
        build_suite(cfg, name).check()


def heldout_rule(cfg: Config) -> Callable[[str], bool] | None:
    """Which prompt ids the ``labeler`` suite holds out (the prompts stage never trains on them); None when
    the suite does not run."""
    return build_suite(cfg, "labeler").is_heldout if "labeler" in cfg.eval.suites else None


@contextmanager
def suite_handles(cfg: Config, models, k: int, generate, rows: Callable | None = None):
    """The handles a suite gets for the policy of round k: ``generate(items, n, temperature, max_tokens)``
    answered greedily, and (for the labeler suite) the run's splitter and labeler, and its prompt rows."""
    describe, ask = greedy_handles(lambda items, n: generate(items, n=1, temperature=0.0, max_tokens=n),
                                   cfg.sampling.max_tokens)
    with ExitStack() as stack:
        def split(answers):
            if cfg.feedback.splitter == "llm":
                complete = stack.enter_context(models.handles("text", k, cfg.feedback.splitter_model))[0]
                found = llm_split_claims(answers, complete, cfg.feedback.splitter_max_tokens)
            else:
                found = [split_claims(a) for a in answers]
            return [[(c.question, c.negated) for c in claims] for claims in found]

        def verify(items):
            # k + 1: a ``self`` labeler judges with the policy under evaluation (round k's)
            labeler = stack.enter_context(models.handles("labeler", k + 1))[0]
            return labeler([im for im, _ in items], [q for _, q in items], [{} for _ in items]) if items else []
        yield Handles(describe=describe, ask=ask, split=split, verify=verify, rows=rows)


def evaluate_suite(cfg: Config, models, k: int, name: str, generate, rows: Callable | None = None):
    """(metrics, rows) of suite ``name`` on the policy ``generate`` serves (round k's in a run)."""
    suite = build_suite(cfg, name)
    with suite_handles(cfg, models, k, generate, rows) as handles:
        return suite.run(handles)
