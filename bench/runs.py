"""Stages 4-6 measured on whole runs of ``iterate.py``: round overhead, scaling with the prompt budget, memory.

Each run is the default config (configs/shapes-rlaifv.yaml) with the chosen zoo, a prompt budget and
``run.rounds`` (1 by default: every round restarts the labeler and trainer, so one round shows a round's
costs and its peak memory). Round 1's wall time runs from round 0's eval marker to round 1's; a background
thread samples the resident memory of the driver and every Ray process under it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from bench.common import DEFAULT_CONFIG, ROOT, Context, MemorySampler, Timer
from bench.report import Section, fmt
from engine.store import RunStore
from evaluation.layout import eval_stage

GB = 1e9
AT_7B = ("At 7B on GPUs (an estimate, not measured here): the fixed costs grow far less than the work. The "
         "sampler's engine starts once per run and stays resident (vLLM loads ~14 GB of bf16 weights and "
         "captures CUDA graphs in 1-2 min); the labeler and trainer reload a 7B model each round (~1 min each "
         "from local disk); the adapter hand-off is loading a LoRA of tens of MB (well under a second, then "
         "cached under its id); store I/O stays a few MB of parquet per round. The work grows by two to three "
         "orders of magnitude: RLAIF-V-size rounds (thousands of prompts x 10 answers, ~10 claims each, DPO "
         "over several epochs) take hours on 8 GPUs, so the round overhead falls to a few percent.")


def iterate_run(ctx: Context, prompts: int, rounds: int) -> dict:
    """Runs iterate.py in a subprocess (its own local Ray) and reads round 1's figures from its run directory."""

    run_dir = ctx.workdir / f"run-{prompts}"
    shutil.rmtree(run_dir, ignore_errors=True)  # iterate.py would resume a finished run
    cmd = [sys.executable, str(ROOT / "iterate.py"), "--config", str(DEFAULT_CONFIG), "--run-dir", str(run_dir),
           f"run.rounds={rounds}", *ctx.run_overrides(prompts)]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "VLLM_LOGGING_LEVEL": "ERROR"}
    log_path = ctx.workdir / f"run-{prompts}.log"
    print(f"[bench] run: {' '.join(cmd[1:])} (log {log_path})", flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        with MemorySampler(proc.pid) as memory, Timer() as t:
            proc.wait()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log_path}")
    store = RunStore(run_dir)
    marker = lambda k: store.marker(k, eval_stage("shapesworld")).stat().st_mtime  # noqa: E731
    train = json.loads((store.policy(1) / "candor_train.json").read_text())
    loop = [h["train_runtime"] for h in train.get("log_history", []) if "train_runtime" in h]
    return {"prompts": prompts, "wall_s": t.seconds, "round_s": marker(1) - marker(0), "run_dir": run_dir,
            "stages": {m["stage"]: m["seconds"] for m in store.metrics() if m["round"] == 1},
            "train_loop_s": loop[-1] if loop else None, "pairs": train.get("pairs"),
            "peak_total": memory.peak_total, "peak_by_role": memory.peak_by_role}


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares y = a + b x; returns a, b and R^2."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return a, b, 1 - ss_res / ss_tot if ss_tot else 1.0


