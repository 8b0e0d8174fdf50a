"""The bad-input corpus (issue 5): every case ends in a counted skip with its reason or a clear error up
front; never a crash mid-round and never a half-written shard read as complete. The inputs are made here,
in the test, so the repository holds no binary fixtures."""
import errno
import io
import math
import os
import struct
import zlib
from types import SimpleNamespace

import pytest
from PIL import Image

from engine.config import load_config
from engine.store import RunStore
from evaluation.shapes import ShapesWorld
from feedback import rlaifv
from feedback.inputs import MAX_IMAGE_PIXELS, MAX_QUESTION_CHARS, decode_image, select_prompts
from feedback.labelers import OracleLabeler


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels and whose data is one empty chunk: a bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def world_rows(count: int = 2) -> list[dict]:
    return [{"id": it["id"], "image_bytes": encode(it["image"]), "question": it["question"], "reference": "",
             "gt_objects": it["gt_objects"], "layout": it["layout"]} for it in ShapesWorld().prompt_pool(count)]


GOOD = world_rows(1)[0]
PNG = GOOD["image_bytes"]


def transparent(mode: str) -> Image.Image:
    """A 4x4 image in ``mode`` whose pixel (0, 0) is fully transparent and red underneath."""
    if mode == "P":
        image = Image.new("P", (4, 4), 1)
        image.putpalette([255, 0, 0, 0, 0, 255])
        image.putpixel((0, 0), 0)
        image.info["transparency"] = 0
        return image
    image = Image.new("RGBA", (4, 4), (0, 0, 255, 255))
    image.putpixel((0, 0), (255, 0, 0, 0))
    return image.convert(mode)


def sixteen_bit() -> Image.Image:
    image = Image.new("I;16", (2, 1))
    image.putpixel((0, 0), 65535)
    image.putpixel((1, 0), 30000)  # clipping to 8 bits would make this white too
    return image


