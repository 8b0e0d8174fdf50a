"""CHAIR's rules, each on a hand-made COCO fixture, and the chair-coco suite's figures computed by hand."""
import json

import pytest
from PIL import Image

from evaluation.chair_coco import ChairVocabulary, ground_truth, parse_synonyms
from evaluation.coco import CocoAnnotations
from evaluation.hallucination import InputError
from evaluation.suites import Handles, make_suite

VOCAB = ChairVocabulary.coco()
CATEGORIES = ["person", "dog", "hot dog", "teddy bear", "chair", "toilet", "elephant", "motorcycle"]
INSTANCES = {1: ["dog"], 2: ["toilet"], 3: ["elephant"]}
CAPTIONS = {1: ["A dog sitting next to a man."], 2: ["A white toilet in a small bathroom."],
            3: ["A baby elephant walking in the dirt."]}


def words(text):
    return [(m.word, m.category) for m in VOCAB.mentions(text)]


@pytest.fixture
def coco(tmp_path):
    """instances_val2014.json, captions_val2014.json and three images, in COCO's released layout."""
    cats = [{"id": k, "name": name, "supercategory": "x"} for k, name in enumerate(CATEGORIES, 1)]
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in INSTANCES]
    anns = [{"id": k, "image_id": i, "category_id": CATEGORIES.index(name) + 1}
            for k, (i, name) in enumerate(((i, n) for i, names in INSTANCES.items() for n in names), 1)]
    caps = [{"id": i, "image_id": i, "caption": c} for i, cs in CAPTIONS.items() for c in cs]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/instances_val2014.json").write_text(json.dumps({"images": images, "categories": cats,
                                                                             "annotations": anns}))
    (tmp_path / "annotations/captions_val2014.json").write_text(json.dumps({"images": images, "annotations": caps}))
    (tmp_path / "images").mkdir()
    for im in images:
        Image.new("RGB", (4, 4)).save(tmp_path / "images" / im["file_name"])
    return tmp_path


def test_synonyms_map_to_their_category():
    assert words("A puppy, a guy and a sofa.") == [("puppy", "dog"), ("guy", "person"), ("sofa", "couch")]


def test_plurals_are_singularized():
    assert words("Two dogs, three children and some knives.") == [("dog", "dog"), ("child", "person"), ("knife", "knife")]


def test_two_word_objects_win_over_their_single_words():
    assert words("A hot dog, a teddy bear, a stop sign and a motor bike.") == [
        ("hot dog", "hot dog"), ("teddy bear", "teddy bear"), ("stop sign", "stop sign"), ("motor bike", "motorcycle")]


def test_animal_age_and_passenger_words_are_not_people():
    assert words("A baby elephant, adult giraffes and a passenger jet.") == [
        ("elephant", "elephant"), ("giraffe", "giraffe"), ("jet", "airplane")]


def test_a_toilet_seat_is_no_chair():
    assert words("The toilet seat is up.") == [("toilet", "toilet")]
    assert words("The seat of the toilet is up.") == [("toilet", "toilet")]
    assert words("A seat by the window.") == [("seat", "chair")]


def test_non_object_double_words_hide_both_words():
    assert words("A train track and home plate.") == []


def test_ground_truth_joins_instances_and_captions(coco):
    annotations = CocoAnnotations.load(coco / "annotations", "val2014")
    assert ground_truth(annotations, 1, VOCAB) == {"dog", "person"}  # person only from the caption
    assert ground_truth(annotations, 3, VOCAB) == {"elephant"}  # "baby elephant" adds no person


def test_suite_figures_by_hand(coco):
    answers = ["A puppy sits beside a guy and two dogs.",       # image 1: dog, person, dog; none hallucinated
               "A hot dog and a teddy bear on a motor bike.",   # image 1: 3 mentions, 3 hallucinated
               "The toilet seat is up, next to the seat of the toilet.",  # image 2: toilet x2, no chair
               "A baby elephant with adult elephants.",         # image 3: elephant x2, no person
               "A sunny day."]                                  # image 1: names nothing
    ids = [1, 1, 2, 3, 1]
    (coco / "prompts.jsonl").write_text("".join(json.dumps({"image_id": i, "question": "Describe."}) + "\n" for i in ids))
    suite = make_suite("chair-coco", {"annotations": str(coco / "annotations"), "images": str(coco / "images"),
                                      "prompts": str(coco / "prompts.jsonl")})
    metrics, rows = suite.run(Handles(describe=lambda items: answers, ask=None))
    assert metrics["mentions"] == 10 and metrics["hallucinated"] == 3
    assert metrics["chair_i"] == pytest.approx(3 / 10)
    assert metrics["chair_s"] == pytest.approx(1 / 5)
    assert metrics["recall"] == pytest.approx(4 / 8)  # truths 2 + 2 + 1 + 1 + 2; covered 2 + 0 + 1 + 1 + 0
    assert metrics["halbench_response"] == pytest.approx(1 / 4)  # the answer naming nothing is left out
    assert metrics["halbench_mention"] == pytest.approx(3 / 8)  # distinct words: 3 + 3 + 1 + 1
    assert metrics["mean_length"] == pytest.approx((9 + 11 + 12 + 6 + 3) / 5)
    assert rows[1]["hallucinated"] == ["hot dog", "teddy bear", "motorcycle"] and rows[4]["mentioned"] == []


def test_prompts_from_ids_use_the_detailed_instruction(coco):
    suite = make_suite("chair-coco", {"annotations": str(coco / "annotations"), "images": str(coco / "images"),
                                      "image_ids": [3, 1]})
    seen = []
    metrics, rows = suite.run(Handles(describe=lambda items: seen.extend(items) or ["An elephant.", "A dog."], ask=None))
    assert [q for _, q in seen] == ["Please help me describe the image in detail."] * 2
    assert [r["image_id"] for r in rows] == [3, 1] and metrics["chair_i"] == 0.0 and metrics["recall"] == 2 / 3


def test_bad_tables_and_keys_are_named():
    with pytest.raises(InputError, match="more than two words"):
        ChairVocabulary(parse_synonyms("oven, stove top oven"))
    with pytest.raises(InputError, match="listed under both"):
        ChairVocabulary(parse_synonyms("dog, pup\ncat, pup"))
    with pytest.raises(InputError, match="unknown key"):
        make_suite("chair-coco", {"annotation": "x"})
    with pytest.raises(InputError, match="chair-coco.n: 'many'"):
        make_suite("chair-coco", {"n": "many"})
    with pytest.raises(InputError, match="unknown suite"):
        make_suite("mmhal")
