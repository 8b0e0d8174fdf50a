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
        for k in sorted({r["round"] for r in lines}):
            finished = RunLayout(run).read_eval(k, "shapesworld")
            if finished is None:
                continue
            train = next((r for r in lines if r["round"] == k and r["stage"] == "train"), {})
            wall = sum(r.get("seconds", 0) for r in lines if r["round"] == k)
            out.append(f"| {run.name} | {labeler.split(':', 1)[1].strip()} | {k} | {result_cells(finished[0], train)} | {wall:.0f} |")
    return out


def relative_changes(run: Path) -> tuple[int, float, float]:
    """(last evaluated round, relative change of CHAIR-i, of recall) from round 0 to that round."""
    layout = RunLayout(run)
    rounds = [k for k in sorted({r["round"] for r in layout.metrics()}) if layout.read_eval(k, "shapesworld")]
    if 0 not in rounds or len(rounds) < 2:
        raise SystemExit(f"{run}: needs round 0 and a later round evaluated (has {rounds})")
    first, last = layout.read_eval(0, "shapesworld")[0], layout.read_eval(rounds[-1], "shapesworld")[0]
    return rounds[-1], last["chair_i"] / first["chair_i"] - 1, last["recall"] / first["recall"] - 1


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
