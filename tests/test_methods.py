"""The preference sources: each source's stage functions with stand-in model handles (fast), then one round of
each new source end to end on the small zoo through iterate.py, and a SeVa run killed mid-round and resumed."""

import pyarrow as pa
import pytest

from engine.config import load_config
from engine.round_stages import shapes_prompts
from evaluation.shapes import OBJECTS, ShapesWorld, oracle_answer
from feedback import amp, bpo, rlaifv, seva
from feedback.claims import split_claims
from feedback.inputs import decode_image
from feedback.pairs import pairs_schema
from feedback.sources import RoundContext, Stage, checked_stages, load_source
from test_loop import iterate, kill_in_first_sample_shard, pairs_of

PROMPTS = shapes_prompts(ShapesWorld(0), 4)
CLEAN = {decode_image(p["image_bytes"]).tobytes(): p for p in PROMPTS}


def context(overrides=(), tables=None, round_index=1):
    cfg = load_config("configs/shapes-rlaifv.yaml", list(overrides))
    return RoundContext(cfg, round_index, {p["id"]: p for p in PROMPTS}, lambda stage: tables[stage])


class FakePolicy:
    """Answers the reference on a clean image and a fixed hallucination on any other; records its calls."""

    def __init__(self, same_on_corrupted=()):
        self.calls, self.same = [], set(same_on_corrupted)

    def __call__(self, items, *, n, temperature, max_tokens=None, seeds=None, policy=None):
        self.calls.append({"items": items, "n": n, "temperature": temperature, "seeds": seeds, "policy": policy})
        answers = []
        for image, _ in items:
            prompt = CLEAN.get(image.tobytes())
            text = prompt["reference"] if prompt else "There is a large red circle at the top left."
            answers.append([text] * n)
        return answers


def rows_of(pairs):
    table = pa.Table.from_pylist(pairs, schema=pairs_schema())  # what the store writes: the schema holds
    return table.to_pylist()


# ---- the registry -----------------------------------------------------------------------------------
class EchoSource:
    """A plug-in source as a user would write one: chosen = reference, rejected = the question."""
    name, losses = "echo", ("sigmoid",)

    def stages(self, cfg):
        def pairs(ctx, _, prompts):
            chosen = {p["id"]: p["reference"] for p in prompts}
            from feedback.pairs import contrast_groups
            return contrast_groups(chosen, {p["id"]: [p["question"]] for p in prompts}, ctx.prompts, "echo", ctx.round)
        return [Stage("pairs", pairs)]


def test_registry_loads_built_ins_and_plugins_and_names_bad_ones():
    cfg = load_config("configs/shapes-rlaifv.yaml")
    assert [s.name for s in checked_stages(load_source("rlaifv"), cfg)] == ["sample", "split", "verify", "pairs"]
    assert [s.name for s in checked_stages(load_source("seva"), cfg)] == ["sample", "pairs"]
    assert [s.name for s in checked_stages(load_source("bpo"), cfg)] == ["sample", "inject", "pairs"]
    assert [s.name for s in checked_stages(load_source("amp"), cfg)] == ["sample", "split", "verify", "pairs"]
    plugin = load_source("python:test_methods:EchoSource")
    [stage] = checked_stages(plugin, cfg)
    pairs, _ = stage.run(context(), None, PROMPTS)
    assert len(rows_of(pairs)) == 4 and pairs[0]["source"] == "echo"
    with pytest.raises(ValueError, match="feedback.source: cannot load"):
        load_source("python:test_methods:NoSuchSource")
    with pytest.raises(ValueError, match="feedback.source: expected"):
        load_source("dpo")

    class Broken(EchoSource):
        def stages(self, cfg):
            return [Stage("train", None), Stage("sample", None, uses="gpu")]
    with pytest.raises(ValueError, match="last stage must be 'pairs'.*not one of.*unknown handle 'gpu'"):
        checked_stages(Broken(), cfg)


