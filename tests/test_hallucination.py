"""Hand-computed checks for evaluation.hallucination (CHAIR, POPE, vocabulary, loaders)."""
import json

import pytest

from evaluation.hallucination import (
    InputError,
    ObjectVocabulary,
    chair,
    cooccurrence_stats,
    load_annotations,
    parse_yes_no,
    per_answer,
    pope_questions,
    pope_scores,
    singularize,
)

SHAPES = ObjectVocabulary({
    "red circle": ("red disc",),
    "red square": ("red box",),
    "blue square": (),
    "green triangle": (),
})
COCO = ObjectVocabulary({
    "dog": ("puppy",),
    "hot dog": (),
    "person": ("man", "woman", "people", "child"),
    "cat": ("kitten",),
    "bus": (),
    "glass": ("wine glass",),
    "frisbee": (),
})


@pytest.mark.parametrize("word, singular", [
    ("circles", "circle"), ("boxes", "box"), ("puppies", "puppy"), ("dishes", "dish"), ("cats", "cat"),
    ("glasses", "glass"), ("glass", "glass"), ("bus", "bus"), ("buses", "bus"), ("tennis", "tennis"),
    ("people", "people"), ("children", "child"), ("circle", "circle"),
])
def test_singularize(word, singular):
    assert singularize(word) == singular


def test_shapes_synonyms_plurals_and_longest_match():
    assert SHAPES.mentions("Two red circles and a red box.") == ["red circle", "red square"]
    assert SHAPES.mentions("A large red circle next to two red discs") == ["red circle"]
    assert SHAPES.mentions("RED BOXES, blue squares; Red Circle") == ["red square", "blue square", "red circle"]
    assert SHAPES.mentions("A red shape and a circle.") == []


def test_punctuation_separates_and_blocks_phrases():
    # "red. circle" is two sentences, not a red circle; "square,red" still splits into two words
    assert SHAPES.mentions("The square is red. Circles are rare.") == []
    assert SHAPES.mentions("a blue square,red disc") == ["blue square", "red circle"]
    assert COCO.mentions("dog,cat") == ["dog", "cat"]


def test_coco_synonyms_and_multiword_priority():
    assert COCO.mentions("Two puppies chase a man while people watch.") == ["dog", "person"]
    assert COCO.mentions("A woman eats hot dogs next to her dog.") == ["person", "hot dog", "dog"]
    assert COCO.mentions("A hot-dog stand") == ["hot dog"]
    assert COCO.mentions("The dog's frisbee and the kittens' toy") == ["dog", "frisbee", "cat"]
    assert COCO.mentions("Wine glasses on two buses with children") == ["glass", "bus", "person"]
    assert COCO.mentions("") == []


def test_canonical_and_ambiguous_vocabulary():
    assert COCO.canonical("Puppies") == "dog"
    with pytest.raises(InputError, match="zebra"):
        COCO.canonical("zebra")
    with pytest.raises(InputError, match="'pups'.*'dog'.*'wolf'"):
        ObjectVocabulary({"dog": ("pup",), "wolf": ("pups",)})


def test_per_answer():
    result = per_answer("A puppy, a cat and a man.", ["dogs", "person", "bus"], COCO)
    assert result == {"mentioned": ["dog", "cat", "person"], "hallucinated": ["cat"], "covered": ["dog", "person"]}


