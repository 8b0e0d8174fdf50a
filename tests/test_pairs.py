import math

from feedback.pairs import answer_score, build_pairs, candidate_pairs, cap_pairs, length_balance


def test_score_counts_rejected_claims_with_negation():
    # p_no >= p_yes rejects (0.5 is a tie and rejects); a negated claim is rejected when the answer is yes
    assert answer_score([0.9, 0.5, 0.2], [False, False, False]) == -2
    assert answer_score([0.9, 0.1], [True, True]) == -1


def test_candidate_pairs_need_a_margin_and_put_the_better_first():
    assert candidate_pairs([0, -1, 0, -3]) == [(0, 1), (0, 3), (2, 1), (1, 3), (2, 3)]
    assert candidate_pairs([-2, -2]) == []


def test_cap_is_seeded_and_bounded():
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2)]
    assert cap_pairs(pairs, 2, 0, "p") == cap_pairs(pairs, 2, 0, "p")
    assert len(cap_pairs(pairs, 2, 0, "p")) == 2
    assert cap_pairs(pairs[:1], 2, 0, "p") == pairs[:1]


def test_length_balance_picks_the_cut_that_equalises_means():
    # (chosen words, rejected words). Keeping all: means 6.5 vs 10. Dropping shortfall > 2 keeps the first
    # three pairs (means 8.33 vs 9); dropping shortfall > 0 keeps pairs 1 and 2 (10 vs 10) -> best.
    lengths = [(10, 10), (10, 10), (5, 7), (1, 13)]
    assert length_balance(lengths) == [True, True, False, False]
    assert length_balance([(12, 10), (9, 10)]) == [True, True]
    assert length_balance([]) == []


def test_build_pairs_writes_trl_conversational_rows():
    answers = {"p1": [{"sample": 0, "response": "There is a red circle.", "score": 0},
                      {"sample": 1, "response": "There is a blue square.", "score": -1}]}
    prompts = {"p1": {"image_bytes": b"png", "question": "Describe the image in detail."}}
    [row] = build_pairs(answers, prompts, max_per_prompt=2, seed=0, balance=True, round_index=3)
    assert row["chosen"][0]["content"][0]["text"] == "There is a red circle."
    assert row["rejected"][0]["content"][0]["text"] == "There is a blue square."
    assert row["prompt"][0]["content"][0]["type"] == "image"
    assert row["images"] == [{"bytes": b"png", "path": None}]
    assert (row["chosen_score"], row["rejected_score"], row["round"]) == (0, -1, 3)
    assert not math.isnan(row["chosen_score"])
