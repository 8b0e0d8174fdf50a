"""The rule splitter on general English (WordNet through NLTK; scripts/install_wordnet.sh installs it)."""
import subprocess
import sys

import pytest

from feedback.claims import Claim, split_claims
from feedback.claims_gold import GOLD, load_gold, normalize, score
from feedback.english_claims import lines


def questions(answer: str) -> list[str]:
    return [c.question for c in split_claims(answer)]


def test_llava_sentence_gives_existence_attribute_action_and_place_claims():
    assert questions("The image features a man riding a bicycle down a city street.") == [
        "Is there a man in the image?", "Is there a bicycle in the image?", "Is the man riding a bicycle?",
        "Is there a city street in the image?", "Is the man riding down the city street?"]


def test_colour_size_material_and_pronoun_carried_to_its_subject():
    assert questions("A large brown dog is lying on a wooden floor. It is next to a blue couch.") == [
        "Is there a dog in the image?", "Is the dog large?", "Is the dog brown?", "Is there a floor in the image?",
        "Is the floor wooden?", "Is the dog lying on the floor?", "Is there a couch in the image?",
        "Is the couch blue?", "Is the dog next to the couch?"]
    assert "Is the vase made of glass?" in questions("A glass vase sits on the table.")


def test_coordination_plurals_and_counts():
    assert questions("There are two dogs and a cat.") == [
        "Is there a dog in the image?", "Are there two dogs in the image?", "Is there a cat in the image?"]
    assert questions("Several cars are parked on the street.") == [
        "Are there cars in the image?", "Is there a street in the image?", "Are the cars parked on the street?"]


def test_he_she_they_find_persons_and_plurals():
    claims = questions("A woman and two children are walking. She is holding an umbrella. They are smiling.")
    assert "Is the woman holding an umbrella?" in claims
    assert "Are the children smiling?" in claims
    assert "Is the woman smiling?" not in claims


def test_negations_keep_their_claim_and_ask_the_positive_question():
    assert split_claims("There are no people in the image. The man is not wearing glasses.") == [
        Claim("There are no people.", "Are there people in the image?", negated=True),
        Claim("There is a man.", "Is there a man in the image?"),
        Claim("The man is not wearing glasses.", "Is the man wearing glasses?", negated=True)]


def test_hedges_opinions_and_summaries_are_dropped():
    assert questions("The kitchen appears to be clean. It is a cozy scene. Overall, the image is lovely.") == []
    assert questions("The bear is large and seems to be searching for food.") == [
        "Is there a bear in the image?", "Is the bear large?"]


def test_present_tense_verbs_and_have_are_asked_with_do():
    assert questions("A wooden fence surrounds the pasture. The cat has green eyes.") == [
        "Is there a fence in the image?", "Is the fence wooden?", "Is there a pasture in the image?",
        "Does the fence surround the pasture?", "Is there a cat in the image?", "Are there eyes in the image?",
        "Are the eyes green?", "Does the cat have eyes?"]


def test_qwen_markdown_list_is_read_item_by_item():
    answer = ("The image depicts a street scene with the following elements:\n\n"
              "1. **Vehicles**: A red car is parked on the left side of the street.\n"
              "2. **People**: A man in a blue jacket is walking.\n- A dog.")
    assert lines(answer)[1:] == ["A red car is parked on the left side of the street.",
                                 "A man in a blue jacket is walking.", "A dog."]
    assert questions(answer) == [
        "Is there a car in the image?", "Is the car red?", "Is there a street in the image?",
        "Is the car parked on the left side of the street?", "Is there a man in the image?",
        "Is there a jacket in the image?", "Is the jacket blue?", "Is the man in the jacket?",
        "Is the man walking?", "Is there a dog in the image?"]


def test_compound_names_and_quantities():
    assert questions("A group of people stand near a fire hydrant and a hot dog stand.")[:3] == [
        "Are there people in the image?", "Is there a fire hydrant in the image?", "Is there a hot dog stand in the image?"]


def test_scorer_normalises_articles_number_and_are():
    assert normalize("Are there trees in the image?") == normalize("Is there a tree in the image?")
    assert normalize("Are there two trees in the image?") != normalize("Is there a tree in the image?")
    item = {"text": "A red car.", "objects": ["car", "bus"],
            "claims": [("Is there a car in the image?", False), ("Is the car blue?", False)]}
    result = score([item], lambda text: [(c.question, c.negated) for c in split_claims(text)])
    assert (result["precision"], result["recall"], result["object_coverage"]) == (0.5, 0.5, 0.5)


def test_gold_set_has_dev_and_heldout_items_in_both_styles():
    items = load_gold()
    assert len(items) >= 60 and {i["style"] for i in items} == {"llava", "qwen"}
    assert len(load_gold(split="heldout")) >= 15
    assert all(i["claims"] and i["objects"] for i in items)


def test_bad_gold_file_is_refused_with_its_line(tmp_path):
    from evaluation.hallucination import InputError
    path = tmp_path / "gold.jsonl"
    path.write_text(GOLD.read_text().splitlines()[0] + "\n{\"text\": 3}\n")
    with pytest.raises(InputError, match="gold.jsonl:2: bad gold item"):
        load_gold(path)


def test_missing_wordnet_is_named_with_the_script_that_installs_it(tmp_path):
    code = ("import nltk; nltk.data.path[:] = [%r]\n"
            "from feedback.claims_lexicon import wordnet\n"
            "try:\n    wordnet()\nexcept RuntimeError as e:\n    print(e)\n") % str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "WordNet 3.0" in out and "scripts/install_wordnet.sh" in out
