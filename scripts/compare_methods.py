"""Runs the four preference sources on ShapesWorld from the same starting policy with the same prompt budget and
writes one markdown comparison table (plus, with --seva-steps, a table of SeVa's diffusion-noise sweep).

    python scripts/compare_methods.py [--rounds 1] [--prompts 128] [--eval-n 300] [--seva-steps 300,500,800]
                                      [--root runs/compare] [--methods rlaifv,seva,bpo,amp] [key=value ...]

Each method runs from its own config (configs/shapes-METHOD.yaml) in ROOT/METHOD through iterate.py, with the
budget overrides and any extra ``key=value`` overrides applied to every run. Rerunning the command skips
finished runs and resumes unfinished ones. The tables go to stdout and ROOT/comparison.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed

from engine.config import load_config  # noqa: E402  (the repository root is on the path only from here)
from evaluation.layout import RunLayout, eval_stage  # noqa: E402
from feedback.augment import alpha_bar  # noqa: E402

METHODS = ("rlaifv", "seva", "bpo", "amp")


def finished(run_dir: Path, rounds: int) -> bool:
    return RunLayout(run_dir).is_done(rounds, eval_stage("shapesworld"))


def run_method(method: str, run_dir: Path, rounds: int, overrides: list[str], start: Path | None = None) -> None:
    """One run through iterate.py (resuming it if it stopped), its output in RUN_DIR.log. A new run branches
    from ``start``'s round 0 when given: every method starts from the same policy, evaluated once."""
    if finished(run_dir, rounds):
        print(f"[compare] {run_dir.name}: finished, skipped", flush=True)
        return
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    branch = ["--resume-from", "0", "--from-run", str(start)] if start and not (run_dir / "config.yaml").exists() else []
    cmd = [sys.executable, str(ROOT / "iterate.py"), "--config", str(ROOT / f"configs/shapes-{method}.yaml"),
           "--run-dir", str(run_dir), *branch, f"run.rounds={rounds}", *overrides]
    print(f"[compare] {run_dir.name}: {' '.join(cmd[1:])}", flush=True)
    with open(run_dir.with_suffix(".log"), "a") as log:
        result = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"[compare] {run_dir.name} failed (exit {result.returncode}); see {run_dir.with_suffix('.log')}")


def figures(run_dir: Path, rounds: int) -> dict:
    """Held-out figures of every round, pairs trained on, and each round's stage seconds."""
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [RunLayout(run_dir).read_eval_metrics(k, "shapesworld") for k in range(rounds + 1)]
    pairs_info = {r["round"]: r for r in metrics if r["stage"] == "pairs"}
    return {"first": evals[0], "last": evals[-1], "evals": evals,
            "pairs": sum(r.get("pairs", 0) for r in metrics if r["stage"] == "train" and r["round"] >= 1),
            "identical": sum(r.get("identical_dropped", 0) for r in pairs_info.values()),
            "round_seconds": [sum(r.get("seconds", 0) for r in metrics if r["round"] == k) for k in range(1, rounds + 1)],
            "seconds": sum(r.get("seconds", 0) for r in metrics if r["round"] >= 1)}


def _row(name: str, f: dict) -> str:
    a, b = f["first"], f["last"]
    return (f"| {name} | {a['chair_s']:.1%} → {b['chair_s']:.1%} | {a['chair_i']:.1%} → {b['chair_i']:.1%} | "
            f"{a['recall']:.1%} → {b['recall']:.1%} | {a['pope_f1']:.3f} → {b['pope_f1']:.3f} | {f['pairs']} | "
            f"{f['seconds']:.0f} |")


def method_table(results: dict[str, dict]) -> str:
    lines = ["| method | CHAIR-s | CHAIR-i | recall | POPE F1 | pairs used | wall s |", "|---|---|---|---|---|---|---|"]
    return "\n".join(lines + [_row(name, f) for name, f in results.items()])


def rounds_table(results: dict[str, dict]) -> str:
    """Every round of every method: CHAIR-i / recall / POPE F1, and the round's stage seconds."""
    rounds = len(next(iter(results.values()))["evals"])
    lines = ["| method | " + " | ".join(f"round {k}" for k in range(rounds)) + " |", "|---|" + "---|" * rounds]
    for name, f in results.items():
        cells = [f"{e['chair_i']:.1%} / {e['recall']:.1%} / {e['pope_f1']:.3f}" for e in f["evals"]]
        cells[1:] = [f"{c}, {s:.0f} s" for c, s in zip(cells[1:], f["round_seconds"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(results: dict[int, dict]) -> str:
    lines = ["| SeVa noise step | ᾱ_t | CHAIR-s | CHAIR-i | recall | POPE F1 | pairs used | wall s | identical answers dropped |",
             "|---|---|---|---|---|---|---|---|---|"]
    for step, f in sorted(results.items()):
        lines.append(_row(str(step), f).replace(f"| {step} |", f"| {step} | {alpha_bar(step):.3f} |", 1)
                     + f" {f['identical']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/compare", help="folder of the runs (default runs/compare)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated sources to compare")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per method")
    parser.add_argument("--prompts", type=int, default=128, help="prompts per round, the same for every method")
    parser.add_argument("--eval-n", type=int, default=300, help="held-out images per evaluation")
    parser.add_argument("--seva-steps", default="", help="SeVa diffusion steps to sweep, e.g. 300,500,800")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied to every run")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    steps = [int(s) for s in args.seva_steps.split(",") if s.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or args.rounds < 1 or args.prompts < 1 or any(not 0 <= s < 1000 for s in steps):
        parser.error(f"--methods must be among {METHODS}, --rounds/--prompts >= 1, --seva-steps in 0..999")
    root = Path(args.root)
    budget = [f"sampling.prompts_per_round={args.prompts}", f"eval.n={args.eval_n}", *args.overrides]

    results = {}
    for method in methods:
        run_method(method, root / method, args.rounds, budget, start=root / methods[0] if method != methods[0] else None)
        results[method] = figures(root / method, args.rounds)
    report = [f"Same starting policy and budget: {args.rounds} round(s) x {args.prompts} prompts per method; "
              f"held-out n = {args.eval_n}; round 0 → round {args.rounds}; wall s = the rounds' stage seconds.\n",
              method_table(results),
              "\nEvery round (CHAIR-i / recall / POPE F1, and the round's stage seconds):\n", rounds_table(results)]
    if steps:
        sweep = {}
        default_step = load_config(ROOT / "configs/shapes-seva.yaml", budget).feedback.seva.noise_step
        for step in steps:
            # the comparison's SeVa run already is the sweep's point at the config's own step
            run_dir = root / "seva" if step == default_step and "seva" in methods else root / f"seva-step{step}"
            run_method("seva", run_dir, args.rounds, [*budget, f"feedback.seva.noise_step={step}"], start=root / methods[0])
            sweep[step] = figures(run_dir, args.rounds)
        report += ["\nSeVa diffusion-noise sweep (the strength of the negative):\n", sweep_table(sweep)]
    text = "\n".join(report) + "\n"
    (root / "comparison.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
