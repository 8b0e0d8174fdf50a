"""Round trip on the exact world: ShapesWorld's held-out scenes exported as COCO, POPE and AMBER files give,
through the benchmark suites, exactly the native eval's figures on the same answers."""
import importlib.util
import random
import sys
from pathlib import Path

import pytest

from evaluation.heldout import evaluate_policy
from evaluation.shapes import ShapesWorld, describe
from evaluation.suites import Handles, make_suite

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("export_benchmarks", ROOT / "scripts/export_benchmarks.py")
export_benchmarks = sys.modules["export_benchmarks"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_benchmarks)

N, SEED = 24, 0
WORDNET = Path("/usr/share/wordnet")


def hallucinating_policy(world: ShapesWorld, n: int) -> Handles:
    """A policy with the world's language prior: it describes the prior-laden text objects (partners
    hallucinated) minus some it misses, and says yes to any object of that text. Answers are looked up by
    the image's pixels, so images read back from the exported PNG files get the same answers."""
    seen = {}
    for i, item in enumerate(world.eval_set(n)):
        rng = random.Random(i)
        said = world.text_objects(world.scene("eval", i), rng)
        kept = [o for o in said if rng.random() > 0.25] or said[:1]
        seen[item["image"].tobytes()] = (describe(kept, rng), {o.name for o in said})

    def describe_images(items):
        return [seen[image.tobytes()][0] for image, _ in items]

    def ask(items):
        return ["Yes." if question[len("Is there a "):-len(" in the image?")] in seen[image.tobytes()][1] else "No."
                for image, question in items]

    return Handles(describe_images, ask)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    world = ShapesWorld(SEED)
    handles = hallucinating_policy(world, N)
    native, _ = evaluate_policy(handles.describe, handles.ask, world.eval_set(N), world.vocabulary(),
                                world.text_statistics(), SEED)
    sections = export_benchmarks.export(tmp_path_factory.mktemp("export"), N, SEED)
    return native, sections, handles


def test_the_policy_hallucinates_so_the_check_is_not_vacuous(exported):
    native, _, _ = exported
    assert 0.05 < native["chair_i"] < 0.6 and 0.5 < native["recall"] < 1.0 and native["pope_f1"] < 1.0


def test_chair_coco_gives_the_native_chair_and_recall(exported):
    native, sections, handles = exported
    metrics, rows = make_suite("chair-coco", sections["chair-coco"]).run(handles)
    assert (metrics["chair_i"], metrics["chair_s"], metrics["recall"], metrics["n"]) == \
           (native["chair_i"], native["chair_s"], native["recall"], native["n"])
    assert len(rows) == N and all(set(r["hallucinated"]) <= set(r["mentioned"]) for r in rows)


def test_pope_gives_the_native_f1_per_setting(exported):
    native, sections, handles = exported
    metrics, rows = make_suite("pope", sections["pope"]).run(handles)
    for key in ("pope_random_f1", "pope_popular_f1", "pope_adversarial_f1", "pope_adversarial_accuracy", "pope_f1"):
        assert metrics[key] == native[key], key
    assert len(rows) == 3 * native["pope_random_n"]


@pytest.mark.skipif(not (WORDNET / "index.noun").is_file(), reason="AMBER needs WordNet (Debian wordnet-base)")
def test_amber_gives_the_native_chair_recall_and_existence_accuracy(exported):
    native, sections, handles = exported
    metrics, _ = make_suite("amber", sections["amber"]).run(handles)
    assert metrics["chair"] == pytest.approx(native["chair_i"], abs=1e-15)
    assert metrics["cover"] == pytest.approx(native["recall"], abs=1e-15)
    assert metrics["hal"] == native["chair_s"]
    assert metrics["existence_accuracy"] == native["pope_random_accuracy"]
    assert metrics["generative_n"] == N and metrics["existence_n"] == native["pope_random_n"]


def test_shapesworld_suite_is_the_native_eval(exported):
    native, _, handles = exported
    metrics, rows = make_suite("shapesworld", {"n": N, "seed": SEED}).run(handles)
    assert metrics == native and len(rows) == N
