"""Candor: iterative self-alignment of a vision-language model.

    python iterate.py --config configs/shapes-rlaifv.yaml [--run-dir DIR] [--force] [key=value ...]
    python iterate.py --config ... --run-dir NEW --resume-from N --from-run OLD

Each round builds preference pairs with the configured source and trains the next policy on them
(engine/rounds.py reads like that recipe; docs/architecture.md explains the design). The default source, RLAIF-V, samples answers with vLLM, splits
them into claims, has a labeler check every claim and pairs answers by score; ``feedback.source`` picks
SeVa, BPO, AMP or a plug-in instead (feedback/sources.py). Running the same command again on an existing
run directory resumes it where it stopped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.config import ConfigError, load_config
from engine.executor import ActorNotReady
from engine.lock import RunLock, RunLocked
from engine.run import check_inputs, prepare_run, run
from evaluation.layout import RunLayout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (configs/*.yaml)")
    parser.add_argument("--run-dir", help="run directory (default: run.root/run.name)")
    parser.add_argument("--force", action="store_true", help="resume even though stage-relevant config changed")
    parser.add_argument("--resume-from", type=int, metavar="N", help="start this run from round N of --from-run")
    parser.add_argument("--from-run", help="the existing run to branch from (with --resume-from)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sampling.n=4 feedback.labeler=oracle")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        run_dir = Path(args.run_dir or Path(cfg.run.root) / cfg.run.name)
        check_inputs(cfg)
        lock = RunLock(RunLayout(run_dir).lock)
        lock.acquire()  # before anything in the run directory is read or written; held until this process ends
        store = prepare_run(cfg, run_dir, force=args.force, resume_from=args.resume_from, from_run=args.from_run)
    except (ConfigError, ValueError, RunLocked) as e:
        print(f"candor: error: {e}", file=sys.stderr)
        return 2
    try:
        run(cfg, store, run_dir)
    except (ConfigError, ActorNotReady) as e:  # the planner's refusal; an actor Ray never started
        print(f"candor: error: {e}", file=sys.stderr)
        return 2
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
