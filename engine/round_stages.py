"""The engine's own stages of a round: ``prompts`` before the preference source's stages, ``train`` and one
``eval/<suite>`` per evaluation suite after them. Each is a ``feedback.sources.Stage`` like the source's:
``run(ctx, handle, prompts) -> (rows, figures)``; ``save`` writes what is not a table (the policy, an
evaluation's files) and returns the files the stage's marker vouches for.
"""
from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

from engine.config import Config
from engine.executor import Executor
from engine.models import Models
from engine.prompt_data import load_prompt_rows
from engine.prompt_screen import TokenScreen
from engine.store import RunStore, fsync_dir, fsync_tree
from evaluation.layout import eval_stage
from evaluation.shapes import ShapesWorld
from feedback.inputs import select_prompts
from feedback.sources import RoundContext, Stage, derive_seed


class NonFiniteLoss(RuntimeError):
    """DPO produced an infinite or NaN loss: the round stops and the previous policy stays."""


def prompts_stage(cfg: Config, policy: str | None = None) -> Stage:
    """The round's prompt rows; every row that cannot be used is a counted skip with its reason (decoding,
    then, with ``policy``'s tokenizer, special tokens and the context budget: engine/prompt_screen.py).
    Rows the labeler suite holds out for evaluation are never training prompts (``heldout`` counts them)."""
    from engine.registries import heldout_rule

    world = ShapesWorld(cfg.data.world_seed, cfg.data.prior)
    screens: list[TokenScreen | str] = []  # built on first use, once
    heldout = heldout_rule(cfg) or (lambda _: False)

    def prompts(ctx: RoundContext, _, __):
        size, k = cfg.sampling.prompts_per_round, ctx.round
        if cfg.data.source == "dataset":
            rows = load_prompt_rows(**dataset_options(cfg), start=(k - 1) * size, count=size, seed=cfg.run.seed)
        else:
            rows = shapes_prompts(world, size, start=(k - 1) * size)
        training = [r for r in rows if not heldout(str(r["id"]))]
        kept, skipped = select_prompts(training)
        if not screens:
            screens.append(_token_screen(cfg, policy))
        if isinstance(screens[0], TokenScreen):
            kept, refused = screens[0].screen(kept)
            skipped = {**skipped, **refused}
        notes = {} if isinstance(screens[0], TokenScreen) else {"token_screen": screens[0]}
        return kept, {"skipped": len(skipped), "skip_reasons": skipped, "heldout": len(rows) - len(training), **notes}
    return Stage("prompts", prompts)


def _token_screen(cfg: Config, policy: str | None) -> TokenScreen | str:
    """The policy's token screen, or why there is none (recorded in the prompts marker: nothing is hidden)."""
    try:
        return TokenScreen(policy, cfg.model.max_model_len, cfg.sampling.max_tokens) if policy else "off: no policy"
    except (OSError, ValueError) as e:
        return f"off: the policy's tokenizer did not load ({type(e).__name__})"


