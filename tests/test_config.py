import re

import pytest
import yaml

from engine.config import ConfigError, binding_keys, config_from_dict, load_config
from engine.run import changed_keys, prepare_run


def test_default_config_file_loads_and_overrides_apply():
    cfg = load_config("configs/shapes-rlaifv.yaml", ["sampling.n=4", "train.lr=1e-4", "feedback.labeler=oracle",
                                                      "model.enforce_eager=false", "resources.num_gpus_per_actor=1"])
    assert (cfg.sampling.n, cfg.train.lr, cfg.feedback.labeler) == (4, 1e-4, "oracle")
    assert cfg.model.enforce_eager is False and cfg.resources.trainer.gpus == 1.0
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
    ("feedback.source=dpo", "feedback.source: expected rlaifv | seva | bpo | amp | python:module:Class"),
    ("feedback.source=python:no_such_module:Source", "feedback.source: cannot load"),
    ("train.loss=focal", "train.loss: must be one of"),
    ("train.loss=mdpo", "train.loss: 'mdpo' does not suit the pairs of feedback.source 'rlaifv'"),
    ("train.save_steps=-1", "train.save_steps: must be >= 0"),
    ("feedback.seva.noise_step=1000", "feedback.seva.noise_step: must be in [0, 1000)"),
    ("feedback.seva.augment=blur", "feedback.seva.augment: must be one of"),
    ("feedback.seva.k=0", "feedback.seva.k: must be >= 1"),
    ("feedback.seva.kk=2", "feedback.seva.kk: unknown key (known in feedback.seva: augment, noise_step, k)"),
    ("feedback.bpo.noise_step=-1", "feedback.bpo.noise_step: must be in [0, 1000)"),
    ("feedback.bpo.temperature=nan", "feedback.bpo.temperature: must be in [0, 5]"),
    ("feedback.bpo.weakened=0 feedback.bpo.injected=0", "feedback.bpo.weakened: weakened + injected must be >= 1"),
    ("feedback.bpo.weakened=true", "feedback.bpo.weakened: cannot parse"),
    ("feedback.bpo=3", "feedback.bpo: expected model"),
    ("feedback.rlaifv.max_pairs_per_prompt=0", "feedback.rlaifv.max_pairs_per_prompt: must be >= 1"),
    ("feedback.rlaifv.score=claims", "feedback.rlaifv.score: must be one of"),
    ("train.from_round.2.sft_weight=-1", "train.from_round.2.sft_weight: must be >= 0"),
    ("train.from_round.2.lr=inf", "train.from_round.2.lr: must be in (0, 1)"),
    ("train.from_round.0.lr=0.1", "train.from_round.0: rounds count from 1"),
    ("train.from_round.2.lora_r=4", "train.from_round.2: lora_r cannot change by round"),
    ("feedback.rlaifv.from_round.2.min_margin=-1", "feedback.rlaifv.from_round.2.min_margin: must be >= 0"),
    ("feedback.rlaifv.from_round.2.splitter=llm", "feedback.rlaifv.from_round.2: splitter cannot change by round"),
    ("feedback.injector=llm feedback.injector_model=", "feedback.injector_model: the llm injector needs a model"),
    ("feedback.amp.levels=1", "feedback.amp.levels: must be >= 2"),
    ("feedback.amp.models=org/big,org/small", "feedback.amp.models: lists 2 models but feedback.amp.levels is 4"),
    ("feedback.amp.levels=2 feedback.amp.models=zoo,/no/such/model", "feedback.amp.models: model path '/no/such/model'"),
    ("feedback.bpo_noise_step=1 feedback.bpo.noise_step=2", "feedback.bpo_noise_step: also given as feedback.bpo.noise_step"),
    ("resources.num_gpus_per_actor=1 resources.labeler.gpus=0",
     "resources.num_gpus_per_actor: also given as resources.labeler.gpus"),
    ("model.policy=./not/here", "model.policy: model path"),
    ("feedback.labeler_model=no-slash-name", "feedback.labeler_model: model path"),
])
def test_bad_overrides_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("configs/shapes-rlaifv.yaml", override.split())


