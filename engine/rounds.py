"""The round machine: round k turns policy k-1 into policy k.

    prompts -> <the preference source's stages, ending in pairs> -> train -> eval

RLAIF-V's stages are ``sample -> split -> verify -> pairs``; SeVa, BPO and AMP bring their own
(feedback/sources.py explains the contract). Each stage reads earlier stages' tables from the run store
and writes its own, then an atomic ``_SUCCESS``. On restart a finished stage is skipped and a half-done
sharded stage redoes only its missing shards; seeds come from (run seed, round, stage, prompt), so the data
is the same as in an uninterrupted run. Round 000 only evaluates the starting policy. Model calls go to Ray
actors, wrapped as plain handles for the pure stage functions in ``feedback/``.
"""
from __future__ import annotations

import io
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import ray

from engine.actors import LabelerActor, SamplerActor, SplitterActor, TrainerActor, actor_options, engine_kwargs
from engine.config import Config
from engine.generation import Adapter
from engine.progress import Progress
from engine.prompt_data import load_prompt_rows
from engine.store import RunStore
from evaluation.heldout import evaluate_policy, format_metrics, greedy_handles
from evaluation.report import write_report, write_tensorboard
from evaluation.shapes import ShapesWorld
from feedback.inputs import select_prompts
from feedback.labelers import OracleLabeler, VLMLabeler, load_plugin
from feedback.sources import RoundContext, Stage, checked_stages, derive_seed, load_source