# ---- SeVa -------------------------------------------------------------------------------------------
def test_seva_rejects_answers_on_augmented_images_and_drops_identical_ones():
    ctx = context(["feedback.source=seva", "feedback.seva.k=3", "feedback.seva.noise_step=600"])
    policy = FakePolicy()
    samples = seva.sample_stage(ctx, policy, PROMPTS)
    assert [(r["variant"], r["augmentation"]) for r in samples[:4]] == [(0, "clean")] + [(v, "diffusion") for v in (1, 2, 3)]
    [call] = policy.calls
    assert (call["n"], call["temperature"]) == (1, 0.0)  # greedy on every image
    again = FakePolicy()
    seva.sample_stage(ctx, again, PROMPTS)
    assert [im.tobytes() for im, _ in call["items"]] == [im.tobytes() for im, _ in again.calls[0]["items"]]
    # one prompt's augmented answers repeat the clean one: those carry no preference
    samples = [{**r, "response": PROMPTS[0]["reference"]} if r["prompt_id"] == PROMPTS[0]["id"] else r for r in samples]
    pairs, info = seva.pairs_stage(context(["feedback.source=seva"], {"sample": samples}), None, PROMPTS)
    pairs = rows_of(pairs)
    assert info["identical_dropped"] == 3 and info["repeats_dropped"] == 2 * 3 and info["prompts_with_pairs"] == 3
    assert {p["prompt_id"] for p in pairs} == {p["id"] for p in PROMPTS[1:]}
    for p in pairs:
        assert p["chosen"][0]["content"][0]["text"] == ctx.prompts[p["prompt_id"]]["reference"]
        assert (p["source"], p["group"], p["chosen_rank"], p["rejected_rank"]) == ("seva", p["prompt_id"], 0, 1)


# ---- BPO --------------------------------------------------------------------------------------------
def wrong(text, prompt):
    """An answer is wrong when a claim is false or an object of the image goes unmentioned."""
    false_claim = any(oracle_answer(c.question, prompt["layout"]) == c.negated for c in split_claims(text))
    return false_claim or any(name not in text for name in prompt["gt_objects"])


def test_rule_injection_is_wrong_plausible_and_seeded():
    for index, prompt in enumerate(shapes_prompts(ShapesWorld(0), 30)):
        rewrites = bpo.rule_inject(prompt["reference"], 3, seed=index)
        assert len(rewrites) == len(set(rewrites)) == 3 and prompt["reference"] not in rewrites
        assert rewrites == bpo.rule_inject(prompt["reference"], 3, seed=index)
        for text in rewrites:
            assert wrong(text, prompt), (prompt["reference"], text)
            claims = split_claims(text)  # still the world's grammar: every sentence parses into known objects
            named = {c.question.removeprefix("Is there a ").removesuffix(" in the image?") for c in claims
                     if c.question.startswith("Is there")}
            assert named and named <= set(OBJECTS)


def test_llm_injection_asks_the_text_model_for_different_errors():
    asked = []

    def complete(prompts):
        asked.extend(prompts)
        return [f"rewrite {i}" for i in range(len(prompts) - 1)] + ['The image description is: "rewrite 3"\nmore']
    rewrites = bpo.llm_inject(["There is a red circle at the top left.", "There is a blue square."], 2, [1, 2], complete)
    assert rewrites == [["rewrite 0", "rewrite 1"], ["rewrite 2", "rewrite 3"]]  # the model's preamble is cut
    assert "There is a red circle at the top left." in asked[0] and asked[0] != asked[1]


def test_bpo_pairs_put_the_reference_over_each_negative():
    overrides = ["feedback.source=bpo", "feedback.bpo.weakened=2", "feedback.bpo.max_length_ratio=1.5"]
    ctx = context(overrides)
    policy = FakePolicy()
    weakened = bpo.weaken_stage(ctx, policy, PROMPTS)
    [call] = policy.calls
    assert (call["n"], call["temperature"]) == (2, 0.2) and len(call["seeds"]) == 4
    assert all(im.tobytes() not in CLEAN for im, _ in call["items"])  # the policy saw noised images
    injected, _ = bpo.inject_stage(ctx, None, PROMPTS)
    long_one = {"prompt_id": PROMPTS[0]["id"], "kind": "injected", "response": " ".join([PROMPTS[0]["reference"]] * 2)}
    same = {"prompt_id": PROMPTS[1]["id"], "kind": "injected", "response": PROMPTS[1]["reference"]}
    tables = {"sample": weakened, "inject": injected + [long_one, same]}
    pairs, info = bpo.pairs_stage(context(overrides, tables), None, PROMPTS)
    pairs = rows_of(pairs)
    assert info["too_long_dropped"] == 1 and info["identical_dropped"] == 1 and info["no_reference"] == 0
    for p in pairs:
        assert p["chosen"][0]["content"][0]["text"] == ctx.prompts[p["prompt_id"]]["reference"]
        assert p["rejected"][0]["content"][0]["text"] != p["chosen"][0]["content"][0]["text"]
        assert p["group"] == p["prompt_id"] and p["chosen_rank"] == 0
    per_prompt = [p for p in pairs if p["prompt_id"] == PROMPTS[2]["id"]]
    assert sorted(p["rejected_rank"] for p in per_prompt) == list(range(1, len(per_prompt) + 1))
    assert len(per_prompt) == 3  # 2 weakened answers repeat each other: one is kept, plus 2 injected


