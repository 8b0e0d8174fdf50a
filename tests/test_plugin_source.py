"""A plug-in preference source's own config section, ``feedback.plugin``: validated by the section its class
declares before any work, saved resolved in RUN/config.yaml, binding only a run of that source; one round of
the plug-in end to end on the small zoo. The plug-ins are in tests/source_plugin.py."""
import os
import re
import subprocess

import pytest
import yaml

from engine.config import ConfigError, config_from_dict, load_config
from engine.round_stages import shapes_prompts
from engine.run import changed_keys, prepare_run
from evaluation.shapes import ShapesWorld
from feedback.sources import RoundContext, checked_stages, load_source
from source_plugin import SuffixSection
from test_loop import ENV, ROOT, command

SOURCE = "feedback.source=python:source_plugin:SuffixSource"
PROMPTS = shapes_prompts(ShapesWorld(0), 4)


def config(*overrides, source=SOURCE):
    return load_config("configs/shapes-rlaifv.yaml", [source, *overrides])


def test_a_good_key_reaches_the_source_and_the_section_is_saved_resolved(tmp_path):
    cfg = config("feedback.plugin.keep=0.5", "feedback.plugin.suffix= There is also a blue star.")
    assert cfg.feedback.plugin == SuffixSection(keep=0.5, suffix=" There is also a blue star.")
    [stage] = checked_stages(load_source(cfg.feedback.source), cfg)
    ctx = RoundContext(cfg, 1, {p["id"]: p for p in PROMPTS}, read=None)
    pairs, info = stage.run(ctx, None, PROMPTS)
    first_two = sorted(p["id"] for p in PROMPTS)[:2]  # keep 0.5 of 4 prompts
    assert [p["prompt_id"] for p in pairs] == first_two and info["prompts_with_pairs"] == 2
    for p in pairs:
        reference = ctx.prompts[p["prompt_id"]]["reference"]
        assert p["rejected"][0]["content"][0]["text"] == reference + " There is also a blue star."
    prepare_run(cfg, tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["feedback"]["plugin"] == {"suffix": " There is also a blue star.", "keep": 0.5}
    assert config_from_dict(saved) == cfg
    # Unset keys are saved with the section's defaults, so the run records what its source read.
    assert config().to_dict()["feedback"]["plugin"] == {"suffix": " There is also a red circle.", "keep": 1.0}


@pytest.mark.parametrize("override, message", [
    ("feedback.plugin.kep=0.5", "feedback.plugin.kep: unknown key (known in feedback.plugin: suffix, keep)"),
    ("feedback.plugin.keep=inf", "feedback.plugin.keep: must be in (0, 1]"),
    ("feedback.plugin.keep=nan", "feedback.plugin.keep: must be in (0, 1]"),
    ("feedback.plugin.keep=0", "feedback.plugin.keep: must be in (0, 1]"),
    ("feedback.plugin.keep=half", "feedback.plugin.keep: cannot parse 'half' as float"),
    ("feedback.plugin=3", "feedback.plugin: expected a mapping of keys, got '3'"),
])
def test_a_bad_plugin_key_stops_iterate_before_any_stage_or_file(tmp_path, capsys, override, message):
    from iterate import main

    run_dir = tmp_path / "never"
    assert main(["--config", "configs/shapes-rlaifv.yaml", "--run-dir", str(run_dir), SOURCE, override]) == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists()


def test_keys_for_a_plugin_that_declares_no_section_are_refused():
    bare = "feedback.source=python:source_plugin:BareSource"
    assert config(source=bare).feedback.plugin == {}  # no keys: nothing to read, nothing refused
    with pytest.raises(ConfigError, match=re.escape(
            "feedback.plugin: feedback.source 'python:source_plugin:BareSource' declares no config section")):
        config("feedback.plugin.keep=0.5", source=bare)
    with pytest.raises(ConfigError, match=re.escape(
            "feedback.source: 'python:source_plugin:MappingSectionSource' declares section = <class 'dict'>, "
            "which is not a feedback.sections.Section subclass")):
        config("feedback.plugin.keep=0.5", source="feedback.source=python:source_plugin:MappingSectionSource")


def test_the_plugin_section_binds_only_a_run_of_the_plugin_source(tmp_path):
    rlaifv = load_config("configs/shapes-rlaifv.yaml")
    prepare_run(rlaifv, tmp_path / "rlaifv")
    # A built-in source reads no feedback.plugin: its keys are kept as written and never block a resume.
    other = load_config("configs/shapes-rlaifv.yaml", ["feedback.plugin.keep=0.5"])
    assert other.feedback.plugin == {"keep": "0.5"} and changed_keys(rlaifv, other) == []
    prepare_run(other, tmp_path / "rlaifv")
    plugin = config()
    prepare_run(plugin, tmp_path / "plugin")
    assert changed_keys(plugin, config("feedback.bpo.noise_step=700", "feedback.rlaifv.max_pairs_per_prompt=3")) == []
    changed = config("feedback.plugin.keep=0.5")
    assert changed_keys(plugin, changed) == ["feedback.plugin.keep"]
    with pytest.raises(ConfigError, match="resuming with changed feedback.plugin.keep"):
        prepare_run(changed, tmp_path / "plugin")
    # Without shared_keys every generic feedback key binds a plug-in's run; with them only those do.
    assert changed_keys(plugin, config("feedback.splitter=llm")) == ["feedback.splitter"]
    narrow = config(source="feedback.source=python:source_plugin:LabelerKeysSource")
    assert changed_keys(narrow, config("feedback.splitter=llm", source="feedback.source=python:source_plugin:LabelerKeysSource")) == []
    assert changed_keys(narrow, config("feedback.labeler=oracle", "feedback.plugin.keep=0.5",
                                       source="feedback.source=python:source_plugin:LabelerKeysSource")) == [
        "feedback.labeler", "feedback.plugin.keep"]


def test_a_plugin_source_runs_a_round_with_its_section_end_to_end(small_zoo, tmp_path):
    from engine.store import RunStore

    run_dir = tmp_path / "run"
    tests = os.path.dirname(__file__)  # the plug-in's module, importable by the driver as a user's would be
    env = {**ENV, "PYTHONPATH": os.pathsep.join([tests, ENV.get("PYTHONPATH", "")])}
    overrides = [SOURCE, "feedback.plugin.keep=0.5", "run.rounds=1", "sampling.prompts_per_round=8", "eval.n=10"]
    result = subprocess.run(command(run_dir, *overrides), cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    store = RunStore(run_dir)
    assert [s for s in ("prompts", "pairs", "train", "eval/shapesworld") if not store.is_done(1, s)] == []
    pairs = store.read(1, "pairs")
    assert len(pairs) == 4 and {p["source"] for p in pairs} == {"suffix"}  # keep 0.5 of 8 prompts
    assert all(p["rejected"][0]["content"][0]["text"].endswith(" There is also a red circle.") for p in pairs)
    assert yaml.safe_load(store.config.read_text())["feedback"]["plugin"]["keep"] == 0.5
