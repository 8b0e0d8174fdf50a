"""The run directory (DESIGN.md §2): stage tables as parquet shards, atomic completion markers, metrics.

Every file is written to a temporary name, fsynced and renamed, so a reader (or a resumed run) sees a
shard or a marker whole or not at all. A stage is done when ``_SUCCESS`` exists; a half-done stage is
resumed shard by shard, since each ``part-NNNNN.parquet`` is itself complete once it has its name. A write
that fails (a full disk, say) leaves neither the file nor its temporary behind and says which file and why;
a temporary left by a killed writer is removed by the next write of that file. The fault-injection points
(engine/faults.py) sit around every write.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine import faults


def atomic_write(path: Path, data: bytes) -> None:
    """Writes ``path`` whole or not at all; an OSError names the file and leaves nothing behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # from a writer killed mid-write
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"cannot write {path} ({e.strerror or e}); nothing was written", str(path)) from e
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must survive a crash
    finally:
        os.close(directory)


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def stage_dir(self, round_index: int, stage: str) -> Path:
        return self.root / "rounds" / f"{round_index:03d}" / stage

    def is_done(self, round_index: int, stage: str) -> bool:
        return (self.stage_dir(round_index, stage) / "_SUCCESS").exists()

    def done_info(self, round_index: int, stage: str) -> dict:
        return json.loads((self.stage_dir(round_index, stage) / "_SUCCESS").read_text())

    def mark_done(self, round_index: int, stage: str, info: dict) -> None:
        """Finishes a stage: its line in metrics.jsonl first, then ``_SUCCESS``. In this order a crash between
        the two leaves an unfinished stage (redone, its line rewritten), never a finished one without a line."""
        self.append_metrics({"round": round_index, "stage": stage, **info})
        faults.point(f"done:{stage}", round_index)
        atomic_write(self.stage_dir(round_index, stage) / "_SUCCESS", json.dumps(info, indent=1).encode())

    def shard_path(self, round_index: int, stage: str, shard: int) -> Path:
        return self.stage_dir(round_index, stage) / f"part-{shard:05d}.parquet"

    def has_shard(self, round_index: int, stage: str, shard: int) -> bool:
        return self.shard_path(round_index, stage, shard).exists()

    def write_shard(self, round_index: int, stage: str, shard: int, rows: list[dict],
                    schema: pa.Schema | None = None) -> None:
        table = pa.Table.from_pylist(rows, schema=schema)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        faults.point(f"write:{stage}:{shard}", round_index)
        atomic_write(self.shard_path(round_index, stage, shard), sink.getvalue().to_pybytes())
        faults.point(f"wrote:{stage}:{shard}", round_index)

    def read(self, round_index: int, stage: str) -> list[dict]:
        """All rows of a stage, in shard order."""
        rows = []
        for path in sorted(self.stage_dir(round_index, stage).glob("part-*.parquet")):
            try:
                rows.extend(pq.read_table(path).to_pylist())
            except (pa.ArrowInvalid, OSError) as e:  # damaged after it was written whole: say which file
                raise ValueError(f"{path}: unreadable shard ({e}); delete it and run again to redo it") from e
        return rows

    def write_json(self, relative: str, data) -> None:
        faults.point(f"write:{relative}")
        atomic_write(self.root / relative, json.dumps(data, indent=1).encode())

    def read_json(self, relative: str):
        return json.loads((self.root / relative).read_text())

    def write_jsonl(self, relative: str, rows: list[dict]) -> None:
        faults.point(f"write:{relative}")
        atomic_write(self.root / relative, "".join(json.dumps(r) + "\n" for r in rows).encode())

    def append_metrics(self, row: dict) -> None:
        """One line per round and stage in RUN/metrics.jsonl; rewritten atomically, idempotent per key."""
        path = self.root / "metrics.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        rows = [r for r in rows if (r["round"], r["stage"]) != (row["round"], row["stage"])] + [row]
        self.write_jsonl("metrics.jsonl", rows)

    def metrics(self) -> list[dict]:
        path = self.root / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
