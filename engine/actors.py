"""Thin Ray actors that only hold a loaded model; what they compute lives in generation.py and training.py.

``SamplerActor`` keeps the base policy resident in vLLM and serves any round's adapter; ``LabelerActor``
holds the labeler VLM; ``TrainerActor`` runs one round of DPO in its own process, so its memory is freed
when the driver kills it. Resources come from ``resources.*`` in the config.
"""
from __future__ import annotations

import os

import ray

from engine.config import Config


class _EngineHolder:
    def __init__(self, model: str, engine_kwargs: dict):
        from engine.generation import VLLMEngine

        self.engine = VLLMEngine(model, **engine_kwargs)

    def pid(self) -> int:
        return os.getpid()


@ray.remote
class SamplerActor(_EngineHolder):
    def generate(self, items, n, temperature, max_tokens, seeds, adapter):
        return self.engine.generate(items, n=n, temperature=temperature, max_tokens=max_tokens, seeds=seeds,
                                    adapter=adapter)

    def yes_no(self, items, adapter):
        return self.engine.yes_no(items, adapter=adapter)


@ray.remote
class LabelerActor(_EngineHolder):
    def yes_no(self, items):
        return self.engine.yes_no(items)


@ray.remote
class SplitterActor(_EngineHolder):
    """A text LLM for the stages that use ``text``: RLAIF-V's claim splitter (feedback.splitter=llm) and
    BPO's error injection (feedback.injector=llm)."""

    def complete(self, prompts, max_tokens=256):
        return self.engine.complete(prompts, max_tokens=max_tokens)


@ray.remote
class TrainerActor:
    def train(self, **kwargs) -> dict:
        from engine.rendezvous import leave_group
        from engine.training import train_dpo

        figures = train_dpo(**kwargs)
        if kwargs.get("world_size", 1) > 1:
            leave_group(kwargs["master"], kwargs["rank"])
        return figures

    def rendezvous(self) -> str:
        """Where the trainers' data-parallel group meets, this actor being its rank 0: a file on a one-node
        cluster (no port opened), a TCP store at this node's address when the cluster spans nodes."""
        from engine.rendezvous import rendezvous

        one_node = sum(node["Alive"] for node in ray.nodes()) == 1
        return rendezvous(None if one_node else ray.util.get_node_ip_address())

    def pid(self) -> int:
        return os.getpid()


ACTOR_CLASSES = {"sampler": SamplerActor, "labeler": LabelerActor, "text": SplitterActor, "trainer": TrainerActor}


def engine_kwargs(cfg: Config, lora: bool, role: str = "sampler") -> dict:
    """VLLMEngine's arguments for an engine of ``role`` (its tensor parallel size, dtype, GPU or CPU)."""
    m, r = cfg.model, cfg.resources.role(role, cfg.model)
    return {"dtype": r.dtype, "max_model_len": m.max_model_len, "seed": cfg.run.seed, "enable_lora": lora,
            "max_lora_rank": max(8, cfg.train.lora_r), "tensor_parallel_size": r.tensor_parallel_size,
            "gpu_memory_utilization": m.gpu_memory_utilization, "trust_remote_code": m.trust_remote_code,
            "enforce_eager": m.enforce_eager, "max_num_batched_tokens": m.max_num_batched_tokens,
            "mm_processor_cache_gb": m.mm_processor_cache_gb, "min_pixels": m.min_pixels, "max_pixels": m.max_pixels,
            "cpu": not r.on_gpu}


def actor_options(cfg: Config, name: str) -> dict:
    """Ray's options for one actor of role ``name``: an engine with tensor parallelism reserves every shard's GPUs."""
    r = cfg.resources.role(name, cfg.model)
    options = {"num_cpus": r.cpus, "num_gpus": r.gpus, "max_restarts": cfg.resources.max_restarts,
               "max_task_retries": cfg.resources.max_restarts}
    return {**options, "resources": r.custom} if r.custom else options


def connect_ray(cfg: Config) -> None:
    """Attaches to the cluster of ``ray job submit`` (RAY_ADDRESS) or resources.ray_address; otherwise starts
    a local Ray whose sockets stay on 127.0.0.1 (on Linux Ray otherwise listens on every interface)."""
    if ray.is_initialized():
        return
    address = cfg.resources.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    # Off, Ray binds its sockets to 127.0.0.1 only. The GCS and raylet read the variable at
    # start; this process read it when ray was imported, so its copy of the constant is set too.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    # Ray starts workers at nice 15; our actors ARE the work, and niced they lose the cores to anything else.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # gloo (vLLM's CPU process groups, the trainers' data-parallel group) listens on the address the host
    # name resolves to, a LAN address on most machines: a local run keeps it on the loopback interface.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # Ray gives a new raylet 60 s to register with the GCS; on a loaded 2-core machine it took longer and the
    # run died in ray.init ("The current node timed out during startup").
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "300")
    # Stages run one after another, so actors that wait idle may share cores: reserve logical CPUs for all.
    roles = [cfg.resources.role(name, cfg.model) for name in ("sampler", "labeler", "trainer")]
    cpus = max(os.cpu_count() or 1, sum(r.cpus * r.actors for r in roles))
    # address="local": a new private cluster even when another one runs on this machine (a test's, say).
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=True)
