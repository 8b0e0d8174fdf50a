"""BPO on a user dataset in RLAIF-V's layout (scripts/shapes_user_dataset.py: ShapesWorld scenes with English
questions and general-English references): the general injector writes the negatives, a round trains on
them, and the run's report shows them under their references."""
from test_loop import iterate

from engine.store import RunStore
from engine.training import load_pairs
from evaluation.report import escape
from feedback.inject import english_inject
from feedback.sources import derive_seed
from scripts.shapes_user_dataset import write_dataset


def test_bpo_with_the_english_injector_trains_a_round_on_a_user_dataset(small_zoo, tmp_path):
    data = write_dataset(tmp_path / "user-data", n=8)
    run_dir = tmp_path / "run"
    # feedback.labeler=vlm: the small runs' oracle knows ShapesWorld prompts only (BPO asks no labeler anyway)
    iterate(run_dir, "run.rounds=1", "data.source=dataset", f"data.path={data}", "sampling.prompts_per_round=8",
            "feedback.labeler=vlm", "feedback.bpo.injected=2", config="configs/shapes-bpo.yaml")
    store = RunStore(run_dir)
    for stage in ("prompts", "sample", "inject", "pairs", "train", "eval/shapesworld"):
        assert store.is_done(1, stage), stage
    references = {p["id"]: p["reference"] for p in store.read(1, "prompts")}
    assert len(references) == 8 and all(r.startswith("The picture shows") for r in references.values())
    injected = {}
    for row in store.read(1, "inject"):
        injected.setdefault(row["prompt_id"], []).append(row["response"])
    for prompt_id, reference in references.items():
        # the general English injector's edits, seeded by (run seed, round, stage, prompt) as every stage is
        assert injected[prompt_id] == english_inject(reference, 2, derive_seed(0, 1, "inject", prompt_id))
        for text in injected[prompt_id]:  # one word changed: a colour, a count or a corner
            changed = [(a, b) for a, b in zip(reference.split(), text.split()) if a != b]
            assert len(text.split()) == len(reference.split()) and len(changed) == 1, (reference, text)
    pairs = load_pairs(run_dir / "rounds/001/pairs")
    assert len(pairs) == store.done_info(1, "train")["pairs"] > 0 and set(pairs["source"]) == {"bpo"}
    rejected = {row["rejected"][0]["content"][0]["text"] for row in pairs}
    assert {t for texts in injected.values() for t in texts} <= rejected  # every injected negative is trained on
    report = (run_dir / "report.md").read_text()
    assert "## Injected negatives of round 1" in report
    first = next(iter(injected))  # the report lists prompts in the prompts table's order
    assert f"**{escape(first)}** — reference: {escape(references[first])}" in report
    assert all(f"* injected: {escape(text)}" in report for text in injected[first])
