"""The run report: ``RUN/report.md`` with PNG plots, and TensorBoard scalars under ``RUN/tensorboard/``.

Everything is read from the run directory's files (evaluation/layout.py), never from the engine, so a report can
be made for any run, finished or not, on any machine: ``python -m evaluation.report RUN_DIR [METRIC]``.
Sections: the best round by a suite's metric, that suite's figures per round with the pair and DPO figures,
every evaluation suite's figures per round (a table and a plot each), pair yield and score margins, DPO loss and reward accuracy (per step from ``policy/candor_train.json``'s ``log_history`` when
the trainer wrote it, else per round from ``train/_SUCCESS``), stage wall times, example pairs with every
claim marked accepted or rejected, BPO's injected negatives, held-out answers before and after,
and the best round by a metric.
"""
from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path


from evaluation.hallucination import per_answer
from evaluation.layout import LEGACY_EVAL_SUITE, RunLayout
from evaluation.report_plots import dpo_steps, plot_dpo, plot_pairs, plot_suite, plot_times, stage_order
from evaluation.shapes import ShapesWorld
from evaluation.suites import HEADLINE, LOWER_IS_BETTER, resolve_metric

# ---- reading the run directory ----------------------------------------------------------------------------
def _json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def message_text(message) -> str:
    """The text of a TRL chat message list (a completion), or a plain string as is."""
    if isinstance(message, str):
        return message
    return " ".join(c["text"] for m in message for c in m["content"] if c.get("type") == "text" and c.get("text"))


def run_suites(run: RunLayout) -> list[str]:
    """The run's ``eval.suites`` (runs made before suites: shapesworld's eval only)."""
    config = run.saved_config()
    return list((config.get("eval") or {}).get("suites") or [LEGACY_EVAL_SUITE])


def read_rounds(run_dir: str | Path) -> list[dict]:
    """One dict per round folder: every suite's eval metrics (``evals``; ``eval``: the first suite's), stage
    infos (``_SUCCESS``), pairs, DPO log, wall times."""
    run = RunLayout(run_dir)
    suites = run_suites(run)
    times: dict[int, dict] = {}
    for row in run.metrics():
        if "seconds" in row:
            times.setdefault(row["round"], {})[row["stage"]] = row["seconds"]
    rounds = []
    for k in run.round_numbers():
        stages = {name: run.done_info(k, name) for name in run.stages(k) if run.is_done(k, name)}
        train_json = _json(run.policy(k) / "candor_train.json") or {}
        pairs = run.read_stage(k, "pairs", ["chosen_score", "rejected_score"]) if "pairs" in stages else []
        prompts = (stages.get("prompts") or {}).get("rows")
        evals = {suite: figures for suite in suites if (figures := run.read_eval_metrics(k, suite)) is not None}
        rounds.append({"round": k, "eval": evals.get(suites[0]), "evals": evals, "stages": stages,
                       "train": {**(stages.get("train") or {}), **{a: b for a, b in train_json.items() if a != "log_history"}},
                       "log_history": train_json.get("log_history") or [],
                       "pairs": len(pairs) if "pairs" in stages else None, "prompts": prompts,
                       "margins": [p["chosen_score"] - p["rejected_score"] for p in pairs],
                       "seconds": times.get(k, {})})
    return rounds


def _figures(r: dict, suite: str | None) -> dict | None:
    return r["eval"] if suite is None else r["evals"].get(suite)


def best_round(rounds: list[dict], metric: str = "chair_i", lower_is_better: bool | None = None) -> int | None:
    """The evaluated round that is best by ``metric`` (``suite/metric``, or a figure of the first suite),
    the earliest on a tie; None when none is evaluated."""
    suite, _, name = metric.rpartition("/")
    evaluated = [(r["round"], _figures(r, suite or None)) for r in rounds if _figures(r, suite or None)]
    scored = [(e[name], k) for k, e in evaluated if name in e]
    if evaluated and not scored:
        raise ValueError(f"best-round metric {metric!r} is not in the eval's metrics.json "
                         f"(known: {', '.join(sorted(evaluated[0][1]))})")
    if not scored:
        return None
    lower = name in LOWER_IS_BETTER if lower_is_better is None else lower_is_better
    return (min(scored, key=lambda s: (s[0], s[1])) if lower else min(scored, key=lambda s: (-s[0], s[1])))[1]


