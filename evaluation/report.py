"""The run report: ``RUN/report.md`` with PNG plots, and TensorBoard scalars under ``RUN/tensorboard/``.

Everything is read from the run directory's files (evaluation/layout.py), never from the engine, so a report can
be made for any run, finished or not, on any machine: ``python -m evaluation.report RUN_DIR [METRIC]``.
Sections: hallucination metrics per round (CHAIR-s, CHAIR-i, recall, POPE F1), pair yield and score
margins, DPO loss and reward accuracy (per step from ``policy/candor_train.json``'s ``log_history`` when
the trainer wrote it, else per round from ``train/_SUCCESS``), stage wall times, example pairs with every claim marked
accepted or rejected, BPO's injected negatives, held-out answers before and after, and the best round by a metric.
"""
from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path

import yaml

from evaluation.hallucination import per_answer
from evaluation.layout import LEGACY_EVAL_SUITE, RunLayout
from evaluation.shapes import ShapesWorld

HEADLINE = ("chair_s", "chair_i", "recall", "pope_f1")
TITLES = {"chair_s": "CHAIR-s", "chair_i": "CHAIR-i", "recall": "recall", "pope_f1": "POPE F1"}
# Hallucination rates fall as a policy improves; every other eval figure (recall, POPE, ...) rises.
LOWER_IS_BETTER = frozenset({"chair_s", "chair_i"})


# ---- reading the run directory ----------------------------------------------------------------------------
def _json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def message_text(message) -> str:
    """The text of a TRL chat message list (a completion), or a plain string as is."""
    if isinstance(message, str):
        return message
    return " ".join(c["text"] for m in message for c in m["content"] if c.get("type") == "text" and c.get("text"))


def headline_suite(run: RunLayout) -> str:
    """The evaluation suite the report's table and best round use: the run's first ``eval.suites``."""
    config = yaml.safe_load(run.config.read_text()) if run.config.exists() else {}
    return ((config.get("eval") or {}).get("suites") or [LEGACY_EVAL_SUITE])[0]


def read_rounds(run_dir: str | Path) -> list[dict]:
    """One dict per round folder: eval metrics, stage infos (``_SUCCESS``), pairs, DPO log, wall times."""
    run = RunLayout(run_dir)
    suite = headline_suite(run)
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
        evaluated = run.read_eval(k, suite)
        rounds.append({"round": k, "eval": evaluated[0] if evaluated else None, "stages": stages,
                       "train": {**(stages.get("train") or {}), **{a: b for a, b in train_json.items() if a != "log_history"}},
                       "log_history": train_json.get("log_history") or [],
                       "pairs": len(pairs) if "pairs" in stages else None, "prompts": prompts,
                       "margins": [p["chosen_score"] - p["rejected_score"] for p in pairs],
                       "seconds": times.get(k, {})})
    return rounds


def best_round(rounds: list[dict], metric: str = "chair_i", lower_is_better: bool | None = None) -> int | None:
    """The evaluated round that is best by ``metric`` (the earliest on a tie); None when none is evaluated."""
    scored = [(r["eval"][metric], r["round"]) for r in rounds if r["eval"] and metric in r["eval"]]
    evaluated = [r for r in rounds if r["eval"]]
    if evaluated and not scored:
        raise ValueError(f"best-round metric {metric!r} is not in eval/metrics.json "
                         f"(known: {', '.join(sorted(evaluated[0]['eval']))})")
    if not scored:
        return None
    lower = metric in LOWER_IS_BETTER if lower_is_better is None else lower_is_better
    return (min(scored, key=lambda s: (s[0], s[1])) if lower else min(scored, key=lambda s: (-s[0], s[1])))[1]


# ---- plots ----------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    return plt


