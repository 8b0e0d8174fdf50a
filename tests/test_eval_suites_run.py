"""Suites in a real run on the small zoo (iterate.py, Ray, real vLLM): one round evaluated by shapesworld,
chair-coco and pope on ShapesWorld's benchmark export and by the labeler suite on a held-out slice of the
prompts; then ``python -m evaluation`` on the round's adapter prints the figures the run's eval wrote."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import load_config
from engine.registries import heldout_rule
from engine.store import RunStore
from scripts.export_benchmarks import export
from test_loop import ENV

ROOT = Path(__file__).resolve().parent.parent
SUITES = ("shapesworld", "chair-coco", "pope", "labeler")


def _overrides(sections: dict) -> list[str]:
    return [f"eval.{suite}.{key}={value}" for suite, keys in sections.items() for key, value in keys.items()]


@pytest.fixture(scope="module")
def suite_run(small_zoo, tmp_path_factory):
    """Through iterate.py (Ray): the in-process executor cannot hold two vLLM engines (sampler and labeler)
    in one process once one of them is released."""
    folder = tmp_path_factory.mktemp("suites")
    sections = export(folder / "export", n=8, seed=0)
    overrides = [
        "model.zoo=small", "run.rounds=1", "sampling.prompts_per_round=8", "sampling.n=4", "sampling.shard_size=8",
        "train.epochs=1", "train.batch_size=4", "train.save_steps=0", "eval.n=8", "feedback.labeler=vlm",
        f"eval.suites={','.join(SUITES)}", "eval.best_metric=labeler/rejected_per_answer",
        "eval.labeler.fraction=0.25", "eval.labeler.n=4", "eval.pope.settings=[random,adversarial]",
        *_overrides({k: v for k, v in sections.items() if k != "amber"})]
    done = subprocess.run([sys.executable, "iterate.py", "--config", "configs/shapes-rlaifv.yaml", "--run-dir",
                           str(folder / "run"), *overrides], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = RunStore(folder / "run")
    return load_config(store.config), store


def test_every_suite_writes_its_files_each_round_and_the_report_shows_them(suite_run):
    cfg, store = suite_run
    for k in (0, 1):
        for suite in SUITES:
            metrics, rows = store.read_eval(k, suite)
            assert rows and metrics, (k, suite)
    assert store.read_eval(1, "pope")[0].keys() >= {"pope_random_f1", "pope_adversarial_f1", "pope_f1"}
    assert store.read_eval(1, "chair-coco")[0]["n"] == 8
    labeled = store.read_eval(1, "labeler")[1]
    assert 1 <= len(labeled) <= 4 and all(heldout_rule(cfg)(r["id"]) for r in labeled)
    trained = {row["id"] for row in store.read(1, "prompts")}
    assert not trained & {r["id"] for r in labeled}
    report = (store.root / "report.md").read_text()
    assert "by labeler/rejected_per_answer" in report
    assert all(f"### {suite}" in report for suite in SUITES)


@pytest.mark.parametrize("suite", ["shapesworld", "labeler"])
def test_the_standalone_evaluator_prints_the_runs_own_figures_for_a_rounds_adapter(suite_run, suite):
    _, store = suite_run
    done = subprocess.run([sys.executable, "-m", "evaluation", "--model", "zoo", "--adapter", str(store.policy(1)),
                           "--suite", suite, "--config", str(store.config)],
                          capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed == store.read_eval(1, suite)[0]
