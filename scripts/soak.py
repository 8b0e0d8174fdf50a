"""Soak (issue 5): a 10-round run of the default config with short rounds, watching memory and processes.

    python scripts/soak.py [--run-dir DIR] [--rounds 10] [--zoo full|small] [--json FILE] [key=value ...]

Runs iterate.py with configs/shapes-rlaifv.yaml (the default: vlm labeler, full zoo) and 32 prompts per
round, 4 samples per prompt, eval.n 50. When a round's eval marker appears it records the resident memory
(RSS) of the driver and of every process the driver started (Ray's GCS and raylet, each actor worker), and
it polls the total for its peak. After the run it looks for processes left behind: any process it saw that
still runs, and any process that names this run's Ray session. Prints a table of RSS per round, the growth
per round over rounds 2..N (a least-squares slope: round 1 loads the models) and the leftover processes.
Exit status 1 when the run fails or a process is left behind. The zoo defaults to ``full`` when its folders
are built (``_SUCCESS``), else ``small`` (said in the output).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed
SHORT = ["sampling.prompts_per_round=32", "sampling.n=4", "eval.n=50"]
MB = 1 << 20


def full_zoo_built() -> bool:
    from engine.zoo import CACHE, FULL

    return all((CACHE / "zoo" / FULL.folder(kind) / "_SUCCESS").exists() for kind in ("policy", "labeler"))


def role(process: psutil.Process) -> str:
    """A short name: the driver, Ray's services by binary, actors by the title Ray gives them."""
    line = " ".join(process.cmdline())
    if "iterate.py" in line:
        return "driver"
    title = re.match(r"ray::(\w+)", line)
    if title:
        return title.group(1)
    return Path(process.cmdline()[0]).name if process.cmdline() else process.name()


def snapshot(driver: psutil.Process, seen: dict) -> dict[str, float]:
    """RSS in MB by role (summed when several processes share a role); remembers every process seen."""
    rss: dict[str, float] = {}
    for p in [driver, *driver.children(recursive=True)]:
        try:
            seen.setdefault(p.pid, p)
            name = role(p)
            rss[name] = rss.get(name, 0.0) + p.memory_info().rss / MB
        except psutil.Error:
            continue
    return rss


def slope(values: list[float]) -> float:
    """Least-squares growth per round (MB/round)."""
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    return sum((i - mx) * (v - my) for i, v in enumerate(values)) / sum((i - mx) ** 2 for i in range(n))


def ray_session(processes) -> str | None:
    """The name of the Ray session this run started (its GCS server's log folder says it)."""
    for p in processes:
        try:
            match = re.search(r"(session_[\d_-]+)", " ".join(p.cmdline()))
        except psutil.Error:
            continue
        if match:
            return match.group(1)
    return None


def growth_per_role(rounds: dict) -> dict[str, float]:
    """MB/round of each process role from round 2 on (round 1 loads the models), over the rounds it was seen
    in: the sampler is gone from the last snapshot when the driver has already shut it down."""
    roles = {name for r in rounds.values() for name in r["rss_mb"]}
    series = {name: [r["rss_mb"][name] for k, r in sorted(rounds.items()) if k >= 2 and name in r["rss_mb"]]
              for name in sorted(roles)}
    return {name: round(slope(values), 1) for name, values in series.items() if len(values) >= 3}


def leftovers(seen: dict, session: str | None) -> list[str]:
    """Processes of the run still alive after it ended: ones it started, or ones naming its Ray session."""
    alive = {}
    for p in seen.values():
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive[p.pid] = p
        except psutil.Error:
            pass
    if session:
        for p in psutil.process_iter(["cmdline"]):
            if session in " ".join(p.info["cmdline"] or []):
                alive[p.pid] = p
    lines = []
    for pid, p in sorted(alive.items()):
        try:
            lines.append(f"{pid} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            pass
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", help="default: a new temporary folder")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--zoo", choices=("full", "small"), help="default: full if built, else small")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("overrides", nargs="*", help="more key=value overrides")
    args = parser.parse_args(argv)
    zoo = args.zoo or ("full" if full_zoo_built() else "small")
    from evaluation.layout import RunLayout, eval_stage
    run_dir = Path(args.run_dir or Path(tempfile.mkdtemp(prefix="candor-soak-")) / "run")
    cmd = [sys.executable, str(ROOT / "iterate.py"), "--config", str(ROOT / "configs/shapes-rlaifv.yaml"),
           "--run-dir", str(run_dir), f"run.rounds={args.rounds}", f"model.zoo={zoo}", *SHORT, *args.overrides]
    print(f"[soak] zoo={zoo}: {' '.join(cmd[1:])}", flush=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "VLLM_LOGGING_LEVEL": "ERROR",  # workers import
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}  # this checkout
    start = time.time()
    with open(run_dir.parent / "soak.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    driver, seen, rounds, peak, session = psutil.Process(proc.pid), {}, {}, 0.0, None
    while proc.poll() is None:
        try:
            rss = snapshot(driver, seen)
        except psutil.Error:
            break
        peak = max(peak, sum(rss.values()))
        for k in range(args.rounds + 1):
            if k not in rounds and RunLayout(run_dir).is_done(k, eval_stage("shapesworld")):
                rounds[k] = {"seconds": round(time.time() - start), "rss_mb": {n: round(v) for n, v in rss.items()}}
                print(f"[soak] round {k}: {json.dumps(rounds[k])}", flush=True)
        session = session or ray_session(seen.values())
        time.sleep(1)
    status = proc.wait()
    time.sleep(10)  # let Ray's processes notice their driver is gone
    left = leftovers(seen, session)
    growth = growth_per_role(rounds)
    lines = ["| round | s since start | driver MB | actors and Ray services MB | total MB |", "|---|---|---|---|---|"]
    for k, r in sorted(rounds.items()):
        others = ", ".join(f"{n} {v}" for n, v in sorted(r["rss_mb"].items()) if n != "driver")
        lines.append(f"| {k} | {r['seconds']} | {r['rss_mb'].get('driver', 0)} | {others} | {sum(r['rss_mb'].values())} |")
    summary = {"zoo": zoo, "exit_status": status, "seconds": round(time.time() - start), "rounds": rounds,
               "peak_total_mb": round(peak), "growth_mb_per_round": growth, "leftover_processes": left,
               "ray_session": session}
    print("\n" + "\n".join(lines))
    print(f"\nexit status {status}; {summary['seconds']}s; peak total RSS {summary['peak_total_mb']} MB; growth from "
          f"round 2 on (MB/round): {', '.join(f'{n} {v}' for n, v in growth.items())}; leftover processes: {len(left)}")
    for line in left:
        print(f"  left: {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0 if status == 0 and not left else 1


if __name__ == "__main__":
    sys.exit(main())
