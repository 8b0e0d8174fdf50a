from engine.store import RunStore


def test_shards_markers_and_metrics_are_atomic_and_idempotent(tmp_path):
    store = RunStore(tmp_path)
    assert not store.is_done(1, "sample") and not store.has_shard(1, "sample", 0)
    store.write_shard(1, "sample", 1, [{"a": 2}])
    store.write_shard(1, "sample", 0, [{"a": 1}])
    assert store.read(1, "sample") == [{"a": 1}, {"a": 2}]
    assert not list(store.stage_dir(1, "sample").glob(".*tmp*"))
    store.mark_done(1, "sample", {"rows": 2})
    assert store.is_done(1, "sample") and store.done_info(1, "sample") == {"rows": 2}
    store.append_metrics({"round": 1, "stage": "eval", "x": 1})
    store.append_metrics({"round": 1, "stage": "eval", "x": 2})
    assert store.metrics() == [{"round": 1, "stage": "eval", "x": 2}]
    assert store.stage_dir(1, "sample") == tmp_path / "rounds" / "001" / "sample"
