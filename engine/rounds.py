"""The sequencer: round k turns policy k-1 into policy k by running its stages in order.

    round 0:  eval/<suite> ...                                      (the starting policy)
    round k:  prompts, <the preference source's stages>, train, eval/<suite> ...

RLAIF-V's source stages are ``sample, split, verify, pairs``; SeVa, BPO and AMP bring their own
(feedback/sources.py); the engine's own stages are in engine/round_stages.py. Every stage returns rows and
figures, is written to the run store and finished by one atomic ``_SUCCESS`` that vouches for its files.
On restart a finished stage whose files check out is skipped, a damaged one is redone, and a half-done
sharded stage redoes only its missing shards; seeds come from (run seed, round, stage, prompt), so the
data is the same as in an uninterrupted run. Models are called through handles (engine/models.py).
"""
from __future__ import annotations

import time

from engine.config import Config
from engine.executor import Executor, fan_out
from engine.models import Models
from engine.progress import Progress
from engine.round_stages import eval_stages, prompts_stage, train_stage
from engine.store import RunStore
from evaluation.layout import shard_rows
from evaluation.report import write_report, write_tensorboard
from feedback.sources import RoundContext, Stage, checked_stages, load_source


class Rounds:
    """Runs the rounds of one run directory."""

    def __init__(self, cfg: Config, store: RunStore, models: Models, executor: Executor, log=print):
        self.cfg, self.store, self.models, self.log = cfg, store, models, log
        self.source_stages = checked_stages(load_source(cfg.feedback.source), cfg)
        self.evals = eval_stages(cfg, store, models)
        self.engine_stages = (prompts_stage(cfg, models.policy), train_stage(cfg, store, models, executor, models.policy))

    def stages(self, k: int) -> list[Stage]:
        prompts, train = self.engine_stages
        return self.evals if k == 0 else [prompts, *self.source_stages, train, *self.evals]

    def run(self) -> None:
        for k in range(self.cfg.run.rounds + 1):
            self.round(k)
        self.models.shutdown()

    def round(self, k: int) -> None:
        evaluated = False
        for stage in self.stages(k):
            if not self.finished(k, stage):
                prompts = self.store.read(k, "prompts") if k and stage.name != "prompts" else []
                ctx = RoundContext(self.cfg, k, {p["id"]: p for p in prompts}, lambda name: self.store.read(k, name))
                self.run_stage(k, stage, ctx, prompts)
                evaluated |= stage in self.evals
        if evaluated:  # here, not per stage: a resumed run does not redraw the rounds it had finished
            write_report(self.store.root, metric=self.cfg.eval.best_metric)
            write_tensorboard(self.store.root)

    def finished(self, k: int, stage: Stage) -> bool:
        """Done, with every file its marker vouches for intact; a damaged stage loses its marker and files."""
        if not self.store.is_done(k, stage.name):
            return False
        problems = self.store.verify(k, stage.name)
        if problems:
            self.log(f"[round {k:03d}] {stage.name}: redone, its files changed after it finished: "
                     + "; ".join(f"{path} {why}" for path, why in problems.items()))
            for path in problems:
                (self.store.root / path).unlink(missing_ok=True)
            self.store.undo(k, stage.name)
        return not problems

    def run_stage(self, k: int, stage: Stage, ctx: RoundContext, prompts: list[dict]) -> None:
        start = time.time()
        with self.models.handles(stage.uses, k, stage.model) as handles:
            if stage.sharded:
                figures = self._sharded(k, stage, ctx, prompts, handles)
                files = self.store.shards(k, stage.name)
            else:
                rows, figures = stage.run(ctx, handles[0], prompts)
                if stage.save:
                    files = stage.save(k, rows, figures)
                else:
                    self.store.write_shard(k, stage.name, 0, rows, stage.schema() if stage.schema else None)
                    figures, files = {"rows": len(rows), **figures}, [self.store.shard(k, stage.name, 0)]
        figures = {**figures, "seconds": round(time.time() - start, 2)}
        self.store.mark_done(k, stage.name, figures, files)  # also its line in metrics.jsonl
        self.log(f"[round {k:03d}] {stage.name}: " + ", ".join(
            f"{a}={b}" for a, b in figures.items() if not isinstance(b, (dict, list))))

    def _sharded(self, k: int, stage: Stage, ctx: RoundContext, prompts: list[dict], handles: list) -> dict:
        """``stage.run(ctx, handle, shard)`` for every shard not yet written, one thread per handle."""
        size = self.cfg.sampling.shard_size
        shards = [prompts[i:i + size] for i in range(0, len(prompts), size)]
        missing = [s for s in range(len(shards)) if not self.store.has_shard(k, stage.name, s)]
        with Progress(sum(len(shards[s]) for s in missing), f"[round {k:03d}] {stage.name}: items", self.log) as progress:
            def work(handle, s):
                self.store.write_shard(k, stage.name, s, stage.run(ctx, handle, shards[s]))
                progress.update(len(shards[s]))
            fan_out(handles, missing, work)
        figures = {"shards": len(shards), "shards_run": len(missing), "items": sum(len(shard) for shard in shards)}
        if stage.summary:  # one shard decoded at a time
            figures.update(stage.summary(row for path in self.store.shards(k, stage.name) for row in shard_rows(path)))
        return figures
