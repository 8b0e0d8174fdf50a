"""Kill-anywhere resume matrix (issue 5): SIGKILL the driver at every stage boundary and in the middle of
every stage of an RLAIF-V round, run the same command again, and check the result against an uninterrupted
run with the same seed.

    python scripts/kill_matrix.py [--work DIR] [--points NAME ...] [--json FILE]

The run is one round on the small zoo with the loop tests' tiny config and the oracle labeler. Each kill is
a fault point (``CANDOR_FAULT``, engine/faults.py) at which the driver SIGKILLs itself, except the middle of
``train``, where the harness kills the driver's process group as soon as the trainer has saved its first
checkpoint (the trainer writes nothing through the run store; here it saves every step, train.save_steps=1).
After each kill the surviving Ray processes of that run are killed too, as a crashed node would lose them.
Checked after the rerun: every stage table of round 1, both evaluations and every metrics.jsonl line equal
to the uninterrupted run's, no duplicated or lost sample and pair rows, the round's adapter tensors equal
within 1e-6. Printed: a markdown table with the shards each kill cost (written whole before the kill and
again by the rerun). Exit status 1 when any check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed

from engine.processes import stop_session  # noqa: E402  (after the path line, so the script runs from anywhere)
from engine.store import RunStore  # noqa: E402
from evaluation.layout import eval_stage  # noqa: E402

TINY = ["model.zoo=small", "sampling.prompts_per_round=16", "sampling.n=4", "sampling.shard_size=8",
        "eval.n=20", "train.epochs=1", "train.batch_size=4", "feedback.labeler=oracle", "run.rounds=1",
        "train.save_steps=1"]
TABLES = ("prompts", "sample", "split", "verify", "pairs")
ADAPTER_TOLERANCE = 1e-6
SUITE = "shapesworld"


@dataclass(frozen=True)
class Kill:
    name: str            # how the table names it
    stage: str
    where: str           # "boundary" (before _SUCCESS) or "middle"
    fault: str = ""      # CANDOR_FAULT, or "" for the harness's own kill of the trainer


KILLS = [
    Kill("eval0-mid", "eval (round 0)", "middle", "write:rounds/000/eval/shapesworld/metrics.json"),
    Kill("eval0-end", "eval (round 0)", "boundary", "done:eval/shapesworld@0"),
    Kill("prompts-mid", "prompts", "middle", "write:prompts:0@1"),
    Kill("prompts-end", "prompts", "boundary", "done:prompts@1"),
    Kill("sample-mid", "sample", "middle", "wrote:sample:0@1"),
    Kill("sample-end", "sample", "boundary", "done:sample@1"),
    Kill("split-mid", "split", "middle", "wrote:split:0@1"),
    Kill("split-end", "split", "boundary", "done:split@1"),
    Kill("verify-mid", "verify", "middle", "wrote:verify:0@1"),
    Kill("verify-end", "verify", "boundary", "done:verify@1"),
    Kill("pairs-mid", "pairs", "middle", "write:pairs:0@1"),
    Kill("pairs-end", "pairs", "boundary", "done:pairs@1"),
    Kill("train-mid", "train", "middle"),
    Kill("train-end", "train", "boundary", "done:train@1"),
    Kill("eval1-mid", "eval (round 1)", "middle", "write:rounds/001/eval/shapesworld/metrics.json"),
    Kill("eval1-end", "eval (round 1)", "boundary", "done:eval/shapesworld@1"),
]


def command(run_dir: Path, extra: list[str] = ()) -> list[str]:
    return [sys.executable, str(ROOT / "iterate.py"), "--config", str(ROOT / "configs/shapes-rlaifv.yaml"),
            "--run-dir", str(run_dir), *TINY, *extra]


def environment(fault: str = "") -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CANDOR_FAULT"}
    # PYTHONPATH: Ray's workers import this checkout's modules too, whatever the venv has installed.
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", VLLM_LOGGING_LEVEL="ERROR",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
    if fault:
        env["CANDOR_FAULT"] = fault
    return env


def trainer_checkpointed(run_dir: Path, processes: list) -> bool:
    """The round's trainer has saved a complete checkpoint (its trainer_state.json is written last)."""
    return any(RunStore(run_dir).checkpoints(1).glob("checkpoint-*/trainer_state.json"))


