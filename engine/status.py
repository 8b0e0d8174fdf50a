"""Where a run stands, from its run directory alone: ``python -m engine.status RUN_DIR``.

Prints each round's finished stages, the stage in progress with its shards done / total (a sharded
stage has one shard per ``sampling.shard_size`` prompts of the round's prompts table), and each
evaluation suite's last figures. It reads files only, so it works while the run is going, after it died, or on another machine.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pyarrow.parquet as pq

from evaluation.layout import LEGACY_EVAL_SUITE, RunLayout, eval_stage
from evaluation.suites import HEADLINE


def _rows(paths: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def _stage_names(run: RunLayout, k: int, finish_order: list[str]) -> list[str]:
    """Stages of a round: finished ones in the order they finished (``finish_order``, from metrics.jsonl;
    every preference source has its own stages), then started ones (shards or trainer checkpoints, no marker)."""
    rank = {name: i for i, name in enumerate(finish_order)}
    names = run.stages(k)
    done = sorted((n for n in names if run.is_done(k, n)), key=lambda n: (rank.get(n, len(rank)), n))
    started = sorted(n for n in names if not run.is_done(k, n) and (run.shards(k, n) or run.checkpoints(k).is_dir()
                                                                     and n == "train"))
    return done + started


def stage_progress(run: RunLayout, k: int, stage: str, shard_size: int) -> str:
    """What a started, unfinished stage has done so far, as far as the files tell."""
    parts = len(run.shards(k, stage))
    if run.is_done(k, "prompts") and stage != "prompts":
        total = math.ceil(_rows(run.shards(k, "prompts")) / shard_size)
        if parts:
            return f"{parts}/{total} shards ({parts / total:.0%})" if total else f"{parts} shards"
    folder = run.checkpoints(k)
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) \
        if stage == "train" and folder.is_dir() else []
    if checkpoints:
        return f"last checkpoint at step {checkpoints[-1].name.split('-')[-1]}"
    return f"{parts} shards written" if parts else "started"


def status(run_dir: str | Path) -> str:
    """The status text of one run directory."""
    run = RunLayout(run_dir)
    if not run.is_run() or not run.config.exists():
        raise FileNotFoundError(f"{run.root}: not a run directory (needs config.yaml and rounds/)")
    config = run.saved_config()
    rounds_planned = config["run"]["rounds"]
    shard_size = config["sampling"]["shard_size"]
    suites = (config.get("eval") or {}).get("suites") or [LEGACY_EVAL_SUITE]
    round_numbers = run.round_numbers()
    finished = [k for k in round_numbers if all(run.is_done(k, eval_stage(suite)) for suite in suites)]
    lines = [f"run {run.root}: rounds 1..{rounds_planned} planned, "
             f"{len([k for k in finished if k > 0])} finished" +
             (" (done)" if rounds_planned in finished else "")]
    metrics_rows = run.metrics()
    current = None
    for k in round_numbers:
        cells = []
        for stage in _stage_names(run, k, [m["stage"] for m in metrics_rows if m["round"] == k]):
            if run.is_done(k, stage):
                info = run.done_info(k, stage)
                cells.append(f"{stage} ✓" + (f" {info['seconds']:.0f}s" if "seconds" in info else ""))
            else:
                progress = stage_progress(run, k, stage, shard_size)
                cells.append(f"{stage} … {progress}")
                current = current or (k, stage, progress)
        lines.append(f"round {k:03d}: " + (" | ".join(cells) or "nothing yet"))
    if current:
        lines.append(f"now: round {current[0]} {current[1]}: {current[2]}")
    elif round_numbers and rounds_planned not in finished:
        lines.append("now: between stages (the next stage has written nothing yet)")
    for suite in suites:
        evaluated = [k for k in round_numbers if run.is_done(k, eval_stage(suite))]
        if evaluated:
            metrics = run.read_eval_metrics(evaluated[-1], suite)
            lines.append(f"last eval{'' if len(suites) == 1 else ' ' + suite} (round {evaluated[-1]}): " + "  ".join(
                f"{m} {metrics[m]:.3f}" for m in HEADLINE.get(suite, sorted(metrics)) if isinstance(metrics.get(m), float)))
    if metrics_rows:
        last = metrics_rows[-1]
        figures = ", ".join(f"{a}={b}" for a, b in last.items() if a not in ("round", "stage") and not isinstance(b, (dict, list)))
        lines.append(f"last stage finished: round {last['round']} {last['stage']}: {figures}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m engine.status RUN_DIR", file=sys.stderr)
        return 2
    try:
        print(status(argv[0]))
    except FileNotFoundError as e:
        print(f"engine.status: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
