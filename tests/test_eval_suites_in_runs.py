"""Evaluation suites inside runs: config sections checked before any work, the labeler suite's held-out slice
never trained on, the engine's handles (rule splitter with negations, the run's labeler), and the report,
TensorBoard and status over every suite. No model is loaded here (tests/test_eval_suites_run.py runs them)."""
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from PIL import Image

from engine.config import ConfigError, load_config
from engine.registries import best_metric, check_suite_files, evaluate_suite, heldout_rule
from engine.round_stages import prompts_stage, run_prompt_rows
from engine.status import status
from engine.store import RunStore
from evaluation.hallucination import InputError
from evaluation.report import best_round, read_rounds, write_report, write_tensorboard
from evaluation.shapes import ShapesWorld
from feedback.sources import RoundContext

CONFIG = str(Path(__file__).resolve().parent.parent / "configs/shapes-rlaifv.yaml")
LABELER = ["eval.suites=shapesworld,labeler", "eval.labeler.fraction=0.25", "eval.labeler.seed=7",
           "sampling.prompts_per_round=16", "run.rounds=3"]


def _trained_ids(cfg) -> list[str]:
    stage = prompts_stage(cfg)  # no policy: the token screen is off, nothing else changes
    ids = []
    for k in range(1, cfg.run.rounds + 1):
        rows, figures = stage.run(RoundContext(cfg, k, {}, lambda name: []), None, [])
        ids += [r["id"] for r in rows]
        assert figures["heldout"] == 16 - len(rows)
    return ids


def test_the_prompts_stage_never_trains_on_the_labeler_suites_slice_of_shapesworld():
    cfg = load_config(CONFIG, LABELER)
    trained = _trained_ids(cfg)
    heldout = [r["id"] for r in run_prompt_rows(cfg, heldout_rule(cfg))]
    every = [item["id"] for item in ShapesWorld(cfg.data.world_seed, cfg.data.prior).prompt_pool(48)]
    assert heldout and not set(heldout) & set(trained)
    assert sorted(trained + heldout) == sorted(every)  # nothing else is lost
    assert 4 <= len(heldout) <= 20  # a quarter of 48, within hashing noise
    assert heldout_rule(load_config(CONFIG)) is None  # no labeler suite: every prompt trains
    assert len(_trained_ids(load_config(CONFIG, ["sampling.prompts_per_round=16", "run.rounds=3"]))) == 48


def test_the_prompts_stage_never_trains_on_the_labeler_suites_slice_of_a_dataset(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"id": f"u{i}", "image": "a.png", "question": f"Q{i}?"}) + "\n"
                                                 for i in range(48)))
    cfg = load_config(CONFIG, LABELER + ["data.source=dataset", f"data.path={tmp_path / 'rows.jsonl'}"])
    trained = _trained_ids(cfg)
    heldout = run_prompt_rows(cfg, heldout_rule(cfg))
    assert heldout and not {r["id"] for r in heldout} & set(trained)
    assert sorted(trained + [r["id"] for r in heldout]) == sorted(f"u{i}" for i in range(48))
    assert heldout[0]["image_bytes"] and heldout[0]["question"].startswith("Q")


def test_suite_sections_are_typed_and_their_files_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="eval.pope: unknown key.*n_image"):
        load_config(CONFIG, ["eval.suites=shapesworld,pope", "eval.pope.n_image=5"])
    with pytest.raises(ConfigError, match="eval.pope.per_image: 'x' is not of the expected kind"):
        load_config(CONFIG, ["eval.suites=pope", "eval.pope.per_image=x"])
    with pytest.raises(ConfigError, match="eval.suites: unknown suite 'popee'"):
        load_config(CONFIG, ["eval.suites=popee"])
    with pytest.raises(ConfigError, match="eval.suites: the labeler suite.*oracle"):
        load_config(CONFIG, ["eval.suites=labeler", "feedback.labeler=oracle"])
    cfg = load_config(CONFIG, ["eval.suites=shapesworld,chair-coco", f"eval.chair-coco.annotations={tmp_path}"])
    with pytest.raises(InputError, match=f"eval.chair-coco.annotations: file {tmp_path}/instances_val2014.json not found"):
        check_suite_files(cfg)
    cfg = load_config(CONFIG, ["eval.suites=pope", f"eval.pope.questions={tmp_path}", "eval.pope.prefix=x"])
    with pytest.raises(InputError, match="eval.pope.questions: file .*x_pope_random.json not found"):
        check_suite_files(cfg)
    assert load_config(CONFIG, ["eval.pope.n_images=7", "eval.suites=pope"]).eval.pope == {"n_images": "7"}


@pytest.mark.parametrize("suites, spec, expected", [
    ("shapesworld,pope", "chair_i", ("shapesworld", "chair_i")),  # the old meaning is kept
    ("pope,shapesworld", "chair_i", ("shapesworld", "chair_i")),
    ("pope,labeler", "pope_f1", ("pope", "pope_f1")),  # no shapesworld: the first suite's
    ("pope,labeler", "labeler/rejected_per_answer", ("labeler", "rejected_per_answer")),
])
def test_best_metric_names_a_suite_and_its_figure(suites, spec, expected):
    cfg = load_config(CONFIG, [f"eval.suites={suites}", f"eval.best_metric={spec}", "feedback.labeler=vlm"])
    assert best_metric(cfg) == expected


