"""The RLAIF-V stage functions with fake model handles: prompts, sampling seeds, verification, pairs."""
import io
import math

import pytest

from PIL import Image

from evaluation.shapes import ShapesWorld, layout
from feedback import rlaifv
from feedback.inputs import select_prompts
from feedback.labelers import OracleLabeler, VLMLabeler, load_plugin


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def prompt_rows(count=3):
    world = ShapesWorld()
    return [{"id": it["id"], "image_bytes": png(it["image"]), "question": it["question"],
             "gt_objects": it["gt_objects"], "layout": it["layout"]} for it in world.prompt_pool(count)]


def test_bad_prompts_are_counted_skips_with_reasons():
    good = prompt_rows(2)
    bad = [{**good[0], "id": "empty", "question": "  "}, {**good[0], "id": "corrupt", "image_bytes": b"\x89PNG broken"},
           {**good[0], "id": "zero", "image_bytes": b""}, {**good[1]}]
    kept, skipped = select_prompts(good + bad)
    assert [r["id"] for r in kept] == [good[0]["id"], good[1]["id"]]
    assert skipped == {"empty": "empty question", "corrupt": "unreadable image (UnidentifiedImageError)",
                       "zero": "unreadable image (UnidentifiedImageError)", good[1]["id"]: "duplicate id"}


def test_sampling_seeds_depend_on_prompt_not_on_shard():
    prompts = prompt_rows(4)
    seen = {}

    def generate(items, seeds):
        seen.update(zip([id(i) for i in items], seeds))
        return [[f"answer {s}"] * 2 for s in seeds]

    whole = rlaifv.sample_answers(prompts, generate, 0, 1)
    halves = rlaifv.sample_answers(prompts[:2], generate, 0, 1) + rlaifv.sample_answers(prompts[2:], generate, 0, 1)
    assert whole == halves and len(whole) == 8
    assert rlaifv.sample_answers(prompts, generate, 0, 2) != whole


def test_verify_with_oracle_scores_hallucinations():
    prompts = prompt_rows(1)
    p = prompts[0]
    present = p["gt_objects"][0]
    absent = next(n for n in ("red circle", "blue square", "green diamond") if n not in p["gt_objects"])
    samples = [{"prompt_id": p["id"], "sample": 0, "response": f"There is a {present}."},
               {"prompt_id": p["id"], "sample": 1, "response": f"There is a {present}. There is a {absent}."}]
    split = rlaifv.split_answers(samples)
    verified = rlaifv.verify_claims(split, {p["id"]: p}, OracleLabeler(), "oracle")
    assert [v["score"] for v in verified] == [0, -1]
    pairs = rlaifv.make_pairs(verified, {p["id"]: p}, 2, 0, True, 1)
    assert len(pairs) == 1 and pairs[0]["chosen"][0]["content"][0]["text"] == samples[0]["response"]


def test_plugin_labeler_by_import_path_and_nan_answers():
    labeler = load_plugin("python:labeler_plugin:LengthLabeler", "some-model")
    assert labeler.model == "some-model"
    p = prompt_rows(1)[0]
    rows = [{"prompt_id": p["id"], "sample": 0, "response": "x", "claims": ["a", "b"],
             "questions": ["Is there a red circle?", ""], "negated": [False, False]},
            {"prompt_id": p["id"], "sample": 1, "response": "y", "claims": ["c"],
             "questions": ["Is there a very very long object name here?"], "negated": [False]}]
    verified = rlaifv.verify_claims(rows, {p["id"]: p}, labeler, "plugin")
    assert verified[0]["unscored"] and math.isnan(verified[0]["p_yes"][1])
    assert not verified[1]["unscored"] and verified[1]["score"] == -1


def test_vlm_labeler_normalises_yes_and_no():
    labeler = VLMLabeler(lambda items: [(0.6, 0.2), (0.0, 0.0), (0.1, 0.3)])
    image = Image.new("RGB", (4, 4))
    assert labeler([image] * 3, ["q?"] * 3) == pytest.approx([0.75, 0.5, 0.25])


def test_answer_with_zero_claims_scores_zero():
    p = prompt_rows(1)[0]
    rows = [{"prompt_id": p["id"], "sample": 0, "response": "", "claims": [], "questions": [], "negated": []}]
    [row] = rlaifv.verify_claims(rows, {p["id"]: p}, OracleLabeler(), "oracle")
    assert (row["score"], row["claims"], row["unscored"]) == (0, 0, False)
    assert layout(ShapesWorld().scene("prompts", 0))
