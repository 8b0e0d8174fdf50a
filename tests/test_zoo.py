import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors import safe_open

from engine.generation import chat_prompt
from engine.zoo import SMALL, training_batch
from engine.zoo_models import build_processor, pixel_values
from evaluation.shapes import ShapesWorld


def test_tokenizer_round_trips_the_grammar():
    tokenizer = build_processor().tokenizer
    world = ShapesWorld()
    for i in range(30):
        _, question, answer = world.policy_example(i)
        for text in (question, answer):
            ids = tokenizer(text)["input_ids"]
            assert tokenizer.unk_token_id not in ids, text
            assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_fast_pixel_path_equals_the_processor():
    processor = build_processor()
    images = [ShapesWorld().scene("train", i).render() for i in range(3)]
    reference = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    assert torch.allclose(pixel_values(images), reference, atol=1e-5)


def test_training_batch_matches_the_processor_path():
    processor = build_processor()
    world = ShapesWorld()
    examples = [world.labeler_example(i) for i in range(2)]
    batch = training_batch(processor, examples)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert (batch["input_ids"][0] == image_id).sum() == 64
    labels = batch["labels"][0]
    first = int((labels != -100).nonzero()[0])
    answer = processor.tokenizer.decode(batch["input_ids"][0, first:], skip_special_tokens=True)
    assert answer == examples[0][2]
    # the prompt through the real processor (as vLLM and TRL use it) gives the same ids
    prompt = chat_prompt(processor, examples[0][1])
    ids = processor(text=[prompt], images=[examples[0][0]], return_tensors="pt")["input_ids"][0]
    assert torch.equal(batch["input_ids"][0, : len(ids)], ids)


def test_each_model_is_cached_by_its_own_recipe():
    assert SMALL.key("policy") != dataclasses.replace(SMALL, seed=1).key("policy")
    assert SMALL.key("policy") == dataclasses.replace(SMALL, labeler_steps=1).key("policy")
    assert SMALL.key("labeler") != dataclasses.replace(SMALL, policy_steps=1).key("labeler")
    assert SMALL.key("labeler") != dataclasses.replace(SMALL, labeler_steps=1).key("labeler")
    # the policy's stamp holds only its own fields: a labeler variant reuses the cached policy instead of refusing it
    other_labeler = dataclasses.replace(SMALL, labeler_attribute_share=0.5)
    assert other_labeler.fields("policy") == SMALL.fields("policy")
    assert "labeler_steps" not in SMALL.fields("policy") and SMALL.fields("labeler")["labeler_steps"] == 100


def test_small_zoo_loads_in_hf_with_vllm_weight_names(small_zoo):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    for path in small_zoo.values():
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            vision = [k for k in f.keys() if "vision_tower" in k]
        assert vision and all("vision_tower.vision_model." in k for k in vision)
        model = AutoModelForImageTextToText.from_pretrained(path)
        processor = AutoProcessor.from_pretrained(path)
        scene = ShapesWorld().scene("eval", 0)
        prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image in detail."}]}],
                                               add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], images=[scene.render()], return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
        assert out.shape[1] > inputs["input_ids"].shape[1]


def test_labeler_keeps_its_best_validated_weights(small_zoo):
    """The saved labeler is the one whose validation accuracy the build recorded."""
    import json

    from transformers import LlavaForConditionalGeneration

    from engine.zoo import yes_no_accuracy

    record = json.loads((small_zoo["labeler"] / "validation.json").read_text())
    assert record["step"] % SMALL.labeler_validate_every == 0 or record["step"] == SMALL.labeler_steps
    model = LlavaForConditionalGeneration.from_pretrained(small_zoo["labeler"], dtype=torch.float32)
    world = ShapesWorld(SMALL.seed, SMALL.prior)
    assert yes_no_accuracy(model, build_processor(), world.claim_questions(
        record["n"], split="train", start=50_000_000)) == record["existence"]
    assert yes_no_accuracy(model, build_processor(), world.attribute_checks(
        record["n"], split="train", start=50_000_000)) == record["attributes"]


