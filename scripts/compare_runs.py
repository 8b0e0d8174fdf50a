"""Prints one markdown table comparing finished runs, then how much each cut CHAIR-i and recall (relative, round 0
to its last evaluated round) with the mean ± sd over the runs (run seeds, say):
python scripts/compare_runs.py RUN_DIR [RUN_DIR ...]"""
import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed

from evaluation.layout import RunLayout  # noqa: E402  (after the path line, so the script runs from anywhere)
from evaluation.report import RESULT_COLUMNS, result_cells  # noqa: E402


def table(runs: list[Path]) -> list[str]:
    out = [f"| run | labeler | round | {RESULT_COLUMNS} | wall s |", "|---" * 10 + "|"]
    for run in runs:
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        labeler = next((l for l in (run / "config.yaml").read_text().splitlines() if l.strip().startswith("labeler:")), "")
        for k, figures in evaluated(run).items():
            train = next((r for r in lines if r["round"] == k and r["stage"] == "train"), {})
            wall = sum(r.get("seconds", 0) for r in lines if r["round"] == k)
            out.append(f"| {run.name} | {labeler.split(':', 1)[1].strip()} | {k} | {result_cells(figures, train)} | {wall:.0f} |")
    return out


def evaluated(run: Path) -> dict[int, dict]:
    """{round: its ShapesWorld figures} for every round of the run whose evaluation finished, in round order."""
    layout = RunLayout(run)
    figures = {k: layout.read_eval_metrics(k, "shapesworld") for k in sorted({r["round"] for r in layout.metrics()})}
    return {k: f for k, f in figures.items() if f is not None}


def relative_changes(run: Path) -> tuple[int, float, float]:
    """(last evaluated round, relative change of CHAIR-i, of recall) from round 0 to that round."""
    figures = evaluated(run)
    if 0 not in figures or len(figures) < 2:
        raise SystemExit(f"{run}: needs round 0 and a later round evaluated (has {list(figures)})")
    last = max(figures)
    first, final = figures[0], figures[last]
    return last, final["chair_i"] / first["chair_i"] - 1, final["recall"] / first["recall"] - 1


def spread(runs: list[Path]) -> list[str]:
    changes = {run.name: relative_changes(run) for run in runs}
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
    print("\n".join(table(runs) + [""] + spread(runs)))


if __name__ == "__main__":
    main()
