"""The run directory's layout: every path of a run, and how a finished stage is read.

This module is the only place that spells ``rounds/NNN/...``; the engine writes through it (engine/store.py)
and the status, report, export, bench and scripts read through it. It sits at the bottom of the imports
(standard library and pyarrow only), so every layer may use it. The contract::

    RUN/config.yaml  RUN/manifest.json  RUN/metrics.jsonl  RUN/report.md  RUN/driver.lock
    RUN/rounds/NNN/<stage>/part-NNNNN.parquet + _SUCCESS      a table stage (prompts, sample, ..., pairs)
    RUN/rounds/NNN/train/_SUCCESS (+ checkpoints/)            the train stage; its artifact is policy/
    RUN/rounds/NNN/policy/                                    the round's checkpoint (LoRA adapter)
    RUN/rounds/NNN/eval/<suite>/metrics.json + responses.jsonl + _SUCCESS   one evaluation suite

A stage is done when its ``_SUCCESS`` exists; reading a stage that is not done is an error (a half-written
stage is never mistaken for an empty one). Runs made before evaluation suites kept the ShapesWorld
evaluation directly in ``eval/``; such a folder is still read (and resumed) as the ``shapesworld`` suite.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

MARKER = "_SUCCESS"
EVAL = "eval"
# A shard is decoded a row group at a time (the writer keeps groups near GROUP_BYTES: engine/store.py), so
# reading one holds a group, not the file; a shard that declares or decodes past MAX_SHARD_BYTES is refused
# before it fills the memory (a damaged footer, a file put there by hand).
MAX_SHARD_BYTES = 4 << 30
GROUP_BYTES = 16 << 20
LEGACY_EVAL_SUITE = "shapesworld"  # the suite whose files older runs kept in eval/ itself


class StageNotDone(ValueError):
    """A stage was read before its completion marker was written."""


def eval_stage(suite: str) -> str:
    """The stage name of an evaluation suite (its folder under the round)."""
    return f"{EVAL}/{suite}"


def shard_rows(path: Path, columns: list[str] | None = None, max_bytes: int = MAX_SHARD_BYTES):
    """The rows of one shard file, decoded a batch at a time (only ``columns`` when given, those it has); a
    shard over ``max_bytes`` decoded, or unreadable, is an error naming the file."""
    redo = "delete it and run again to redo it"
    try:
        shard = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)  # no read-ahead of whole row groups
        meta = shard.metadata
        declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if declared > max_bytes:
            raise ValueError(f"{path}: shard declares {declared} bytes decoded, over the {max_bytes}-byte cap; {redo}")
        wanted = [c for c in columns if c in shard.schema_arrow.names] if columns else None
        decoded = 0
        rows_per_batch = max(1, GROUP_BYTES * meta.num_rows // max(1, declared))  # batches of about a group
        for batch in shard.iter_batches(batch_size=rows_per_batch, columns=wanted):
            decoded += batch.nbytes
            if decoded > max_bytes:
                raise ValueError(f"{path}: shard decodes past the {max_bytes}-byte cap (its footer said {declared}); "
                                 f"{redo}")
            rows, batch = batch.to_pylist(), None  # the batch is freed before the next one is decoded
            yield from rows
    except (pa.ArrowInvalid, OSError) as e:  # damaged after it was written whole: say which file
        raise ValueError(f"{path}: unreadable shard ({e}); {redo}") from e


class RunLayout:
    """The paths of one run directory and read-only access to its finished stages."""

    def __init__(self, root: str | Path):
        # Absolute, so a layout path (itself under root) stays one when joined to root again, and workers with
        # another working directory see the same folder: `runs/NAME`, the default, is relative.
        self.root = Path(root).absolute()

    # ---- run-level files ------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def metrics_log(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def lock(self) -> Path:
        return self.root / "driver.lock"

    @property
    def rounds_dir(self) -> Path:
        return self.root / "rounds"

    def is_run(self) -> bool:
        return self.rounds_dir.is_dir()

    def round_numbers(self) -> list[int]:
        """The rounds that have a folder, in order."""
        if not self.rounds_dir.is_dir():
            return []
        return sorted(int(p.name) for p in self.rounds_dir.glob("[0-9][0-9][0-9]") if p.is_dir())

    # ---- a round's stages -----------------------------------------------------------------------------
    def round_dir(self, k: int) -> Path:
        return self.rounds_dir / f"{k:03d}"

    def stage_dir(self, k: int, stage: str) -> Path:
        if stage == eval_stage(LEGACY_EVAL_SUITE) and (self.round_dir(k) / EVAL / MARKER).exists():
            return self.round_dir(k) / EVAL
        return self.round_dir(k) / stage

    def marker(self, k: int, stage: str) -> Path:
        return self.stage_dir(k, stage) / MARKER

    def shard(self, k: int, stage: str, index: int) -> Path:
        return self.stage_dir(k, stage) / f"part-{index:05d}.parquet"

    def shards(self, k: int, stage: str) -> list[Path]:
        return sorted(self.stage_dir(k, stage).glob("part-*.parquet"))

    def policy(self, k: int) -> Path:
        return self.round_dir(k) / "policy"

    def checkpoints(self, k: int) -> Path:
        return self.stage_dir(k, "train") / "checkpoints"

    def eval_metrics(self, k: int, suite: str) -> Path:
        return self.stage_dir(k, eval_stage(suite)) / "metrics.json"

    def eval_responses(self, k: int, suite: str) -> Path:
        return self.stage_dir(k, eval_stage(suite)) / "responses.jsonl"

    def stages(self, k: int) -> list[str]:
        """Every stage folder of round k (eval suites as ``eval/<suite>``), in no particular order."""
        folder = self.round_dir(k)
        if not folder.is_dir():
            return []
        names = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "policy"]
        if EVAL in names:
            names.remove(EVAL)
            suites = [eval_stage(p.name) for p in (folder / EVAL).iterdir() if p.is_dir()]
            names += suites or ([eval_stage(LEGACY_EVAL_SUITE)] if (folder / EVAL / MARKER).exists() else [])
        return names

    # ---- reading ----------------------------------------------------------------------------------------
    def is_done(self, k: int, stage: str) -> bool:
        return self.marker(k, stage).exists()

    def done_info(self, k: int, stage: str) -> dict:
        """What the stage's marker recorded (its figures, and the files it vouches for)."""
        if not self.is_done(k, stage):
            raise StageNotDone(f"{self.stage_dir(k, stage)}: stage {stage!r} of round {k} is not done")
        return json.loads(self.marker(k, stage).read_text() or "{}")

    def read_stage(self, k: int, stage: str, columns: list[str] | None = None) -> list[dict]:
        """All rows of a finished stage, in shard order (only ``columns`` when given, those it has)."""
        if not self.is_done(k, stage):
            raise StageNotDone(f"{self.stage_dir(k, stage)}: stage {stage!r} of round {k} is not done; "
                               "its table cannot be read")
        return [row for path in self.shards(k, stage) for row in shard_rows(path, columns)]

    def read_eval_metrics(self, k: int, suite: str) -> dict | None:
        """The figures of a finished evaluation suite of round k (no responses read); None when unfinished."""
        if not self.is_done(k, eval_stage(suite)):
            return None
        return json.loads(self.eval_metrics(k, suite).read_text())

    def read_eval(self, k: int, suite: str) -> tuple[dict, list[dict]] | None:
        """(metrics, responses) of a finished evaluation suite of round k; None when it has not finished."""
        metrics = self.read_eval_metrics(k, suite)
        if metrics is None:
            return None
        responses = self.eval_responses(k, suite)
        rows = [json.loads(line) for line in responses.read_text().splitlines()] if responses.exists() else []
        return metrics, rows

    def saved_config(self) -> dict:
        """RUN/config.yaml, the resolved config the run saved; {} before it saved one."""
        path = self.config
        return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}

    def metrics(self) -> list[dict]:
        """RUN/metrics.jsonl: one line per round and stage with its figures."""
        path = self.metrics_log
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
