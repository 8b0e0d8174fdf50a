"""Evaluation of zoo models through vLLM: the policy's hallucination figures and the labeler's accuracy.

``python -m engine.evaluate [--small] [--seed N]`` builds (or finds) the zoo and prints both.
``python -m engine.evaluate --run RUN --world-seed S`` judges every round's policy of a finished run on the
held-out scenes of another ShapesWorld world seed (a world the recipe was never tuned on).
``python -m evaluation --model M [--adapter A] --suite S [--config C] [key=value ...]`` (evaluation/__main__.py
hands off to :func:`checkpoint_main`) scores any checkpoint on any suite through the run's own code path.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.generation import Adapter, VLLMEngine
from engine.zoo import build_zoo, zoo_recipe
from evaluation.heldout import evaluate_policy, format_metrics, greedy_handles
from evaluation.shapes import ShapesWorld
from feedback.labelers import QUESTION_SUFFIX


def evaluate_model(engine: VLLMEngine, world: ShapesWorld, count: int, adapter: Adapter | None = None,
                   seed: int = 0) -> tuple[dict, list[dict]]:
    describe, ask = greedy_handles(lambda items, n: engine.generate(items, max_tokens=n, adapter=adapter), 96)
    return evaluate_policy(describe, ask, world.eval_set(count), world.vocabulary(), world.text_statistics(), seed)


def labeler_accuracy(engine: VLLMEngine, world: ShapesWorld, count: int, hard: float = 0.7) -> dict:
    """Accuracy on balanced held-out existence questions (most absent objects share a colour or shape) and on
    held-out size/position checks."""
    result = {"n": count}
    for name, items in (("existence", world.claim_questions(count, hard=hard)), ("attributes", world.attribute_checks(count))):
        probs = engine.yes_no([(it["image"], it["question"] + QUESTION_SUFFIX) for it in items])
        result[name] = sum((p_yes > p_no) == it["label"] for (p_yes, p_no), it in zip(probs, items)) / count
    return result


def evaluate_run(run: Path, world_seed: int, count: int) -> list[dict]:
    """Every round's policy of ``run`` on ``count`` held-out scenes of world ``world_seed``, as rows of figures."""
    from engine.actors import engine_kwargs
    from engine.config import load_config
    from engine.models import policy_adapter
    from engine.run import resolve_models
    from evaluation.layout import RunLayout

    layout = RunLayout(run)
    cfg = load_config(layout.config)
    policy, _ = resolve_models(cfg)
    engine = VLLMEngine(policy, **engine_kwargs(cfg, lora=True))
    world = ShapesWorld(world_seed, cfg.data.prior)
    rows = []
    for k in [0, *(k for k in layout.round_numbers() if k and layout.is_done(k, "train"))]:
        adapter = policy_adapter(layout.policy(k)) if k else None
        metrics, _ = evaluate_model(engine, world, count, adapter, cfg.run.seed)
        rows.append({"round": k, **{key: metrics[key] for key in ("chair_s", "chair_i", "recall", "pope_f1", "n")}})
        print(f"[eval] {run} round {k} on world {world_seed}: {format_metrics(metrics)}", flush=True)
    return rows


def evaluate_checkpoint(cfg, suite: str, adapter: str | None = None) -> tuple[dict, list[dict]]:
    """(metrics, rows) of ``cfg.model.policy`` (with a LoRA ``adapter`` folder, or none) on ``suite``, with the
    config's sections, labeler and splitter, in this process: the run's eval stage calls the same
    engine.registries.evaluate_suite with the same handles."""
    import tempfile

    from engine.executor import InProcessExecutor
    from engine.models import Models, policy_adapter
    from engine.registries import check_suite_files, evaluate_suite
    from engine.round_stages import run_prompt_rows
    from engine.run import model_resolver, resolve_models
    from evaluation.layout import RunLayout

    check_suite_files(cfg)
    served = policy_adapter(Path(adapter)) if adapter else None
    if adapter and served is None:
        raise ValueError(f"--adapter: {adapter} holds no adapter_config.json (a LoRA adapter folder is needed)")
    policy, labeler = resolve_models(cfg)
    with tempfile.TemporaryDirectory() as scratch:
        models = Models(cfg, InProcessExecutor(cfg), RunLayout(scratch), policy, labeler, model_resolver(policy))
        try:
            samplers = models.samplers()

            def generate(items, *, n, temperature, max_tokens):
                return samplers.call(0, "generate", items, n, temperature, max_tokens, None, served)
            return evaluate_suite(cfg, models, 0, suite, generate, rows=lambda keep: run_prompt_rows(cfg, keep))
        finally:
            models.shutdown()