def run_iterate(run_dir: Path, fault: str = "", kill_when=None, timeout: float = 1800, extra: list[str] = ()) -> int:
    """Runs iterate.py once and returns its exit status (-9: killed). Every process it started is gone after.
    ``kill_when(run_dir, processes)``: polled while it runs with the run's processes (psutil) seen so far; when
    it returns true the harness SIGKILLs the driver's process group."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f"{run_dir.name}.log", "a") as log:
        proc = subprocess.Popen(command(run_dir, extra), cwd=ROOT, env=environment(fault), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    driver, tree, deadline = psutil.Process(proc.pid), {}, time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            try:
                tree.update({child.pid: child for child in driver.children(recursive=True) if child.pid not in tree})
            except psutil.Error:
                pass
            if kill_when and kill_when(run_dir, list(tree.values())):
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.3)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            raise TimeoutError(f"{run_dir}: iterate.py ran past {timeout}s")
        return proc.wait()
    finally:
        _reap(proc, tree)


def _reap(proc: subprocess.Popen, tree: dict) -> None:
    """Kills what is left of one run: its session (the driver was started in a new one; its local Ray
    cluster's processes stay in it) and every descendant seen while it ran."""
    leftovers = stop_session(proc.pid, grace=5)
    alive = [p for p in tree.values() if p.is_running()]  # is_running checks the start time: no pid reuse
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=30)
    proc.wait()
    if leftovers:
        raise RuntimeError(f"processes of the run survived SIGKILL: {[p.pid for p in leftovers]}")


def snapshot(run_dir: Path) -> dict[str, int]:
    """Every shard, marker and output file of a run, with its inode (a rewrite by rename changes it)."""
    return {str(p.relative_to(run_dir / "rounds")): p.stat().st_ino for p in (run_dir / "rounds").rglob("*")
            if p.is_file() and (p.suffix == ".parquet" or p.name in ("_SUCCESS", "adapter_model.safetensors",
                                                                         "metrics.json"))}


def rerun_work(before: dict[str, int], after: dict[str, int]) -> dict[str, dict[str, int]]:
    """What the rerun wrote, per stage (shards; the adapter for train; metrics.json for eval): ``redone`` =
    files the killed run had already written whole (work the kill cost), ``new`` = files it had not reached."""
    work: dict[str, dict[str, int]] = {"redone": {}, "new": {}}
    for path, inode in after.items():
        if path.endswith("_SUCCESS") or before.get(path) == inode:
            continue
        parts = Path(path).parts  # 001/sample/part-00000.parquet, 000/eval/shapesworld/metrics.json
        stage = "train" if parts[1] == "policy" else parts[1]
        key = f"{stage}@{int(parts[0])}" if stage == "eval" else stage
        kind = work["redone" if path in before else "new"]
        kind[key] = kind.get(key, 0) + 1
    return work