# (case, image bytes or None for "keep GOOD's", question or None for "keep GOOD's", expected skip reason)
SKIPPED = [
    ("zero-byte image", b"", None, "unreadable image (UnidentifiedImageError)"),
    ("non-image bytes", b"hello, I am a text file\n", None, "unreadable image (UnidentifiedImageError)"),
    ("truncated png", PNG[: len(PNG) // 2], None, "unreadable image (OSError)"),
    ("corrupt png body", PNG[:60] + bytes(len(PNG) - 60), None, "unreadable image"),
    ("png signature only", PNG[:8], None, "unreadable image"),
    ("decompression bomb header", png_header(100_000, 100_000), None, "image too large"),
    ("just over the pixel cap", png_header(4097, 4096), None, "image too large"),
    ("empty question", None, "", "empty question"),
    ("blank question", None, " \n\t ", "empty question"),
    ("overlong question", None, "Is there " + "a red circle and " * 200 + "?",
     f"question longer than {MAX_QUESTION_CHARS} characters"),
    ("non-UTF-8 bytes question", None, b"Is there a \xff\xfe circle?", "question is not valid UTF-8"),
    ("surrogate-escaped question", None, b"caf\xe9?".decode("utf-8", "surrogateescape"), "question is not valid UTF-8"),
    ("question that is not text", None, 42, "question is not text (int)"),
]


@pytest.mark.parametrize("case,image,question,reason", SKIPPED, ids=[c[0] for c in SKIPPED])
def test_bad_prompt_is_a_counted_skip_with_its_reason(case, image, question, reason):
    row = {**GOOD, "id": "bad"}
    if image is not None:
        row["image_bytes"] = image
    if question is not None:
        row["question"] = question
    kept, skipped = select_prompts([GOOD, row])
    assert [r["id"] for r in kept] == [GOOD["id"]]
    assert skipped["bad"].startswith(reason), skipped


def test_missing_image_and_a_path_instead_of_bytes_are_skipped():
    no_key = {k: v for k, v in GOOD.items() if k != "image_bytes"} | {"id": "no-key"}
    rows = [no_key, {**GOOD, "id": "none", "image_bytes": None},
            {**GOOD, "id": "path", "image_bytes": "/data/images/missing.png"}]
    kept, skipped = select_prompts(rows)
    assert kept == [] and skipped == {"no-key": "missing image", "none": "missing image",
                                      "path": "image is not encoded bytes (str)"}


def test_duplicate_and_missing_ids_are_skips_named_by_position():
    rows = [GOOD, {**GOOD}, {**GOOD, "id": ""}, {k: v for k, v in GOOD.items() if k != "id"}, {**GOOD}]
    kept, skipped = select_prompts(rows)
    assert len(kept) == 1
    assert skipped == {GOOD["id"]: "duplicate id", "#2": "missing id", "#3": "missing id",
                       f"{GOOD['id']}#4": "duplicate id"}


@pytest.mark.parametrize("mode,fmt", [("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG")])
def test_transparency_becomes_white_rgb(mode, fmt):
    kept, skipped = select_prompts([{**GOOD, "image_bytes": encode(transparent(mode), fmt)}])
    assert not skipped
    image = Image.open(io.BytesIO(kept[0]["image_bytes"]))
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)  # not the red under it
    assert decode_image(kept[0]["image_bytes"]).getpixel((3, 3)) != (255, 255, 255)


@pytest.mark.parametrize("image,fmt", [(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG"),
                                       (Image.new("1", (4, 4), 1), "PNG"), (Image.new("L", (4, 4), 9), "PNG"),
                                       (Image.new("RGB", (4, 4), (1, 2, 3)), "BMP")],
                         ids=["cmyk-jpeg", "1-bit", "grey", "bmp"])
def test_other_modes_are_normalised_to_rgb(image, fmt):
    kept, skipped = select_prompts([{**GOOD, "image_bytes": encode(image, fmt)}])
    assert not skipped and Image.open(io.BytesIO(kept[0]["image_bytes"])).mode == "RGB"


def test_sixteen_bit_grey_is_scaled_not_clipped():
    kept, _ = select_prompts([{**GOOD, "image_bytes": encode(sixteen_bit(), "TIFF")}])
    image = decode_image(kept[0]["image_bytes"])
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((1, 0)) == (117, 117, 117)


def test_big_but_sane_image_is_kept_and_rgb_bytes_pass_through_unchanged():
    big = encode(Image.new("RGB", (3000, 2000), (10, 20, 30)), "JPEG")
    assert 3000 * 2000 < MAX_IMAGE_PIXELS
    kept, skipped = select_prompts([{**GOOD, "image_bytes": big}, {**GOOD, "id": "plain"}])
    assert not skipped and kept[0]["image_bytes"] is big and kept[1]["image_bytes"] is PNG


def test_utf8_bytes_question_becomes_text():
    kept, _ = select_prompts([{**GOOD, "question": "Is there a café?".encode()}])
    assert kept[0]["question"] == "Is there a café?"


def test_normalised_rows_store_and_read_back(tmp_path):
    rows = [{**GOOD, "id": "a", "image_bytes": encode(transparent("RGBA"))}, {**GOOD, "id": "b"}]
    kept, _ = select_prompts(rows)
    store = RunStore(tmp_path)
    store.write_shard(1, "prompts", 0, kept)
    store.mark_done(1, "prompts", {})
    assert store.read(1, "prompts") == kept


# ---- labeler output ---------------------------------------------------------------------------------------
def split_rows(prompt, claims_per_answer=(2, 1)):
    obj = prompt["gt_objects"][0]
    return [{"prompt_id": prompt["id"], "sample": i, "response": f"answer {i}",
             "claims": [f"c{j}" for j in range(n)], "questions": [f"Is there a {obj}?"] * n, "negated": [False] * n}
            for i, n in enumerate(claims_per_answer)]


@pytest.mark.parametrize("bad", [math.nan, 1.5, -0.25, math.inf, None, "yes"], ids=str)
def test_labeler_bad_values_make_the_answer_an_unscored_count(bad):
    prompt = world_rows(1)[0]
    verified = rlaifv.verify_claims(split_rows(prompt), {prompt["id"]: prompt}, lambda im, q, m: [1.0, bad, 1.0], "plug")
    assert [v["unscored"] for v in verified] == [True, False]
    assert rlaifv.make_pairs(verified, {prompt["id"]: prompt}, 2, 0, True, 1) == []  # nothing trains on it


def test_labeler_returning_the_wrong_count_is_a_clear_error_naming_it():
    prompt = world_rows(1)[0]
    with pytest.raises(ValueError, match=r"labeler plug returned 2 answers for 3 questions"):
        rlaifv.verify_claims(split_rows(prompt), {prompt["id"]: prompt}, lambda im, q, m: [1.0, 1.0], "plug")


def test_answer_with_zero_claims_is_scored_zero_not_dropped():
    prompt = world_rows(1)[0]
    [row] = rlaifv.verify_claims(split_rows(prompt, (0,)), {prompt["id"]: prompt}, OracleLabeler(), "oracle")
    assert (row["claims"], row["score"], row["unscored"]) == (0, 0, False)


# ---- the store: a full disk, a killed writer, a damaged shard ---------------------------------------------
def test_full_disk_while_writing_a_shard_leaves_nothing_and_names_the_shard(tmp_path, monkeypatch):
    store = RunStore(tmp_path)

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as caught:
        store.write_shard(1, "sample", 3, [{"a": 1}])
    assert caught.value.errno == errno.ENOSPC
    assert "part-00003.parquet" in str(caught.value) and "No space left on device" in str(caught.value)
    assert list(store.stage_dir(1, "sample").iterdir()) == []  # no temp file, no shard
    assert not store.has_shard(1, "sample", 3)
    monkeypatch.undo()
    store.write_shard(1, "sample", 3, [{"a": 1}])  # space freed: the same write succeeds
    store.mark_done(1, "sample", {})
    assert store.read(1, "sample") == [{"a": 1}]


def test_temp_file_of_a_killed_writer_is_never_read_and_is_cleaned_up(tmp_path):
    store = RunStore(tmp_path)
    folder = store.stage_dir(1, "sample")
    folder.mkdir(parents=True)
    (folder / ".part-00000.parquet.tmp-999999").write_bytes(b"PAR1 half a shard")
    assert store.shards(1, "sample") == [] and not store.has_shard(1, "sample", 0)
    store.write_shard(1, "sample", 0, [{"a": 1}])
    assert sorted(p.name for p in folder.iterdir()) == ["part-00000.parquet"]


def test_damaged_shard_is_an_error_naming_the_file(tmp_path):
    store = RunStore(tmp_path)
    store.write_shard(1, "verify", 0, [{"a": 1}])
    store.mark_done(1, "verify", {})
    store.shard(1, "verify", 0).write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"part-00000\.parquet: unreadable shard"):
        store.read(1, "verify")


# ---- whole rounds with odd prompt sets (fake model actors: this tests the round machine) -------------------
class FakeSampler:
    """A sampler actor whose every answer is the same true sentence: no pairs, so no trainer is needed."""

    def generate(self, items, n, *args):
        return [["There is a shape."] * n for _ in items]


@pytest.fixture
def fake_round(tmp_path, monkeypatch):
    """round(k) of the real sequencer on a real store, in process, with prompt rows chosen by the test and a
    fake sampler actor."""
    import engine.round_stages as stages_module
    from engine.executor import ActorGroup, InProcessExecutor
    from engine.models import Models
    from engine.rounds import Rounds

    cfg = load_config(None, ["model.zoo=small", "sampling.shard_size=8", "sampling.n=2", "feedback.labeler=oracle",
                             "eval.n=2"])

    def run(rows):
        monkeypatch.setattr(stages_module, "select_prompts", lambda _: select_prompts(rows))
        store, executor = RunStore(tmp_path / "run"), InProcessExecutor(cfg)
        models = Models(cfg, executor, store, "policy", "labeler")
        models.groups["samplers"] = ActorGroup(executor, "sampler", [FakeSampler()])
        Rounds(cfg, store, models, executor, log=lambda line: None).round(1)
        return store
    return run


def test_prompt_set_smaller_than_one_shard_runs_a_whole_round(fake_round):
    store = fake_round(world_rows(3))
    for stage in ("prompts", "sample", "split", "verify", "pairs", "train"):
        assert store.is_done(1, stage), stage
    assert len(store.read(1, "sample")) == 3 * 2 and store.done_info(1, "sample")["shards"] == 1


def test_empty_prompt_set_is_a_clean_no_op_round(fake_round):
    store = fake_round([])
    assert store.done_info(1, "prompts")["rows"] == 0
    assert store.read(1, "sample") == [] and store.read(1, "pairs") == []
    assert store.done_info(1, "train")["pairs"] == 0  # the policy is carried over unchanged


def test_all_bad_prompts_are_counted_in_the_prompts_marker(fake_round):
    bad = [{**GOOD, "id": "zero", "image_bytes": b""}, {**GOOD, "id": "q", "question": b"\xff"}]
    store = fake_round(world_rows(2) + bad)
    info = store.done_info(1, "prompts")
    assert info["rows"] == 2 and info["skipped"] == 2
    assert info["skip_reasons"] == {"zero": "unreadable image (UnidentifiedImageError)", "q": "question is not valid UTF-8"}
    assert store.is_done(1, "train")


def test_full_disk_mid_round_fails_clearly_and_the_rerun_finishes_it(fake_round, monkeypatch, tmp_path):
    rows = world_rows(10)  # two sample shards of 8 and 2
    real_fsync, calls = os.fsync, []

    def fills_up_at_the_second_sample_shard(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        if "part-00001.parquet" in calls[-1] and "/sample/" in calls[-1]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fills_up_at_the_second_sample_shard)
    with pytest.raises(OSError, match=r"sample/part-00001\.parquet \(No space left on device\)"):
        fake_round(rows)
    monkeypatch.setattr(os, "fsync", real_fsync)
    store = RunStore(tmp_path / "run")  # the fixture's run directory
    assert not store.is_done(1, "sample") and store.has_shard(1, "sample", 0) and not store.has_shard(1, "sample", 1)
    assert not list(store.stage_dir(1, "sample").glob(".*"))
    store = fake_round(rows)
    assert store.done_info(1, "sample")["shards_run"] == 1 and len(store.read(1, "sample")) == 20
