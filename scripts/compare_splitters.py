"""Every claim splitter on the divide step's gold set (feedback/gold/claims_gold.jsonl): claim precision and
recall by normalised question match, and object-mention coverage, per split (dev, heldout) and style; for the
LLM splitter also the facts it listed and those its screen dropped, by reason (each dropped fact in the JSON).

    python scripts/compare_splitters.py [--splitters rule,llm] [--model PATH] [--max-tokens 512]
                                        [--limit N] [--out FILE.json]

``rule`` is ``feedback.claims.split_claims``; ``llm`` is ``llm_split_claims`` through the engine's vLLM text
path (SmolLM2-135M-Instruct from the zoo cache unless ``--model``). Prints a Markdown table and writes the
figures as JSON to ``--out`` (default runs/compare_splitters.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed

from feedback.claims import llm_split, split_claims  # noqa: E402  (after the path line)
from feedback.claims_gold import load_gold, score  # noqa: E402
from feedback.llm_claims import DROP_REASONS, QUESTION_MAX_TOKENS, parse_question  # noqa: E402

GROUPS = (("dev", lambda i: i["split"] == "dev"), ("heldout", lambda i: i["split"] == "heldout"),
          ("llava", lambda i: i["style"] == "llava"), ("qwen", lambda i: i["style"] == "qwen"), ("all", lambda i: True))


def llm_splits(texts: list[str], model: str, max_tokens: int) -> tuple[list[list], dict]:
    """The LLM splitter's claims, the listed facts its screen dropped by reason, and how many of the kept facts'
    questions the model wrote (the rest fell back to the rule rewrite of the model's fact)."""
    from engine.generation import VLLMEngine
    from engine.smollm2 import smollm2_model

    # The few-shot prompt (~250 tokens), an answer and its fact list share the context.
    engine = VLLMEngine(model or str(smollm2_model()), max_model_len=max_tokens + 1024, enforce_eager=True)
    rewrites = []

    def complete(prompts, max_tokens):
        replies = engine.complete(prompts, max_tokens=max_tokens)
        if max_tokens == QUESTION_MAX_TOKENS:  # the rewrite prompts end with their fact
            rewrites.extend(zip(replies, (p.rsplit("Statement: ", 1)[1].rsplit("\nQuestion:", 1)[0] for p in prompts)))
        return replies
    splits = llm_split(texts, complete, max_tokens)
    asked = sum(bool(parse_question(reply, fact)) for reply, fact in rewrites)
    reasons = Counter(why for split in splits for _, why in split.dropped)
    return [split.claims for split in splits], {
        "facts_listed": len(rewrites) + sum(reasons.values()), "facts_dropped": {why: reasons[why] for why in DROP_REASONS},
        "facts_kept": len(rewrites), "questions_by_the_model": asked, "rule_rewrites": len(rewrites) - asked,
        "answers_split_by_rule": sum(split.by_rule for split in splits),
        "answers_without_claims": sum(not split.claims for split in splits),
        "dropped": {text: split.dropped for text, split in zip(texts, splits) if split.dropped}}


def evaluate(items: list[dict], splits: list[list]) -> dict:
    by_text = {item["text"]: [(c.question, c.negated) for c in claims] for item, claims in zip(items, splits)}
    return {name: score([i for i in items if keep(i)], by_text.__getitem__) for name, keep in GROUPS}


def table(results: dict) -> str:
    rows = ["| splitter | items | claim precision | claim recall | object coverage | claims (gold / predicted) | s |",
            "|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        for group in ("dev", "heldout", "all"):
            r = result[group]
            rows.append(f"| {name} ({group}) | {r['items']} | {r['precision']:.1%} | {r['recall']:.1%} | "
                        f"{r['object_coverage']:.1%} | {r['claims_gold']} / {r['claims_predicted']} | {result['seconds']} |")
    return "\n".join(rows)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splitters", default="rule,llm")
    parser.add_argument("--model", default="", help="the llm splitter's text model (default: SmolLM2-135M)")
    parser.add_argument("--max-tokens", type=int, default=512, help="feedback.splitter_max_tokens")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N gold items")
    parser.add_argument("--out", default="runs/compare_splitters.json")
    args = parser.parse_args(argv)
    items = load_gold()[:args.limit or None]
    texts = [item["text"] for item in items]
    results = {}
    for name in args.splitters.split(","):
        start, extra = time.time(), {}
        if name == "rule":
            splits = [split_claims(t) for t in texts]
        elif name == "llm":
            splits, extra = llm_splits(texts, args.model, args.max_tokens)
        else:
            raise SystemExit(f"--splitters: unknown splitter {name!r} (rule | llm)")
        results[name] = {**evaluate(items, splits), **extra, "seconds": round(time.time() - start, 1),
                         "examples": {items[k]["id"]: [c.question for c in splits[k]] for k in (0, len(items) - 1)}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(table(results))
    for name, result in results.items():
        if "facts_listed" in result:
            dropped = ", ".join(f"{n} {why}" for why, n in result["facts_dropped"].items())
            print(f"{name}: {result['facts_listed']} facts listed, dropped {dropped}; {result['facts_kept']} kept: "
                  f"{result['questions_by_the_model']} questions written by the model, {result['rule_rewrites']} "
                  f"rewritten by the rule splitter; {result['answers_split_by_rule']} answers left with no fact, divided by "
                  f"the rule splitter; {result['answers_without_claims']} answers without claims")
    return results


if __name__ == "__main__":
    main()
