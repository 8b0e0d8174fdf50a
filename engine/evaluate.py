"""Evaluation of zoo models through vLLM: the policy's hallucination figures and the labeler's accuracy.

``python -m engine.evaluate [--small]`` builds the zoo if needed and prints both: the zoo's figures before
any alignment round.
"""
from __future__ import annotations

import argparse
import time

from engine.generation import Adapter, VLLMEngine
from engine.zoo import FULL, SMALL, build_zoo
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="the fast mechanics-test zoo instead of the full one")
    parser.add_argument("--n", type=int, default=300, help="held-out images and labeler questions")
    args = parser.parse_args(argv)
    recipe = SMALL if args.small else FULL
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
