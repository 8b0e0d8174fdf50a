"""GPUs per role, the planner, the readiness timeout and releasing the samplers for training.

The plan's figures are hand-computed from the configs: in configs/llava-1.5-7b-rlaifv.yaml the samplers are
2 engines x 1 GPU, the labeler 1 engine x 2 GPUs (tensor parallel 2), the splitter 1 x 1, the trainer 1.
"""
import os
import time

import pytest

from engine.config import ConfigError, load_config
from engine.executor import ActorNotReady, Executor, InProcessExecutor, RayExecutor
from engine.planner import PlanError, check_shared_root, plan, stage_groups

LLAVA = "configs/llava-1.5-7b-rlaifv.yaml"


def holds(cfg, stage: str) -> dict:
    """{role: actors} alive during ``stage``."""
    return {role.name: count for role, count in dict(stage_groups(cfg))[stage].values()}


def test_each_stage_holds_what_is_alive_then():
    cfg = load_config(LLAVA)
    assert holds(cfg, "sample") == {"sampler": 2}
    assert holds(cfg, "split") == {"sampler": 2, "text": 1}  # the splitter lives for its stage only
    assert holds(cfg, "verify") == {"sampler": 2, "labeler": 1}
    assert holds(cfg, "train") == {"sampler": 2, "trainer": 1}  # the labeler went before training
    released = load_config(LLAVA, ["resources.release_samplers_for_training=true"])
    assert holds(released, "train") == {"trainer": 1} and holds(released, "eval/chair-coco") == {"sampler": 2}


def test_a_cluster_that_holds_the_peak_gets_a_plan_with_every_stage():
    lines = plan(load_config(LLAVA), [{"CPU": 32, "GPU": 4, "memory": 1e12, "node:10.0.0.1": 1}])
    text = "\n".join(lines)
    assert "cluster of 1 node(s) with {CPU: 32, GPU: 4}" in text  # Ray's bookkeeping resources left out
    verify = next(line for line in lines if line.strip().startswith("verify"))
    assert "{CPU: 12, GPU: 4}" in verify  # 2 x {CPU 4, GPU 1} + 1 x {CPU 4, GPU 2}


def test_more_gpus_than_the_cluster_has_is_refused_naming_the_stage_and_numbers():
    with pytest.raises(PlanError, match=r"stage verify needs 4 GPU \(the cluster has 3\) at once: "
                                        r"sampler 2 x \{CPU: 4, GPU: 1\}, labeler 1 x \{CPU: 4, GPU: 2\}"):
        plan(load_config(LLAVA), [{"CPU": 32, "GPU": 3}])


def test_an_actor_bigger_than_every_node_is_refused_naming_the_role():
    cfg = load_config(LLAVA, ["resources.labeler.tensor_parallel_size=4"])  # 4 GPUs in one actor
    with pytest.raises(PlanError, match=r"one labeler actor asks for \{CPU: 4, GPU: 4\} but no node has that much "
                                        r"\(the largest node offers \{CPU: 16, GPU: 2\}\)"):
        plan(cfg, [{"CPU": 16, "GPU": 2}] * 3)  # 6 GPUs in all, 2 per node


def test_releasing_the_samplers_lets_a_big_trainer_fit():
    overrides = ["resources.labeler.tensor_parallel_size=1", "resources.trainer.gpus=2"]
    nodes = [{"CPU": 32, "GPU": 3}]
    with pytest.raises(PlanError, match=r"stage train needs 4 GPU \(the cluster has 3\)"):  # 2 samplers + 2
        plan(load_config(LLAVA, overrides), nodes)
    plan(load_config(LLAVA, overrides + ["resources.release_samplers_for_training=true"]), nodes)


def test_custom_resources_pin_a_role_and_a_missing_one_is_refused():
    cfg = load_config("configs/shapes-rlaifv.yaml", ["resources.trainer.custom_resources={gpu_node: 1}"])
    with pytest.raises(PlanError, match=r"stage train needs 1 gpu_node \(the cluster has 0\)"):
        plan(cfg, [{"CPU": 2}])
    assert plan(cfg, [{"CPU": 2}, {"CPU": 1, "gpu_node": 1}])


def test_a_relative_run_root_is_refused_on_a_cluster_of_several_nodes(tmp_path):
    with pytest.raises(PlanError, match="relative, on a cluster of 2 nodes.*shared by every node.*HF_HOME"):
        check_shared_root("runs/x", 2)
    check_shared_root("runs/x", 1)
    check_shared_root(tmp_path / "x", 2)


