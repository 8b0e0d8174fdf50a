"""scripts/diagnose_run.py's pairs-by-margin figures, on a hand-made round whose truth is known."""
import importlib.util
from pathlib import Path

from feedback.pairs import conversation

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("diagnose_run", ROOT / "scripts/diagnose_run.py")
diagnose_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diagnose_run)

SCENE = [{"name": "red circle", "size": "large", "position": "top left"}]
ANSWERS = {  # answer -> its claim questions; the truth rejects 0, 1 and 3 of them
    "right": ["Is there a red circle in the image?", "Is the red circle large?"],
    "small": ["Is there a red circle in the image?", "Is the red circle small?"],
    "partner": ["Is there a red circle in the image?", "Is there a green diamond in the image?",
                "Is the green diamond small?", "Is the green diamond at the top right?"],
}


class RoundTables:
    """Round 1's prompts, split and pairs tables, as RunLayout.read_stage returns them."""

    def __init__(self, pairs):
        self.tables = {"prompts": [{"id": "p", "layout": SCENE}],
                       "split": [{"prompt_id": "p", "response": text, "questions": qs, "negated": [False] * len(qs)}
                                 for text, qs in ANSWERS.items()],
                       "pairs": [{"prompt_id": "p", "chosen": conversation("q", c)[1], "rejected": conversation("q", r)[1],
                                  "chosen_score": cs, "rejected_score": rs} for c, r, cs, rs in pairs]}

    def read_stage(self, k, stage):
        assert k == 1
        return self.tables[stage]


def test_pairs_are_judged_by_the_truth_and_grouped_by_the_labeler_s_margin():
    pairs = [("right", "small", 0, -1),     # margin 1, truly better: right
             ("small", "right", -1, -2),    # margin 1, truly worse: wrong
             ("right", "partner", 0, -2),   # margin 2, truly better: right
             ("small", "partner", 0, -3),   # margin 3, truly better by 2 claims: right
             ("partner", "partner", 0, -3)]  # margin 3, the same answer: a tie
    assert diagnose_run.truth_by_margin(RoundTables(pairs), 1) == {"1": [1, 0, 1], "2": [1, 0, 0], "3+": [1, 1, 0]}


def test_held_out_hallucinations_are_classed_as_partner_perception_or_other():
    from evaluation.shapes import ShapesWorld, partner

    assert partner("red circle") == "green triangle"
    rows = [{"gt_objects": ["red circle", "blue square"],
             # a partner; two misread objects (the yellow circle shares the shape of the red circle, the blue diamond
             # the colour of the blue square); one that shares neither
             "response": "There is a red circle. There is a green triangle. There is a yellow circle. "
                         "There is a blue diamond. There is a green diamond."}]
    figures = diagnose_run.eval_figures(rows, ShapesWorld.vocabulary())
    assert (figures["mentions"], figures["hallucinated"], figures["perception"]) == (5, 4, 2)
    assert figures["partner_share"] == 1 / 4