def train_stage(cfg: Config, store: RunStore, models: Models, executor: Executor, policy_model: str) -> Stage:
    """DPO from the previous round's policy on this round's pairs, into ``policy/`` (written whole, then
    renamed in); no pairs carries the previous policy over unchanged."""
    def train(ctx: RoundContext, _, __):
        k = ctx.round
        t = cfg.train.for_round(k)
        models.free_for_training()  # their memory goes to the trainer
        policy = store.policy(k)
        tmp = policy.with_name("policy.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(policy, ignore_errors=True)
        previous = models.adapter(k - 1)
        if not ctx.read("pairs"):
            figures = {"pairs": 0, "note": "no pairs: the policy is carried over unchanged"}
            shutil.copytree(previous.path, tmp) if previous else tmp.mkdir(parents=True)
        else:
            # The trainer's checkpoints outlive a crash: a restarted train stage resumes from the last one.
            # resources.trainer.actors > 1: one data-parallel group (gloo on CPU, NCCL on GPUs); rank 0 saves.
            role = cfg.resources.role("trainer", cfg.model)
            trainers = executor.group("trainer", role.actors)
            group = {"world_size": len(trainers),
                     "master": trainers.call(0, "rendezvous") if len(trainers) > 1 else "127.0.0.1:29500"}
            arguments = dict(
                base_model=policy_model, pairs_dir=str(store.stage_dir(k, "pairs")), out_dir=str(tmp),
                previous_adapter=previous.path if previous else None, reference=t.reference, beta=t.beta, lr=t.lr,
                epochs=t.epochs, batch_size=t.batch_size, lora_r=t.lora_r, lora_alpha=t.lora_alpha, threads=t.threads,
                seed=derive_seed(cfg.run.seed, k, "train"), use_cpu=not role.on_gpu,
                dtype=role.dtype, loss=t.loss, checkpoint_dir=str(store.checkpoints(k)), save_steps=t.save_steps,
                sft_weight=t.sft_weight, ld_alpha=t.ld_alpha, gradient_checkpointing=t.gradient_checkpointing,
                grad_accum_steps=t.grad_accum_steps, max_length=t.max_length, min_pixels=cfg.model.min_pixels,
                max_pixels=cfg.model.max_pixels, **group)
            try:
                figures = trainers.call_all("train", per_actor=[{"rank": r} for r in range(len(trainers))], **arguments)[0]
            finally:
                trainers.kill()
            check_finite_loss(tmp, figures, k)
        fsync_tree(tmp)
        tmp.rename(policy)
        fsync_dir(policy.parent)
        return [], figures

    def save(k: int, rows, figures) -> list[Path]:
        return sorted(p for p in store.policy(k).rglob("*") if p.is_file())
    return Stage("train", train, save=save)


def check_finite_loss(out_dir: Path, figures: dict, k: int) -> None:
    """Stops the round on an infinite or NaN DPO loss, removing the half-made policy (the previous stays)."""
    log = out_dir / "candor_train.json"
    history = json.loads(log.read_text()).get("log_history", []) if log.exists() else []
    losses = [figures.get("loss_first"), figures.get("loss_last")] + [h["loss"] for h in history if "loss" in h]
    bad = [x for x in losses if x is not None and not math.isfinite(x)]
    if bad:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise NonFiniteLoss(f"round {k}: DPO loss became {bad[0]} (not finite); the round is stopped and round "
                            f"{k - 1}'s policy stays the latest. Lower train.lr or train.beta, or check the pairs")


def eval_stages(cfg: Config, store: RunStore, models: Models) -> list[Stage]:
    """One stage per ``eval.suites`` entry: the round's policy answers greedily, the suite scores it
    (engine/registries.py gives it its handles; the labeler suite also the run's splitter and labeler)."""
    from engine.registries import evaluate_suite

    stages = []
    for name in cfg.eval.suites:
        def evaluate(ctx: RoundContext, generate, _, name=name):
            metrics, rows = evaluate_suite(cfg, models, ctx.round, name,
                                           lambda items, **kw: generate(items, policy=ctx.round, **kw),
                                           rows=lambda keep: run_prompt_rows(cfg, keep))
            return rows, metrics

        def save(k, rows, figures, name=name):
            metrics, responses = store.eval_metrics(k, name), store.eval_responses(k, name)
            store.write_json(metrics, figures)
            store.write_jsonl(responses, rows)
            return [metrics, responses]
        stages.append(Stage(eval_stage(name), evaluate, uses="policy", save=save))
    return stages


def run_prompt_rows(cfg: Config, keep) -> list[dict]:
    """The rows of the run's prompt data (the dataset, or every ShapesWorld prompt the rounds use) whose id
    ``keep`` accepts: the labeler suite's held-out slice."""
    if cfg.data.source == "dataset":
        return load_prompt_rows(**dataset_options(cfg), keep=keep, seed=cfg.run.seed)
    world = ShapesWorld(cfg.data.world_seed, cfg.data.prior)
    return [r for r in shapes_prompts(world, cfg.run.rounds * cfg.sampling.prompts_per_round) if keep(r["id"])]


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
