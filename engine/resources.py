"""The ``resources`` section: what each role's actors ask Ray for, and how the driver reaches the cluster.

A role is one kind of actor (engine/actors.py): ``sampler`` (the policy in vLLM, with LoRA), ``labeler``
(the labeler VLM), ``text`` (the text LLM of feedback.splitter=llm and feedback.injector=llm) and
``trainer`` (TRL DPO, one data-parallel rank per actor). Each role has its own actor count, GPUs, CPUs,
dtype and Ray custom resources, and a vLLM role its own tensor parallel size::

    resources:
      sampler: {actors: 2, gpus: 1, tensor_parallel_size: 1}     # 2 engines x 1 GPU
      labeler: {actors: 1, gpus: 1, tensor_parallel_size: 2}     # 1 engine over 2 GPUs
      text:    {gpus: 1}
      trainer: {actors: 1, gpus: 1, custom_resources: {trainer_node: 1}}

``gpus`` is per tensor-parallel shard, as Ray's ``num_gpus`` per vLLM worker: a vLLM actor reserves
gpus x tensor_parallel_size (0: the CPU; a fraction shares one card and needs tensor_parallel_size 1).
``tensor_parallel_size`` and ``dtype`` left empty take ``model.tensor_parallel_size`` and ``model.dtype``.
``custom_resources`` are Ray resources the actor also asks for (``ray start --resources '{"x": 1}'``),
which pins a role to the nodes that offer them. The keys of the first releases (``sampler_actors``,
``labeler_actors``, ``trainer_actors``, ``num_gpus_per_actor``, ``num_cpus_per_actor``: ``OLD_KEYS``) are still
read, so a run directory's saved config.yaml resumes; they are written back in this form. Given on the command
line they set the roles' keys over the file's; one mapping setting both an old key and a key it became is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from feedback.sections import NonNegative, Positive, Section

ROLES = ("sampler", "labeler", "text", "trainer")
DType = Literal["float32", "bfloat16", "float16", "auto"]
# The flat keys of the first releases -> the keys each became (engine/config.py moves them before validation).
OLD_KEYS = {"sampler_actors": ("sampler.actors",), "labeler_actors": ("labeler.actors",),
            "trainer_actors": ("trainer.actors",), "num_gpus_per_actor": tuple(f"{role}.gpus" for role in ROLES),
            "num_cpus_per_actor": tuple(f"{role}.cpus" for role in ROLES)}


class TrainerResources(Section):
    """One role's actors: how many, and what each asks Ray for."""
    actors: Positive = 1
    gpus: Annotated[float, Field(ge=0)] = 0.0
    cpus: Annotated[float, Field(gt=0)] = 1.0
    dtype: DType | None = None
    custom_resources: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)

    @field_validator("gpus")
    @classmethod
    def _whole_gpus_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"must be a fraction of one GPU or a whole number of GPUs, got {value}")
        return value


class EngineResources(TrainerResources):
    """A vLLM role: ``gpus`` per tensor-parallel shard."""
    tensor_parallel_size: Positive | None = None


class ResourcesConfig(Section):
    """Per-role resources (module docstring); ``ray_address`` (empty: RAY_ADDRESS or a new local Ray; ``auto``:
    the running cluster of this machine; or host:port); a dead actor is restarted ``max_restarts`` times; an
    actor not started within ``ready_timeout_s`` seconds (unplaceable, or its model load hangs) stops the
    run with an error naming its role; ``release_samplers_for_training`` kills the samplers while DPO runs
    (their GPUs go to the trainer) and starts them again after."""
    sampler: EngineResources = Field(default_factory=EngineResources)
    labeler: EngineResources = Field(default_factory=EngineResources)
    text: EngineResources = Field(default_factory=EngineResources)
    trainer: TrainerResources = Field(default_factory=TrainerResources)
    ray_address: str = ""
    # A dead actor (OOM, a lost node, a kill) is restarted and its unfinished call retried this many times;
    # model calls are pure and the trainer resumes from its checkpoints, so a retry redoes no finished work.
    max_restarts: NonNegative = 3
    # Loading a 34B model onto GPUs takes minutes; an actor Ray cannot place never starts at all.
    ready_timeout_s: Annotated[float, Field(gt=0)] = 1800.0
    release_samplers_for_training: bool = False

    @model_validator(mode="after")
    def _one_text_model(self):
        if self.text.actors != 1:  # the split and inject stages are not sharded: a second actor would idle
            raise ValueError("text.actors: the stages that use the text model run it as one actor, "
                             f"got {self.text.actors}")
        return self

    def role(self, name: str, model) -> "Role":
        """Role ``name`` with the defaults of ``model`` (the model section) filled in."""
        if name not in ROLES:
            raise ValueError(f"unknown actor role {name!r} (roles: {', '.join(ROLES)})")
        r = getattr(self, name)
        tp = 1 if name == "trainer" else r.tensor_parallel_size or model.tensor_parallel_size
        return Role(name, r.actors, r.gpus * tp, r.cpus, tp, r.dtype or model.dtype, dict(r.custom_resources))


@dataclass(frozen=True)
class Role:
    """What one actor of a role asks for, resolved: ``gpus`` is per actor (all its shards)."""
    name: str
    actors: int
    gpus: float
    cpus: float
    tensor_parallel_size: int
    dtype: str
    custom: dict

    @property
    def on_gpu(self) -> bool:
        return self.gpus > 0
