"""Security defaults (issue 5): a local Ray cluster listens on loopback only, a finished run holds no pickles,
remote code stays off, configs load with a safe YAML loader, and a bad or changed config is refused before
any work with one message naming the key."""
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.config import Config, ConfigError, load_config
from engine.run import prepare_run

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs/shapes-rlaifv.yaml"

# Starts Ray exactly as iterate.py does (engine.actors.connect_ray, default config) and prints every listening
# socket of the driver and of the processes it started.
LIST_RAY_SOCKETS = """
import json, psutil, ray
from engine.actors import connect_ray
from engine.config import Config
connect_ray(Config())
ray.get(ray.remote(lambda: 1).remote())  # a worker process too
me = psutil.Process()
sockets = []
for p in [me, *me.children(recursive=True)]:
    try:
        sockets += [(p.name(), c.laddr.ip, c.laddr.port) for c in p.net_connections("inet") if c.status == "LISTEN"]
    except psutil.Error:
        pass
ray.shutdown()
print("SOCKETS", json.dumps(sockets))
"""


def loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def ray_sockets(env: dict) -> list:
    result = subprocess.run([sys.executable, "-c", LIST_RAY_SOCKETS], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    line = next((l for l in result.stdout.splitlines() if l.startswith("SOCKETS ")), None)
    assert line, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(line.removeprefix("SOCKETS "))


def test_loopback_check_knows_wildcards_and_mapped_addresses():
    assert loopback("127.0.0.1") and loopback("::1") and loopback("::ffff:127.0.0.1")
    assert not any(loopback(ip) for ip in ("0.0.0.0", "::", "192.0.2.2", "fd00::2"))


def test_local_ray_started_like_iterate_listens_on_loopback_only():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    sockets = ray_sockets(env)
    assert sockets and [s for s in sockets if not loopback(s[1])] == []


def test_local_ray_with_the_documented_environment_listens_on_loopback_only():
    """With RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 set before Python starts, every socket is loopback."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    sockets = ray_sockets(env)
    assert len(sockets) >= 3 and [s for s in sockets if not loopback(s[1])] == []


# ---- what a finished run holds ----------------------------------------------------------------------------
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy"}


@pytest.fixture(scope="module")
def finished_run(small_zoo, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("secure") / "run"
    cmd = [sys.executable, str(ROOT / "iterate.py"), "--config", str(CONFIG), "--run-dir", str(run_dir),
           "model.zoo=small", "sampling.prompts_per_round=8", "sampling.n=4", "sampling.shard_size=8", "eval.n=8",
           "train.epochs=1", "train.batch_size=4", "feedback.labeler=oracle", "run.rounds=1", "train.save_steps=1"]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "VLLM_LOGGING_LEVEL": "ERROR"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir


def test_finished_run_holds_safetensors_and_no_pickles(finished_run):
    files = [p for p in finished_run.rglob("*") if p.is_file()]
    assert [p for p in files if p.suffix in PICKLE_SUFFIXES] == []
    assert (finished_run / "rounds/001/policy/adapter_model.safetensors").exists()
    for path in files:  # a pickle under another name: protocol 2+ starts with 0x80, torch zips hold data.pkl
        head = path.read_bytes()[:4]
        assert head[:1] != b"\x80" and not (head == b"PK\x03\x04" and b"data.pkl" in path.read_bytes()), path


def test_remote_code_is_off_unless_the_config_turns_it_on():
    from engine.actors import engine_kwargs

    assert Config().model.trust_remote_code is False
    assert engine_kwargs(load_config(CONFIG), lora=True)["trust_remote_code"] is False
    assert engine_kwargs(load_config(CONFIG, ["model.trust_remote_code=true"]), lora=True)["trust_remote_code"]
    sources = [p for d in ("engine", "feedback", "evaluation") for p in (ROOT / d).glob("*.py")] + [ROOT / "iterate.py"]
    assert [p.name for p in sources if "trust_remote_code=True" in p.read_text()] == []


# ---- configs: safe YAML, one message naming the key -------------------------------------------------------
def test_yaml_with_a_python_tag_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"run: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml: not valid YAML"):
        load_config(bad)
    assert not marker.exists()


def test_a_run_directory_config_with_a_python_tag_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(f"run: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: not valid YAML"):
        prepare_run(load_config(CONFIG), run_dir)
    assert not marker.exists()


BAD_CONFIGS = [
    (["sampling.nn=4"], "sampling.nn: unknown key"),
    (["samplng.n=4"], "samplng.n: unknown key"),
    (["sampling.n=four"], "sampling.n: cannot parse 'four' as int"),
    (["train.lr=fast"], "train.lr: cannot parse"),
    (["train.length_balance=maybe"], "train.length_balance: unknown key"),
    (["feedback.rlaifv.length_balance=maybe"], "feedback.rlaifv.length_balance: cannot parse"),
    (["sampling.n=0"], "sampling.n: must be >= 1"),
    (["run.rounds=-1"], "run.rounds: must be >= 1"),
    (["sampling.temperature=-0.5"], "sampling.temperature: must be in [0, 5]"),
    (["sampling.temperature=nan"], "sampling.temperature: must be in [0, 5]"),
    (["train.lr=inf"], "train.lr: must be in (0, 1)"),
    (["train.beta=0"], "train.beta: must be > 0"),
    (["data.prior=1.5"], "data.prior: must be in [0, 1]"),
    (["train.reference=latest"], "train.reference: must be one of"),
    (["model.policy=/no/such/model"], "model.policy: model path '/no/such/model' does not exist"),
    (["sampling.n=1"], "sampling.n: RLAIF-V needs >= 2 samples per prompt"),
    (["feedback.splitter=llm", "feedback.splitter_model="], "feedback.splitter_model: the llm splitter needs a model path"),
    (["feedback.labeler=gpt"], "feedback.labeler: expected vlm | self | oracle | python:module:Class"),
    (["sampling.n"], "sampling.n: overrides are written key=value"),
]


@pytest.mark.parametrize("overrides,message", BAD_CONFIGS, ids=[" ".join(o) for o, _ in BAD_CONFIGS])
def test_bad_config_is_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIG, overrides)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("text,message", [("sampling: [1, 2]\n", "sampling: expected a mapping"),
                                          ("- just a list\n", "expected a mapping of sections"),
                                          ("sampling: {n: 4.5}\n", "sampling.n: expected int, got float"),
                                          ("sampling: {n: true}\n", "sampling.n: expected int, got bool"),
                                          ("sampling: {n: 4\n", "not valid YAML")])
def test_bad_config_file_is_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path)


def test_answers_longer_than_the_context_are_refused_up_front():
    with pytest.raises(ConfigError, match="sampling.max_tokens"):
        load_config(CONFIG, ["sampling.max_tokens=4096", "model.max_model_len=512"])


def test_impossible_engine_memory_settings_are_refused():
    with pytest.raises(ConfigError, match="model.gpu_memory_utilization"):
        load_config(CONFIG, ["model.gpu_memory_utilization=3"])
    with pytest.raises(ConfigError, match="model.mm_processor_cache_gb"):
        load_config(CONFIG, ["model.mm_processor_cache_gb=-1"])


def test_bad_config_on_the_command_line_fails_before_any_work(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "iterate.py"), "--config", str(CONFIG), "--run-dir",
                             str(tmp_path / "never"), "sampling.temperature=9"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == "candor: error: sampling.temperature: must be in [0, 5]"
    assert not (tmp_path / "never").exists()


def test_resume_with_a_changed_config_is_refused_unless_forced(tmp_path):
    run_dir = tmp_path / "run"
    prepare_run(load_config(CONFIG, ["sampling.n=4"]), run_dir)
    with pytest.raises(ConfigError, match=r"resuming with changed sampling\.n, train\.beta would mix data"):
        prepare_run(load_config(CONFIG, ["sampling.n=6", "train.beta=0.2"]), run_dir)
    prepare_run(load_config(CONFIG, ["sampling.n=4", "run.rounds=9", "eval.n=10"]), run_dir)  # free to change
    prepare_run(load_config(CONFIG, ["sampling.n=6"]), run_dir, force=True)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["sampling"]["n"] == 6