def test_chair_three_answers_by_hand():
    gt = [["red circle", "blue square"], ["red square"], ["green triangle", "red circle"]]
    responses = [
        "Two red circles and a green triangle.",        # mentions {red circle, green triangle}; halluc 1; covers 1/2
        "A red box next to a red box.",                 # mentions {red square};                 halluc 0; covers 1/1
        "A blue square, a red square and a red disc.",  # mentions {blue sq, red sq, red circle}; halluc 2; covers 1/2
    ]
    # chair_i = (1+0+2)/(2+1+3) = 3/6; chair_s = 2 answers of 3 hallucinate; recall = (1+1+1)/(2+1+2) = 3/5
    result = chair(responses, gt, SHAPES)
    assert result["chair_i"] == pytest.approx(0.5)
    assert result["chair_s"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(0.6)
    assert (result["n"], result["mentions"], result["hallucinated"]) == (3, 6, 3)


def test_chair_answers_mentioning_nothing():
    result = chair(["I cannot tell.", "Nothing to see here."], [["dog"], ["cat", "puppy"]], COCO)
    assert result == {"chair_s": 0.0, "chair_i": 0.0, "recall": 0.0, "n": 2, "mentions": 0, "hallucinated": 0}


def test_chair_canonicalises_ground_truth():
    # gt "puppy" and "dogs" are both the dog: one gt object, covered by "a dog"
    result = chair(["a dog"], [["puppy", "dogs"]], COCO)
    assert (result["recall"], result["chair_i"], result["mentions"]) == (1.0, 0.0, 1)


def test_chair_input_errors():
    with pytest.raises(InputError, match="zebra"):
        chair(["a dog"], [["zebra"]], COCO)
    with pytest.raises(InputError, match="2 responses but 1"):
        chair(["a", "b"], [["dog"]], COCO)


@pytest.mark.parametrize("text, expected", [
    ("Yes", True), ("yes.", True), ("**YES**, there is a dog.", True), ("  No, there is not.", False),
    ("no", False), ("Yesterday a dog", None), ("I think yes", None), ("", None), ("...", None),
])
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


def test_pope_scores_by_hand():
    answers = ["Yes", "No.", "yes, there is", "Maybe", "no"]
    labels = [True, False, False, True, True]
    # said yes: Y N Y N(unparsed) N -> tp=1 (0), tn=1 (1), fp=1 (2), fn=2 (3, 4)
    # accuracy 2/5, precision 1/2, recall 1/3, f1 = 2*(1/2)*(1/3)/(1/2+1/3) = 0.4, yes_ratio 2/5
    result = pope_scores(answers, labels)
    assert result["accuracy"] == pytest.approx(0.4)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx(0.4)
    assert result["yes_ratio"] == pytest.approx(0.4)
    assert (result["n"], result["unparsed"]) == (5, 1)


def test_pope_scores_zero_divisions():
    assert pope_scores(["no"], [False]) == {
        "accuracy": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0, "n": 1, "unparsed": 0}
    assert pope_scores([], [])["accuracy"] == 0.0
    with pytest.raises(InputError):
        pope_scores(["yes"], [])


def test_cooccurrence_stats():
    freq, co = cooccurrence_stats([["dog", "person"], ["dog", "person", "frisbee"], ["cat", "dog", "dog"]])
    assert freq == {"dog": 3, "person": 2, "frisbee": 1, "cat": 1}
    assert co == {
        "dog": {"person": 2, "frisbee": 1, "cat": 1},
        "person": {"dog": 2, "frisbee": 1},
        "frisbee": {"dog": 1, "person": 1},
        "cat": {"dog": 1},
    }


UNIVERSE = ["dog", "person", "frisbee", "cat", "bus", "car", "kite"]
IMAGES = [["dog", "person"], ["cat"], ["dog", "person", "frisbee"], ["bus", "car", "kite", "dog", "person", "cat"]]


@pytest.mark.parametrize("kind", ["random", "popular", "adversarial"])
def test_pope_questions_balanced_deterministic_absent_negatives(kind):
    freq, co = cooccurrence_stats(IMAGES)
    items = pope_questions(IMAGES, UNIVERSE, kind, per_image=2, seed=7, frequency=freq, cooccurrence=co)
    assert items == pope_questions(IMAGES, UNIVERSE, kind, per_image=2, seed=7, frequency=freq, cooccurrence=co)
    # per image: min(2, present, absent) of each label; the last image has only one absent object
    for i, expected in enumerate([2, 1, 2, 1]):
        mine = [q for q in items if q["image_index"] == i]
        assert sum(q["label"] for q in mine) == expected
        assert sum(not q["label"] for q in mine) == expected
        assert all(q["label"] == (q["object"] in IMAGES[i]) for q in mine)
        assert len({q["object"] for q in mine}) == len(mine)
    assert items[0]["kind"] == kind
    assert items[0]["question"] == f"Is there a {items[0]['object']} in the image?"


def test_pope_questions_adversarial_picks_top_partner():
    _, co = cooccurrence_stats([["dog", "frisbee"], ["dog", "frisbee"], ["dog", "cat"], ["bus", "car"]])
    items = pope_questions([["dog"]], ["dog", "cat", "frisbee", "bus", "car"], "adversarial", 1, seed=0,
                           cooccurrence=co)
    assert [(q["object"], q["label"]) for q in items] == [("dog", True), ("frisbee", False)]
    assert items[1] == {"image_index": 0, "object": "frisbee", "label": False, "kind": "adversarial",
                        "question": "Is there a frisbee in the image?"}


def test_pope_questions_popular_picks_most_frequent_absent():
    freq = {"dog": 10, "person": 8, "cat": 3, "bus": 1}
    items = pope_questions([["dog"]], ["dog", "person", "cat", "bus"], "popular", 1, seed=3, frequency=freq)
    assert [(q["object"], q["label"]) for q in items] == [("dog", True), ("person", False)]


def test_pope_questions_input_errors():
    with pytest.raises(InputError, match="unknown kind 'weird'"):
        pope_questions(IMAGES, UNIVERSE, "weird", 1, 0)
    with pytest.raises(InputError, match="frequency"):
        pope_questions(IMAGES, UNIVERSE, "popular", 1, 0)
    with pytest.raises(InputError, match="cooccurrence"):
        pope_questions(IMAGES, UNIVERSE, "adversarial", 1, 0)


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_annotations_reads_records(tmp_path):
    path = _write_lines(tmp_path / "responses.jsonl", [
        json.dumps({"id": 1, "gt_objects": ["dog"], "response": "a puppy"}),
        "",
        json.dumps({"id": "b", "gt_objects": [], "response": "nothing"}),
    ])
    records = load_annotations(path)
    assert [r["id"] for r in records] == [1, "b"]
    assert chair([r["response"] for r in records], [r["gt_objects"] for r in records], COCO)["recall"] == 1.0


def test_load_annotations_errors_name_file_and_line(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match="nope.jsonl.*does not exist"):
        load_annotations(missing)
    with pytest.raises(InputError, match="directory"):
        load_annotations(tmp_path)
    good = json.dumps({"id": 1, "gt_objects": ["dog"], "response": "a dog"})
    bad_json = _write_lines(tmp_path / "bad.jsonl", [good, "{not json"])
    with pytest.raises(InputError, match=r"bad\.jsonl:2: invalid JSON"):
        load_annotations(bad_json)
    no_field = _write_lines(tmp_path / "nofield.jsonl", [good, good, json.dumps({"id": 3, "gt_objects": []})])
    with pytest.raises(InputError, match=r"nofield\.jsonl:3: missing field 'response'"):
        load_annotations(no_field)
    wrong_type = _write_lines(tmp_path / "type.jsonl", [json.dumps({"id": 1, "gt_objects": "dog", "response": ""})])
    with pytest.raises(InputError, match=r"type\.jsonl:1: field 'gt_objects'"):
        load_annotations(wrong_type)


def test_vocabulary_from_json(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"dog": ["puppy"], "person": ["man", "people"]}), encoding="utf-8")
    vocab = ObjectVocabulary.from_json(path)
    assert vocab.synonyms == {"dog": ("puppy",), "person": ("man", "people")}
    assert vocab.mentions("Puppies and people") == ["dog", "person"]


def test_vocabulary_from_json_errors_name_file(tmp_path):
    with pytest.raises(InputError, match="missing.json.*does not exist"):
        ObjectVocabulary.from_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"dog": ["puppy",}', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json: invalid JSON"):
        ObjectVocabulary.from_json(bad)
    shape = tmp_path / "shape.json"
    shape.write_text('{"dog": "puppy"}', encoding="utf-8")
    with pytest.raises(InputError, match=r"shape\.json: expected a JSON object"):
        ObjectVocabulary.from_json(shape)
    clash = tmp_path / "clash.json"
    clash.write_text('{"dog": ["pup"], "wolf": ["pup"]}', encoding="utf-8")
    with pytest.raises(InputError, match=r"clash\.json: .*'pup'"):
        ObjectVocabulary.from_json(clash)
