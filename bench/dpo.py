"""Stage 3, DPO: Candor's trainer stage (``engine.training.train_dpo``) vs a plain TRL DPOTrainer script.

Both train on one pairs folder built from round 1's sampled answers (scored by the oracle labeler, so the
pair count does not depend on the labeler's quality). Each training runs in its own process, so its peak
RSS is its own (sampled from the parent) and torch's thread count is set fresh; ``DPOTrainer.train`` is timed from outside, so the
figures split the training loop from the set-up around it (model load, dataset, trainer init, save).

    python -m bench.dpo '{"mode": "candor"|"trl", ...}'   (the child; prints one BENCH-DPO json line)
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import ROOT, Context, MemorySampler, ratio
from bench.report import Section, fmt

MARK = "BENCH-DPO "


def make_pairs(ctx: Context):
    """Round 1's pairs table in a scratch run directory, written as the pairs stage writes it."""
    from feedback.pairs import pairs_schema
    from feedback import rlaifv
    from feedback.labelers import OracleLabeler

    rounds = ctx.rounds("dpo")
    if not rounds.store.has_shard(1, "pairs", 0):
        by_id = {p["id"]: p for p in ctx.prompt_rows()}
        verified = rlaifv.verify_claims(rlaifv.split_answers(ctx.samples()), by_id, OracleLabeler(), "oracle")
        r = ctx.cfg.feedback.rlaifv
        pairs = rlaifv.make_pairs(verified, by_id, r.max_pairs_per_prompt, ctx.cfg.run.seed, r.length_balance, 1)
        rounds.store.write_shard(1, "pairs", 0, pairs, pairs_schema())
    return rounds.store.stage_dir(1, "pairs")


def _time_training_loop(record: dict) -> None:
    """Wraps DPOTrainer.train so the loop's seconds and steps are known whoever builds the trainer."""
    from trl import DPOTrainer

    train = DPOTrainer.train

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        output = train(self, *args, **kwargs)
        record["loop_s"] = time.perf_counter() - start
        record["steps"] = output.global_step
        return output

    DPOTrainer.train = timed


def _plain_trl(spec: dict) -> int:
    """The obvious script: TRL's defaults (full fine-tuning, its own reference copy); the epochs match."""
    import tempfile

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = AutoModelForImageTextToText.from_pretrained(spec["model"], dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(spec["model"])
    dataset = load_dataset("parquet", data_files=f"{spec['pairs_dir']}/part-*.parquet", split="train")
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, num_train_epochs=spec["epochs"], report_to=[], save_strategy="no",
                         **spec.get("extra", {}))
        DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor).train()
    return len(dataset)


def child(spec: dict) -> dict:
    import tempfile

    record: dict = {}
    _time_training_loop(record)
    start = time.perf_counter()
    if spec["mode"] == "candor":
        from engine.training import train_dpo

        out = spec.pop("out_dir", None) or tempfile.mkdtemp(prefix="bench-dpo-")
        figures = train_dpo(**{k: v for k, v in spec.items() if k != "mode"}, out_dir=out)
        pairs = figures["pairs"]
    else:
        pairs = _plain_trl(spec)
    record.update(wall_s=time.perf_counter() - start, pairs=pairs)
    return record


def run_child(spec: dict) -> dict:
    """One training in a child process; its peak RSS is sampled from here (a forked child's ru_maxrss would
    start from the parent's)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.dpo", json.dumps(spec)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with MemorySampler(proc.pid, interval=0.2) as memory:
        out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"DPO benchmark child {spec['mode']} failed:\n{out[-2000:]}\n{err[-4000:]}")
    return {**json.loads(lines[-1][len(MARK):]), "peak_rss_mb": memory.peak_total / 2**20}


def bench_dpo(ctx: Context) -> Section:
    section = Section("3. DPO training")
    pairs_dir = str(make_pairs(ctx))
    t = ctx.cfg.train
    candor = {"mode": "candor", "base_model": ctx.policy, "pairs_dir": pairs_dir, "previous_adapter": None,
              "reference": t.reference, "beta": t.beta, "lr": t.lr, "epochs": t.epochs, "batch_size": t.batch_size,
              "lora_r": t.lora_r, "lora_alpha": t.lora_alpha, "seed": 0, "use_cpu": True}
    adapter = str(ctx.workdir / "dpo-adapter")
    runs = {threads: run_child({**candor, "threads": threads, **({"out_dir": adapter} if threads == 1 else {})})
            for threads in (1, 2)}
    ctx._cache["adapter"] = adapter
    plain_spec = {"mode": "trl", "model": ctx.policy, "pairs_dir": pairs_dir, "epochs": t.epochs, "extra": {"use_cpu": True}}
    plain = run_child(plain_spec)
    plain_same = run_child({**plain_spec, "threads": t.threads})

    def rate(r, key):
        return r["pairs"] * t.epochs / r[key]

    ours = runs[t.threads]
    section.add(f"trainer stage vs plain TRL script on torch's default threads: pairs/s in the training loop "
                f"({ours['pairs']} pairs x {t.epochs} epochs)",
                f"{rate(ours, 'loop_s'):.1f} pairs/s", f"{rate(plain, 'loop_s'):.1f} pairs/s",
                ratio(rate(ours, 'loop_s'), rate(plain, 'loop_s')), "report")
    section.add(f"same, both on {t.threads} torch thread(s) (LoRA + batch {t.batch_size} vs TRL's defaults alone)",
                f"{rate(ours, 'loop_s'):.1f} pairs/s", f"{rate(plain_same, 'loop_s'):.1f} pairs/s",
                ratio(rate(ours, 'loop_s'), rate(plain_same, 'loop_s')), "report")
    section.add("same, end to end (model load, data, trainer set-up, save)", f"{rate(ours, 'wall_s'):.1f} pairs/s",
                f"{rate(plain, 'wall_s'):.1f} pairs/s", ratio(rate(ours, 'wall_s'), rate(plain, 'wall_s')), "report")
    section.add("steps/s", f"{ours['steps'] / ours['loop_s']:.2f} (batch {t.batch_size})",
                f"{plain['steps'] / plain['loop_s']:.2f} (batch 8)", None, "report")
    section.add("peak RSS of the training process", fmt(ours["peak_rss_mb"], " MB", 0),
                fmt(plain["peak_rss_mb"], " MB", 0), ratio(ours["peak_rss_mb"], plain["peak_rss_mb"]), "report")
    section.add("torch threads: 1 vs 2 (Candor's trainer, steps/s)", f"{runs[1]['steps'] / runs[1]['loop_s']:.2f}",
                f"{runs[2]['steps'] / runs[2]['loop_s']:.2f}",
                ratio(runs[1]['steps'] / runs[1]['loop_s'], runs[2]['steps'] / runs[2]['loop_s']), "report")
    section.note(f"Candor: LoRA r={t.lora_r} on the language model, batch {t.batch_size}, lr {t.lr}, "
                 f"{t.threads} torch thread(s); set-up outside the loop {ours['wall_s'] - ours['loop_s']:.1f}s. "
                 "Plain TRL: DPOConfig defaults (full fine-tuning, batch 8, its own reference model, torch's "
                 "default threads) with use_cpu, no saving and the same epochs")
    ctx._cache["train_setup_s"] = ours["wall_s"] - ours["loop_s"]
    return section


if __name__ == "__main__":
    print(MARK + json.dumps(child(json.loads(sys.argv[1]))), flush=True)
