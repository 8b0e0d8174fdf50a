import math

from feedback.pairs import answer_score, build_pairs, candidate_pairs, cap_pairs, length_balance, share_score


def test_score_counts_rejected_claims_with_negation():
    # p_no >= p_yes rejects (0.5 is a tie and rejects); a negated claim is rejected when the answer is yes
    assert answer_score([0.9, 0.5, 0.2], [False, False, False]) == -2
    assert answer_score([0.9, 0.1], [True, True]) == -1


def test_candidate_pairs_need_a_margin_and_put_the_better_first():
    assert candidate_pairs([0, -1, 0, -3]) == [(0, 1), (0, 3), (2, 1), (1, 3), (2, 3)]
    assert candidate_pairs([-2, -2]) == []
    # a minimum margin of 2 rejected claims keeps only the pairs two or more claims apart; 0 keeps every non-tie
    assert candidate_pairs([0, -1, 0, -3], margin=2) == [(0, 3), (1, 3), (2, 3)]
    assert candidate_pairs([-2, -2], margin=0) == []


def test_share_score_ranks_by_the_wrong_share_of_claims():
    # (score, claims): 1 of 6 wrong, 1 of 15 wrong, 2 of 12 wrong, none of 3, an answer with no claim
    answers = [(-1, 6), (-1, 15), (-2, 12), (0, 3), (0, 0)]
    shares = [share_score(s, c) for s, c in answers]
    assert shares == [-1 / 6, -1 / 15, -1 / 6, 0.0, 0.0]
    # by count the 6- and 15-claim answers tie and the 12-claim one is worst; by share the longer one wins
    assert (0, 1) not in candidate_pairs([s for s, _ in answers]) and (1, 0) not in candidate_pairs([s for s, _ in answers])
    share_pairs = candidate_pairs(shares)
    assert (1, 0) in share_pairs and (1, 2) in share_pairs
    assert (0, 2) not in share_pairs and (2, 0) not in share_pairs  # 1/6 and 2/12 are the same float: a tie
    assert (3, 4) not in share_pairs and (4, 3) not in share_pairs


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
    # one rejected claim apart: no pair once the minimum margin is 2
    assert build_pairs(answers, prompts, max_per_prompt=2, seed=0, balance=True, round_index=3, min_margin=2) == []