def test_the_llm_splitter_and_injector_default_to_smollm2():
    cfg = load_config("configs/shapes-bpo.yaml", ["feedback.injector=llm"])
    assert cfg.feedback.injector_model == cfg.feedback.splitter_model == "smollm2"


@pytest.mark.parametrize("method", ["seva", "bpo", "amp"])
def test_method_configs_load_and_share_the_starting_policy_and_budget(method):
    base = load_config("configs/shapes-rlaifv.yaml")
    cfg = load_config(f"configs/shapes-{method}.yaml")
    assert cfg.feedback.source == method and cfg.run.name == f"shapes-{method}"
    assert (cfg.model.policy, cfg.sampling.prompts_per_round, cfg.eval.n) == \
        (base.model.policy, base.sampling.prompts_per_round, base.eval.n)
    assert cfg.train.loss == ("mdpo" if method == "amp" else "sigmoid")


def test_model_names_may_be_hub_ids_or_special_names_and_lists_parse():
    cfg = load_config("configs/shapes-rlaifv.yaml", [
        "model.policy=llava-hf/llava-1.5-7b-hf", "data.source=dataset", "feedback.splitter=llm",
        "feedback.splitter_model=smollm2",
        "feedback.source=amp", "train.loss=mdpo", "feedback.amp.levels=2", "feedback.amp.models=zoo, org/small-vlm"])
    assert cfg.model.policy == "llava-hf/llava-1.5-7b-hf" and cfg.feedback.amp.models == ["zoo", "org/small-vlm"]
    assert config_from_dict(cfg.to_dict()) == cfg
    assert load_config("configs/shapes-rlaifv.yaml", ["feedback.source=seva", "sampling.n=1", "train.loss=infonce"])


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


@pytest.mark.parametrize("override, message", [
    ("train.beta=inf", r"train.beta: must be > 0 \(a finite number\)"),
    ("train.lr=nan", r"train.lr: must be in \(0, 1\)"),
    ("data.prior=-inf", r"data.prior: must be in \[0, 1\]"),
    ("run.seed=-1", "run.seed: must be >= 0"),
    ("data.world_seed=-3", "data.world_seed: must be >= 0"),
    ("train.grad_accum_steps=0", "train.grad_accum_steps: must be >= 1"),
    ("model.dtype=float8", "model.dtype: must be one of"),
    ("eval.suites=shapesworld,python:no_such_module:suite", "eval.suites: cannot load"),
    ("feedback.labeler=python:labeler_plugin:NoSuchLabeler", "feedback.labeler: cannot load"),
    ("model.min_pixels=1000 model.max_pixels=10", "model.max_pixels: must be >= model.min_pixels"),
])
def test_non_finite_numbers_negative_seeds_and_mistyped_plugins_are_refused_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/shapes-rlaifv.yaml", override.split())


def test_the_fields_other_parts_plug_into_have_their_defaults_and_parse():
    cfg = load_config("configs/shapes-rlaifv.yaml")
    assert (cfg.train.gradient_checkpointing, cfg.train.grad_accum_steps, cfg.train.max_length) == (False, 1, None)
    assert (cfg.model.min_pixels, cfg.model.max_pixels, cfg.feedback.splitter_max_tokens) == (None, None, 512)
    assert cfg.eval.suites == ["shapesworld"]
    cfg = load_config("configs/shapes-rlaifv.yaml", ["train.gradient_checkpointing=true", "train.max_length=1024",
                                                      "model.max_pixels=200704", "train.max_length=none"])
    assert cfg.train.gradient_checkpointing is True and cfg.train.max_length is None and cfg.model.max_pixels == 200704
    assert config_from_dict(cfg.to_dict()) == cfg


def test_a_plugin_labeler_gets_its_model_name_as_it_is():
    cfg = load_config("configs/shapes-rlaifv.yaml", ["feedback.labeler=python:labeler_plugin:LengthLabeler",
                                                      "feedback.labeler_model=gpt-4o-mini"])
    assert cfg.feedback.labeler_model == "gpt-4o-mini"