def test_best_metric_of_a_suite_that_does_not_run_is_refused():
    with pytest.raises(ConfigError, match="eval.best_metric: 'pope/pope_f1' must be <suite>/<metric>"):
        load_config(CONFIG, ["eval.best_metric=pope/pope_f1"])


class FakeModels:
    """The two handle kinds the labeler suite asks Models for; records which round's labeler was asked."""

    def __init__(self):
        self.asked = []

    @contextmanager
    def handles(self, uses, k, model=""):
        self.asked.append((uses, k))
        assert uses == "labeler"
        yield [lambda images, questions, metadata: [0.9 if "red" in q else 0.8 for q in questions]]


def test_the_labeler_suite_gets_the_runs_splitter_and_labeler_and_counts_negated_claims(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "image": "a.png", "question": "Describe."})
                                                 + "\n" for i in range(6)))
    cfg = load_config(CONFIG, ["eval.suites=labeler", "feedback.labeler=vlm", "eval.labeler.fraction=1",
                               f"eval.labeler.prompts={tmp_path / 'rows.jsonl'}", "eval.labeler.n=4"])
    models = FakeModels()
    answers = "There is a red circle. There is no blue square."

    def generate(items, *, n, temperature, max_tokens):
        assert (n, temperature, max_tokens) == (1, 0.0, cfg.sampling.max_tokens)
        return [[answers] for _ in items]
    metrics, rows = evaluate_suite(cfg, models, 2, "labeler", generate)
    # the rule splitter: "Is there a red circle?" (p_yes 0.9: accepted) and the negated "Is there a blue
    # square?" (p_yes 0.8 says there is one: rejected), so one of two claims rejected in every answer
    assert rows[0]["questions"] == ["Is there a red circle in the image?", "Is there a blue square in the image?"]
    assert rows[0]["negated"] == [False, True] and [(r["claims"], r["rejected"]) for r in rows] == [(2, 1)] * 4
    assert metrics == {"rejected_answer_share": 1.0, "rejected_per_answer": 1.0, "claims_per_answer": 2.0, "n": 4}
    assert models.asked == [("labeler", 3)]  # a ``self`` labeler would be round 2's policy, the one evaluated


def _suite_run(tmp_path) -> Path:
    """A run directory with rounds 0 and 1 evaluated by three suites (figures by hand)."""
    root = tmp_path / "run"
    store = RunStore(root)
    root.mkdir()
    cfg = load_config(CONFIG, ["eval.suites=shapesworld,pope,labeler", "feedback.labeler=vlm", "run.rounds=1"])
    (root / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    figures = {
        "shapesworld": [{"chair_s": 0.5, "chair_i": 0.25, "recall": 0.8, "pope_f1": 0.7, "n": 2},
                        {"chair_s": 0.4, "chair_i": 0.3, "recall": 0.9, "pope_f1": 0.75, "n": 2}],
        "pope": [{"pope_random_f1": 0.8, "pope_popular_f1": 0.7, "pope_adversarial_f1": 0.6, "pope_f1": 0.7}] * 2,
        "labeler": [{"rejected_answer_share": 0.5, "rejected_per_answer": 0.75, "claims_per_answer": 3.0, "n": 4},
                    {"rejected_answer_share": 0.25, "rejected_per_answer": 0.5, "claims_per_answer": 2.5, "n": 4}]}
    for k in (0, 1):
        for suite, per_round in figures.items():
            store.write_json(store.eval_metrics(k, suite), per_round[k])
            store.write_jsonl(store.eval_responses(k, suite), [{"id": "a", "prompt": "Describe.", "response": f"r{k}"}])
            store.mark_done(k, f"eval/{suite}", {**per_round[k], "seconds": 1.0})
    return root


def test_report_tensorboard_and_status_cover_every_suite(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _suite_run(tmp_path)
    rounds = read_rounds(run)
    assert best_round(rounds, "chair_i") == 0 and best_round(rounds, "labeler/rejected_answer_share") == 1
    text = write_report(run, metric="labeler/rejected_answer_share").read_text()
    assert "**Best round: 1** by labeler/rejected_answer_share = 0.25 (lower is better)" in text
    assert "| round | rejected_answer_share | rejected_per_answer | claims_per_answer | prompts |" in text
    assert "### pope" in text and "| 0 | 80.0% | 70.0% | 60.0% | 0.700 |" not in text  # F1 printed as a number
    assert "| 0 | 0.800 | 0.700 | 0.600 | 0.700 |" in text and "| 1 ★ | 40.0% | 30.0% | 90.0% | 0.750 |" in text
    assert "| 1 ★ | 25.0% | 0.500 | 2.500 |" in text
    for suite in ("shapesworld", "pope", "labeler"):
        assert (run / f"report/eval-{suite}.png").exists()
    events = EventAccumulator(str(write_tensorboard(run)))
    events.Reload()
    assert [e.value for e in events.Scalars("eval/labeler/rejected_per_answer")] == [0.75, 0.5]
    assert [e.value for e in events.Scalars("eval/pope/pope_f1")] == pytest.approx([0.7, 0.7])
    lines = status(run).splitlines()
    assert lines[0].endswith("rounds 1..1 planned, 1 finished (done)")
    assert "last eval pope (round 1): pope_random_f1 0.800  pope_popular_f1 0.700  pope_adversarial_f1 0.600  " \
           "pope_f1 0.700" in lines
    assert "last eval labeler (round 1): rejected_answer_share 0.250  rejected_per_answer 0.500  " \
           "claims_per_answer 2.500" in lines