def _by_round(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _plot_hallucination(rounds, out: Path) -> bool:
    evaluated = [r for r in rounds if r["eval"]]
    if not evaluated:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for ax, key in zip(axes, HEADLINE):
        ax.plot([r["round"] for r in evaluated], [r["eval"].get(key, float("nan")) for r in evaluated], "o-")
        ax.set_title(TITLES[key] + (" (lower is better)" if key in LOWER_IS_BETTER else ""))
        ax.grid(alpha=0.3)
    _by_round(*axes)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def _plot_pairs(rounds, out: Path) -> bool:
    paired = [r for r in rounds if r["pairs"] is not None]
    if not paired:
        return False
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    ks = [r["round"] for r in paired]
    left.bar(ks, [r["pairs"] for r in paired], width=0.6)
    left.set_title("pairs (label: pairs per prompt)")
    left.margins(y=0.15)
    for r in paired:
        if r["prompts"]:
            left.annotate(f"{r['pairs'] / r['prompts']:.2f}", (r["round"], r["pairs"]), ha="center", va="bottom")
    right.boxplot([r["margins"] or [0] for r in paired], positions=ks)
    right.set_title("score margin (chosen - rejected)")
    _by_round(left, right)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def dpo_steps(rounds) -> list[dict]:
    """Per-step DPO rows across rounds with a global step (rounds that logged no steps are left out)."""
    steps, offset = [], 0
    for r in rounds:
        rows = [h for h in r["log_history"] if "loss" in h]
        steps += [{**h, "round": r["round"], "global_step": offset + i + 1} for i, h in enumerate(rows)]
        offset += len(rows)
    return steps


def _plot_dpo(rounds, out: Path) -> bool:
    trained = [r for r in rounds if r["train"].get("loss_last") is not None]
    steps = dpo_steps(rounds)
    if not trained and not steps:
        return False
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    if steps:
        x = [s["global_step"] for s in steps]
        left.plot(x, [s["loss"] for s in steps], lw=1)
        right.plot(x, [s.get("rewards/accuracies", float("nan")) for s in steps], lw=1)
        for before, s in zip(steps, steps[1:]):
            if s["round"] != before["round"]:
                for ax in (left, right):
                    ax.axvline(s["global_step"] - 0.5, color="grey", ls=":", lw=0.8)
        for ax in (left, right):
            ax.set_xlabel("DPO step (dotted: a new round)")
    else:
        ks = [r["round"] for r in trained]
        left.plot(ks, [r["train"]["loss_first"] for r in trained], "o--", label="first step")
        left.plot(ks, [r["train"]["loss_last"] for r in trained], "o-", label="last step")
        left.legend()
        right.plot(ks, [r["train"].get("reward_accuracy") or float("nan") for r in trained], "o-")
        _by_round(left, right)
    left.set_title("DPO loss")
    right.set_title("reward accuracy")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def _stage_order(rounds) -> list[str]:
    order = ["prompts", "sample", "split", "verify", "pairs", "train", "eval"]
    extra = sorted({s for r in rounds for s in r["seconds"]} - set(order))
    return [s for s in order + extra if any(s in r["seconds"] for r in rounds)]


def _plot_times(rounds, out: Path) -> bool:
    stages = _stage_order(rounds)
    if not stages:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    bottom = [0.0] * len(rounds)
    for stage in stages:
        values = [r["seconds"].get(stage, 0.0) for r in rounds]
        ax.bar([r["round"] for r in rounds], values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_title("stage wall time (s)")
    _by_round(ax)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


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


def _before_after(run_dir: Path, rounds, best: int | None, count: int, shapes: bool) -> list[str]:
    if best is None or best == 0 or count <= 0:
        return []
    run = RunLayout(run_dir)
    suite = headline_suite(run)
    if run.read_eval(0, suite) is None:  # the starting policy was not evaluated (yet)
        return []
    before, after = run.read_eval(0, suite)[1], {r["id"]: r for r in run.read_eval(best, suite)[1]}
    vocab = ShapesWorld.vocabulary() if shapes else None
    lines = [f"## Held-out answers: round 0 and round {best}" +
             (" (hallucinated objects in brackets)" if shapes else ""), ""]
    for row in [r for r in before if r["id"] in after][:count]:
        lines.append(f"**{escape(row['id'])}** — {escape(row['prompt'])} (truth: {escape(', '.join(row['gt_objects'])) or '-'})")
        for k, answer in ((0, row["response"]), (best, after[row["id"]]["response"])):
            wrong = per_answer(answer, row["gt_objects"], vocab)["hallucinated"] if shapes else []
            lines.append(f"* round {k}: {escape(answer)}" + (f" [{', '.join(wrong)}]" if wrong else ""))
        lines.append("")
    return lines


# ---- the report ---------------------------------------------------------------------------------------------
def _percent(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def write_report(run_dir: str | Path, metric: str = "chair_i", lower_is_better: bool | None = None,
                 examples: int = 3) -> Path:
    """Writes ``RUN/report.md`` and its plots under ``RUN/report/``; returns the report's path."""
    run = Path(run_dir)
    if not RunLayout(run).is_run():
        raise FileNotFoundError(f"{run}: not a run directory (no rounds/ folder)")
    rounds = read_rounds(run)
    best = best_round(rounds, metric, lower_is_better)
    config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
    shapes = (config.get("data") or {}).get("source", "shapesworld") == "shapesworld"
    plots = run / "report"
    plots.mkdir(exist_ok=True)
    lines = [f"# Candor run report: {escape(run.name)}", ""]
    if best is not None:
        value = next(r["eval"][metric] for r in rounds if r["round"] == best)
        lines += [f"**Best round: {best}** by {metric} = {value:.4g} "
                  f"({'lower' if (metric in LOWER_IS_BETTER if lower_is_better is None else lower_is_better) else 'higher'}"
                  f" is better); its policy is `{RunLayout(run).policy(best).relative_to(run)}`" + (" (the starting model)" if best == 0 else "") + ".", ""]
    lines += ["| round | CHAIR-s | CHAIR-i | recall | POPE F1 | prompts | pairs | mean margin | DPO loss | reward acc |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        e, t = r["eval"] or {}, r["train"]
        margin = f"{sum(r['margins']) / len(r['margins']):.2f}" if r["margins"] else "-"
        loss = "-" if t.get("loss_last") is None else f"{t['loss_first']:.3f} → {t['loss_last']:.3f}"
        acc = "-" if t.get("reward_accuracy") is None else f"{t['reward_accuracy']:.2f}"
        lines.append(f"| {r['round']}{' ★' if r['round'] == best else ''} | {_percent(e.get('chair_s'))} | "
                     f"{_percent(e.get('chair_i'))} | {_percent(e.get('recall'))} | "
                     f"{'-' if e.get('pope_f1') is None else format(e['pope_f1'], '.3f')} | {r['prompts'] or '-'} | "
                     f"{'-' if r['pairs'] is None else r['pairs']} | {margin} | {loss} | {acc} |")
    lines.append("")
    for name, title, plot in (("hallucination", "Hallucination per round", _plot_hallucination),
                              ("pairs", "Pair yield and score margins", _plot_pairs),
                              ("dpo", "DPO training", _plot_dpo), ("times", "Stage wall times", _plot_times)):
        if plot(rounds, plots / f"{name}.png"):
            lines += [f"## {title}", "", f"![{title}](report/{name}.png)", ""]
    stages = _stage_order(rounds)
    if stages:
        lines += ["| round | " + " | ".join(stages) + " | total |", "|---" * (len(stages) + 2) + "|"]
        for r in rounds:
            cells = [f"{r['seconds'][s]:.0f}" if s in r["seconds"] else "-" for s in stages]
            lines.append(f"| {r['round']} | " + " | ".join(cells) + f" | {sum(r['seconds'].values()):.0f} |")
        lines.append("")
    lines += _example_pairs(run, rounds, examples) + _injected_negatives(run, rounds, examples) + \
        _before_after(run, rounds, best, examples, shapes)
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
    for r in rounds:
        k, marker = r["round"], folder / f"round-{r['round']:03d}.done"
        if r["eval"] is None or marker.exists():
            continue
        writer = SummaryWriter(str(folder), filename_suffix=f".round{k:03d}")
        for key, value in r["eval"].items():
            if isinstance(value, (int, float)):
                writer.add_scalar(f"eval/{key}", value, k)
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
