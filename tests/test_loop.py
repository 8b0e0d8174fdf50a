"""The loop end to end on the small zoo: the run-directory contract, two drivers on one run directory,
kill -9 and resume, branching from a round checkpoint, and `ray job submit` against a local cluster the
test starts and stops whole (its session), leaving no process behind."""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from engine.processes import session_processes, stop_session

ROOT = Path(__file__).resolve().parent.parent
# The small zoo's labeler is too weak to separate answers, so runs that must build pairs use the oracle;
# the job-submission test runs the vlm labeler (LabelerActor) end to end.
TINY = ["model.zoo=small", "sampling.prompts_per_round=16", "sampling.n=4", "sampling.shard_size=8",
        "eval.n=20", "train.epochs=1", "train.batch_size=4", "feedback.labeler=oracle"]
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "VLLM_LOGGING_LEVEL": "ERROR"}


def command(run_dir, *overrides, extra=(), config="configs/shapes-rlaifv.yaml"):
    return [sys.executable, str(ROOT / "iterate.py"), "--config", str(ROOT / config),
            "--run-dir", str(run_dir), *extra, *TINY, *overrides]


def iterate(run_dir, *overrides, extra=(), check=True, config="configs/shapes-rlaifv.yaml"):
    cmd = command(run_dir, *overrides, extra=extra, config=config)
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def kill_in_first_sample_shard(run_dir, *overrides, config="configs/shapes-rlaifv.yaml"):
    """Runs one round whose driver SIGKILLs itself right after round 1's first sample shard is written (the
    fault point of engine/faults.py: polling for the shard raced a fast machine that finished the stage
    first), then kills every Ray process it started; the sample stage must be left half done."""
    proc = subprocess.Popen(command(run_dir, "run.rounds=1", *overrides, config=config), cwd=ROOT,
                            env={**ENV, "CANDOR_FAULT": "wrote:sample:0@1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.wait(timeout=600) == -signal.SIGKILL
    assert not stop_session(proc.pid, grace=5)  # the Ray processes the driver started stay in its session
    assert (run_dir / "rounds/001/sample/part-00000.parquet").exists(), "the run never reached the sample stage"
    assert not (run_dir / "rounds/001/sample/_SUCCESS").exists()


def pairs_of(run_dir, k=1):
    from engine.store import RunStore

    return [(p["id"], p["chosen"][0]["content"][0]["text"], p["rejected"][0]["content"][0]["text"])
            for p in RunStore(run_dir).read(k, "pairs")]


@pytest.fixture(scope="session")
def contended_run(small_zoo, tmp_path_factory):
    """The reference run, with a second driver started on its run directory while the first one works."""
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    first = subprocess.Popen(command(run_dir, "run.rounds=1"), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while not (run_dir / "rounds/001/prompts/_SUCCESS").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    start = time.time()
    second = iterate(run_dir, "run.rounds=1", check=False)
    refused_in = time.time() - start
    output = first.communicate(timeout=900)[0]
    left_behind = processes_left_in_session(first.pid)
    assert not stop_session(first.pid)
    assert first.returncode == 0, output[-3000:]
    return run_dir, first.pid, second, refused_in, left_behind


def processes_left_in_session(session, grace=30):
    """What of a finished driver's session (it and the local Ray cluster it started) is still alive after
    ``grace`` seconds: Ray's shutdown at the driver's exit stops its processes, some a moment later."""
    deadline = time.time() + grace
    while session_processes(session) and time.time() < deadline:
        time.sleep(0.5)
    left = []
    for process in session_processes(session):
        try:
            left.append(f"{process.pid} {process.name()} {' '.join(process.cmdline())[:120]}")
        except psutil.Error:  # it ended while being listed
            pass
    return left


@pytest.fixture(scope="session")
def finished_run(contended_run):
    return contended_run[0]


def test_a_second_driver_on_a_running_run_directory_is_refused_at_once(contended_run):
    run_dir, first_pid, second, refused_in, _ = contended_run
    assert second.returncode == 2 and refused_in < 60, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"another driver is running on this run directory (pid {first_pid} on host" in second.stderr
    assert "[round" not in second.stdout  # it did no work
    # The first driver finished whole: every stage done once, every metrics line there.
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["round"], r["stage"]) for r in lines]
    assert len(keys) == len(set(keys)) and (1, "eval/shapesworld") in keys and (1, "train") in keys
    assert (run_dir / "rounds/001/policy/adapter_model.safetensors").exists()


def test_a_normal_run_leaves_no_process_behind(contended_run):
    """A run started by iterate.py (not job-submit) starts its own local Ray cluster; once the driver exits,
    nothing of its session is left: no raylet, GCS, worker or renamed ray::DashboardAgent/RuntimeEnvAgent."""
    assert contended_run[4] == []


def test_run_directory_follows_the_contract(finished_run):
    from engine.training import load_pairs

    run = finished_run
    assert (run / "config.yaml").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config_hash"] and manifest["packages"]["trl"] and manifest["seeds"]["run"] == 0
    for k in (0, 1):
        metrics = json.loads((run / f"rounds/{k:03d}/eval/shapesworld/metrics.json").read_text())
        assert {"chair_s", "chair_i", "recall", "pope_f1", "n"} <= set(metrics) and metrics["n"] == 20
        responses = run / f"rounds/{k:03d}/eval/shapesworld/responses.jsonl"
        rows = [json.loads(line) for line in responses.read_text().splitlines()]
        assert len(rows) == 20 and {"id", "gt_objects", "prompt", "response"} <= set(rows[0])
    for stage in ("prompts", "sample", "split", "verify", "pairs", "train", "eval/shapesworld"):
        assert (run / "rounds/001" / stage / "_SUCCESS").exists(), stage
    assert (run / "rounds/001/policy/adapter_config.json").exists()
    assert (run / "rounds/001/policy/adapter_model.safetensors").exists()
    pairs = load_pairs(run / "rounds/001/pairs")
    assert set(pairs.column_names) >= {"images", "prompt", "chosen", "rejected"}
    assert len(pairs) == json.loads((run / "rounds/001/train/_SUCCESS").read_text())["pairs"] > 0
    assert pairs[0]["images"][0].size == (64, 64)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {(r["round"], r["stage"]) for r in lines} >= {(0, "eval/shapesworld"), (1, "train"), (1, "eval/shapesworld")}


def test_sigkill_mid_round_then_same_command_resumes_to_identical_pairs(finished_run, tmp_path):
    run_dir = tmp_path / "killed"
    kill_in_first_sample_shard(run_dir)
    iterate(run_dir, "run.rounds=1")
    from engine.store import RunStore

    store = RunStore(run_dir)
    assert store.done_info(1, "sample")["shards_run"] < store.done_info(1, "sample")["shards"]
    samples = store.read(1, "sample")
    keys = [(r["prompt_id"], r["sample"]) for r in samples]
    assert len(keys) == len(set(keys)) == 16 * 4
    assert pairs_of(run_dir) == pairs_of(finished_run)


def test_new_run_branches_from_round_one_checkpoint(finished_run, tmp_path):
    branch = tmp_path / "branch"
    result = iterate(branch, "run.rounds=2", extra=["--resume-from", "1", "--from-run", str(finished_run)])
    assert "[round 001]" not in result.stdout  # round 1 came from the source run, finished
    assert (branch / "rounds/002/policy/adapter_config.json").exists()
    assert json.loads((branch / "manifest.json").read_text())["branched_from"]["round"] == 1
    assert pairs_of(branch, 1) == pairs_of(finished_run, 1)


def test_bad_config_fails_before_any_work(tmp_path):
    result = iterate(tmp_path / "never", "sampling.n=zero", check=False)
    assert result.returncode == 2 and "sampling.n" in result.stderr
    assert not (tmp_path / "never").exists()


def test_ray_job_submit_against_a_local_cluster(small_zoo, tmp_path):
    ray = str(Path(sys.executable).parent / "ray")
    port, dash = "6391", "8271"
    # Ray 2.60 turns token authentication on for local clusters; the submitting client needs the token too.
    env = {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    # Its own temp dir (short: Ray's socket paths are length-limited) names every process of this cluster, so
    # the test stops only them: `ray stop` would kill every Ray cluster on the machine, a user's too.
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")
    # A session of its own: every process of the cluster (renamed agents and workers in their own process
    # groups included) stays in it, so stopping the session stops the whole cluster and nothing else.
    starter = subprocess.Popen([ray, "start", "--head", "--port", port, "--dashboard-port", dash, "--num-cpus", "4",
                                "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
                                "--disable-usage-stats", "--temp-dir", temp_dir], env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    session = starter.pid
    try:
        assert starter.wait(timeout=180) == 0, starter.stdout.read()[-3000:]
        run_dir = tmp_path / "submitted"
        entry = [sys.executable, str(ROOT / "iterate.py"), "--config", str(ROOT / "configs/shapes-rlaifv.yaml"),
                 "--run-dir", str(run_dir), *TINY, "run.rounds=1", "feedback.labeler=vlm"]
        # The dashboard's job agent comes up after `ray start` returns: seconds on a quiet machine, over a minute
        # with other Ray clusters on the 2 cores (a CI run beside a loop run gave up after 30 tries).
        deadline = time.time() + 300
        while True:
            result = subprocess.run([ray, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--", *entry],
                                    env=env, capture_output=True, text=True, timeout=900)
            if "No available agent" not in result.stdout + result.stderr or time.time() > deadline:
                break
            time.sleep(2)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "succeeded" in result.stdout
        assert (run_dir / "rounds/001/verify/_SUCCESS").exists()
        assert (run_dir / "rounds/001/eval/shapesworld/metrics.json").exists()
        agents = [p for p in session_processes(session) if "Agent" in p.name() + " ".join(p.cmdline())]
        assert agents  # Ray's renamed agents are found by their session
    finally:
        leftovers = stop_session(session)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not leftovers and not session_processes(session), [p.cmdline() for p in leftovers]