def test_the_labeler_keeps_its_best_validated_candidate(tmp_path):
    """Each depth in labeler_candidates is trained (side by side); the saved labeler is the one with the best
    validation sum, and nothing of the others is left in the cache."""
    import json

    from transformers import AutoConfig

    from engine.zoo import build_zoo

    tiny = dataclasses.replace(SMALL, policy_steps=6, labeler_steps=6, labeler_validate_every=3, labeler_candidates=(0, 1))
    labeler = build_zoo(tiny, tmp_path, shipped=None)["labeler"]
    record = json.loads((labeler / "validation.json").read_text())
    assert [c["extra_layers"] for c in record["candidates"]] == [0, 1]
    kept = max(record["candidates"], key=lambda c: c["existence"] + c["attributes"])
    assert record["extra_layers"] == kept["extra_layers"]
    depth = AutoConfig.from_pretrained(labeler).text_config.num_hidden_layers
    assert depth == SMALL.layers + kept["extra_layers"]
    assert {p.name for p in (tmp_path / "zoo").iterdir()} == {tiny.folder("policy"), tiny.folder("labeler")}


def test_a_deepened_labeler_starts_as_the_policy(small_zoo):
    """The labeler's extra layers start as identity: before training it answers exactly as the policy does."""
    from transformers import LlavaForConditionalGeneration

    from engine.zoo_models import deepened

    policy = LlavaForConditionalGeneration.from_pretrained(small_zoo["policy"], dtype=torch.float32).eval()
    batch = training_batch(build_processor(), [ShapesWorld().labeler_example(i) for i in range(3)])
    with torch.no_grad():
        before = policy(**batch).logits
        deeper = deepened(LlavaForConditionalGeneration.from_pretrained(small_zoo["policy"], dtype=torch.float32), 2)
        after = deeper.eval()(**batch).logits
    assert deeper.config.text_config.num_hidden_layers == policy.config.text_config.num_hidden_layers + 2
    assert torch.equal(before, after)
    # the new layers' own weights are trainable, not frozen at zero: a gradient reaches them
    deeper.train()(**batch).loss.backward()
    assert deeper.model.language_model.layers[-1].self_attn.o_proj.weight.grad.abs().sum() > 0


def test_the_zoo_is_reproducible_from_its_recipe(tmp_path):
    """Two builds of one recipe give bit-identical weights (the labeler's validated pick included)."""
    from safetensors.torch import load_file

    from engine.zoo import build_zoo

    tiny = dataclasses.replace(SMALL, policy_steps=6, labeler_steps=6, labeler_validate_every=3)
    first, second = build_zoo(tiny, tmp_path / "a", shipped=None), build_zoo(tiny, tmp_path / "b", shipped=None)
    for kind in ("policy", "labeler"):
        a, b = load_file(first[kind] / "model.safetensors"), load_file(second[kind] / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), kind


def test_a_shipped_zoo_is_verified_installed_and_rebuilt_when_damaged(tmp_path, capsys):
    """The repository's zoo/ copy is installed without training when its manifest and recipe stamp check out; a
    truncated weights file is named and the model rebuilt; a cache altered after install is refused by name."""
    import pytest

    from engine.zoo import build_zoo
    from engine.zoo_files import ZooIntegrityError, ship

    tiny = dataclasses.replace(SMALL, policy_steps=4, labeler_steps=4, labeler_validate_every=2)
    built = build_zoo(tiny, tmp_path / "built", shipped=None)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    ship(list(built.values()), shipped)
    capsys.readouterr()
    installed = build_zoo(tiny, tmp_path / "fresh", shipped=shipped)
    assert "building" not in capsys.readouterr().out
    for kind in ("policy", "labeler"):
        assert (installed[kind] / "model.safetensors").read_bytes() == (built[kind] / "model.safetensors").read_bytes()

    weights = shipped / built["labeler"].name / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    rebuilt = build_zoo(tiny, tmp_path / "other", shipped=shipped)
    out = capsys.readouterr().out
    assert f"{weights}: content differs" in out and "building the labeler" in out and "building the policy" not in out
    assert (rebuilt["labeler"] / "model.safetensors").read_bytes() == (built["labeler"] / "model.safetensors").read_bytes()

    (installed["policy"] / "config.json").write_text("{}")
    with pytest.raises(ZooIntegrityError, match="config.json: content differs"):
        build_zoo(tiny, tmp_path / "fresh", shipped=shipped)