def bench_scaling(runs: list[dict]) -> Section:
    section = Section("5. Scaling: round wall time vs prompt budget")
    for r in runs:
        section.add(f"round 1 with {r['prompts']} prompts", f"{r['round_s']:.1f}s")
        section.note(f"{r['prompts']} prompts, round 1's stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["stages"].items()))
    if len(runs) >= 3:
        a, b, r2 = fit_line([r["prompts"] for r in runs], [r["round_s"] for r in runs])
        section.add("least-squares line", f"{a:.1f}s + {b:.3f}s x prompts", f"R^2 = {r2:.3f}", None,
                    "linear (R^2 near 1)", r2 >= 0.95)
    section.note("stage seconds from metrics.jsonl; the intercept holds the fixed costs (labeler and trainer "
                 "start, the held-out eval of a fixed size)")
    return section


def bench_memory(run: dict) -> Section:
    section = Section("6. Memory: peak resident memory of a whole run")
    section.add(f"whole run ({run['prompts']} prompts), driver + Ray + actors, at the peak instant",
                fmt(run["peak_total"] / GB, " GB", 2), "", None, "<= 6 GB", run["peak_total"] <= 6 * GB)
    for role, rss in sorted(run["peak_by_role"].items(), key=lambda kv: -kv[1]):
        section.add(f"peak of {role}", fmt(rss / GB, " GB", 2))
    section.note("psutil RSS sampled every 0.5 s over the driver's process tree; pages shared between processes "
                 "count once per process, so the total is an upper bound. Per-role peaks happen at different times.")
    return section


def direct_overheads(ctx: Context, run: dict) -> dict:
    """Measured in this process: actor start + model load, and an adapter's first use, with the run's adapter."""
    import ray

    from engine.actors import LabelerActor, SamplerActor, TrainerActor, actor_options, engine_kwargs
    from engine.generation import Adapter
    from bench.sampling import warm_items

    cfg, seconds = ctx.cfg, {}
    for name, cls, model, lora in (("sampler", SamplerActor, ctx.policy, True), ("labeler", LabelerActor, ctx.labeler, False)):
        with Timer() as t:
            actor = cls.options(**actor_options(cfg, name)).remote(model, engine_kwargs(cfg, lora, name))
            ray.get(actor.pid.remote())
        seconds[f"{name}_start"] = t.seconds
        if name == "sampler":
            items = ctx.items()[:8]
            ray.get(actor.generate.remote(warm_items(), 1, 0.0, 16, None, None))
            adapter = Adapter(str(RunStore(run["run_dir"]).policy(1).resolve()), 4242)
            timings = []
            for _ in range(2):
                with Timer() as t:
                    ray.get(actor.generate.remote(items, 1, 0.0, 32, None, adapter))
                timings.append(t.seconds)
            seconds["adapter_handoff"] = max(0.0, timings[0] - timings[1])
        ray.kill(actor)
    with Timer() as t:
        trainer = TrainerActor.options(**actor_options(cfg, "trainer")).remote()
        ray.get(trainer.pid.remote())
    ray.kill(trainer)
    seconds["trainer_start"] = t.seconds
    return seconds


def bench_overhead(ctx: Context, run: dict) -> Section:
    """Round 1's wall time split into generation, verification, training steps and the rest."""
    section = Section("4. Round overhead (default config)")
    direct = direct_overheads(ctx, run)
    st, wall = run["stages"], run["round_s"]
    loop = run["train_loop_s"]
    # Only the vlm labeler has an actor of its own, started inside the verify stage.
    labeler_start = direct["labeler_start"] if ctx.cfg.feedback.labeler == "vlm" else 0.0
    verify = st["verify"] - labeler_start
    generation = st["sample"] + st["eval"] - direct["adapter_handoff"]
    parts = {"labeler actor start + model load": labeler_start,
             "trainer start, model load, set-up, save": st["train"] - loop if loop is not None else None,
             "adapter hand-off (first use)": direct["adapter_handoff"],
             "prompts + split + pairs stages (store I/O, CPU)": st["prompts"] + st["split"] + st["pairs"]}
    work = generation + verify + (loop or 0.0)
    overhead = wall - work
    section.add(f"share of round 1 wall time ({wall:.1f}s) not spent generating, verifying or in training steps",
                f"{overhead / wall:.1%} ({overhead:.1f}s)", f"work {work:.1f}s", None, "< 25%", overhead / wall < 0.25)
    for name, value in parts.items():
        section.add(f"  {name}", fmt(value, "s", 2), fmt(None if value is None else value / wall * 100, "% of round"))
    section.add("  rest (gaps between stages, Ray calls)", fmt(overhead - sum(v or 0 for v in parts.values()), "s", 2))
    section.add("for context: sampler actor start + model load (once per run)", fmt(direct["sampler_start"], "s", 2))
    section.add("for context: trainer actor start alone", fmt(direct["trainer_start"], "s", 2))
    section.note(f"generation = sample + eval stages ({generation:.1f}s), verification = verify stage minus the "
                 f"labeler start ({verify:.1f}s), training steps = TRL's train_runtime ({fmt(loop, 's')}); "
                 "actor starts and the adapter's first use are measured directly in the benchmark process")
    section.note(AT_7B)
    return section
