"""The labeler suite's pure parts: the held-out rule and the claim figures, by hand."""
import json

import pytest
from PIL import Image

from evaluation.hallucination import InputError
from evaluation.labeler_metrics import claim_metrics, is_heldout
from evaluation.suites import Handles, make_suite


def test_heldout_is_a_stable_hash_of_the_row_id():
    ids = [f"row-{i}" for i in range(2000)]
    picked = [i for i in ids if is_heldout(i, 0.1, seed=0)]
    assert 150 < len(picked) < 250  # 10% of 2000, within sampling noise
    assert picked == [i for i in ids if is_heldout(i, 0.1, seed=0)]  # same every call, every process
    assert picked != [i for i in ids if is_heldout(i, 0.1, seed=1)]
    assert not any(is_heldout(i, 0.0, 0) for i in ids) and all(is_heldout(i, 1.0, 0) for i in ids)
    with pytest.raises(InputError, match="within"):
        is_heldout("x", 1.5, 0)


def test_claim_figures():
    metrics, rows = claim_metrics([[0.9, 0.2], [], [0.5, 0.4, 0.8]])  # 0.5 is rejected: p_no >= p_yes
    assert [r["rejected"] for r in rows] == [1, 0, 2]
    assert metrics == {"rejected_answer_share": pytest.approx(2 / 3), "rejected_per_answer": 1.0,
                       "claims_per_answer": pytest.approx(5 / 3), "n": 3}
    with pytest.raises(InputError, match="answer 0"):
        claim_metrics([[1.2]])


def test_labeler_suite_checks_heldout_rows_only(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    rows = [{"id": f"r{i}", "image": "a.png", "question": "Describe."} for i in range(40)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = [r["id"] for r in rows if is_heldout(r["id"], 0.25, 3)]
    handles = Handles(describe=lambda items: ["A cat. A dog."] * len(items), ask=None,
                      split=lambda answers: [["Is there a cat?", "Is there a dog?"] for _ in answers],
                      verify=lambda items: [0.9 if "cat" in q else 0.1 for _, q in items])
    metrics, out = make_suite("labeler", {"prompts": str(tmp_path / "rows.jsonl"), "fraction": 0.25, "seed": 3}).run(handles)
    assert [r["id"] for r in out] == expected and expected
    assert metrics["rejected_answer_share"] == 1.0 and metrics["claims_per_answer"] == 2.0
    assert metrics["rejected_per_answer"] == 1.0
