import pytest

from engine.config import ConfigError, config_from_dict, load_config
from engine.run import changed_keys, prepare_run


def test_default_config_file_loads_and_overrides_apply():
    cfg = load_config("configs/shapes-rlaifv.yaml", ["sampling.n=4", "train.lr=1e-4", "feedback.labeler=oracle",
                                                      "model.enforce_eager=false", "resources.num_gpus_per_actor=1"])
    assert (cfg.sampling.n, cfg.train.lr, cfg.feedback.labeler) == (4, 1e-4, "oracle")
    assert cfg.model.enforce_eager is False and cfg.resources.num_gpus_per_actor == 1.0
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("override, message", [
    ("run.rounds=0", "run.rounds: must be >= 1"),
    ("runn.rounds=2", "runn.rounds: unknown key"),
    ("run.roundz=2", "run.roundz: unknown key"),
    ("sampling.n=many", "sampling.n: cannot parse"),
    ("sampling.n=1", "sampling.n: RLAIF-V needs >= 2"),
    ("train.reference=base", "train.reference: must be one of"),
    ("model.policy=/no/such/model", "model.policy: model path"),
    ("feedback.labeler=gpt", "feedback.labeler: expected"),
    ("train.beta=-1", "train.beta: must be > 0"),
    ("noequals", "key=value"),
])
def test_bad_overrides_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config("configs/shapes-rlaifv.yaml", [override])


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    typed = tmp_path / "typed.yaml"
    typed.write_text("run:\n  seed: true\n")
    with pytest.raises(ConfigError, match="run.seed: expected int"):
        load_config(typed)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("run: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(unsafe)


def test_resume_with_changed_stage_config_is_refused_unless_forced(tmp_path):
    cfg = load_config("configs/shapes-rlaifv.yaml")
    prepare_run(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "config.yaml").exists() and (tmp_path / "run" / "manifest.json").exists()
    more_rounds = load_config("configs/shapes-rlaifv.yaml", ["run.rounds=5", "eval.n=10"])
    prepare_run(more_rounds, tmp_path / "run")  # extending a run is not a change of its data
    changed = load_config("configs/shapes-rlaifv.yaml", ["sampling.temperature=1.0"])
    assert changed_keys(cfg, changed) == ["sampling.temperature"]
    with pytest.raises(ConfigError, match="sampling.temperature"):
        prepare_run(changed, tmp_path / "run")
    prepare_run(changed, tmp_path / "run", force=True)