# ---- AMP --------------------------------------------------------------------------------------------
def test_amp_levels_come_from_checkpoints_then_hotter_sampling_or_from_models():
    labels = [lv.label for lv in amp.levels(1, 4, [], 0.7)]
    assert labels == ["round 0", "round 0 at T=0.7", "round 0 at T=1.05", "round 0 at T=1.4"]
    assert [lv.policy for lv in amp.levels(3, 4, [], 0.7)] == [2, 1, 0, 2]
    assert [(lv.policy, lv.temperature) for lv in amp.levels(6, 4, [], 0.7)] == [(5, 0), (4, 0), (3, 0), (2, 0)]
    assert [lv.policy for lv in amp.levels(2, 2, ["big", "small"], 0.7)] == ["big", "small"]


def test_amp_samples_each_level_with_its_policy():
    ctx = context(["feedback.source=amp", "train.loss=mdpo"], round_index=3)
    policy = FakePolicy()
    rows = amp.sample_stage(ctx, policy, PROMPTS)
    assert [(c["policy"], c["temperature"], c["seeds"] is None) for c in policy.calls] == \
        [(2, 0.0, True), (1, 0.0, True), (0, 0.0, True), (2, 0.7, False)]
    assert len(rows) == 16 and [r["sample"] for r in rows[:4]] == [0, 1, 2, 3]


def test_amp_reranks_by_claim_checks_and_groups_all_pairs():
    p = PROMPTS[0]
    verified = [{"prompt_id": p["id"], "sample": s, "response": text, "score": score, "unscored": False, "claims": 2}
                for s, text, score in [(0, "a", -1), (1, "b", 0), (2, "c", -1), (3, "a", -2)]]
    verified.append({"prompt_id": PROMPTS[1]["id"], "sample": 0, "response": "x", "score": 0, "unscored": False, "claims": 1})
    pairs, info = amp.pairs_stage(context(["feedback.source=amp", "train.loss=mdpo"], {"verify": verified}), None, PROMPTS)
    pairs = rows_of(pairs)
    # ranked b (0) > a (-1, level 0) > c (-1, level 2); the second "a" is a duplicate; prompt 2 has one answer
    assert info["groups"] == 1 and info["duplicates_dropped"] == 1 and info["groups_reranked"] == 1
    assert [(r["chosen"][0]["content"][0]["text"], r["rejected"][0]["content"][0]["text"], r["chosen_rank"],
             r["rejected_rank"]) for r in pairs] == [("b", "a", 0, 1), ("b", "c", 0, 2), ("a", "c", 1, 2)]
    assert {r["group"] for r in pairs} == {p["id"]} and {r["source"] for r in pairs} == {"amp"}


def test_rlaifv_pairs_follow_the_round_s_minimum_margin():
    p = PROMPTS[0]
    verified = [{"prompt_id": p["id"], "sample": s, "response": text, "score": score, "unscored": False, "claims": 3}
                for s, text, score in [(0, "a", 0), (1, "b", -1), (2, "c", -3)]]
    overrides = ["feedback.rlaifv.min_margin=2", "feedback.rlaifv.from_round.2.min_margin=0",
                 "feedback.rlaifv.max_pairs_per_prompt=3"]
    texts = {}
    for k in (1, 2):
        pairs, info = rlaifv.pairs_stage(context(overrides, {"verify": verified}, round_index=k), None, PROMPTS)
        texts[k] = sorted((r["chosen"][0]["content"][0]["text"], r["rejected"][0]["content"][0]["text"]) for r in pairs)
        assert info["answers"] == 3
    assert texts == {1: [("a", "c"), ("b", "c")], 2: [("a", "b"), ("a", "c"), ("b", "c")]}