def test_the_repository_ships_exactly_the_zoos_of_the_current_recipes():
    """Each zoo of SHIPPED_ZOOS is in zoo/ and passes its manifest and recipe check (a recipe change without
    ``python -m engine.zoo --ship`` would make every user rebuild it), and zoo/ holds nothing else."""
    from engine.zoo import SHIPPED_ZOOS, zoo_recipe
    from engine.zoo_files import SHIPPED, verify

    expected = set()
    for size, seed in SHIPPED_ZOOS:
        recipe = zoo_recipe(size, seed)
        for kind in ("policy", "labeler"):
            folder = SHIPPED / recipe.folder(kind)
            verify(folder, recipe.fields(kind))
            expected.add(folder.name)
    assert {p.name for p in SHIPPED.iterdir()} == expected


def test_a_zoo_build_stops_when_its_caller_is_killed(tmp_path):
    # A killed run must not leave its build worker training on as an orphan that holds a core.
    script = f"from pathlib import Path; from engine.zoo import SMALL, build_zoo; build_zoo(SMALL, Path({str(tmp_path)!r}), shipped=None)"
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    assert "[zoo] building the policy" in caller.stdout.readline()
    time.sleep(5)  # the worker is importing or training
    children = psutil.Process(caller.pid).children()
    assert children, "the build started no worker"
    caller.kill()
    caller.wait()

    def running(process: psutil.Process) -> bool:  # an orphan's zombie counts as ended: nothing may reap it here
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.time() + 60
    while any(map(running, children)) and time.time() < deadline:
        time.sleep(0.5)
    assert not [process.pid for process in children if running(process)]
    assert not (tmp_path / "zoo" / SMALL.folder("policy")).exists()
    # A worker that outlived its caller and trained to the end would have saved weights in its .tmp folder.
    assert not list((tmp_path / "zoo").glob("policy-*/*.safetensors"))


def test_a_killed_fit_resumes_to_the_weights_of_one_that_ran_through(tmp_path, monkeypatch):
    """fit checkpoints its whole state; stopped after a checkpoint and run again, it ends on the same weights
    and the same best validated step as a fit that was never stopped (a labeler's fit: the policy's is the
    same loop without validation)."""
    import engine.zoo as zoo
    from engine.zoo_models import build_model

    tiny = dataclasses.replace(SMALL, labeler_steps=4, labeler_validate_every=2, batch_size=4)
    processor, world = build_processor(), ShapesWorld()

    def fresh():
        torch.manual_seed(0)
        return build_model(tiny, processor.tokenizer)

    through = fresh()
    kind = "labeler"
    expected = zoo.fit(through, kind, tiny, world, processor, log_every=100)
    real, calls = zoo.training_batch, []

    def killed_at_step_3(*args):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("killed")
        return real(*args)

    checkpoint = tmp_path / zoo.CHECKPOINT
    monkeypatch.setattr(zoo, "training_batch", killed_at_step_3)
    with pytest.raises(RuntimeError, match="killed"):
        zoo.fit(fresh(), kind, tiny, world, processor, 100, checkpoint=checkpoint, checkpoint_every=2)
    assert torch.load(checkpoint, weights_only=True)["step"] == 2
    monkeypatch.setattr(zoo, "training_batch", real)
    resumed = fresh()
    assert zoo.fit(resumed, kind, tiny, world, processor, 100, checkpoint=checkpoint, checkpoint_every=2) == expected
    a, b = through.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_rerun_build_keeps_a_finished_model_and_clears_an_unresumable_folder(tmp_path, capsys):
    from engine.zoo import CHECKPOINT, train

    done = tmp_path / "policy-x.tmp"
    done.mkdir()
    (done / "validation.json").write_text("{}")
    train("policy", SMALL, done)  # a finished worker's folder (its report written last, no checkpoint left)
    assert "policy-x.tmp: trained already" in capsys.readouterr().out and os.listdir(done) == ["validation.json"]
    tiny = dataclasses.replace(SMALL, policy_steps=2, batch_size=2)
    stale = tmp_path / "policy-y.tmp"
    stale.mkdir()
    (stale / "leftover.bin").write_text("from a build killed before its first checkpoint")
    train("policy", tiny, stale)
    assert not (stale / "leftover.bin").exists() and not (stale / CHECKPOINT).exists()
    assert (stale / "validation.json").is_file() and (stale / "model.safetensors").is_file()
