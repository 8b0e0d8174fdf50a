"""Prints one markdown table comparing finished runs, then how much each cut CHAIR-i and recall (relative, round 0
to its last evaluated round) with the mean ± sd over the runs (run seeds, say):
python scripts/compare_runs.py RUN_DIR [RUN_DIR ...]"""
import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed

from evaluation.layout import RunLayout  # noqa: E402  (after the path line, so the script runs from anywhere)
from evaluation.report import RESULT_COLUMNS, result_cells  # noqa: E402


def table(runs: dict[Path, dict[int, dict]]) -> list[str]:
    out = [f"| run | labeler | round | {RESULT_COLUMNS} | wall s |", "|---" * 10 + "|"]
    for run, figures in runs.items():
        lines = RunLayout(run).metrics()
        labeler = RunLayout(run).saved_config()["feedback"]["labeler"]
        for k, round_figures in figures.items():
            train = next((r for r in lines if r["round"] == k and r["stage"] == "train"), {})
            wall = sum(r.get("seconds", 0) for r in lines if r["round"] == k)
            out.append(f"| {run.name} | {labeler} | {k} | {result_cells(round_figures, train)} | {wall:.0f} |")
    return out


def evaluated(run: Path) -> dict[int, dict]:
    """{round: its ShapesWorld figures} for every round of the run whose evaluation finished, in round order."""
    layout = RunLayout(run)
    figures = {k: layout.read_eval_metrics(k, "shapesworld") for k in sorted({r["round"] for r in layout.metrics()})}
    return {k: f for k, f in figures.items() if f is not None}


def relative_changes(run: Path, figures: dict[int, dict]) -> tuple[int, float, float]:
    """(last evaluated round, relative change of CHAIR-i, of recall) from round 0 to that round."""
    if 0 not in figures or len(figures) < 2:
        raise SystemExit(f"{run}: needs round 0 and a later round evaluated (has {list(figures)})")
    last = max(figures)
    first, final = figures[0], figures[last]
    return last, final["chair_i"] / first["chair_i"] - 1, final["recall"] / first["recall"] - 1


def spread(runs: dict[Path, dict[int, dict]]) -> list[str]:
    changes = {run.name: relative_changes(run, figures) for run, figures in runs.items()}
    out = [f"{name}: CHAIR-i {cut:+.1%}, recall {recall:+.1%} after round {k}" for name, (k, cut, recall) in changes.items()]
    if len(runs) > 1:
        cuts, recalls = ([c[i] for c in changes.values()] for i in (1, 2))
        out.append(f"mean ± sd over {len(runs)} runs: CHAIR-i {statistics.mean(cuts):+.1%} ± {statistics.stdev(cuts):.1%}, "
                   f"recall {statistics.mean(recalls):+.1%} ± {statistics.stdev(recalls):.1%}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    runs = parser.parse_args(argv).runs
    for run in runs:
        if not (run / "metrics.jsonl").is_file():
            raise SystemExit(f"{run}: not a run directory (no metrics.jsonl)")
    figures = {run: evaluated(run) for run in runs}  # each evaluation read once, for the table and the spread
    print("\n".join(table(figures) + [""] + spread(figures)))


if __name__ == "__main__":
    main()
