"""Rule-based vs LLM (SmolLM2-135M-Instruct by default) claim splitting on ShapesWorld descriptions.

    python scripts/compare_splitters.py [N] [MODEL]

Agreement: the share of answers whose sets of claim questions are equal after normalisation (lower case,
letters only; "words" also drops function words). Precision/recall: claim questions of the LLM that the rule
splitter also asks, and the other way round, summed over answers. Prints one JSON object.
"""
import json
import re
import sys
import time

from engine.generation import VLLMEngine
from engine.zoo import smollm2_model
from evaluation.shapes import DESCRIBE, ShapesWorld
from feedback.claims import llm_split_claims, split_claims

STOP = {"a", "an", "the", "is", "are", "there", "in", "image", "of", "it", "true", "that", "does", "do", "this",
        "picture"}


def exact(question: str) -> str:
    return " ".join(re.sub(r"[^a-z ]", " ", question.lower()).split())


def content_words(question: str) -> frozenset:
    return frozenset(w for w in exact(question).split() if w not in STOP)


def main(count: int = 20, model: str = "") -> dict:
    world, answers, i = ShapesWorld(), [], 0
    while len(answers) < count:
        _, question, answer = world.policy_example(i)
        i += 1
        if question == DESCRIBE:
            answers.append(answer)
    engine = VLLMEngine(model or str(smollm2_model()), max_model_len=1024, enforce_eager=True)
    start = time.time()
    llm = llm_split_claims(answers, engine.complete)
    rule = [split_claims(a) for a in answers]
    result = {"answers": count, "llm_seconds": round(time.time() - start, 1),
              "claims_per_answer": {"rule": sum(map(len, rule)) / count, "llm": sum(map(len, llm)) / count}}
    for name, key in (("exact", exact), ("words", content_words)):
        same = both = n_llm = n_rule = 0
        for r, l in zip(rule, llm):
            rs, ls = {key(c.question) for c in r}, {key(c.question) for c in l}
            same, both, n_llm, n_rule = same + (rs == ls), both + len(rs & ls), n_llm + len(ls), n_rule + len(rs)
        result[name] = {"answer_agreement": same / count, "precision": both / max(1, n_llm),
                        "recall": both / max(1, n_rule)}
    return result


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20, sys.argv[2] if len(sys.argv) > 2 else ""),
                     indent=1))