class Recording(InProcessExecutor):
    """Actors as labels: records each start and kill by role (the Models logic, not the models)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.log = []

    def create(self, role, cls, args):
        self.log.append(("start", role))
        return role

    def kill(self, actors):
        self.log += [("kill", role) for role in actors]


@pytest.mark.parametrize("release", [False, True])
def test_release_samplers_for_training_kills_them_for_dpo_and_they_restart_after(release, tmp_path):
    from engine.models import Models
    from evaluation.layout import RunLayout

    cfg = load_config("configs/shapes-rlaifv.yaml", [f"resources.release_samplers_for_training={release}",
                                                     "resources.sampler.actors=2"])
    executor = Recording(cfg)
    models = Models(cfg, executor, RunLayout(tmp_path), "policy", "labeler")
    models.samplers(), models.labelers()
    models.free_for_training()
    killed = sorted(role for event, role in executor.log if event == "kill")
    assert killed == (["labeler", "sampler", "sampler"] if release else ["labeler"])
    models.samplers()  # the eval after training
    assert executor.log.count(("start", "sampler")) == (4 if release else 2)


@pytest.fixture(scope="module")
def logical_gpus():
    """A private local Ray with 4 logical GPUs (and 32 logical CPUs) on this CPU machine, sockets on loopback."""
    import ray
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # as engine.actors.connect_ray does
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "300")  # a loaded 2-core machine took over 60 s
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(address="local", num_cpus=32, num_gpus=4, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    yield
    ray.shutdown()


def test_the_planner_refuses_before_any_work_on_a_cluster_with_4_gpus(logical_gpus, tmp_path):
    from engine.run import prepare_run, run

    cfg = load_config(LLAVA, ["resources.sampler.actors=3"])  # verify: 3 x 1 + 2 = 5 GPUs
    store = prepare_run(cfg, tmp_path / "run")
    with pytest.raises(PlanError, match=r"stage verify needs 5 GPU \(the cluster has 4\)"):
        run(cfg, store, tmp_path / "run")
    assert not (tmp_path / "run" / "rounds").exists()  # no stage ran, no actor started


def test_an_actor_that_cannot_be_placed_ends_with_the_readiness_error(logical_gpus):
    cfg = load_config("configs/shapes-rlaifv.yaml", ["resources.labeler.gpus=8", "resources.ready_timeout_s=3"])
    start = time.time()
    with pytest.raises(ActorNotReady, match=r"1 of 1 labeler actor\(s\) not ready after "
                                            r"resources.ready_timeout_s=3 s: each asks for \{'CPU': 1.0, 'GPU': 8.0\}; "
                                            r"the cluster has .*'GPU': 4.0.* free"):
        RayExecutor(cfg).group("labeler", 1, "no-model", {})
    assert time.time() - start < 60


def test_each_role_has_its_own_gpus_tensor_parallel_size_and_dtype():
    from engine.actors import actor_options, engine_kwargs

    cfg = load_config(LLAVA, ["resources.text.dtype=float16", "resources.sampler.custom_resources={sampler_node: 1}"])
    assert [engine_kwargs(cfg, False, r)["tensor_parallel_size"] for r in ("sampler", "labeler", "text")] == [1, 2, 1]
    assert [engine_kwargs(cfg, False, r)["dtype"] for r in ("sampler", "labeler", "text")] == \
        ["bfloat16", "bfloat16", "float16"]  # model.dtype unless the role sets its own
    assert actor_options(cfg, "sampler") == {"num_cpus": 4.0, "num_gpus": 1.0, "max_restarts": 3,
                                             "max_task_retries": 3, "resources": {"sampler_node": 1.0}}
    assert not engine_kwargs(cfg, True, "sampler")["cpu"]
    with pytest.raises(ConfigError, match="resources.text.actors: the stages that use the text model run it as one"):
        load_config(LLAVA, ["resources.text.actors=2"])


def test_the_first_releases_flat_keys_still_load_so_old_runs_resume():
    from engine.config import config_from_dict

    old = load_config("configs/shapes-rlaifv.yaml").to_dict()
    old["resources"] = {"sampler_actors": 2, "labeler_actors": 1, "trainer_actors": 1, "num_gpus_per_actor": 0.5,
                        "num_cpus_per_actor": 2, "ray_address": "", "max_restarts": 3}
    r = config_from_dict(old).resources
    assert (r.sampler.actors, r.trainer.actors, r.labeler.gpus, r.text.cpus) == (2, 1, 0.5, 2.0)