def _tensors(run_dir: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(RunStore(run_dir).policy(1) / "adapter_model.safetensors")


def compare(reference: Path, run_dir: Path) -> dict:
    """What the resumed run got different from the uninterrupted one (all empty/zero when identical)."""
    a, b = RunStore(reference), RunStore(run_dir)
    tables = [t for t in TABLES if a.read(1, t) != b.read(1, t)]
    sample_keys = [(r["prompt_id"], r["sample"]) for r in b.read(1, "sample")]
    pair_ids = [r["id"] for r in b.read(1, "pairs")]
    want_samples = {(r["prompt_id"], r["sample"]) for r in a.read(1, "sample")}
    want_pairs = {r["id"] for r in a.read(1, "pairs")}
    ta, tb = _tensors(reference), _tensors(run_dir)
    adapter_diff = (float("inf") if ta.keys() != tb.keys() else
                    max((float(abs(ta[k].astype("float64") - tb[k].astype("float64")).max()) for k in ta), default=0.0))
    evals = [k for k in (0, 1) if a.read_eval(k, SUITE) != b.read_eval(k, SUITE)]
    missing_metrics = {(m["round"], m["stage"]) for m in a.metrics()} - {(m["round"], m["stage"]) for m in b.metrics()}
    return {"tables_differ": tables, "evals_differ": evals, "adapter_max_abs_diff": adapter_diff,
            "metrics_lines_missing": sorted(f"{k}/{stage}" for k, stage in missing_metrics),
            "duplicated_rows": (len(sample_keys) - len(set(sample_keys))) + (len(pair_ids) - len(set(pair_ids))),
            "lost_rows": len(want_samples - set(sample_keys)) + len(want_pairs - set(pair_ids)),
            "extra_rows": len(set(sample_keys) - want_samples) + len(set(pair_ids) - want_pairs),
            "pairs": len(pair_ids)}


def ok(result: dict) -> bool:
    c = result.get("compare", {})
    return (result["died"] and result["rerun_status"] == 0 and not c.get("tables_differ") and not c.get("evals_differ")
            and not c.get("metrics_lines_missing")
            and c.get("adapter_max_abs_diff", 1) <= ADAPTER_TOLERANCE and not c.get("duplicated_rows")
            and not c.get("lost_rows") and not c.get("extra_rows"))


def run_kill(kill: Kill, reference: Path, work: Path) -> dict:
    """One kill and the rerun; returns what it cost and how the result compares with the reference."""
    run_dir = work / kill.name
    status = run_iterate(run_dir, kill.fault, kill_when=None if kill.fault else trainer_checkpointed)
    result = {"kill": kill.name, "stage": kill.stage, "where": kill.where, "fault": kill.fault or "harness SIGKILL",
              "died": status == -signal.SIGKILL, "kill_status": status}
    if not run_dir.exists():
        result.update(rerun_status=None, error="the killed run left no run directory")
        return result
    before = snapshot(run_dir)
    result["done_before_rerun"] = sorted(str(Path(p).parent) for p in before if p.endswith("_SUCCESS"))
    result["rerun_status"] = run_iterate(run_dir)
    if result["rerun_status"] == 0:
        result.update(rerun_work(before, snapshot(run_dir)))
        train = RunStore(run_dir).done_info(1, "train")  # a trainer resumed from its checkpoint says where
        result["train_resumed_from_step"] = f"{train.get('resumed_from_step', 0)} of {train.get('steps')}"
        result["compare"] = compare(reference, run_dir)
    result["ok"] = ok(result)
    return result


def table(results: list[dict]) -> str:
    lines = ["| kill | stage | where | died | shards redone (written before the kill, again after) "
             "| written after (not reached before) | tables, evals, metrics lines equal | adapter max abs diff "
             "| duplicated / lost rows | rerun's trainer resumed at step | ok |", "|---" * 11 + "|"]
    for r in results:
        c = r.get("compare", {})
        redone, new = (", ".join(f"{k} {v}" for k, v in sorted(r.get(kind, {}).items())) or "0"
                       for kind in ("redone", "new"))
        unequal = c["tables_differ"] + [f"eval {k}" for k in c["evals_differ"]] + \
            [f"metrics line {m}" for m in c["metrics_lines_missing"]] if c else []
        equal = "-" if not c else "no: " + ", ".join(unequal) if unequal else "yes"
        lines.append(f"| {r['kill']} (`{r['fault']}`) | {r['stage']} | {r['where']} | {'yes' if r['died'] else 'NO'} "
                     f"| {redone} | {new} | {equal} | {c.get('adapter_max_abs_diff', '-')} | "
                     f"{c.get('duplicated_rows', '-')} / {c.get('lost_rows', '-')} "
                     f"| {r.get('train_resumed_from_step', '-')} | {'yes' if r.get('ok') else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="folder for the runs (default: a new temporary folder)")
    parser.add_argument("--points", nargs="*", help=f"kills to run, in this order (default all): "
                                                    f"{' '.join(k.name for k in KILLS)}")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="candor-kill-matrix-"))
    work.mkdir(parents=True, exist_ok=True)
    by_name = {k.name: k for k in KILLS}
    unknown = [name for name in args.points or () if name not in by_name]
    if unknown:
        parser.error(f"--points: unknown kill {', '.join(unknown)} (known: {' '.join(by_name)})")
    kills = [by_name[name] for name in args.points] if args.points else KILLS
    reference = work / "reference"
    start = time.time()
    if not RunStore(reference).is_done(1, eval_stage(SUITE)):
        status = run_iterate(reference)
        if status != 0:
            print(f"the uninterrupted run failed ({status}); see {reference}.log", file=sys.stderr)
            return 1
    print(f"[kill-matrix] reference run in {work} ({time.time() - start:.0f}s)", flush=True)
    results = []
    for kill in kills:
        t = time.time()
        results.append(run_kill(kill, reference, work))
        shown = {k: v for k, v in results[-1].items() if k in ("redone", "new", "compare", "error")}
        print(f"[kill-matrix] {kill.name}: {'ok' if results[-1].get('ok') else 'FAILED'} ({time.time() - t:.0f}s) "
              f"{json.dumps(shown)}", flush=True)
    print("\n" + table(results) + f"\n\n{len(kills)} kills in {time.time() - start:.0f}s; work in {work}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
