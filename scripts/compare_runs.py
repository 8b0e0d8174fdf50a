"""Prints one markdown table comparing finished runs: python scripts/compare_runs.py RUN_DIR [RUN_DIR ...]"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed

from evaluation.layout import RunLayout  # noqa: E402  (after the path line, so the script runs from anywhere)
from evaluation.report import RESULT_COLUMNS, result_cells  # noqa: E402


def main(run_dirs):
    print(f"| run | labeler | round | {RESULT_COLUMNS} | wall s |")
    print("|---" * 10 + "|")
    for run in map(Path, run_dirs):
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        labeler = next((l for l in (run / "config.yaml").read_text().splitlines() if l.strip().startswith("labeler:")), "")
        rounds = sorted({r["round"] for r in lines})
        for k in rounds:
            m = RunLayout(run).read_eval(k, "shapesworld")[0]
            train = next((r for r in lines if r["round"] == k and r["stage"] == "train"), {})
            wall = sum(r.get("seconds", 0) for r in lines if r["round"] == k)
            print(f"| {run.name} | {labeler.split(':', 1)[1].strip()} | {k} | {result_cells(m, train)} | {wall:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