def figure(key: str, value) -> str:
    """A figure as the report prints it: rates as percentages, F1, counts per answer and lengths as numbers."""
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.3f}" if key.endswith("f1") or "per_answer" in key or key == "mean_length" else f"{value:.1%}"


def suite_tables(rounds: list[dict], suites: list[str], best: int | None) -> list[str]:
    """One table per evaluation suite: its headline figures per round (the best round starred)."""
    lines = []
    for suite in suites:
        keys = HEADLINE.get(suite) or sorted({k for r in rounds for k, v in r["evals"].get(suite, {}).items()
                                              if isinstance(v, float)})
        lines += [f"### {suite}", "", "| round | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        lines += [f"| {r['round']}{' ★' if r['round'] == best else ''} | " +
                  " | ".join(figure(key, r["evals"][suite].get(key)) for key in keys) + " |"
                  for r in rounds if suite in r["evals"]]
        lines.append("")
    return lines


# ---- user text in the report ------------------------------------------------------------------------------
# Bidirectional overrides and isolates reorder how the text around them displays (a "Trojan Source" trick);
# other control characters (NUL, ESC, ...) have no business in a document either.
_BIDI = dict.fromkeys(map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#|~])")  # user text never starts a line, so 1. - + > stay


def escape(text) -> str:
    """User text (a prompt, an answer, an id) as literal Markdown: no HTML, links, emphasis or table breaks;
    bidi and other control characters dropped, line breaks made spaces."""
    text = str(text).translate(_BIDI)
    text = "".join(" " if ch in "\r\n\t" else ch for ch in text if ch in "\r\n\t" or unicodedata.category(ch) != "Cc")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN.sub(r"\\\1", text)


# ---- examples -----------------------------------------------------------------------------------------------
def claim_marks(run_dir: Path, k: int) -> dict[tuple[str, str], list[dict]]:
    """(prompt id, answer) -> its claims from round k's split and verify tables, each
    ``{claim, question, negated, p_yes, accepted}``; empty when the round has no such tables.

    A claim is accepted when the labeler says yes (p_yes > 0.5) to a positive claim or no to a negated one.
    """
    run = RunLayout(run_dir)
    if not (run.is_done(k, "split") and run.is_done(k, "verify")):
        return {}
    split = {(r["prompt_id"], r["sample"]): r for r in run.read_stage(k, "split")}
    marks = {}
    for row in run.read_stage(k, "verify"):
        claims = split.get((row["prompt_id"], row["sample"]))
        if claims is None:
            continue
        marks[(row["prompt_id"], row["response"])] = [
            {"claim": text, "question": question, "negated": negated, "p_yes": p, "accepted": (p > 0.5) != negated}
            for text, question, negated, p in zip(claims["claims"], claims["questions"], claims["negated"], row["p_yes"])]
    return marks


def _example_pairs(run_dir: Path, rounds, count: int) -> list[str]:
    labelled = [r["round"] for r in rounds if r["pairs"] and "verify" in r["stages"] and "split" in r["stages"]]
    if not labelled or count <= 0:
        return []
    k = labelled[-1]
    marks = claim_marks(run_dir, k)
    pairs = RunLayout(run_dir).read_stage(k, "pairs", ["prompt_id", "prompt", "chosen", "rejected",
                                                       "chosen_score", "rejected_score"])
    lines = [f"## Example pairs of round {k} (claims: ✓ accepted, ✗ rejected by the labeler)", ""]
    for pair in pairs[:count]:
        lines.append(f"**{escape(pair['prompt_id'])}** — {escape(message_text(pair['prompt']))}")
        lines.append("")
        for side in ("chosen", "rejected"):
            answer = message_text(pair[side])
            lines.append(f"* {side} (score {pair[side + '_score']}): {escape(answer)}")
            for c in marks.get((pair["prompt_id"], answer), []):
                lines.append(f"    * {'✓' if c['accepted'] else '✗'} {escape(c['claim'])} (p_yes {c['p_yes']:.2f})")
        lines.append("")
    return lines


def _injected_negatives(run_dir: Path, rounds, count: int) -> list[str]:
    """BPO's error-injected negatives of the last round that made them, under each prompt's reference."""
    made = [r["round"] for r in rounds if "inject" in r["stages"] and "prompts" in r["stages"]]
    if not made or count <= 0:
        return []
    run, k, negatives = RunLayout(run_dir), made[-1], {}
    for row in run.read_stage(k, "inject", ["prompt_id", "response"]):
        negatives.setdefault(row["prompt_id"], []).append(row["response"])
    lines = [f"## Injected negatives of round {k} (BPO: a reference, then its rewrites with a wrong detail)", ""]
    for p in [p for p in run.read_stage(k, "prompts", ["id", "reference"]) if p["id"] in negatives][:count]:
        lines += [f"**{escape(p['id'])}** — reference: {escape(p['reference'])}", ""]
        lines += [f"* injected: {escape(text)}" for text in negatives[p["id"]]] + [""]
    return lines


def _before_after(run_dir: Path, suite: str, best: int | None, count: int, shapes: bool) -> list[str]:
    if best is None or best == 0 or count <= 0:
        return []
    run = RunLayout(run_dir)
    if run.read_eval(0, suite) is None:  # the starting policy was not evaluated (yet)
        return []
    before, after = run.read_eval(0, suite)[1], {r["id"]: r for r in run.read_eval(best, suite)[1]}
    shapes = shapes and suite == LEGACY_EVAL_SUITE
    vocab = ShapesWorld.vocabulary() if shapes else None
    lines = [f"## Held-out answers: round 0 and round {best}" + (f" ({suite})" if suite != LEGACY_EVAL_SUITE else "") +
             (" (hallucinated objects in brackets)" if shapes else ""), ""]
    for row in [r for r in before if r["id"] in after][:count]:
        truth = f" (truth: {escape(', '.join(row['gt_objects'])) or '-'})" if "gt_objects" in row else ""
        lines.append(f"**{escape(row['id'])}** — {escape(row['prompt'])}{truth}")
        for k, answer in ((0, row["response"]), (best, after[row["id"]]["response"])):
            wrong = per_answer(answer, row["gt_objects"], vocab)["hallucinated"] if shapes else []
            lines.append(f"* round {k}: {escape(answer)}" + (f" [{', '.join(wrong)}]" if wrong else ""))
        lines.append("")
    return lines


# ---- the report ---------------------------------------------------------------------------------------------
RESULT_COLUMNS = "CHAIR-s | CHAIR-i | recall | POPE F1 | pairs | reward acc"


def result_cells(metrics: dict, train: dict) -> str:
    """A round's headline figures as the cells under RESULT_COLUMNS: its evaluation's metrics and its train
    marker (empty for round 0). The one results row of the run's closing table and scripts/compare_runs.py."""
    acc = train.get("reward_accuracy")
    return (f"{metrics['chair_s']:.1%} | {metrics['chair_i']:.1%} | {metrics['recall']:.1%} | "
            f"{metrics['pope_f1']:.3f} | {train.get('pairs', '-')} | {'-' if acc is None else f'{acc:.2f}'}")


def write_report(run_dir: str | Path, metric: str = "chair_i", lower_is_better: bool | None = None,
                 examples: int = 3) -> Path:
    """Writes ``RUN/report.md`` and its plots under ``RUN/report/``; returns the report's path. ``metric``
    (``suite/metric``, a bare one as ``eval.best_metric`` reads) picks the best round; the first table shows
    that suite's figures beside the pairs and DPO figures, then every suite has its own table and plot."""
    run = Path(run_dir)
    if not RunLayout(run).is_run():
        raise FileNotFoundError(f"{run}: not a run directory (no rounds/ folder)")
    rounds, suites = read_rounds(run), run_suites(RunLayout(run))
    suite, name = resolve_metric(metric, suites)
    best = best_round(rounds, f"{suite}/{name}", lower_is_better)
    config = RunLayout(run).saved_config()
    shapes = (config.get("data") or {}).get("source", "shapesworld") == "shapesworld"
    plots = run / "report"
    plots.mkdir(exist_ok=True)
    lines = [f"# Candor run report: {escape(run.name)}", ""]
    if best is not None:
        value = next(r["evals"][suite][name] for r in rounds if r["round"] == best)
        lines += [f"**Best round: {best}** by {name if suite == suites[0] else f'{suite}/{name}'} = {value:.4g} "
                  f"({'lower' if (name in LOWER_IS_BETTER if lower_is_better is None else lower_is_better) else 'higher'}"
                  f" is better); its policy is `{RunLayout(run).policy(best).relative_to(run)}`" + (" (the starting model)" if best == 0 else "") + ".", ""]
    keys = HEADLINE.get(suite, ())
    lines += [f"| round | {' | '.join(keys)} | prompts | pairs | mean margin | DPO loss | reward acc |",
              "|---" * (len(keys) + 6) + "|"]
    for r in rounds:
        e, t = r["evals"].get(suite) or {}, r["train"]
        margin = f"{sum(r['margins']) / len(r['margins']):.2f}" if r["margins"] else "-"
        loss = "-" if t.get("loss_last") is None else f"{t['loss_first']:.3f} → {t['loss_last']:.3f}"
        acc = "-" if t.get("reward_accuracy") is None else f"{t['reward_accuracy']:.2f}"
        lines.append(f"| {r['round']}{' ★' if r['round'] == best else ''} | " +
                     "".join(f"{figure(key, e.get(key))} | " for key in keys) + f"{r['prompts'] or '-'} | "
                     f"{'-' if r['pairs'] is None else r['pairs']} | {margin} | {loss} | {acc} |")
    lines.append("")
    if len(suites) > 1:
        lines += ["## Every evaluation suite per round", ""] + suite_tables(rounds, suites, best)
    charts = [(f"eval-{s}", f"Evaluation per round: {s}", lambda rs, out, s=s: plot_suite(rs, out, s)) for s in suites]
    for name, title, plot in charts + [("pairs", "Pair yield and score margins", plot_pairs),
                                       ("dpo", "DPO training", plot_dpo), ("times", "Stage wall times", plot_times)]:
        if plot(rounds, plots / f"{name}.png"):
            lines += [f"## {title}", "", f"![{title}](report/{name}.png)", ""]
    stages = stage_order(rounds)
    if stages:
        lines += ["| round | " + " | ".join(stages) + " | total |", "|---" * (len(stages) + 2) + "|"]
        for r in rounds:
            cells = [f"{r['seconds'][s]:.0f}" if s in r["seconds"] else "-" for s in stages]
            lines.append(f"| {r['round']} | " + " | ".join(cells) + f" | {sum(r['seconds'].values()):.0f} |")
        lines.append("")
    lines += _example_pairs(run, rounds, examples) + _injected_negatives(run, rounds, examples) + \
        _before_after(run, suite, best, examples, shapes)
    report = run / "report.md"
    tmp = report.with_name(".report.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(report)
    return report


def write_tensorboard(run_dir: str | Path) -> Path:
    """Adds every evaluated round not yet written to ``RUN/tensorboard/``: eval metrics, pairs, DPO figures
    and stage seconds at step = round, and DPO per-step rows at a global step across rounds.

    Call it after each round; a round is written once (``round-NNN.done`` marks it), so calls are cheap.
    """
    from torch.utils.tensorboard import SummaryWriter

    run = Path(run_dir)
    folder = run / "tensorboard"
    folder.mkdir(exist_ok=True)
    rounds = read_rounds(run)
    steps = dpo_steps(rounds)
    suites = run_suites(RunLayout(run))
    for r in rounds:
        k, marker = r["round"], folder / f"round-{r['round']:03d}.done"
        if any(s not in r["evals"] for s in suites) or marker.exists():  # written once every suite has finished
            continue
        writer = SummaryWriter(str(folder), filename_suffix=f".round{k:03d}")
        for suite, key, value in ((s, key, v) for s in suites for key, v in r["evals"][s].items()):
            if isinstance(value, (int, float)):
                writer.add_scalar(f"eval/{suite}/{key}", value, k)
        if r["pairs"] is not None:
            writer.add_scalar("pairs/count", r["pairs"], k)
            if r["margins"]:
                writer.add_scalar("pairs/mean_margin", sum(r["margins"]) / len(r["margins"]), k)
        for key in ("loss_first", "loss_last", "reward_accuracy", "reward_margin"):
            if r["train"].get(key) is not None:
                writer.add_scalar(f"train/{key}", r["train"][key], k)
        for stage, seconds in r["seconds"].items():
            writer.add_scalar(f"seconds/{stage}", seconds, k)
        for s in (s for s in steps if s["round"] == k):
            for key, value in s.items():
                if key not in ("round", "global_step", "step", "epoch") and isinstance(value, (int, float)):
                    writer.add_scalar(f"dpo/{key}", value, s["global_step"])
        writer.close()
        marker.write_text("")
    return folder


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m evaluation.report RUN_DIR [METRIC]")
    print(write_report(sys.argv[1], *sys.argv[2:]))
    print(write_tensorboard(sys.argv[1]))
