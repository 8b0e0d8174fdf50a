"""Before any work: what every stage of a round holds on the cluster at once, against what the cluster has.

A round's stages run one after another, and each holds the actor groups alive while it runs
(engine/models.py): the samplers for the whole run (unless ``resources.release_samplers_for_training``
frees them for DPO), the labelers from the first stage that checks claims until the train stage, a text
model (``text``) and the trainers for their own stage only. ``plan`` adds up each stage's CPUs, GPUs and
custom resources from ``resources.<role>`` and refuses, naming the stage, the roles and the numbers, a plan
the cluster cannot hold at all: more of a resource than all nodes have together, or one actor bigger than
any single node. (Several actors that each fit a node but not together are caught at start-up by the
readiness timeout, ``resources.ready_timeout_s``.)

``check_shared_root`` refuses a relative run directory on a cluster of several nodes: every actor opens the
run's files by the driver's absolute path, so the run root must be on storage that every node mounts at
that path.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from engine.config import Config, ConfigError
from engine.resources import Role
from evaluation.layout import eval_stage
from feedback.sources import checked_stages, load_source

EPSILON = 1e-6
IGNORED = ("memory", "object_store_memory", "node:", "accelerator_type:")  # Ray's own bookkeeping resources


class PlanError(ConfigError):
    """The config asks for more than the cluster has: the message names the stage or role and the numbers."""


def asks(role: Role) -> dict[str, float]:
    """What one actor of ``role`` asks Ray for."""
    return {k: v for k, v in {"CPU": role.cpus, "GPU": role.gpus, **role.custom}.items() if v}


def stage_groups(cfg: Config) -> list[tuple[str, dict[str, tuple[Role, int]]]]:
    """Each stage of a round with the groups alive while it runs: {group: (role, actors)}. The round starts
    with the samplers of the previous evaluation alive; every later round repeats the same sequence."""
    def role(name: str, actors: int | None = None) -> tuple[Role, int]:
        r = cfg.resources.role(name, cfg.model)
        return r, actors or r.actors

    f = cfg.feedback
    steps = [("prompts", "")] + [(s.name, s.uses) for s in checked_stages(load_source(f.source), cfg)]
    steps += [("train", "train")] + [(eval_stage(name), "policy") for name in cfg.eval.suites]
    alive = {"samplers": role("sampler")}
    plan = []
    for name, uses in steps:
        during = {}
        if uses == "policy":
            alive["samplers"] = role("sampler")
            if f.amp.models:  # AMP's other policies: one sampler-shaped engine each, until training
                alive["models"] = role("sampler", len(f.amp.models))
        elif uses == "labeler" and f.labeler == "vlm":
            alive["labelers"] = role("labeler")
        elif uses == "labeler" and f.labeler == "self":
            alive["samplers"] = role("sampler")
        elif uses == "text":
            during["text"] = role("text")
        elif uses == "train":
            for group in ("labelers", "models") + (("samplers",) if cfg.resources.release_samplers_for_training else ()):
                alive.pop(group, None)
            during["trainers"] = role("trainer")
        plan.append((name, {**alive, **during}))
    return plan


def _total(groups: dict[str, tuple[Role, int]]) -> Counter:
    total = Counter()
    for role, count in groups.values():
        for key, value in asks(role).items():
            total[key] += value * count
    return total


def _fmt(resources: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())) + "}"


def plan(cfg: Config, nodes: list[dict[str, float]]) -> list[str]:
    """The plan's lines (one per stage: what it holds); PlanError when the cluster of ``nodes`` (each node's
    total resources, as ``ray.nodes()`` gives them) cannot hold it."""
    nodes = [{k: v for k, v in node.items() if not k.startswith(IGNORED)} for node in nodes]
    cluster = Counter()
    for node in nodes:
        cluster.update(node)
    lines, seen = [], {}
    for stage, groups in stage_groups(cfg):
        need = _total(groups)
        parts = ", ".join(f"{role.name} {count} x {_fmt(asks(role))}" for role, count in groups.values())
        lines.append(f"  {stage:<16} {_fmt(need):<28} {parts}")
        short = {k: (v, cluster.get(k, 0)) for k, v in need.items() if v > cluster.get(k, 0) + EPSILON}
        if short:
            numbers = ", ".join(f"{v:g} {k} (the cluster has {have:g})" for k, (v, have) in sorted(short.items()))
            release = ", set resources.release_samplers_for_training" if stage == "train" else ""
            raise PlanError(f"stage {stage} needs {numbers} at once: {parts}. Lower the roles' resources.<role>."
                            f"actors, cpus, gpus, tensor_parallel_size or custom_resources{release}, or add nodes "
                            "that offer it")
        seen.update({role.name: role for role, _ in groups.values()})
    for role in seen.values():
        want = asks(role)
        if not any(all(node.get(k, 0) + EPSILON >= v for k, v in want.items()) for node in nodes):
            largest = {k: max((node.get(k, 0) for node in nodes), default=0) for k in want}
            raise PlanError(f"one {role.name} actor asks for {_fmt(want)} but no node has that much (the largest "
                            f"node offers {_fmt(largest)}): lower resources.{role.name}.* or add a bigger node")
    return [f"plan for a cluster of {len(nodes)} node(s) with {_fmt(cluster)}; each stage holds at once:"] + lines


def check_shared_root(run_dir: Path | str, nodes: int) -> None:
    """A relative run directory is refused on a cluster of several nodes (module docstring)."""
    if nodes > 1 and not Path(run_dir).is_absolute():
        raise PlanError(
            f"run directory {str(run_dir)!r} is relative, on a cluster of {nodes} nodes: every node must see the "
            "run directory at the same absolute path (under `ray job submit` a relative one lands in a per-node "
            "temporary folder). Set run.root (or --run-dir) to an absolute path on storage shared by every node; "
            "the code must be there too (the same checkout or installed package on every node), and ideally the "
            "model cache (HF_HOME) as well")


def cluster_nodes() -> list[dict[str, float]]:
    """The total resources of each alive node of the connected Ray cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
