"""The split stage, shard by shard: it divides only its shard's answers, the LLM path asks an optional separate
question-rewrite model (feedback.splitter_rewrite_model), and the engine's text handle starts that model once
beside the stage's own and frees both when the stage ends."""
import pytest

from engine.config import ConfigError, load_config
from feedback.claims import split_claims
from feedback.rlaifv import claim_check_stages, llm_split_figures, split_stage
from feedback.sources import RoundContext

SAMPLES = [{"prompt_id": "p1", "sample": 0, "response": "A brown dog."},
           {"prompt_id": "p1", "sample": 1, "response": "A brown dog."},
           {"prompt_id": "p2", "sample": 0, "response": "There is a red circle at the top left."}]


def context(*overrides):
    cfg = load_config("configs/shapes-rlaifv.yaml", list(overrides))
    return RoundContext(cfg, 1, {}, lambda stage: SAMPLES if stage == "sample" else [])


class Models:
    """complete(prompts, max_tokens, model) of the text handle; records which model got which kind of prompt."""

    def __init__(self):
        self.asked = []

    def __call__(self, prompts, max_tokens=256, model=None):
        kind = "facts" if "List every atomic" in prompts[0] else "questions"
        self.asked.append((model, kind, len(prompts)))
        if kind == "facts":
            return ["- There is a dog.\n- The dog is brown." for _ in prompts]
        return ["Is there a dog in the image?", "Is the dog brown?"][:len(prompts)] if model else ["Yes."] * len(prompts)


def test_the_split_stage_is_sharded_and_divides_only_its_shards_answers():
    [split, verify] = claim_check_stages(context().cfg)
    assert split.sharded and verify.sharded and split.uses == ""
    rows = split_stage(context(), None, [{"id": "p2"}])
    assert [(r["prompt_id"], r["sample"]) for r in rows] == [("p2", 0)]
    assert rows[0]["questions"] == ["Is there a red circle in the image?", "Is the red circle at the top left?"]


def test_the_llm_split_asks_a_separate_rewrite_model_when_one_is_configured():
    models = Models()
    ctx = context("feedback.splitter=llm", "feedback.splitter_rewrite_model=org/rewriter")
    assert claim_check_stages(ctx.cfg)[0].uses == "text"
    rows = split_stage(ctx, models, [{"id": "p1"}])
    # one fact list for the shard's one distinct answer (asked of the stage's model), its two facts rewritten
    # by the rewrite model
    assert models.asked == [(None, "facts", 1), ("org/rewriter", "questions", 2)]
    assert [r["questions"] for r in rows] == [["Is there a dog in the image?", "Is the dog brown?"]] * 2
    assert [r["claims"] for r in rows] == [["There is a dog.", "The dog is brown."]] * 2


def test_without_a_rewrite_model_the_splitters_own_model_writes_the_questions():
    models = Models()
    rows = split_stage(context("feedback.splitter=llm"), models, [{"id": "p1"}])
    assert models.asked == [(None, "facts", 1), (None, "questions", 2)]
    # "Yes." is no question: each fact is rewritten by the rule splitter
    assert rows[0]["questions"] == ["Is there a dog in the image?", "Is the dog brown?"]


def test_a_missing_rewrite_model_path_is_refused_by_the_config():
    assert load_config("configs/shapes-rlaifv.yaml").feedback.splitter_rewrite_model == ""
    with pytest.raises(ConfigError, match="feedback.splitter_rewrite_model: model path '/no/such/model'"):
        load_config("configs/shapes-rlaifv.yaml", ["feedback.splitter_rewrite_model=/no/such/model"])


