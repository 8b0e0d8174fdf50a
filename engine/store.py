"""Writing the run directory (its layout: evaluation/layout.py): parquet shards, atomic completion markers
that vouch for their files, metrics.

Every file is written to a temporary name, fsynced and renamed, so a reader (or a resumed run) sees a
shard or a marker whole or not at all. A stage is done when ``_SUCCESS`` exists; a half-done stage is
resumed shard by shard, since each ``part-NNNNN.parquet`` is itself complete once it has its name. A
marker records the size and SHA-256 of every file it vouches for (shards, the policy's adapter, the
evaluation's files); ``verify`` checks them on resume, so a damaged or missing artifact redoes its stage.
A write that fails (a full disk, say) leaves neither the file nor its temporary behind and says which file
and why; a temporary left by a killed writer is removed by the next write of that file. The
fault-injection points (engine/faults.py) sit around every write.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine import faults
from evaluation.layout import GROUP_BYTES, RunLayout


def fsync_dir(path: Path) -> None:
    """Makes a rename (or a new file) in ``path`` survive a crash."""
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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
    fsync_dir(path.parent)


def fsync_tree(folder: Path) -> None:
    """fsyncs every file under ``folder`` and the folders themselves (before the folder is renamed in)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        fsync_dir(path)
    fsync_dir(folder)


def file_digest(path: Path) -> dict:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return {"size": path.stat().st_size, "sha256": sha.hexdigest()}


class RunStore(RunLayout):
    """Reads and writes one run directory."""

    def mark_done(self, round_index: int, stage: str, info: dict, files: list[Path] = ()) -> None:
        """Finishes a stage: its line in metrics.jsonl first, then ``_SUCCESS`` listing ``files`` (relative to
        the run) with size and hash. In this order a crash between the two leaves an unfinished stage (redone,
        its line rewritten), never a finished one without a line."""
        self.append_metrics({"round": round_index, "stage": stage, **info})
        faults.point(f"done:{stage}", round_index)
        vouched = {str(p.relative_to(self.root)): file_digest(p) for p in files}
        marker = {**info, "files": vouched} if vouched else info
        atomic_write(self.marker(round_index, stage), json.dumps(marker, indent=1).encode())

    def verify(self, round_index: int, stage: str) -> dict[str, str]:
        """What is wrong with the files a finished stage's marker vouches for, by path relative to the run
        (empty: all present and whole)."""
        problems = {}
        for relative, expected in self.done_info(round_index, stage).get("files", {}).items():
            path = self.root / relative
            if not path.is_file():
                problems[relative] = "is missing"
            elif file_digest(path) != expected:
                problems[relative] = "differs from what the marker recorded (damaged or replaced)"
        return problems

    def undo(self, round_index: int, stage: str) -> None:
        """Removes a stage's marker so it runs again (its shards stay; each is whole once named)."""
        self.marker(round_index, stage).unlink(missing_ok=True)

    def has_shard(self, round_index: int, stage: str, shard: int) -> bool:
        return self.shard(round_index, stage, shard).exists()

    def write_shard(self, round_index: int, stage: str, shard: int, rows: list[dict],
                    schema: pa.Schema | None = None) -> None:
        table = pa.Table.from_pylist(rows, schema=schema)
        sink = pa.BufferOutputStream()
        # Row groups of about GROUP_BYTES: a reader decodes one group at a time (evaluation/layout.py).
        pq.write_table(table, sink, row_group_size=max(1, GROUP_BYTES * table.num_rows // max(1, table.nbytes)))
        faults.point(f"write:{stage}:{shard}", round_index)
        atomic_write(self.shard(round_index, stage, shard), sink.getvalue().to_pybytes())
        faults.point(f"wrote:{stage}:{shard}", round_index)

    def read(self, round_index: int, stage: str) -> list[dict]:
        """All rows of a finished stage, in shard order (an unfinished stage is an error)."""
        return self.read_stage(round_index, stage)

    def write_json(self, path: str | Path, data) -> None:
        """``path``: a layout path, or one relative to the run directory."""
        self._write(self.root / path, json.dumps(data, indent=1).encode())

    def read_json(self, path: str | Path):
        return json.loads((self.root / path).read_text())

    def write_jsonl(self, path: str | Path, rows: list[dict]) -> None:
        self._write(self.root / path, "".join(json.dumps(r) + "\n" for r in rows).encode())

    def _write(self, path: Path, data: bytes) -> None:
        faults.point(f"write:{path.relative_to(self.root)}")
        atomic_write(path, data)

    def append_metrics(self, row: dict) -> None:
        """One line per round and stage in RUN/metrics.jsonl; rewritten atomically, idempotent per key."""
        rows = [r for r in self.metrics() if (r["round"], r["stage"]) != (row["round"], row["stage"])] + [row]
        self.write_jsonl(self.metrics_log, rows)
