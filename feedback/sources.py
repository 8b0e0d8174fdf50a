"""Preference sources: what a round does between choosing its prompts and training on its pairs.

``feedback.source`` names one: ``rlaifv``, ``seva``, ``bpo``, ``amp`` or a plug-in ``python:module:Class``.
A source is a class with three members::

    class MySource:
        name = "mine"                      # the ``source`` column of its pairs
        losses = ("sigmoid",)              # the train.loss values its pairs make sense for
        def stages(self, cfg) -> list[Stage]: ...   # the last one is named "pairs"

A built-in source also declares ``section``, its config section (a ``feedback.sections.Section``, composed by
engine/config.py into ``feedback.<name>``), and ``shared_keys``, the prefixes of the generic feedback keys it
reads (``("labeler", "splitter")``): those and its section bind a run, no other source's knobs do. A plug-in
source may declare a ``section`` too: its keys are ``feedback.plugin.<key>``, validated when the config loads
(docs/architecture.md), and ``shared_keys`` (without them every generic key binds its runs). Every source's
pairs stage gets ``pairs_schema`` (the table TRL reads) unless it sets its own.

The sequencer (engine/rounds.py) runs ``prompts``, then the source's stages in order, then ``train`` and one
``eval/<suite>`` per evaluation suite, with the same store, shards, completion markers and resume for every
stage (docs/architecture.md). A stage function is
pure: ``run(ctx, handle, prompts)`` reads earlier tables through ``ctx`` and returns its rows (a single
stage returns ``(rows, info)``, ``info`` going to its ``_SUCCESS`` and metrics.jsonl). ``handle`` is the
model callable named by ``uses``; the engine builds it (no Ray or vLLM here):

- ``policy``: ``generate(items, *, n, temperature, max_tokens=None, seeds=None, policy=None)`` answers
  (image, question) items; ``policy`` None is the current policy, an int j round j's policy (0 = the
  starting one), a str another model (a path or hub id).
- ``labeler``: ``labeler(images, questions, metadata) -> p_yes`` (feedback/labelers.py).
- ``text``: ``complete(prompts, max_tokens=256, model=None) -> completions`` from the text model named by the
  stage's ``model``, or by ``model`` (another text model, started on first use and kept for the stage).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from evaluation.seeds import hash_seed
from feedback.pairs import pairs_schema
from feedback.plugins import load_object

ENGINE_STAGES = ("prompts", "train", "eval", "policy")
HANDLES = ("", "policy", "labeler", "text")


def derive_seed(*parts) -> int:
    """A seed from (run seed, round, stage, prompt id, ...): the same rows however a stage is sharded or resumed."""
    return hash_seed(*parts) & 0x7FFFFFFF  # 31 bits: vLLM's and torch's seeds


@dataclass(frozen=True)
class Stage:
    """One stage of a source: ``sharded`` stages run shard by shard (prompt shards), one thread per handle."""
    name: str
    run: Callable
    uses: str = ""
    sharded: bool = False
    model: str = ""  # the text model of a ``text`` stage
    schema: Callable | None = None  # returns the table's pyarrow schema (the pairs stage)
    # The engine's train and eval stages: save(round, rows, figures) writes what is not a table (the policy,
    # an evaluation's files) and returns the files the stage's marker vouches for. Sources leave it unset.
    save: Callable | None = None
    # A sharded stage's own figures, from its whole table (an iterable of rows) once the last shard is written:
    # the same whether the stage ran whole or was resumed.
    summary: Callable | None = None


@dataclass
class RoundContext:
    """What a stage function may see of its round: the config, the prompts and earlier stages' tables."""
    cfg: Any
    round: int
    prompts: dict[str, dict]
    read: Callable[[str], list[dict]]
    _by_prompt: dict = field(default_factory=dict)

    def seed(self, stage: str, *keys) -> int:
        return derive_seed(self.cfg.run.seed, self.round, stage, *keys)

    def rows(self, stage: str, prompts: list[dict]) -> list[dict]:
        """An earlier stage's rows that belong to ``prompts``, in prompt order (the stage's input shard)."""
        if stage not in self._by_prompt:
            grouped: dict[str, list] = {}
            for row in self.read(stage):
                grouped.setdefault(row["prompt_id"], []).append(row)
            self._by_prompt[stage] = grouped
        return [row for p in prompts for row in self._by_prompt[stage].get(p["id"], [])]


BUILT_IN = {"rlaifv": "feedback.rlaifv:RLAIFV", "seva": "feedback.seva:SeVa", "bpo": "feedback.bpo:BPO",
            "amp": "feedback.amp:AMP"}


def source_class(spec: str):
    """The class named by ``feedback.source`` (a built-in name or ``python:module:Class``)."""
    return load_object("feedback.source", spec, BUILT_IN)


def load_source(spec: str):
    """The source named by ``feedback.source``, instantiated."""
    try:
        source = source_class(spec)()
    except TypeError as e:
        raise ValueError(f"feedback.source: cannot load {spec!r} ({e})") from None
    for member in ("name", "losses", "stages"):
        if not hasattr(source, member):
            raise ValueError(f"feedback.source: {spec!r} has no {member!r} (see feedback/sources.py)")
    return source


def checked_stages(source, cfg) -> list[Stage]:
    """The source's stages, refused with a message naming the source when they break the round's contract."""
    stages = list(source.stages(cfg))
    names = [s.name for s in stages]
    problems = []
    if not names or names[-1] != "pairs":
        problems.append("its last stage must be 'pairs'")
    if len(set(names)) != len(names) or set(names) & set(ENGINE_STAGES) or any("/" in n or n.startswith(".") for n in names):
        problems.append(f"stage names must be unique folder names and not one of {ENGINE_STAGES}")
    problems += [f"stage {s.name!r} uses unknown handle {s.uses!r}" for s in stages if s.uses not in HANDLES]
    if problems:
        raise ValueError(f"feedback.source {source.name!r}: " + "; ".join(problems))
    if stages[-1].schema is None:  # an inferred schema reads images back as dicts, which training cannot use
        stages[-1] = replace(stages[-1], schema=pairs_schema)
    return stages
