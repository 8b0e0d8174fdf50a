"""POPE: the released file format, its answer rule, and its construction from COCO annotations by hand."""
import json

import pytest
from PIL import Image

from evaluation.coco import CocoAnnotations
from evaluation.hallucination import InputError
from evaluation.pope import build_questions, pope_answer, read_questions, score_setting
from evaluation.suites import Handles, make_suite

# image -> annotated categories; a..i are categories, j is never annotated
IMAGES = {1: "abc", 2: "abcd", 3: "ade", 4: "bde", 5: "cdf", 6: "ghi", 7: "ab"}


@pytest.fixture
def annotations(tmp_path):
    names = list("abcdefghij")
    cats = [{"id": k, "name": n} for k, n in enumerate(names, 1)]
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in IMAGES]
    anns = [{"id": 10 * i + k, "image_id": i, "category_id": names.index(c) + 1}
            for i, cs in IMAGES.items() for k, c in enumerate(cs)]
    (tmp_path / "instances_val2014.json").write_text(json.dumps({"images": images, "categories": cats, "annotations": anns}))
    (tmp_path / "captions_val2014.json").write_text(json.dumps({"images": images, "annotations": []}))
    return CocoAnnotations.load(tmp_path, "val2014")


def by_image(questions, label):
    out = {}
    for q in questions:
        if q["label"] == label:
            out.setdefault(q["image"], []).append(q["text"][len("Is there a "):-len(" in the image?")])
    return out


def test_three_present_and_three_absent_per_image(annotations):
    built = build_questions(annotations, images=6, per_image=3, seed=0)
    for setting, questions in built.items():
        yes, no = by_image(questions, "yes"), by_image(questions, "no")
        assert sorted(yes) == sorted(no) and len(yes) == 6, setting  # image 7 has only 2 categories
        for image, objects in yes.items():
            truth = set(IMAGES[int(image[-16:-4])])
            assert len(objects) == 3 and set(objects) <= truth
            assert len(no[image]) == 3 and not set(no[image]) & truth
        assert [q["question_id"] for q in questions] == list(range(1, 37))


def test_adversarial_negatives_cooccur_most_and_popular_ones_are_most_frequent(annotations):
    built = build_questions(annotations, images=6, per_image=3, seed=0)
    first = "COCO_val2014_000000000001.jpg"  # a, b, c
    # co-occurrence with a, b, c summed over every annotated image: d 2 + 2 + 2, e 1 + 1 + 0, f 0 + 0 + 1
    assert by_image(built["adversarial"], "no")[first] == ["d", "e", "f"]
    # frequency: d 4, e 2, then f, g, h, i 1 each (a seeded tie)
    popular = by_image(built["popular"], "no")[first]
    assert popular[:2] == ["d", "e"] and popular[2] in "fghi"


def test_too_few_eligible_images_is_named(annotations):
    with pytest.raises(InputError, match="only 6 annotated images"):
        build_questions(annotations, images=7)


def test_pope_answer_rule():
    assert pope_answer("Yes, there is a dog.") and pope_answer("There is a dog. No other animal.")
    assert not pope_answer("No, there is not.") and not pope_answer("There is no dog")
    assert not pope_answer("I do not see one.") and pope_answer("NO")  # the rule is case sensitive


def test_scores_by_hand():
    questions = [{"label": "yes"}, {"label": "yes"}, {"label": "no"}, {"label": "no"}]
    scores = score_setting(["Yes", "No", "Yes, there is", "No"], questions)  # tp 1, fn 1, fp 1, tn 1
    assert {k: scores[k] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")} == \
           {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "yes_ratio": 0.5}


def test_released_files_are_read_as_they_are(tmp_path):
    lines = [{"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
              "label": "yes"},
             {"question_id": 2, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a dog in the image?",
              "label": "no"}]
    for setting in ("random", "popular", "adversarial"):
        (tmp_path / f"coco_pope_{setting}.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    Image.new("RGB", (4, 4)).save(tmp_path / "COCO_val2014_000000310196.jpg")
    suite = make_suite("pope", {"questions": str(tmp_path), "images": str(tmp_path)})
    metrics, rows = suite.run(Handles(describe=None, ask=lambda items: ["Yes."] * len(items)))
    assert metrics["pope_random_yes_ratio"] == 1.0 and metrics["pope_random_precision"] == 0.5
    assert metrics["pope_f1"] == pytest.approx(2 / 3) and len(rows) == 6
    (tmp_path / "coco_pope_random.json").write_text(json.dumps({**lines[0], "label": "maybe"}) + "\n")
    with pytest.raises(InputError, match="label 'maybe'"):
        read_questions(tmp_path / "coco_pope_random.json")
