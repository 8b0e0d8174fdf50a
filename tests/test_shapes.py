import hashlib
import random

import pytest
from PIL import Image

from evaluation.hallucination import InputError
from evaluation.shapes import (OBJECTS, ShapesWorld, describe, load_image, load_split, partner)


def test_scenes_are_deterministic_and_splits_differ():
    a, b = ShapesWorld(seed=3), ShapesWorld(seed=3)
    assert a.scene("eval", 5) == b.scene("eval", 5)
    assert a.scene("eval", 5).render().tobytes() == b.scene("eval", 5).render().tobytes()
    train = {a.scene("train", i).render().tobytes() for i in range(2000)}
    held_out = {a.scene("eval", i).render().tobytes() for i in range(2000)}
    assert not train & held_out


def test_scene_objects_are_unique_and_on_distinct_cells():
    world = ShapesWorld()
    for i in range(200):
        scene = world.scene("prompts", i)
        assert 1 <= len(scene.objects) <= 3
        assert len(set(scene.names)) == len(scene.names)
        assert len({o.cell for o in scene.objects}) == len(scene.objects)
        assert all(name in OBJECTS for name in scene.names)


def test_training_text_carries_the_partner_prior():
    world = ShapesWorld(prior=0.6)
    frequency, cooccurrence = world.text_statistics(2000)
    for name in ("red circle", "blue square"):
        mate = partner(name)
        top = max(cooccurrence[name], key=cooccurrence[name].get)
        assert top == mate, (name, top)
    clean = ShapesWorld(prior=0.0)
    rng = random.Random(0)
    scene = clean.scene("train", 0)
    assert [o.name for o in clean.text_objects(scene, rng)] == scene.names


def test_description_mentions_exactly_the_objects():
    world = ShapesWorld()
    vocab = world.vocabulary()
    for i in range(50):
        scene = world.scene("eval", i)
        text = describe(scene.objects, random.Random(i))
        assert sorted(vocab.mentions(text)) == sorted(scene.names)


def test_vocabulary_synonyms_and_plurals():
    vocab = ShapesWorld.vocabulary()
    assert vocab.mentions("Two red boxes and a blue disc.") == ["red square", "blue circle"]


def test_policy_and_labeler_examples_are_well_formed():
    world = ShapesWorld()
    for i in range(20):
        image, question, answer = world.policy_example(i)
        assert image.size == (64, 64) and question and answer
        image, question, answer = world.labeler_example(i)
        assert answer.endswith(".")


def test_training_corpora_keep_their_streams():
    # The shipped zoo's weights were trained on these streams under their recipe hashes (engine/zoo.py).
    world = ShapesWorld()

    def digest(example):
        return hashlib.sha256(repr([example(i)[1:] for i in range(300)]).encode()).hexdigest()[:16]

    assert digest(world.policy_example) == "bb7bb692c279a036"
    assert digest(world.labeler_example) == "7ff583b4990195ac"


def test_held_out_attribute_checks_keep_their_stream():
    # Every labeler figure in docs/recipe.md and the README was taken on these items.
    assert [(it["question"], it["label"]) for it in ShapesWorld().attribute_checks(4)] == [
        ("Is the yellow diamond large?", False), ("Is the red diamond large?", True),
        ("Is the yellow diamond at the bottom right?", False), ("Is the green circle in the bottom right?", False)]


def test_claim_questions_are_balanced_and_mostly_hard():
    items = ShapesWorld().claim_questions(200, hard=0.7)
    assert sum(it["label"] for it in items) == 100


def test_write_and_load_split_round_trip(tmp_path):
    world = ShapesWorld()
    folder = world.write_split(world.eval_set(4), tmp_path / "eval")
    items = load_split(folder)
    assert [it["id"] for it in items] == [f"eval-{i:06d}" for i in range(4)]
    assert items[0]["image"].size == (64, 64) and items[0]["gt_objects"]


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_bad_image_files_name_the_file(tmp_path, content):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match="bad.png"):
        load_image(path)


def test_truncated_png_names_the_file(tmp_path):
    path = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match="cut.png"):
        load_image(path)


def test_load_split_reports_missing_index_and_bad_image(tmp_path):
    with pytest.raises(InputError, match="items.jsonl"):
        load_split(tmp_path)
    world = ShapesWorld()
    folder = world.write_split(world.eval_set(2), tmp_path / "eval")
    (folder / "images" / "eval-000001.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="eval-000001.png"):
        load_split(folder)
