"""The run report and TensorBoard scalars, made from a small run directory's files."""
import json

import pytest

from evaluation.report import best_round, read_rounds, write_report, write_tensorboard


def test_report_has_plots_tables_examples_and_names_the_best_round(tiny_run):
    report = write_report(tiny_run)
    text = report.read_text()
    assert report == tiny_run / "report.md"
    assert "**Best round: 1** by chair_i = 0.2 (lower is better)" in text
    for plot in ("eval-shapesworld", "pairs", "dpo", "times"):
        assert (tiny_run / "report" / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(report/{plot}.png)" in text
    assert "| 1 ★ | 40.0% | 20.0% | 81.0% | 0.500 | 4 | 4 | 2.00 | 0.690 → 0.540 | 0.75 |" in text
    assert "## Example pairs of round 1" in text
    assert "    * ✓ There is a " in text and "    * ✗ There is a green diamond. (p_yes 0.20)" in text
    # held-out answers before/after, with round 0's hallucinated object named
    assert "## Held-out answers: round 0 and round 1" in text and "[blue circle]" in text


def test_best_round_follows_the_metric_and_its_direction(tiny_run):
    rounds = read_rounds(tiny_run)
    assert best_round(rounds, "chair_i") == 1
    assert best_round(rounds, "recall") == 1
    assert best_round(rounds, "recall", lower_is_better=True) == 0
    assert best_round(rounds, "pope_f1") == 0  # a tie goes to the earliest round
    with pytest.raises(ValueError, match="'chair_x'.*known: chair_i"):
        best_round(rounds, "chair_x")


def test_report_without_a_dpo_log_plots_per_round_figures(tiny_run):
    train_json = tiny_run / "rounds/001/policy/candor_train.json"
    train_json.write_text(json.dumps({k: v for k, v in json.loads(train_json.read_text()).items() if k != "log_history"}))
    text = write_report(tiny_run, metric="recall").read_text()
    assert "by recall = 0.81 (higher is better)" in text and (tiny_run / "report/dpo.png").exists()


def test_report_of_a_folder_that_is_no_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        write_report(tmp_path)


def test_tensorboard_scalars_per_round_and_per_dpo_step_written_once(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = write_tensorboard(tiny_run)
    write_tensorboard(tiny_run)  # a second call after the same round adds nothing
    assert sorted(p.name for p in folder.glob("round-*.done")) == ["round-000.done", "round-001.done"]
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/shapesworld/chair_i")] == [(0, pytest.approx(0.3)), (1, pytest.approx(0.2))]
    assert [e.step for e in events.Scalars("dpo/loss")] == [1, 2, 3, 4]
    assert [e.value for e in events.Scalars("pairs/count")] == [4]
    assert events.Scalars("seconds/train")[0].value == 20.0


def test_user_text_reaches_the_report_escaped():
    from evaluation.report import escape

    hostile = "<img src=x onerror=alert(1)> **bold** [link](http://x) | a \u202eevil\u2066 \x00\x1b[31m\nnext"
    text = escape(hostile)
    assert "<" not in text and "&lt;img src=x onerror=alert\\(1\\)&gt;" in text
    assert "\\*\\*bold\\*\\*" in text and "\\[link\\]\\(http://x\\)" in text and "\\|" in text
    assert not any(ch in text for ch in "\u202e\u2066\x00\x1b\n")
    assert escape("There is a red circle.") == "There is a red circle."


def test_compare_runs_gives_each_runs_cut_and_the_spread_over_runs(tiny_run, tmp_path, capsys):
    """scripts/compare_runs.py: the README's seed figures (cut per run, mean ± sample sd) from run directories."""
    import shutil

    from scripts.compare_runs import main

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    metrics = other / "rounds" / "001" / "eval" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "chair_i": 0.15, "recall": 0.78}))
    main([str(tiny_run), str(other)])
    out = capsys.readouterr().out
    assert "| run | vlm | 1 | 40.0% | 20.0% | 81.0% | 0.500 | 4 | 0.75 | 71 |" in out
    assert "| run | vlm | 2 |" not in out  # round 2 stopped before its evaluation: no row
    assert "run: CHAIR-i -33.3%, recall +1.2% after round 1" in out
    assert "other: CHAIR-i -50.0%, recall -2.5% after round 1" in out
    # mean(-33.3, -50.0) = -41.7; sample sd = 16.7 / sqrt(2) = 11.8; recall mean(+1.25, -2.5) = -0.6 ± 2.7
    assert "mean ± sd over 2 runs: CHAIR-i -41.7% ± 11.8%, recall -0.6% ± 2.7%" in out
    with pytest.raises(SystemExit, match="missing: not a run directory"):
        main([str(tiny_run), str(tmp_path / "missing")])
    shutil.rmtree(other / "rounds" / "001" / "eval")
    with pytest.raises(SystemExit, match=r"other: needs round 0 and a later round evaluated \(has \[0\]\)"):
        main([str(other)])