# ---- end to end on the small zoo ----------------------------------------------------------------------
SMALL_RUN = ["sampling.prompts_per_round=8", "sampling.shard_size=4", "eval.n=10", "run.rounds=1"]


def run_method(run_dir, method, *overrides, check=True):
    return iterate(run_dir, *SMALL_RUN, *overrides, config=f"configs/shapes-{method}.yaml", check=check)


def assert_round_trained(run_dir, k, source, stages):
    from engine.store import RunStore
    from engine.training import load_pairs

    store = RunStore(run_dir)
    for stage in ("prompts", *stages, "pairs", "train", "eval/shapesworld"):
        assert store.is_done(k, stage), stage
    pairs = load_pairs(run_dir / f"rounds/{k:03d}/pairs")
    assert len(pairs) == store.done_info(k, "train")["pairs"] > 0
    assert set(pairs["source"]) == {source}
    assert (run_dir / f"rounds/{k:03d}/policy/adapter_model.safetensors").exists()
    return store


@pytest.fixture(scope="module")
def seva_run(small_zoo, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("methods") / "seva"
    run_method(run_dir, "seva", "feedback.seva.k=2", "feedback.seva.noise_step=800")
    return run_dir


def test_seva_round_end_to_end(seva_run):
    store = assert_round_trained(seva_run, 1, "seva", ["sample"])
    assert len(store.read(1, "sample")) == 8 * 3
    info = store.done_info(1, "pairs")
    assert info["rows"] + info["identical_dropped"] + info["repeats_dropped"] == 8 * 2


def test_seva_resumes_after_sigkill_to_identical_pairs(seva_run, tmp_path):
    run_dir = tmp_path / "killed"
    # 4 shards: the kill lands mid-stage, and the pairs may not depend on sharding
    settings = [*SMALL_RUN, "feedback.seva.k=2", "feedback.seva.noise_step=800", "sampling.shard_size=2"]
    kill_in_first_sample_shard(run_dir, *settings, config="configs/shapes-seva.yaml")
    run_method(run_dir, "seva", *settings[len(SMALL_RUN):])
    from engine.store import RunStore

    info = RunStore(run_dir).done_info(1, "sample")
    assert info["shards_run"] < info["shards"]
    assert pairs_of(run_dir) == pairs_of(seva_run)


def test_bpo_round_end_to_end(small_zoo, tmp_path):
    run_dir = tmp_path / "bpo"
    run_method(run_dir, "bpo")
    store = assert_round_trained(run_dir, 1, "bpo", ["sample", "inject"])
    prompts = {p["id"]: p for p in store.read(1, "prompts")}
    for pair in store.read(1, "pairs"):
        assert pair["chosen"][0]["content"][0]["text"] == prompts[pair["prompt_id"]]["reference"]
    assert {r["kind"] for r in store.read(1, "sample")} == {"weakened"}


def test_amp_rounds_end_to_end_with_mdpo(small_zoo, tmp_path):
    run_dir = tmp_path / "amp"
    run_method(run_dir, "amp", "run.rounds=2", "feedback.amp.levels=3", "feedback.labeler=oracle")
    assert_round_trained(run_dir, 1, "amp", ["sample", "split", "verify"])
    store = assert_round_trained(run_dir, 2, "amp", ["sample", "split", "verify"])
    levels = sorted({(r["sample"], r["level"]) for r in store.read(2, "sample")})
    assert levels == [(0, "round 1"), (1, "round 0"), (2, "round 1 at T=0.7")]
    groups = {}
    for pair in store.read(2, "pairs"):
        groups.setdefault(pair["group"], set()).add((pair["chosen_rank"], pair["rejected_rank"]))
    for ranks in groups.values():  # every group holds all pairs of its ranked answers
        size = max(j for _, j in ranks) + 1
        assert ranks == {(i, j) for i in range(size) for j in range(i + 1, size)}