class Rounds:
    """Drives the rounds of one run directory; holds the actors between stages."""

    def __init__(self, cfg: Config, store: RunStore, policy: str, labeler: str, log=print,
                 resolve_model=lambda name: name):
        self.cfg, self.store, self.policy, self.labeler_model, self.log = cfg, store, policy, labeler, log
        self.resolve_model = resolve_model  # a config's model name (zoo, a hub id, a path) -> what vLLM loads
        self.world = ShapesWorld(cfg.data.world_seed, cfg.data.prior)
        self.stages = checked_stages(load_source(cfg.feedback.source), cfg)
        self.samplers: list = []
        self.labelers: list = []
        self.models: dict = {}  # other policies named by a stage (AMP's feedback.amp_models), by name
        self._models_lock = threading.Lock()

    # ---- actors -------------------------------------------------------------------------------------
    def _start(self, actor_class, role: str, model: str, count: int, lora: bool = False) -> list:
        options = actor_options(self.cfg, role)
        return [actor_class.options(**options).remote(model, engine_kwargs(self.cfg, lora)) for _ in range(count)]

    def _sampler_pool(self) -> list:
        if not self.samplers:
            self.samplers = self._start(SamplerActor, "sampler", self.policy, self.cfg.resources.sampler_actors, lora=True)
        return self.samplers

    def _labeler_pool(self) -> list:
        if not self.labelers:
            self.labelers = self._start(LabelerActor, "labeler", self.labeler_model, self.cfg.resources.labeler_actors)
        return self.labelers

    def _model_actor(self, name: str):
        with self._models_lock:  # shards of one stage run in threads and may ask for the same model at once
            if name not in self.models:
                [self.models[name]] = self._start(SamplerActor, "sampler", self.resolve_model(name), 1)
            return self.models[name]

    def shutdown(self, which: str = "all") -> None:
        """Kills actors so their memory (and CPUs/GPUs) go back to the cluster."""
        pools = {"labelers": self.labelers, "samplers": self.samplers, "models": list(self.models.values())}
        for name, actors in pools.items():
            if which in (name, "all"):
                for actor in actors:
                    ray.kill(actor)
        if which in ("labelers", "all"):
            self.labelers = []
        if which in ("samplers", "all"):
            self.samplers = []
        if which in ("models", "all"):
            self.models = {}

    def adapter(self, round_index: int) -> Adapter | None:
        """Policy k as a vLLM adapter (None: the base model, round 0 or a round that trained nothing)."""
        return policy_adapter(self.store.stage_dir(round_index, "policy"), round_index)

    # ---- model handles for the source's stages --------------------------------------------------------
    @contextmanager
    def _handles(self, stage: Stage, k: int):
        """The handles a stage asked for (one per actor); a text model lives only for its stage."""
        if stage.uses == "text":
            [actor] = self._start(SplitterActor, "splitter", self.resolve_model(stage.model), 1)
            try:
                yield [lambda prompts, max_tokens=256: ray.get(actor.complete.remote(prompts, max_tokens))]
            finally:
                ray.kill(actor)
        elif stage.uses == "policy":
            yield [self._policy_handle(actor, k) for actor in self._sampler_pool()]
        elif stage.uses == "labeler":
            yield self._labeler_handles(self.adapter(k - 1))
        else:
            yield [None]

    def _policy_handle(self, actor, k: int):
        def generate(items, *, n, temperature, max_tokens=None, seeds=None, policy=None):
            """policy: None = the current policy (k-1), int j = round j's policy, str = another model."""
            if isinstance(policy, str):
                target, adapter = self._model_actor(policy), None
            else:
                target, adapter = actor, self.adapter(k - 1 if policy is None else policy)
            return ray.get(target.generate.remote(items, n, temperature, max_tokens or self.cfg.sampling.max_tokens,
                                                  seeds, adapter))
        return generate

    def _labeler_handles(self, previous: Adapter | None) -> list:
        kind = self.cfg.feedback.labeler
        if kind == "oracle":
            return [OracleLabeler()]
        if kind == "self":
            return [VLMLabeler(lambda items, a=a: ray.get(a.yes_no.remote(items, previous))) for a in self._sampler_pool()]
        if kind == "vlm":
            return [VLMLabeler(lambda items, a=a: ray.get(a.yes_no.remote(items))) for a in self._labeler_pool()]
        return [load_plugin(kind, self.cfg.feedback.labeler_model)]

    # ---- stage helpers ------------------------------------------------------------------------------
    def _finish(self, k: int, stage: str, start: float, info: dict) -> None:
        info = {**info, "seconds": round(time.time() - start, 2)}
        self.store.mark_done(k, stage, info)  # also its line in metrics.jsonl
        self.log(f"[round {k:03d}] {stage}: " + ", ".join(f"{a}={b}" for a, b in info.items() if not isinstance(b, (dict, list))))

    def _single(self, k: int, stage: str, produce, schema=None) -> None:
        if self.store.is_done(k, stage):
            return
        start = time.time()
        rows, info = produce()
        self.store.write_shard(k, stage, 0, rows, schema)
        self._finish(k, stage, start, {"rows": len(rows), **info})

    def _sharded(self, k: int, stage: str, shards: list[list], handles: list, work) -> None:
        """Runs ``work(handle, shard_rows)`` for every missing shard, one thread per actor handle."""
        if self.store.is_done(k, stage):
            return
        start = time.time()
        missing = [s for s in range(len(shards)) if not self.store.has_shard(k, stage, s)]
        queues = [missing[i::len(handles)] for i in range(len(handles))]

        def drain(handle, indices, progress):
            for s in indices:
                self.store.write_shard(k, stage, s, work(handle, shards[s]))
                progress.update(len(shards[s]))

        with Progress(sum(len(shards[s]) for s in missing), f"[round {k:03d}] {stage}: items", self.log) as progress, \
                ThreadPoolExecutor(len(handles)) as pool:
            for future in [pool.submit(drain, h, q, progress) for h, q in zip(handles, queues) if q]:
                future.result()
        self._finish(k, stage, start, {"shards": len(shards), "shards_run": len(missing),
                                       "items": sum(len(shard) for shard in shards)})

    def _shards(self, prompts: list[dict]) -> list[list[dict]]:
        size = self.cfg.sampling.shard_size
        return [prompts[i:i + size] for i in range(0, len(prompts), size)]

    # ---- the rounds ---------------------------------------------------------------------------------
    def run(self) -> None:
        self.evaluate(0)
        for k in range(1, self.cfg.run.rounds + 1):
            self.round(k)
        self.shutdown()

    def report(self) -> None:
        """RUN/report.md with its plots, and the TensorBoard scalars of every finished round (after each eval)."""
        write_report(self.store.root, metric=self.cfg.eval.best_metric)
        write_tensorboard(self.store.root)

    def round(self, k: int) -> None:
        self._single(k, "prompts", lambda: self._prompts(k))
        prompts = self.store.read(k, "prompts")
        ctx = RoundContext(self.cfg, k, {p["id"]: p for p in prompts}, lambda stage: self.store.read(k, stage))
        for stage in self.stages:
            self._run_stage(k, stage, ctx, prompts)
        if not self.store.is_done(k, "train"):
            self.shutdown("labelers")
            self.shutdown("models")
            self._train(k)
        self.evaluate(k)

    def _run_stage(self, k: int, stage: Stage, ctx: RoundContext, prompts: list[dict]) -> None:
        if self.store.is_done(k, stage.name):
            return
        with self._handles(stage, k) as handles:
            if stage.sharded:
                self._sharded(k, stage.name, self._shards(prompts), handles,
                              lambda handle, shard: stage.run(ctx, handle, shard))
            else:
                self._single(k, stage.name, lambda: stage.run(ctx, handles[0], prompts),
                             stage.schema() if stage.schema else None)

    def _prompts(self, k: int):
        size = self.cfg.sampling.prompts_per_round
        if self.cfg.data.source == "dataset":
            rows = load_prompt_rows(**dataset_options(self.cfg), start=(k - 1) * size, count=size)
        else:
            rows = shapes_prompts(self.world, size, start=(k - 1) * size)
        kept, skipped = select_prompts(rows)
        return kept, {"skipped": len(skipped), "skip_reasons": skipped}

    def _train(self, k: int) -> None:
        start = time.time()
        policy = self.store.stage_dir(k, "policy")
        tmp = policy.with_name("policy.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(policy, ignore_errors=True)
        previous = self.adapter(k - 1)
        pairs_dir = self.store.stage_dir(k, "pairs")
        if not self.store.read(k, "pairs"):
            figures = {"pairs": 0, "note": "no pairs: the policy is carried over unchanged"}
            shutil.copytree(previous.path, tmp) if previous else tmp.mkdir(parents=True)
        else:
            t = self.cfg.train
            # The trainer's checkpoints outlive a crash: a restarted train stage resumes from the last one.
            checkpoints = self.store.stage_dir(k, "train") / "checkpoints"
            resumable = {"loss": t.loss, "checkpoint_dir": str(checkpoints), "save_steps": t.save_steps}
            # resources.trainer_actors > 1: one data-parallel group (gloo on CPU, NCCL on GPUs); rank 0 saves.
            trainers = [TrainerActor.options(**actor_options(self.cfg, "trainer")).remote()
                        for _ in range(self.cfg.resources.trainer_actors)]
            group = {"world_size": len(trainers), "master": ray.get(trainers[0].rendezvous.remote())}
            try:
                figures = ray.get([trainer.train.remote(
                    base_model=self.policy, pairs_dir=str(pairs_dir), out_dir=str(tmp),
                    previous_adapter=previous.path if previous else None, reference=t.reference, beta=t.beta,
                    lr=t.lr, sft_weight=t.sft_weight, ld_alpha=t.ld_alpha, epochs=t.epochs, batch_size=t.batch_size, lora_r=t.lora_r, lora_alpha=t.lora_alpha,
                    threads=t.threads, seed=derive_seed(self.cfg.run.seed, k, "train"),
                    use_cpu=self.cfg.resources.num_gpus_per_actor == 0, dtype=self.cfg.model.dtype, rank=rank,
                    **group, **resumable)
                    for rank, trainer in enumerate(trainers)])[0]
            finally:
                for trainer in trainers:
                    ray.kill(trainer)
        tmp.rename(policy)
        self._finish(k, "train", start, figures)

    def evaluate(self, k: int) -> None:
        if self.store.is_done(k, "eval"):
            return
        start = time.time()
        actor, adapter = self._sampler_pool()[0], self.adapter(k)

        describe, ask = greedy_handles(lambda items, n: ray.get(actor.generate.remote(items, 1, 0.0, n, None, adapter)),
                                       self.cfg.sampling.max_tokens)
        metrics, rows = evaluate_policy(describe, ask, self.world.eval_set(self.cfg.eval.n), self.world.vocabulary(),
                                        self.world.text_statistics(), self.cfg.run.seed)
        self.store.write_json(f"rounds/{k:03d}/eval/metrics.json", metrics)
        self.store.write_jsonl(f"rounds/{k:03d}/eval/responses.jsonl", rows)
        self._finish(k, "eval", start, {key: metrics[key] for key in ("chair_s", "chair_i", "recall", "pope_f1", "n")})
        self.log(f"[round {k:03d}] {format_metrics(metrics)}")
        self.report()  # here, not per round(): a resumed run does not redraw the rounds it had finished


def policy_adapter(path: Path, round_index: int) -> Adapter | None:
    """A round's policy folder as a vLLM adapter with an id of its own (None: the base model)."""
    if round_index == 0 or not (path / "adapter_config.json").exists():
        return None
    return Adapter(str(path.resolve()), derive_seed(str(path.resolve())) % 1_000_000 + 1)


def dataset_options(cfg: Config) -> dict:
    """load_prompt_rows' arguments from the data section."""
    d = cfg.data
    return {"path": d.path, "split": d.split, "image_column": d.image_column, "question_column": d.question_column,
            "reference_column": d.reference_column, "id_column": d.id_column, "image_root": d.image_root}


def shapes_prompts(world: ShapesWorld, count: int, start: int = 0) -> list[dict]:
    """ShapesWorld prompts ``start..start+count-1`` as prompt rows (images PNG-encoded)."""
    rows = []
    for item in world.prompt_pool(count, start=start):
        buffer = io.BytesIO()
        item["image"].save(buffer, format="PNG")
        rows.append({"id": item["id"], "image_bytes": buffer.getvalue(), "question": item["question"],
                     "reference": item["reference"], "gt_objects": item["gt_objects"], "layout": item["layout"]})
    return rows


def branch_from(source: Path, target: Path, round_index: int) -> None:
    """Starts a new run at ``target`` from round N of ``source``: rounds 0..N are linked in as finished."""
    for k in range(round_index + 1):
        src = source / "rounds" / f"{k:03d}"
        if not (src / "eval" / "_SUCCESS").exists() and not (k > 0 and (src / "train" / "_SUCCESS").exists()):
            raise ValueError(f"--resume-from {round_index}: round {k} of {source} is not finished")
        dst = target / "rounds" / f"{k:03d}"
        if not dst.exists():
            shutil.copytree(src, dst, copy_function=_link_or_copy)


def _link_or_copy(src, dst):
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)
