"""Where model actors run: an executor creates a group of N actors of one role, calls them, fans a stage's
shards out over them, and kills them. In the manner of OpenRLHF's ``RayActorGroup``.

``RayExecutor`` runs each actor as a Ray actor with the role's resources (``resources.<role>``), waits up to
``resources.ready_timeout_s`` for the group to start (``ActorNotReady`` names the role), and a dead actor is
restarted and its unfinished call retried ``resources.max_restarts`` times (model calls are pure and the
trainer resumes from its checkpoints, so a retry redoes no finished work). ``InProcessExecutor`` builds the
same actor classes as plain objects in this process, for tests and the bench: the round runs the same code
without a cluster. Neither the sequencer nor the stages know which one they have.
"""
from __future__ import annotations

import abc
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from engine.config import Config
from engine.resources import ROLES


class ActorNotReady(RuntimeError):
    """An actor did not start within ``resources.ready_timeout_s``: Ray could not place it, or its model load hung."""


class ActorGroup:
    """N actors of one role, created together and killed together."""

    def __init__(self, executor: "Executor", role: str, actors: list):
        self.executor, self.role, self.actors = executor, role, actors

    def call(self, index: int, method: str, *args, **kwargs):
        """One actor's method, waited for."""
        return self.executor.call(self.actors[index], method, *args, **kwargs)

    def call_all(self, method: str, *args, per_actor: list[dict] | None = None, **kwargs) -> list:
        """The same method on every actor at once; actor i also gets ``per_actor[i]`` as keyword arguments."""
        calls = [(a, args, {**kwargs, **(per_actor[i] if per_actor else {})}) for i, a in enumerate(self.actors)]
        return self.executor.call_many(method, calls)

    def kill(self) -> None:
        self.executor.kill(self.actors)
        self.actors = []

    def __len__(self) -> int:
        return len(self.actors)


class Executor(abc.ABC):
    """Creates actor groups and calls their actors; subclasses say where the actors live."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def group(self, role: str, count: int, *args) -> ActorGroup:
        from engine.actors import ACTOR_CLASSES

        if role not in ROLES:
            raise ValueError(f"unknown actor role {role!r} (roles: {', '.join(ROLES)})")
        actors = [self.create(role, ACTOR_CLASSES[role], args) for _ in range(count)]
        self.wait_ready(role, actors)
        return ActorGroup(self, role, actors)

    def wait_ready(self, role: str, actors: list) -> None:
        """Returns once every actor has started; an executor whose actors start in ``create`` has nothing to wait for."""

    @abc.abstractmethod
    def create(self, role: str, cls: type, args: tuple):
        """One actor of ``role``: an instance of ``cls(*args)`` wherever this executor runs actors."""

    @abc.abstractmethod
    def call(self, actor, method: str, *args, **kwargs):
        """``actor.method(*args, **kwargs)``, waited for."""

    @abc.abstractmethod
    def call_many(self, method: str, calls: list[tuple]) -> list:
        """``actor.method(*args, **kwargs)`` for every (actor, args, kwargs) of ``calls`` at once, waited for."""

    @abc.abstractmethod
    def kill(self, actors: list) -> None:
        """Ends the actors and frees what they hold."""


class RayExecutor(Executor):
    def create(self, role, cls, args):
        from engine.actors import actor_options

        return cls.options(**actor_options(self.cfg, role)).remote(*args)

    def wait_ready(self, role, actors):
        """Waits up to ``resources.ready_timeout_s`` for the actors' constructors (model loads) to finish; an
        actor Ray cannot place would otherwise leave the first call waiting forever."""
        import ray

        from engine.actors import actor_options

        timeout = self.cfg.resources.ready_timeout_s
        pending = [actor.__ray_ready__.remote() for actor in actors]
        ready, waiting = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        ray.get(ready)  # a constructor that raised raises here, with its own error
        if waiting:
            self.kill(actors)
            options = actor_options(self.cfg, role)
            asks = {"CPU": options["num_cpus"], "GPU": options["num_gpus"], **options.get("resources", {})}
            free = {k: v for k, v in ray.available_resources().items()
                    if not k.startswith(("node:", "memory", "object"))}
            raise ActorNotReady(
                f"{len(waiting)} of {len(actors)} {role} actor(s) not ready after "
                f"resources.ready_timeout_s={timeout:g} s: "
                f"each asks for {asks}; the cluster has {free} free. Ray cannot place it (lower resources.{role}.* "
                f"or add a node that offers it), or its model load is slower than the timeout (raise it)")

    def call(self, actor, method, *args, **kwargs):
        import ray

        return ray.get(getattr(actor, method).remote(*args, **kwargs))

    def call_many(self, method, calls):
        import ray

        return ray.get([getattr(actor, method).remote(*args, **kwargs) for actor, args, kwargs in calls])

    def kill(self, actors):
        import ray

        for actor in actors:
            ray.kill(actor)


class InProcessExecutor(Executor):
    """Actors as plain objects in this process; calls run in the caller's thread, one at a time per actor."""

    def create(self, role, cls, args):
        return cls.__ray_actor_class__(*args)  # the class ``@ray.remote`` wrapped

    def call(self, actor, method, *args, **kwargs):
        return getattr(actor, method)(*args, **kwargs)

    def call_many(self, method, calls):
        return [getattr(actor, method)(*args, **kwargs) for actor, args, kwargs in calls]

    def kill(self, actors):
        for actor in actors:
            getattr(actor, "close", lambda: None)()


def fan_out(handles: list, indices: list[int], work: Callable[[object, int], None]) -> None:
    """Runs ``work(handle, index)`` for every index, the indices dealt round-robin over the handles, one
    thread per handle (each handle is one actor; its calls queue in order)."""
    queues = [indices[i::len(handles)] for i in range(len(handles))]

    def drain(handle, queue):
        for index in queue:
            work(handle, index)

    with ThreadPoolExecutor(len(handles)) as pool:  # leaving it waits for every thread, even after a failure
        for future in [pool.submit(drain, h, q) for h, q in zip(handles, queues) if q]:
            future.result()
