"""AMBER on a five-image fixture in its released format (tests/fixtures/amber), every figure computed by hand."""
import json
import shutil
from pathlib import Path

import pytest

from evaluation.amber import AmberData, WordNetLemmatizer, answer_nouns
from evaluation.hallucination import InputError
from evaluation.suites import Handles, make_suite

FIXTURE = Path(__file__).parent / "fixtures/amber"
WORDNET = Path("/usr/share/wordnet")
needs_wordnet = pytest.mark.skipif(not (WORDNET / "index.noun").is_file(), reason="needs Debian's wordnet-base")

DESCRIPTIONS = ["A puppy plays on the ground with a cat.",  # puppy covers dog; ground is a safe word; cat: hallucinated, hits hallu
                "A man stands by the forest.",             # man covers person; forest: hallucinated, an association of hallu tree
                "Clear sky."]                              # sky covered
ANSWERS = ["No.", "No, there is none.", "Yes", "Yes.", "no"]  # truths: no, yes | yes, no | no


@pytest.fixture(scope="module")
def amber_metrics():
    descriptions, answers = iter([DESCRIPTIONS]), iter([ANSWERS])
    handles = Handles(lambda items: next(descriptions), lambda items: next(answers))
    suite = make_suite("amber", {"folder": str(FIXTURE / "data"), "images": str(FIXTURE / "image")})
    return suite.run(handles)


@needs_wordnet
def test_generative_figures(amber_metrics):
    metrics, rows = amber_metrics
    # kept nouns: puppy, ground, cat | man, forest | sky = 6; hallucinated: cat, forest = 2
    assert metrics["chair"] == pytest.approx(2 / 6)
    # truth objects 2 + 2 + 1 = 5; covered dog, person, sky (grass is not: "ground" is a safe word, skipped)
    assert metrics["cover"] == pytest.approx(3 / 5)
    assert metrics["hal"] == pytest.approx(2 / 3)
    # hallu objects 2 + 1 + 1 = 4; marked cat and tree
    assert metrics["cog"] == pytest.approx(2 / 4)
    assert [r["hallucinated"] for r in rows[:3]] == [["cat"], ["forest"], []]


@needs_wordnet
def test_discriminative_figures_with_no_as_the_positive_class(amber_metrics):
    metrics, _ = amber_metrics
    # existence: (said no, truth no) = (T, T), (T, F)
    assert (metrics["existence_accuracy"], metrics["existence_precision"], metrics["existence_recall"]) == (0.5, 0.5, 1.0)
    assert metrics["existence_f1"] == pytest.approx(2 / 3)
    # attribute: (F, F) right, (F, T) wrong: nothing said no
    assert (metrics["attribute_accuracy"], metrics["attribute_precision"], metrics["attribute_recall"],
            metrics["attribute_f1"]) == (0.5, 0.0, 0.0, 0.0)
    assert (metrics["relation_accuracy"], metrics["relation_f1"]) == (1.0, 1.0)
    assert metrics["all_accuracy"] == pytest.approx(3 / 5)
    assert metrics["all_precision"] == pytest.approx(2 / 3) and metrics["all_recall"] == pytest.approx(2 / 3)


@needs_wordnet
def test_nouns_are_wordnet_lemmas_and_two_word_objects_join():
    lemma = WordNetLemmatizer(WORDNET)
    assert answer_nouns("Two puppies near geese. Red circles.", lemma) == ["Two", "puppy", "near", "goose", ".", "Red",
                                                                        "circle", "."]
    assert answer_nouns("a red circles", lemma, {"red circle"}) == ["a", "red circle"]


def test_missing_wordnet_is_named(tmp_path):
    with pytest.raises(InputError, match="wordnet-base"):
        WordNetLemmatizer(tmp_path)


def test_an_object_without_relation_entry_is_refused(tmp_path):
    shutil.copytree(FIXTURE / "data", tmp_path / "data")
    relation = json.loads((tmp_path / "data/relation.json").read_text())
    del relation["frisbee"]
    (tmp_path / "data/relation.json").write_text(json.dumps(relation))
    with pytest.raises(InputError, match="relation.json: no entry for frisbee"):
        AmberData(tmp_path / "data")
