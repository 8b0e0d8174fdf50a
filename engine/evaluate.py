"""Evaluation of zoo models through vLLM: the policy's hallucination figures and the labeler's accuracy.

``python -m engine.evaluate [--small] [--seed N]`` builds (or finds) the zoo and prints both.
``python -m engine.evaluate --run RUN --world-seed S`` judges every round's policy of a finished run on the
held-out scenes of another ShapesWorld world seed (a world the recipe was never tuned on).
"""
from __future__ import annotations

import argparse
import json
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