def test_another_sources_knob_never_blocks_resuming_a_run(tmp_path):
    cfg = load_config("configs/shapes-rlaifv.yaml")
    prepare_run(cfg, tmp_path / "run")
    other_knobs = load_config("configs/shapes-rlaifv.yaml", ["feedback.bpo.noise_step=700", "feedback.seva.k=3",
                                                             "feedback.amp.levels=3", "feedback.injector=llm"])
    assert changed_keys(cfg, other_knobs) == []
    prepare_run(other_knobs, tmp_path / "run")
    rlaifv_knob = load_config("configs/shapes-rlaifv.yaml", ["feedback.rlaifv.max_pairs_per_prompt=3"])
    assert changed_keys(cfg, rlaifv_knob) == ["feedback.rlaifv.max_pairs_per_prompt"]
    with pytest.raises(ConfigError, match="resuming with changed feedback.rlaifv.max_pairs_per_prompt"):
        prepare_run(rlaifv_knob, tmp_path / "run")
    # The generic keys a source reads bind only that source's runs: the splitter binds RLAIF-V, not BPO.
    assert changed_keys(cfg, load_config("configs/shapes-rlaifv.yaml", ["feedback.splitter=llm"])) == ["feedback.splitter"]
    bpo = load_config("configs/shapes-bpo.yaml")
    assert changed_keys(bpo, load_config("configs/shapes-bpo.yaml", ["feedback.splitter=llm"])) == []
    assert changed_keys(bpo, load_config("configs/shapes-bpo.yaml", ["feedback.bpo.noise_step=700"])) == \
        ["feedback.bpo.noise_step"]


def test_a_run_saved_with_the_flat_source_keys_resumes(tmp_path):
    """Run directories made before the per-source sections saved feedback.bpo_noise_step, ... flat."""
    cfg = load_config("configs/shapes-bpo.yaml")
    saved = cfg.to_dict()
    feedback = saved["feedback"]
    flat = {"max_pairs_per_prompt": feedback["rlaifv"]["max_pairs_per_prompt"],
            "length_balance": feedback["rlaifv"]["length_balance"]}
    for name in ("seva", "bpo", "amp"):
        flat.update({f"{name}_{key}": value for key, value in feedback[name].items()})
    saved["feedback"] = {**{k: v for k, v in feedback.items() if k not in ("rlaifv", "seva", "bpo", "amp")}, **flat}
    assert "bpo_noise_step" in saved["feedback"] and "bpo" not in saved["feedback"]
    assert config_from_dict(saved) == cfg
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved))
    prepare_run(cfg, tmp_path / "run")  # nothing changed: no --force needed
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["feedback"]["bpo"]["noise_step"] == 900


def test_an_old_flat_key_and_the_key_it_became_in_one_mapping_are_refused_and_the_command_line_wins(tmp_path):
    saved = load_config("configs/shapes-rlaifv.yaml").to_dict()
    with pytest.raises(ConfigError, match=re.escape("resources.trainer_actors: also given as resources.trainer.actors")):
        config_from_dict({**saved, "resources": {**saved["resources"], "trainer_actors": 2}})
    with pytest.raises(ConfigError, match=re.escape("feedback.bpo_k: unknown key")):  # not an old key: seva's k was
        config_from_dict({**saved, "feedback": {**saved["feedback"], "bpo_k": 2}})
    both = tmp_path / "both.yaml"
    both.write_text("feedback:\n  seva_k: 2\n  seva: {k: 3}\n")
    with pytest.raises(ConfigError, match=re.escape("feedback.seva_k: also given as feedback.seva.k")):
        load_config(both)
    # The file sets the new keys, the command line an old one (and the reverse): the command line wins.
    cfg = load_config("configs/shapes-rlaifv.yaml", ["resources.num_cpus_per_actor=2", "feedback.seva_k=4"])
    assert [cfg.resources.role(r, cfg.model).cpus for r in ("sampler", "labeler", "text", "trainer")] == [2.0] * 4
    assert cfg.feedback.seva.k == 4 and cfg.resources.sampler.actors == 1
    both.write_text("feedback:\n  seva_k: 2\n")
    assert load_config(both, ["feedback.seva.k=5"]).feedback.seva.k == 5