def test_the_text_handle_starts_each_asked_model_once_and_frees_them_with_the_stage(tmp_path):
    from engine.models import Models as EngineModels

    started, killed = [], []

    class Group:
        def __init__(self, model):
            self.model = model

        def call(self, index, method, prompts, max_tokens):
            return [f"{self.model}:{max_tokens}:{p}" for p in prompts]

        def kill(self):
            killed.append(self.model)

    class Executor:
        def group(self, role, count, model, kwargs):
            assert (role, count) == ("text", 1)
            started.append(model)
            return Group(model)

    cfg = load_config("configs/shapes-rlaifv.yaml")
    models = EngineModels(cfg, Executor(), None, "policy", "labeler", resolve_model=lambda name: f"/models/{name}")
    with models.handles("text", 1, "smollm2") as [complete]:
        assert complete(["a"], max_tokens=8) == ["/models/smollm2:8:a"]
        assert complete(["b"], max_tokens=4, model="org/rewriter") == ["/models/org/rewriter:4:b"]
        assert complete(["c"]) == ["/models/smollm2:256:c"]
        assert started == ["/models/smollm2", "/models/org/rewriter"] and killed == []
    assert killed == ["/models/smollm2", "/models/org/rewriter"]


def copying_model(prompts, max_tokens=256, model=None):
    """Lists the few-shot example's facts for every answer (as SmolLM2-135M often does) and asks nothing."""
    if "List every atomic" in prompts[0]:
        return ["- There is a dog.\n- The dog is brown.\n- There is a rug.\n- There is a rug." for _ in prompts]
    return ["Yes."] * len(prompts)


def test_the_llm_split_rows_keep_the_facts_their_screen_dropped_and_the_stage_counts_them():
    rows = split_stage(context("feedback.splitter=llm"), copying_model, [{"id": "p1"}, {"id": "p2"}])
    # p1's "A brown dog." states the dog and its colour; p2's red circle states none of the three facts, so the
    # rule splitter divides it
    assert [r["questions"] for r in rows[:2]] == [["Is there a dog in the image?", "Is the dog brown?"]] * 2
    assert rows[2]["questions"] == [c.question for c in split_claims(rows[2]["response"])] != []
    assert [r["split_by_rule"] for r in rows] == [False, False, True]
    assert rows[0]["dropped_facts"] == ["There is a rug.", "There is a rug."]
    assert rows[0]["dropped_reasons"] == ["copied", "repeated"]
    assert rows[2]["dropped_reasons"] == ["copied"] * 3 + ["repeated"]
    assert llm_split_figures(iter(rows)) == {"facts_dropped": 8, "facts_dropped_repeated": 3,
                                             "facts_dropped_copied": 5, "facts_dropped_unrelated": 0,
                                             "answers_split_by_rule": 1, "answers_without_claims": 0}
    assert claim_check_stages(context("feedback.splitter=llm").cfg)[0].summary is llm_split_figures
    assert claim_check_stages(context().cfg)[0].summary is None  # the rule splitter drops nothing


def test_a_resumed_split_stage_reports_the_same_counts_as_an_uninterrupted_one(tmp_path):
    from contextlib import contextmanager

    from engine.rounds import Rounds
    from engine.store import RunStore

    class Handles:
        @contextmanager
        def handles(self, uses, k, model):
            yield [copying_model]

    def split_marker(root, resume):
        ctx = context("feedback.splitter=llm", "sampling.shard_size=1")
        rounds = Rounds.__new__(Rounds)  # the sequencer's stage runner alone, over a bare run store
        rounds.cfg, rounds.store, rounds.models, rounds.log = ctx.cfg, RunStore(root), Handles(), lambda line: None
        prompts, stage = [{"id": "p1"}, {"id": "p2"}], claim_check_stages(ctx.cfg)[0]
        if resume:  # the first shard was written before the driver died
            rounds.store.write_shard(1, "split", 0, split_stage(ctx, copying_model, prompts[:1]))
        rounds.run_stage(1, stage, ctx, prompts)
        return {k: v for k, v in rounds.store.done_info(1, "split").items() if k not in ("seconds", "files")}

    whole, resumed = split_marker(tmp_path / "whole", False), split_marker(tmp_path / "resumed", True)
    assert whole == {"shards": 2, "shards_run": 2, "items": 2, "facts_dropped": 8, "facts_dropped_repeated": 3,
                     "facts_dropped_copied": 5, "facts_dropped_unrelated": 0, "answers_split_by_rule": 1,
                     "answers_without_claims": 0}
    assert resumed == {**whole, "shards_run": 1}
