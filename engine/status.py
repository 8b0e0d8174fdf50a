"""Where a run stands, from its run directory alone: ``python -m engine.status RUN_DIR``.

Prints each round's finished stages, the stage in progress with its shards done / total (a sharded
stage has one shard per ``sampling.shard_size`` prompts of the round's prompts table), and the last
metrics. It reads files only, so it works while the run is going, after it died, or on another machine.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

HEADLINE = ("chair_s", "chair_i", "recall", "pope_f1")


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def _rows(folder: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in _parts(folder))


def _stage_names(round_dir: Path, finish_order: list[str]) -> list[str]:
    """Stage folders of a round: finished ones in the order they finished (``finish_order``, from
    metrics.jsonl; every preference source has its own stages), then started ones (shards or trainer
    checkpoints, no marker)."""
    folders = [p for p in round_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    rank = {name: i for i, name in enumerate(finish_order)}
    done = sorted((p.name for p in folders if (p / "_SUCCESS").exists()), key=lambda n: (rank.get(n, len(rank)), n))
    started = sorted(p.name for p in folders if not (p / "_SUCCESS").exists() and (_parts(p) or (p / "checkpoints").is_dir()))
    return done + started


def stage_progress(run_dir: Path, k: int, stage: str, shard_size: int) -> str:
    """What a started, unfinished stage has done so far, as far as the files tell."""
    folder = run_dir / "rounds" / f"{k:03d}" / stage
    parts = len(_parts(folder))
    prompts = run_dir / "rounds" / f"{k:03d}" / "prompts"
    if (prompts / "_SUCCESS").exists() and stage != "prompts":
        total = math.ceil(_rows(prompts) / shard_size)
        if parts:
            return f"{parts}/{total} shards ({parts / total:.0%})" if total else f"{parts} shards"
    checkpoints = sorted((folder / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) \
        if (folder / "checkpoints").is_dir() else []
    if checkpoints:
        return f"last checkpoint at step {checkpoints[-1].name.split('-')[-1]}"
    return f"{parts} shards written" if parts else "started"


def status(run_dir: str | Path) -> str:
    """The status text of one run directory."""
    run = Path(run_dir)
    if not (run / "rounds").is_dir() or not (run / "config.yaml").exists():
        raise FileNotFoundError(f"{run}: not a run directory (needs config.yaml and rounds/)")
    config = yaml.safe_load((run / "config.yaml").read_text())
    rounds_planned = config["run"]["rounds"]
    shard_size = config["sampling"]["shard_size"]
    round_dirs = sorted(p for p in (run / "rounds").glob("[0-9][0-9][0-9]") if p.is_dir())
    finished = [int(p.name) for p in round_dirs if (p / "eval" / "_SUCCESS").exists()]
    lines = [f"run {run}: rounds 1..{rounds_planned} planned, "
             f"{len([k for k in finished if k > 0])} finished" +
             (" (done)" if rounds_planned in finished else "")]
    metrics_file = run / "metrics.jsonl"
    metrics_rows = [json.loads(line) for line in metrics_file.read_text().splitlines()] if metrics_file.exists() else []
    current = None
    for round_dir in round_dirs:
        k = int(round_dir.name)
        cells = []
        for stage in _stage_names(round_dir, [m["stage"] for m in metrics_rows if m["round"] == k]):
            if (round_dir / stage / "_SUCCESS").exists():
                info = json.loads((round_dir / stage / "_SUCCESS").read_text() or "{}")
                cells.append(f"{stage} ✓" + (f" {info['seconds']:.0f}s" if "seconds" in info else ""))
            else:
                progress = stage_progress(run, k, stage, shard_size)
                cells.append(f"{stage} … {progress}")
                current = current or (k, stage, progress)
        lines.append(f"round {k:03d}: " + (" | ".join(cells) or "nothing yet"))
    if current:
        lines.append(f"now: round {current[0]} {current[1]}: {current[2]}")
    elif round_dirs and rounds_planned not in finished:
        lines.append("now: between stages (the next stage has written nothing yet)")
    if finished:
        k = finished[-1]
        metrics = json.loads((run / "rounds" / f"{k:03d}" / "eval" / "metrics.json").read_text())
        lines.append(f"last eval (round {k}): " + "  ".join(f"{m} {metrics[m]:.3f}" for m in HEADLINE if m in metrics))
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