def checkpoint_main(argv=None) -> int:
    """``python -m evaluation``: prints the suite's figures as JSON (the run's metrics.json) and writes
    metrics.json and responses.jsonl under ``--out`` when given."""
    from engine.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="python -m evaluation", description="Scores one checkpoint on one "
                                     "evaluation suite with the code a run's eval stage uses (docs/benchmarks.md).")
    parser.add_argument("--model", required=True, help="the base model: a HF folder, a hub id, or zoo")
    parser.add_argument("--adapter", help="a LoRA adapter folder (a run's rounds/NNN/policy); none: the base model")
    parser.add_argument("--suite", required=True, help="shapesworld | chair-coco | pope | amber | labeler | python:...")
    parser.add_argument("--config", help="a config (a run's config.yaml works): the suite's section, labeler, ...")
    parser.add_argument("--out", type=Path, help="a folder for metrics.json and responses.jsonl")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. eval.pope.n_images=50")
    args = parser.parse_args(argv)
    try:  # the suite alone: a run's config.yaml may list others, and its best metric may name one of them
        cfg = load_config(args.config, [*args.overrides, f"model.policy={args.model}", f"eval.suites={args.suite}",
                                        f"eval.best_metric={args.suite}/-"])
        metrics, rows = evaluate_checkpoint(cfg, args.suite, args.adapter)
    except (ConfigError, ValueError) as e:
        print(f"python -m evaluation: error: {e}", file=sys.stderr)
        return 2
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        (args.out / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(json.dumps(metrics, sort_keys=True), flush=True)
    return 0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="the fast mechanics-test zoo instead of the full one")
    parser.add_argument("--seed", type=int, default=0, help="the zoo recipe's seed")
    parser.add_argument("--n", type=int, default=300, help="held-out images and labeler questions")
    parser.add_argument("--run", type=Path, help="judge every round's policy of this run directory instead")
    parser.add_argument("--world-seed", type=int, default=0, help="with --run: the world whose held-out scenes judge")
    parser.add_argument("--json", type=Path, help="with --run: also write the rows here")
    args = parser.parse_args(argv)
    if args.run:
        rows = evaluate_run(args.run, args.world_seed, args.n)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return
    recipe = zoo_recipe("small" if args.small else "full", args.seed)
    start = time.time()
    paths = build_zoo(recipe)
    print(f"[demo] zoo ready in {time.time() - start:.0f}s: {paths['policy'].parent}", flush=True)
    world = ShapesWorld(recipe.seed, recipe.prior)
    policy = VLLMEngine(str(paths["policy"]), seed=recipe.seed)
    metrics, _ = evaluate_model(policy, world, args.n)
    print(f"[demo] starting policy on {args.n} held-out images: {format_metrics(metrics)}", flush=True)
    del policy
    labeler = VLLMEngine(str(paths["labeler"]), seed=recipe.seed)
    accuracy = labeler_accuracy(labeler, world, args.n)
    print(f"[demo] labeler on {accuracy['n']} held-out yes/no existence questions: accuracy {accuracy['existence']:.1%}; "
          f"on {accuracy['n']} size/position checks: {accuracy['attributes']:.1%}")


if __name__ == "__main__":
    main()
