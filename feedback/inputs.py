"""Prompt rows checked before a round uses them: every bad row becomes a counted skip with its reason.

A prompt row holds ``id``, ``image_bytes`` (an encoded image) and ``question``; whatever is wrong with one
row (an unreadable image, an empty question, a repeated id) never stops the round.
"""
from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

MAX_QUESTION_CHARS = 2000


def decode_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.convert("RGB")


def prompt_problem(row: dict) -> str | None:
    """Why a prompt cannot be used (a counted skip), or None when it is fine."""
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        return "empty question"
    if len(question) > MAX_QUESTION_CHARS:
        return f"question longer than {MAX_QUESTION_CHARS} characters"
    try:
        decode_image(row["image_bytes"])
    except (UnidentifiedImageError, OSError, ValueError, TypeError, KeyError) as e:
        return f"unreadable image ({type(e).__name__})"
    return None


def select_prompts(rows: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """Usable prompts, and the skipped ones by id with their reasons (duplicate ids count as skips)."""
    kept, skipped, seen = [], {}, set()
    for row in rows:
        problem = "duplicate id" if row["id"] in seen else prompt_problem(row)
        seen.add(row["id"])
        if problem:
            skipped[row["id"]] = problem
        else:
            kept.append(row)
    return kept, skipped
