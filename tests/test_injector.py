"""BPO's rule injector on general English (feedback/inject.py) and its dispatch from feedback/bpo.py."""
from feedback import bpo
from feedback.inject import COCO, Vocabulary, english_inject, plural

REFERENCE = "A black cat is sitting on a chair to the left of a table with two cups and a fork."


def test_each_kind_of_edit_changes_one_detail_and_the_seed_fixes_the_result():
    # seed 0's order of kinds: relation, color, object, count (checked by hand: one detail each)
    assert english_inject(REFERENCE, 4, seed=0) == [
        "A black cat is sitting on a chair to the right of a table with two cups and a fork.",
        "A red cat is sitting on a chair to the left of a table with two cups and a fork.",
        "A black cat is sitting on a chair to the left of a table with two bowls and a fork.",
        "A black cat is sitting on a chair to the left of a table with three cups and a fork."]
    assert english_inject(REFERENCE, 2, seed=0) == english_inject(REFERENCE, 4, seed=0)[:2]


def test_fixed_seed_gives_a_hand_checked_swap():
    assert english_inject("A dog sleeps on a bed.", 1, seed=3) == ["A sheep sleeps on a bed."]  # dog and sheep: animals


def test_object_swaps_pick_a_co_occurring_object_of_the_same_kind_not_yet_named():
    assert COCO.partners["bicycle"] == ["bus", "car", "motorcycle", "truck"]
    assert "spoon" in COCO.partners["fork"] and "giraffe" not in COCO.partners["fork"]
    cutlery = Vocabulary({"table": ("fork", "knife", "spoon")})
    swaps = {english_inject("A fork and a knife.", 1, seed, cutlery)[0] for seed in range(10)}
    assert swaps == {"A spoon and a knife.", "A fork and a spoon."}  # the spoon, never a named one


def test_plurals_articles_and_capitals_follow_the_swap():
    assert [plural(w) for w in ("knife", "bus", "cell phone", "person")] == ["knives", "buses", "cell phones", "people"]
    vocab = Vocabulary({"fruit": ("banana", "apple")})
    assert english_inject("A banana.", 1, 0, vocab) == ["An apple."]
    assert english_inject("Two bananas lie there.", 2, 0, vocab) == ["Two apples lie there.", "Three bananas lie there."]


def test_nothing_to_change_gives_no_rewrite():
    assert english_inject("A man is smiling.", 2, 0) == []


def test_bpo_uses_the_shapesworld_edits_on_its_grammar_and_the_english_ones_elsewhere():
    shapes = "There is a small red circle at the top left. A large blue square is at the bottom right."
    rewrites = bpo.rule_inject(shapes, 2, 5)
    assert len(rewrites) == 2 and all(bpo.in_shapes_grammar(t) and t != shapes for t in rewrites)
    assert bpo.rule_inject(REFERENCE, 2, 5) == english_inject(REFERENCE, 2, 5)
