"""RLAIF-V's stages as pure functions over tables (lists of row dicts).

Model calls arrive as handles from the engine: ``generate(items, seeds)`` samples n answers per
(image, question), ``labeler(images, questions, metadata)`` returns p_yes per question. Nothing here knows
about Ray or vLLM. Seeds are derived from (run seed, round, stage, prompt id), so a stage redone after a
crash, in any sharding, produces the same rows.
"""
from __future__ import annotations

import json
import zlib
from collections import defaultdict

from feedback.claims import split_claims
from feedback.inputs import decode_image
from feedback.labelers import checked
from feedback.pairs import answer_score, build_pairs


def derive_seed(*parts) -> int:
    return zlib.crc32(json.dumps(parts).encode()) & 0x7FFFFFFF


def sample_answers(prompts: list[dict], generate, run_seed: int, round_index: int) -> list[dict]:
    """n answers per prompt with identical decoding; only the per-prompt seed differs between prompts."""
    seeds = [derive_seed(run_seed, round_index, "sample", p["id"]) for p in prompts]
    answers = generate([(decode_image(p["image_bytes"]), p["question"]) for p in prompts], seeds)
    return [{"prompt_id": p["id"], "sample": i, "response": text}
            for p, texts in zip(prompts, answers) for i, text in enumerate(texts)]


def split_answers(samples: list[dict], splitter=split_claims) -> list[dict]:
    rows = []
    for s in samples:
        claims = splitter(s["response"])
        rows.append({"prompt_id": s["prompt_id"], "sample": s["sample"], "response": s["response"],
                     "claims": [c.text for c in claims], "questions": [c.question for c in claims],
                     "negated": [c.negated for c in claims]})
    return rows


def verify_claims(split_rows: list[dict], prompts: dict[str, dict], labeler, labeler_name: str) -> list[dict]:
    """Asks every claim question of a shard in one labeler call; questions of one answer sit together so
    the labeler's engine shares their image prefix."""
    images, questions, metadata, owners = [], [], [], []
    decoded = {}
    for index, row in enumerate(split_rows):
        prompt = prompts[row["prompt_id"]]
        if row["prompt_id"] not in decoded:
            decoded[row["prompt_id"]] = decode_image(prompt["image_bytes"])
        for question in row["questions"]:
            images.append(decoded[row["prompt_id"]])
            questions.append(question)
            metadata.append({"gt_objects": prompt.get("gt_objects"), "layout": prompt.get("layout")})
            owners.append(index)
    p_yes = checked(labeler(images, questions, metadata) if questions else [], len(questions), labeler_name)
    per_row = defaultdict(list)
    for owner, p in zip(owners, p_yes):
        per_row[owner].append(p)
    result = []
    for index, row in enumerate(split_rows):
        probs = per_row[index]
        bad = sum(p != p for p in probs)  # NaN from the labeler: the answer can't be scored
        result.append({"prompt_id": row["prompt_id"], "sample": row["sample"], "response": row["response"],
                       "p_yes": probs, "claims": len(probs), "unscored": bad > 0,
                       "score": answer_score(probs, row["negated"]) if not bad else 0})
    return result


def make_pairs(verified: list[dict], prompts: dict[str, dict], max_per_prompt: int, seed: int,
               balance: bool, round_index: int) -> list[dict]:
    answers = defaultdict(list)
    for row in verified:
        if not row["unscored"]:
            answers[row["prompt_id"]].append(row)
    return build_pairs(answers, prompts, max_per_prompt, derive_seed(seed, round_index, "pairs"), balance, round_index)
