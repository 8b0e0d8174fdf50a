"""python -m bench: each stage of Candor against its baseline, on the same models and prompts; writes BENCHMARKS.md.

    python -m bench                                   # every stage, full zoo, the default sizes
    python -m bench --only sampling,labeler --prompts 64 --zoo small

Stages: sampling (vs bare vLLM and HF generate), labeler (vs RLAIF-V's one-generate-per-question path,
prefix caching on/off), dpo (vs a plain TRL script, threads 1 vs 2), overhead (share of a round's wall time
that is not generation, verification or training steps), scaling (round time for several prompt budgets,
1 vs 2 sampler actors), memory (peak RSS of a whole run per actor). Figures are printed as they come.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, Context, machine, package_versions

# BENCHMARKS.md keeps what follows this line (profiles, analysis) when the figures are rewritten.
HAND_WRITTEN = "<!-- hand-written below: kept when python -m bench rewrites the figures -->"
STAGES = ("sampling", "labeler", "dpo", "overhead", "scaling", "memory")


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(STAGES), help=f"comma-separated stages (default: all of {','.join(STAGES)})")
    p.add_argument("--zoo", choices=("full", "small"), default="full", help="which tiny model zoo (default full)")
    p.add_argument("--prompts", type=int, default=64, help="prompts for the sampling, labeler and dpo stages")
    p.add_argument("--hf-prompts", type=int, default=8, help="prompts HF generate samples (it is slow)")
    p.add_argument("--hf-batch", type=int, default=8, help="prompts per HF generate call")
    p.add_argument("--reference-claims", type=int, default=64, help="claims the RLAIF-V reference path checks")
    p.add_argument("--run-prompts", type=int, default=256, help="prompt budget of the default-config run "
                   "(overhead, memory)")
    p.add_argument("--budgets", default="32,64,128,256", help="prompt budgets of the scaling runs")
    p.add_argument("--rounds", type=int, default=1, help="run.rounds of the whole runs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every stage and run, e.g. eval.n=50 (repeatable)")
    p.add_argument("--repeats", type=int, default=2, help="timed comparisons keep the best of this many runs")
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="report path ('-' prints it only)")
    p.add_argument("--note", action="append", default=[], help="a line for the report's header (repeatable)")
    p.add_argument("--workdir", help="scratch folder, kept (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(STAGES)
    if unknown:
        p.error(f"--only: unknown stage(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")
    args.budgets = [int(b) for b in args.budgets.split(",")]
    for name in ("repeats", "prompts", "hf_prompts", "hf_batch", "reference_claims", "run_prompts", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: must be >= 1")
    if "scaling" in args.only and (len(args.budgets) < 3 or min(args.budgets) < 1):
        p.error("--budgets: give at least 3 positive prompt budgets for the line fit")
    return args


def run_stages(args, ctx: Context) -> list:
    import ray

    from bench import dpo, labeling, runs, sampling
    from engine.actors import connect_ray

    only, sections = args.only, []
    in_process = [s for s in ("sampling", "labeler", "dpo", "scaling") if s in only]
    if in_process:
        connect_ray(ctx.config("resources.sampler_actors=2"))
        try:
            if "sampling" in only:
                sections.append(sampling.bench_sampling(ctx, args.hf_prompts, args.hf_batch))
            if "labeler" in only:
                sections.append(labeling.bench_labeler(ctx, args.reference_claims))
            if "dpo" in only:
                sections.append(dpo.bench_dpo(ctx))
            if "scaling" in only:
                actors = sampling.bench_sampler_actors(ctx)
        finally:
            ray.shutdown()  # one Ray at a time: the whole runs below start their own
    whole = {}
    if {"overhead", "memory"} & set(only):
        whole[args.run_prompts] = runs.iterate_run(ctx, args.run_prompts, args.rounds)
    if "overhead" in only:
        connect_ray(ctx.cfg)
        try:
            sections.append(runs.bench_overhead(ctx, whole[args.run_prompts]))
        finally:
            ray.shutdown()
    if "scaling" in only:
        for budget in args.budgets:
            whole[budget] = whole.get(budget) or runs.iterate_run(ctx, budget, args.rounds)
        sections.append(runs.bench_scaling([whole[b] for b in sorted(args.budgets)]))
        sections.append(actors)
    if "memory" in only:
        sections.append(runs.bench_memory(whole[args.run_prompts]))
    return sections


def main(argv=None) -> int:
    from bench.report import document

    args = parse(argv)
    # Ray starts its workers at nice 15: on a shared machine that starves Candor's actors next to the
    # in-process baselines and other users' jobs; on a dedicated machine the setting changes nothing.
    os.environ.setdefault("RAY_worker_niceness", "0")
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="candor-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_before, start = os.getloadavg()[0], time.time()
    try:
        ctx = Context(zoo=args.zoo, prompts=args.prompts, workdir=workdir, overrides=args.set, repeats=args.repeats)
        sections = run_stages(args, ctx)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    sections.sort(key=lambda s: s.title)  # titles start with the stage number
    preface = [f"Zoo: {args.zoo}; {args.prompts} prompts for stages 1-3; whole runs: configs/shapes-rlaifv.yaml "
               f"with run.rounds={args.rounds}" + "".join(f", {o}" for o in args.set),
               f"1-minute load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
               f"({os.cpu_count()} cores); Ray workers at nice {os.environ['RAY_worker_niceness']} "
               "(RAY_worker_niceness; Ray's default is 15)"] + args.note
    text = document(sections, machine(), package_versions(), command, time.time() - start, preface)
    if args.out == "-":
        print(text)
    else:
        out = Path(args.out)
        kept = out.read_text().partition(HAND_WRITTEN)[2] if out.exists() else ""
        out.write_text(text + "\n" + (HAND_WRITTEN + kept if kept else ""))
        print(f"[bench] wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
