"""The report's plots (PNG files under ``RUN/report/``), drawn from evaluation/report.py's round dicts."""
from __future__ import annotations

from pathlib import Path

from evaluation.suites import HEADLINE, LOWER_IS_BETTER


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


def plot_suite(rounds, out: Path, suite: str) -> bool:
    """The suite's headline figures per round, one panel each."""
    evaluated = [r for r in rounds if suite in r["evals"]]
    keys = HEADLINE.get(suite) or sorted(k for k, v in evaluated[0]["evals"][suite].items()
                                         if isinstance(v, float))[:4] if evaluated else ()
    if not keys:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.5 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot([r["round"] for r in evaluated], [r["evals"][suite].get(key, float("nan")) for r in evaluated], "o-")
        ax.set_title(f"{suite}: {key}" + (" (lower is better)" if key in LOWER_IS_BETTER else ""), fontsize=9)
        ax.grid(alpha=0.3)
    _by_round(*axes[0])
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def plot_pairs(rounds, out: Path) -> bool:
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


def plot_dpo(rounds, out: Path) -> bool:
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


def stage_order(rounds) -> list[str]:
    order = ["prompts", "sample", "split", "verify", "pairs", "train", "eval"]
    extra = sorted({s for r in rounds for s in r["seconds"]} - set(order))
    return [s for s in order + extra if any(s in r["seconds"] for r in rounds)]


def plot_times(rounds, out: Path) -> bool:
    stages = stage_order(rounds)
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