def test_a_bad_number_inside_a_mapping_key_is_named():
    message = "resources.trainer.custom_resources.gpu_node: Input should be greater than 0"  # was a KeyError
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("configs/shapes-rlaifv.yaml", ["resources.trainer.custom_resources={gpu_node: -1}"])


def test_a_mistyped_plugin_stops_iterate_before_any_stage_or_file(tmp_path, capsys):
    from iterate import main

    run_dir = tmp_path / "never"
    status = main(["--config", "configs/shapes-rlaifv.yaml", "--run-dir", str(run_dir),
                   "feedback.labeler=python:labeler_plugn:LengthLabeler"])
    assert status == 2 and "feedback.labeler: cannot load 'python:labeler_plugn:LengthLabeler'" in capsys.readouterr().err
    assert not run_dir.exists()


def test_force_across_a_change_drops_the_unfinished_stages_shards_and_keeps_finished_ones(tmp_path):
    from engine.store import RunStore

    cfg = load_config("configs/shapes-rlaifv.yaml")
    store = prepare_run(cfg, tmp_path / "run")
    store.write_shard(1, "prompts", 0, [{"id": "a"}])
    store.mark_done(1, "prompts", {})
    store.write_shard(1, "sample", 0, [{"old": 1}])  # half done under the old temperature
    store.checkpoints(1).joinpath("checkpoint-3").mkdir(parents=True)
    two_trainers = load_config("configs/shapes-rlaifv.yaml", ["resources.trainer_actors=2"])
    assert changed_keys(cfg, two_trainers) == ["resources.trainer.actors"]  # the global batch changes
    hotter = load_config("configs/shapes-rlaifv.yaml", ["sampling.temperature=1.0"])
    prepare_run(hotter, tmp_path / "run", force=True)
    store = RunStore(tmp_path / "run")
    assert store.read(1, "prompts") == [{"id": "a"}] and store.shards(1, "sample") == []
    assert not store.checkpoints(1).exists()


def test_train_keys_change_from_a_round_on():
    cfg = load_config("configs/shapes-rlaifv.yaml", ["train.from_round.3.lr=1e-4", "train.from_round.2.sft_weight=3",
                                                      "train.from_round.3.sft_weight=4"])
    by_round = [(t.lr, t.sft_weight, t.beta) for t in map(cfg.train.for_round, (1, 2, 3, 4))]
    assert by_round == [(5e-4, 1.0, 0.1), (2.5e-4, 3.0, 0.1), (1e-4, 4.0, 0.1), (1e-4, 4.0, 0.1)]
    assert cfg.train.from_round[2] == {"sft_weight": 3.0, "lr": 2.5e-4}  # typed, as RUN/config.yaml saves it
    assert "train.from_round.2.sft_weight" in binding_keys(cfg)  # a change would mix two recipes in one run


def test_an_override_of_a_round_keeps_the_files_other_keys_for_that_round():
    cfg = load_config("configs/shapes-rlaifv.yaml", ["train.from_round.2.lr=1e-4"])
    assert cfg.train.from_round[2] == {"sft_weight": 2.0, "lr": 1e-4}  # the file's sft_weight is kept
    assert (cfg.train.for_round(2).sft_weight, cfg.train.for_round(2).lr) == (2.0, 1e-4)


def test_pair_keys_change_from_a_round_on():
    cfg = load_config("configs/shapes-rlaifv.yaml", ["feedback.rlaifv.min_margin=2",
                                                      "feedback.rlaifv.from_round.2.min_margin=0"])
    by_round = [(r.min_margin, r.max_pairs_per_prompt) for r in map(cfg.feedback.rlaifv.for_round, (1, 2, 3))]
    assert by_round == [(2.0, 2), (0.0, 2), (0.0, 2)]
    assert "feedback.rlaifv.from_round.2.min_margin" in binding_keys(cfg)
