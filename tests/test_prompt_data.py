"""Prompts from user datasets: RLAIF-V's layout as is, configurable columns, image paths kept under a root."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.prompt_data import PromptDataError, load_prompt_rows
from evaluation.shapes import ShapesWorld
from feedback.inputs import decode_image, select_prompts

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "configs/shapes-rlaifv.yaml")


def _images(n):
    return [ShapesWorld().scene("eval", i).render() for i in range(n)]


def test_rlaifv_layout_saved_to_disk_gives_prompts_with_chosen_as_reference(tmp_path):
    from datasets import Dataset, Features, Image, Value

    features = Features({"ds_name": Value("string"), "image": Image(), "question": Value("string"),
                         "chosen": Value("string"), "rejected": Value("string"), "idx": Value("int64")})
    Dataset.from_dict({"ds_name": ["x"] * 3, "image": _images(3), "question": ["Describe.", "What is red?", "Count."],
                       "chosen": ["A red circle.", "The circle.", "Two."], "rejected": ["A dog.", "A cat.", "Nine."],
                       "idx": [10, 11, 12]}, features=features).save_to_disk(str(tmp_path / "rlaifv"))
    rows = load_prompt_rows(tmp_path / "rlaifv")
    assert [r["id"] for r in rows] == ["10", "11", "12"]
    assert rows[1]["question"] == "What is red?" and rows[1]["reference"] == "The circle."
    assert decode_image(rows[0]["image_bytes"]).size == (64, 64)
    assert rows[0]["gt_objects"] == [] and rows[0]["layout"] == []
    kept, skipped = select_prompts(rows)
    assert len(kept) == 3 and skipped == {}


def test_parquet_with_custom_columns_image_paths_under_a_root_and_a_window_that_wraps(tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i, image in enumerate(_images(2)):
        image.save(pictures / f"{i}.png")
    table = pa.table({"img": ["0.png", "1.png", "missing.png"], "prompt_text": ["Q0", "Q1", "Q2"]})
    pq.write_table(table, tmp_path / "data.parquet")
    rows = load_prompt_rows(tmp_path / "data.parquet", image_column="img", question_column="prompt_text",
                            image_root=pictures, start=2, count=4)
    assert [r["id"] for r in rows] == ["row-000002", "row-000000", "row-000001", "row-000002"]
    assert rows[1]["image_bytes"] == (pictures / "0.png").read_bytes() and rows[1]["reference"] == ""
    kept, skipped = select_prompts(rows)  # the missing file is a counted skip, not an error
    assert skipped["row-000002"].startswith("unreadable image")


def test_an_image_path_leaving_the_root_is_refused_naming_row_and_path(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (tmp_path / "data" / "p.jsonl").write_text(json.dumps({"id": "a7", "image": "../secret.png", "question": "Q"}) + "\n")
    with pytest.raises(PromptDataError, match=r"row a7: image path '\.\./secret\.png' leaves the image root"):
        load_prompt_rows(tmp_path / "data")


def test_missing_column_and_empty_dataset_are_clear_errors(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps({"picture": "a.png", "question": "Q"}) + "\n")
    with pytest.raises(PromptDataError, match="image_column 'image' is not a column.*picture, question"):
        load_prompt_rows(tmp_path / "p.jsonl")
    pq.write_table(pa.table({"image": pa.array([], pa.binary()), "question": pa.array([], pa.string())}),
                   tmp_path / "empty.parquet")
    with pytest.raises(PromptDataError, match="has no rows"):
        load_prompt_rows(tmp_path / "empty.parquet")
    with pytest.raises(PromptDataError, match="no save_to_disk dataset"):
        load_prompt_rows(tmp_path / "nothing-here")


def _jsonl_dataset(tmp_path, count=3):
    for i, image in enumerate(_images(count)):
        image.save(tmp_path / f"{i}.png")
    rows = [{"id": f"p{i}", "image": f"{i}.png", "question": "Describe the image in detail.", "chosen": "A shape."}
            for i in range(count)] + [{"id": "bad", "image": "nothing.png", "question": "Q", "chosen": ""}]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "prompts.jsonl"


def test_the_prompts_stage_reads_a_user_dataset_with_bad_rows_as_counted_skips(tmp_path):
    from engine.config import load_config
    from engine.round_stages import prompts_stage
    from feedback.sources import RoundContext

    path = _jsonl_dataset(tmp_path)
    cfg = load_config(CONFIG, ["data.source=dataset", f"data.path={path}",
                                                      "sampling.prompts_per_round=4"])
    kept, info = prompts_stage(cfg).run(RoundContext(cfg, 1, {}, read=None), None, [])
    assert sorted(r["id"] for r in kept) == ["p0", "p1", "p2"]  # shuffled with run.seed
    assert next(r for r in kept if r["id"] == "p0")["reference"] == "A shape."
    assert info["skipped"] == 1 and "bad" in info["skip_reasons"]


def test_a_dataset_config_is_checked_before_any_work(tmp_path):
    import subprocess
    import sys

    from engine.config import ConfigError, load_config

    from engine.run import check_inputs

    with pytest.raises(ConfigError, match="data.path: data.source=dataset needs an existing dataset path"):
        check_inputs(load_config(CONFIG, ["data.source=dataset", f"data.path={tmp_path / 'none'}"]))
    with pytest.raises(ConfigError, match="feedback.labeler"):
        load_config(CONFIG, ["data.source=dataset", f"data.path={_jsonl_dataset(tmp_path)}",
                                                   "feedback.labeler=oracle"])
    run_dir = tmp_path / "never"
    result = subprocess.run([sys.executable, str(ROOT / "iterate.py"), "--config", CONFIG, "--run-dir",
                             str(run_dir), "data.source=dataset", f"data.path={tmp_path / 'prompts.jsonl'}",
                             "data.question_column=text"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "question_column 'text' is not a column" in result.stderr
    assert not run_dir.exists()
