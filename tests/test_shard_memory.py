"""A stage shard is decoded in bounded memory: the store writes row groups of about GROUP_BYTES, the layout
decodes one batch at a time without reading whole row groups ahead, and a shard past the byte cap is refused
naming the file."""
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.store import RunStore
from evaluation.layout import GROUP_BYTES, shard_rows

MB = 1 << 20


@pytest.fixture
def big_shard(tmp_path, monkeypatch):
    """A finished stage of one 40 MiB shard: 40 rows of 1 MiB incompressible bytes (images, say), written in
    row groups of 4 MiB so the bound shows against the shard's size."""
    monkeypatch.setattr("engine.store.GROUP_BYTES", 4 * MB)
    store = RunStore(tmp_path / "run")
    rows = [{"id": f"p{i}", "image_bytes": os.urandom(MB)} for i in range(40)]
    store.write_shard(1, "prompts", 0, rows)
    store.mark_done(1, "prompts", {})
    return store, rows


def test_the_store_writes_row_groups_near_the_group_size(big_shard):
    store, _ = big_shard
    meta = pq.ParquetFile(store.shard(1, "prompts", 0)).metadata
    assert meta.num_row_groups == 14  # 40 MiB (and the ids) in groups of 3 rows
    assert max(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) <= 4 * MB + 1024
    assert GROUP_BYTES == 16 * MB  # the size runs use


def test_a_shard_is_read_whole_but_decoded_a_group_at_a_time(big_shard, monkeypatch):
    store, rows = big_shard
    monkeypatch.setattr("evaluation.layout.GROUP_BYTES", 4 * MB)
    base, peak = pa.total_allocated_bytes(), 0
    seen = []
    for row in shard_rows(store.shard(1, "prompts", 0)):
        peak = max(peak, pa.total_allocated_bytes() - base)
        seen.append(row["id"])
    assert seen == [r["id"] for r in rows]
    # Arrow held a few row groups' worth (4 MiB each: the group read, its batch) at once, not the 40 MiB
    # shard and its read-ahead (pq.read_table of such a file peaks near 120 MiB).
    assert peak < 16 * MB, peak / MB
    assert store.read(1, "prompts") == rows
    assert store.read_stage(1, "prompts", columns=["id", "no_such_column"]) == [{"id": r["id"]} for r in rows]


def test_a_shard_over_the_byte_cap_is_refused_naming_the_file(big_shard):
    store, _ = big_shard
    path = store.shard(1, "prompts", 0)
    with pytest.raises(ValueError, match=rf"{path}: shard declares \d+ bytes decoded, over the 10485760-byte cap"):
        next(shard_rows(path, max_bytes=10 * MB))
    assert list(shard_rows(path, max_bytes=64 * MB))  # under the cap it reads


def test_a_damaged_shard_is_an_error_naming_the_file(big_shard):
    store, _ = big_shard
    path = store.shard(1, "prompts", 0)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{path}: unreadable shard"):
        store.read(1, "prompts")
