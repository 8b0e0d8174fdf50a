"""The trainers' rendezvous (resources.trainer.actors > 1): on a one-node Ray the group meets through a fresh
private file and opens no socket on every interface (torch's TCPStore listens on `::`), trains as one
worker with the doubled batch, and leaves nothing behind; across nodes rank 0 names a TCP store."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_security import loopback
from test_training import TRAIN, adapter_weights, write_pairs

from engine.rendezvous import rendezvous

ROOT = Path(__file__).resolve().parent.parent

# Two trainer actors on a local Ray started as iterate.py starts it, one data-parallel round as the train stage
# runs it; meanwhile every listening socket of the two trainer processes is recorded (psutil, every 50 ms).
TWO_TRAINERS = """
import json, sys, time, psutil, ray
from engine.actors import TrainerActor, actor_options, connect_ray
from engine.config import Config
cfg = Config()
connect_ray(cfg)
trainers = [TrainerActor.options(**actor_options(cfg, "trainer")).remote() for _ in range(2)]
master = ray.get(trainers[0].rendezvous.remote())
call = json.loads(sys.argv[1])
processes = [psutil.Process(pid) for pid in ray.get([t.pid.remote() for t in trainers])]
pending = [t.train.remote(**call, rank=rank, world_size=2, master=master) for rank, t in enumerate(trainers)]
listening = set()
while ray.wait(pending, timeout=0.05, num_returns=2)[1]:
    for p in processes:
        listening |= {(c.laddr.ip, c.laddr.port) for c in p.net_connections("inet") if c.status == "LISTEN"}
figures = ray.get(pending)
ray.shutdown()
print("RESULT", json.dumps({"master": master, "listening": sorted(listening), "figures": figures}))
"""


def test_a_one_node_rendezvous_is_a_new_private_file_each_time_and_across_nodes_a_tcp_store():
    first, second = rendezvous(None), rendezvous(None)
    assert first.startswith("file:///") and second.startswith("file:///") and first != second
    for master in (first, second):
        store = Path(master.removeprefix("file://"))
        assert not store.exists()  # the ranks create it: nothing stale to trip on
        assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700  # no other user can join the group
        store.parent.rmdir()
    host, port = rendezvous("10.1.2.3").rsplit(":", 1)
    assert host == "10.1.2.3" and 0 < int(port) < 65536


def test_two_trainers_on_one_node_meet_through_a_file_open_no_wildcard_socket_and_train_as_one(small_zoo, tmp_path):
    """Data parallel exactly as tests/test_training.py checks it over TCP (2 workers x batch 2 = 1 worker x
    batch 4: same losses, same adapter), now through the file rendezvous the train stage uses on one node."""
    from engine.training import train_dpo

    write_pairs(tmp_path / "pairs", "pairs", prompts=8)
    call = dict(base_model=str(small_zoo["policy"]), pairs_dir=str(tmp_path / "pairs"), previous_adapter=None,
                epochs=2, loss="sigmoid", **TRAIN)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "GLOO_SOCKET_IFNAME")}
    result = subprocess.run([sys.executable, "-c", TWO_TRAINERS, json.dumps(
        {**call, "out_dir": str(tmp_path / "two"), "batch_size": 2})], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=900)
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, result.stdout[-3000:] + result.stderr[-3000:]
    seen = json.loads(line.removeprefix("RESULT "))

    assert seen["master"].startswith("file:///")
    assert not Path(seen["master"].removeprefix("file://")).parent.exists()  # the last rank out removed it
    assert seen["listening"], "no listening socket seen at all (Ray's and gloo's should be): the sampling is broken"
    assert [ip for ip, _ in seen["listening"] if not loopback(ip)] == []

    one = train_dpo(out_dir=tmp_path / "one", batch_size=4, **call)
    two = json.loads((tmp_path / "two/candor_train.json").read_text())
    assert two["world_size"] == 2 and seen["figures"][0]["steps"] == two["steps"] == one["steps"] == 4
    losses = [[r["loss"] for r in json.loads((tmp_path / name / "candor_train.json").read_text())["log_history"]
               if "loss" in r] for name in ("two", "one")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-5)
    a, b = adapter_weights(tmp_path / "two"), adapter_weights(tmp_path / "one")
    assert a.keys() == b.keys() and all(a[k].allclose(b[k], rtol=1e-3, atol=1e-4) for k in a)
