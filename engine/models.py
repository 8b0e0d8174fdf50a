"""The models a round's stages call, held by actor groups of an executor, and given to stages as handles.

The samplers (the base policy in vLLM, serving any round's adapter) live for the whole run (unless
``resources.release_samplers_for_training`` frees them for DPO); the labelers and other policies named by a
stage (AMP's ``feedback.amp.models``) live until the train stage frees their memory; a text model lives
only for its stage. Each group has its role's resources (engine/resources.py). A handle is a plain
callable (feedback/sources.py lists each kind), one per actor, so a sharded stage runs one shard per actor
at a time.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from engine.actors import engine_kwargs
from engine.config import Config
from engine.executor import ActorGroup, Executor
from engine.generation import Adapter
from evaluation.layout import RunLayout
from feedback.labelers import OracleLabeler, VLMLabeler, load_plugin
from feedback.sources import derive_seed


class Models:
    """The run's actor groups, started on first use; ``release`` and ``shutdown`` give their memory back."""

    def __init__(self, cfg: Config, executor: Executor, layout: RunLayout, policy: str, labeler: str,
                 resolve_model=lambda name: name):
        self.cfg, self.executor, self.layout = cfg, executor, layout
        self.policy, self.labeler_model = policy, labeler
        self.resolve_model = resolve_model  # a config's model name (zoo, a hub id, a path) -> what vLLM loads
        self.groups: dict[str, ActorGroup] = {}  # "samplers", "labelers", "model:<name>"
        self._lock = threading.Lock()  # shards of one stage run in threads and may ask for a group at once

    def _group(self, key: str, role: str, model: str, count: int, lora: bool = False) -> ActorGroup:
        with self._lock:
            if key not in self.groups:
                self.groups[key] = self.executor.group(role, count, model, engine_kwargs(self.cfg, lora, role))
            return self.groups[key]

    def samplers(self) -> ActorGroup:
        return self._group("samplers", "sampler", self.policy, self.cfg.resources.sampler.actors, lora=True)

    def labelers(self) -> ActorGroup:
        return self._group("labelers", "labeler", self.labeler_model, self.cfg.resources.labeler.actors)

    def free_for_training(self) -> None:
        """Before DPO: the labelers and other policies go, and the samplers too with
        ``resources.release_samplers_for_training`` (the next stage that samples starts them again)."""
        self.release("labelers", "models", *(("samplers",) if self.cfg.resources.release_samplers_for_training else ()))

    def release(self, *keys: str) -> None:
        """Kills the named groups ("labelers", "models": every other policy; none: all of them)."""
        for key in list(self.groups):
            kind = "models" if key.startswith("model:") else key
            if not keys or kind in keys:
                self.groups.pop(key).kill()

    shutdown = release

    def adapter(self, k: int) -> Adapter | None:
        """Policy k as a vLLM adapter; None is the base model: round 0, or a round that trained on no pairs
        before any adapter existed. A round whose train stage has not finished has no policy to serve."""
        if k == 0:
            return None
        if not self.layout.is_done(k, "train"):
            raise RuntimeError(f"round {k}'s policy was asked for before its train stage finished")
        return policy_adapter(self.layout.policy(k))

    @contextmanager
    def handles(self, uses: str, k: int, model: str = ""):
        """The handles a stage asked for (``uses``; feedback/sources.py), for round k."""
        if uses == "text":
            groups: dict[str, ActorGroup] = {}  # the stage's model and any other text model it asks (each once)

            def complete(prompts, max_tokens=256, model=None, stage_model=model):
                name = model or stage_model
                with self._lock:
                    if name not in groups:
                        kwargs = engine_kwargs(self.cfg, False, "text")
                        groups[name] = self.executor.group("text", 1, self.resolve_model(name), kwargs)
                return groups[name].call(0, "complete", prompts, max_tokens=max_tokens)
            try:
                yield [complete]
            finally:
                for group in groups.values():
                    group.kill()
        elif uses == "policy":
            samplers = self.samplers()
            yield [self._policy_handle(samplers, i, k) for i in range(len(samplers))]
        elif uses == "labeler":
            yield self._labeler_handles(k)
        else:
            yield [None]

    def _policy_handle(self, samplers: ActorGroup, index: int, k: int):
        def generate(items, *, n, temperature, max_tokens=None, seeds=None, policy=None):
            """policy: None = the current policy (k-1), int j = round j's policy, str = another model."""
            if isinstance(policy, str):
                group = self._group(f"model:{policy}", "sampler", self.resolve_model(policy), 1)
                target, adapter = (group, 0), None
            else:
                target, adapter = (samplers, index), self.adapter(k - 1 if policy is None else policy)
            return target[0].call(target[1], "generate", items, n, temperature,
                                  max_tokens or self.cfg.sampling.max_tokens, seeds, adapter)
        return generate

    def _labeler_handles(self, k: int) -> list:
        kind = self.cfg.feedback.labeler
        if kind == "oracle":
            return [OracleLabeler()]
        if kind == "self":
            samplers, previous = self.samplers(), self.adapter(k - 1)
            return [VLMLabeler(lambda items, i=i: samplers.call(i, "yes_no", items, previous)) for i in range(len(samplers))]
        if kind == "vlm":
            labelers = self.labelers()
            return [VLMLabeler(lambda items, i=i: labelers.call(i, "yes_no", items)) for i in range(len(labelers))]
        return [load_plugin(kind, self.cfg.feedback.labeler_model)]


def policy_adapter(folder: Path) -> Adapter | None:
    """A round's policy folder as a vLLM adapter with an id of its own (None: no adapter there, the base model)."""
    path = folder.resolve()
    if not (path / "adapter_config.json").exists():
        return None
    return Adapter(str(path), derive_seed(str(path)) % 1_000_000 + 1)
