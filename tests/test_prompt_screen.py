"""No prompt row can stop a run: rows the model would refuse are counted skips with their reasons, the same
on every rerun; a dataset whose image path leaves its root is refused before any work."""
import io
import json

import pytest
from PIL import Image

from engine.config import load_config
from engine.prompt_data import PromptDataError
from engine.prompt_screen import TokenScreen
from engine.round_stages import prompts_stage
from engine.run import check_inputs
from feedback.sources import RoundContext


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def bad_dataset(folder):
    folder.mkdir()
    (folder / "ok.png").write_bytes(png())
    rows = [
        {"id": "good", "image": "ok.png", "question": "Describe the image."},
        {"id": "nul", "image": "ok\x00.png", "question": "Describe the image."},
        {"id": "token", "image": "ok.png", "question": "What is <image> here?"},
        {"id": "long", "image": "ok.png", "question": "red circle " * 150},
        {"id": "chat", "image": "ok.png", "question": [{"role": "user"}]},
    ]
    (folder / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "p.jsonl"


def test_each_bad_row_is_a_counted_skip_with_its_reason_on_every_run(small_zoo, tmp_path):
    path = bad_dataset(tmp_path / "data")
    cfg = load_config("configs/shapes-rlaifv.yaml", ["data.source=dataset", f"data.path={path}",
                                                      "sampling.prompts_per_round=5", "model.zoo=small",
                                                      "sampling.max_tokens=400"])
    check_inputs(cfg)  # nothing here stops the run before it starts
    stage = prompts_stage(cfg, str(small_zoo["policy"]))
    runs = [stage.run(RoundContext(cfg, 1, {}, read=None), None, []) for _ in range(2)]
    assert runs[0] == runs[1]
    kept, figures = runs[0]
    assert [r["id"] for r in kept] == ["good"] and figures["skipped"] == 4
    reasons = figures["skip_reasons"]
    assert reasons["nul"].startswith("unreadable image") and reasons["chat"].startswith("question is not text")
    assert reasons["token"] == "question contains the model's special token '<image>'"
    assert reasons["long"].startswith("question of ") and "exceeds model.max_model_len 512" in reasons["long"]


def test_the_screen_uses_the_policys_own_tokens(small_zoo):
    screen = TokenScreen(str(small_zoo["policy"]), max_model_len=64, max_tokens=16)
    assert screen.problem("Is there a red circle?") is None
    assert "special token" in screen.problem("a <image> b")
    assert "exceeds model.max_model_len 64" in screen.problem("red " * 60)


def test_an_image_path_leaving_the_root_in_any_row_refuses_the_dataset_before_any_work(tmp_path):
    path = bad_dataset(tmp_path / "data")
    with path.open("a") as f:
        f.write(json.dumps({"id": "escape", "image": "../secret.png", "question": "Q"}) + "\n")
    cfg = load_config("configs/shapes-rlaifv.yaml", ["data.source=dataset", f"data.path={path}"])
    with pytest.raises(PromptDataError, match=r"row escape: image path '\.\./secret\.png' leaves the image root"):
        check_inputs(cfg)


def test_an_exif_rotated_jpeg_is_stored_upright_so_every_stage_sees_the_same_pixels():
    from feedback.inputs import check_prompt, decode_image

    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    row, problem = check_prompt({"id": "r", "question": "Q", "image_bytes": buffer.getvalue()})
    assert problem is None
    upright = decode_image(row["image_bytes"])  # what sampling, labeling and the DPO dataset all decode
    assert upright.size == (20, 40) and upright.getexif().get(0x0112) is None
    assert upright.getpixel((10, 2))[0] > 200 and upright.getpixel((10, 37))[1] > 200  # red moved to the top
    from datasets import Dataset, Image as ImageFeature

    dataset = Dataset.from_dict({"images": [{"bytes": row["image_bytes"], "path": None}]}).cast_column(
        "images", ImageFeature())
    assert dataset[0]["images"].size == (20, 40)


def test_an_eps_file_is_refused_without_starting_ghostscript(monkeypatch):
    from PIL import EpsImagePlugin

    from feedback.inputs import check_prompt

    started = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: started.append(a))
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n%%EOF\n"
    row, problem = check_prompt({"id": "e", "question": "Q", "image_bytes": eps})
    assert row is None and problem.startswith("unreadable image") and not started
