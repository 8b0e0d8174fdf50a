"""The run's preference data as one HF dataset: ``python -m engine.export RUN_DIR OUT_DIR``
(``--merge [--round N]``: a round's policy as one plain model instead, engine/merge.py).

Every round's pairs table goes into one ``datasets.Dataset`` saved with ``save_to_disk``. It keeps TRL's
conversational DPO columns (``images``, ``prompt``, ``chosen``, ``rejected``), so ``DPOTrainer`` trains on
``load_from_disk(OUT_DIR)`` unchanged, and Candor's columns: ``id``, ``prompt_id``, ``round``, ``source``,
``group``, ranks, ``chosen_score`` / ``rejected_score``, and ``chosen_claims`` / ``rejected_claims``: each
answer's claims as its round's split and verify tables saw them (empty where a source has no such tables).
"""
from __future__ import annotations

import sys
from pathlib import Path


from evaluation.layout import RunLayout
from evaluation.report import claim_marks, message_text

CLAIM_FEATURE = {"claim": "string", "question": "string", "negated": "bool", "p_yes": "float64", "accepted": "bool"}


def _round_dataset(run: Path, k: int, default_source: str):
    from datasets import Dataset, Features, List, Value

    files = [str(p) for p in RunLayout(run).shards(k, "pairs")]
    dataset = Dataset.from_parquet(files, keep_in_memory=True)
    if "source" not in dataset.column_names:  # pairs made before sources had names
        dataset = dataset.add_column("source", [default_source] * len(dataset))
    marks = claim_marks(run, k)
    claim = List({name: Value(kind) for name, kind in CLAIM_FEATURE.items()})
    features = Features({**dataset.features, "chosen_claims": claim, "rejected_claims": claim})

    def add_claims(row):
        return {f"{side}_claims": marks.get((row["prompt_id"], message_text(row[side])), [])
                for side in ("chosen", "rejected")}

    return dataset.map(add_claims, features=features, keep_in_memory=True)


def export_preferences(run_dir: str | Path, out_dir: str | Path):
    """Writes all finished rounds' pairs to ``out_dir`` (save_to_disk) and returns the dataset."""
    from datasets import concatenate_datasets

    run, out = Path(run_dir), Path(out_dir)
    layout = RunLayout(run)
    if not layout.is_run():
        raise FileNotFoundError(f"{run}: not a run directory (no rounds/ folder)")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty; export into a new folder")
    config = layout.saved_config()
    default_source = (config.get("feedback") or {}).get("source", "rlaifv")
    rounds = [k for k in layout.round_numbers() if layout.is_done(k, "pairs") and layout.shards(k, "pairs")]
    parts = [_round_dataset(run, k, default_source) for k in rounds]
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError(f"{run}: no finished pairs stage with any pairs to export")
    dataset = concatenate_datasets(parts)
    dataset.save_to_disk(str(out))
    return dataset


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m engine.export",
                                     description="A run's pairs as one HF dataset, or with --merge a round's policy "
                                                 "as one plain model (engine/merge.py).")
    parser.add_argument("run_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--merge", action="store_true", help="write the policy with its adapter merged")
    parser.add_argument("--round", type=int, default=None, help="with --merge: the round (default: the newest trained)")
    args = parser.parse_args(argv)
    if args.round is not None and not args.merge:
        parser.error("--round goes with --merge")
    try:
        if args.merge:
            from engine.merge import merge_adapter, round_adapter

            k, adapter = round_adapter(args.run_dir, args.round)
            merge_adapter(adapter, args.out_dir)
            print(f"round {k}'s policy merged -> {args.out_dir} (a plain model for HF and vLLM)")
            return 0
        dataset = export_preferences(args.run_dir, args.out_dir)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"engine.export: {e}", file=sys.stderr)
        return 1
    rounds = sorted(set(dataset["round"]))
    print(f"{len(dataset)} preference pairs from rounds {rounds} -> {args.out_dir} (datasets.load_from_disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
