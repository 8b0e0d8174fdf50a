"""Session fixtures: the small zoo is built once (cached by recipe hash) and one vLLM engine serves every test."""
import os

# Before anything imports huggingface_hub, which reads it once. No test may reach the hub (CI machines cannot):
# offline, a name that is not a local folder fails at once; online, the fake-model round tests (whose policy is
# the bare name "policy") waited 47-65 s each on network timeouts before their token screen gave up.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from engine.zoo import SMALL, build_zoo  # noqa: E402


@pytest.fixture(scope="session")
def small_zoo():
    return build_zoo(SMALL)


@pytest.fixture(scope="session")
def policy_engine(small_zoo):
    from engine.generation import VLLMEngine

    # LoRA off: the loop tests cover adapters.
    return VLLMEngine(str(small_zoo["policy"]), seed=0, max_model_len=256, enforce_eager=True)


def _answer_claims(run_seed_round: int, n_claims: int) -> list[float]:
    """Labeler probabilities for a tiny run: alternately accepted and rejected claims."""
    return [0.9 if (i + run_seed_round) % 2 == 0 else 0.2 for i in range(n_claims)]


@pytest.fixture
def tiny_run(tmp_path):
    """A small run directory as the round machine leaves it, without running the loop: round 0 evaluated,
    round 1 complete (DPO log included), round 2 stopped in the middle of its sample stage (1 of 2 shards)."""
    import io

    import yaml

    from engine.config import Config
    from engine.store import RunStore
    from evaluation.shapes import ShapesWorld
    from feedback.pairs import pairs_schema, preference_row
    from feedback.rlaifv import split_answers

    cfg = Config()
    cfg.run.rounds, cfg.sampling.prompts_per_round, cfg.sampling.shard_size, cfg.sampling.n = 2, 4, 2, 2
    root = tmp_path / "run"
    store = RunStore(root)
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    world = ShapesWorld()

    def evaluate(k, chair_i):
        metrics = {"chair_s": 2 * chair_i, "chair_i": chair_i, "recall": 0.8 + k / 100, "pope_f1": 0.5, "n": 2}
        store.write_json(f"rounds/{k:03d}/eval/metrics.json", metrics)
        items = world.eval_set(2)
        store.write_jsonl(f"rounds/{k:03d}/eval/responses.jsonl", [
            {"id": it["id"], "gt_objects": it["gt_objects"], "prompt": it["question"],
             "response": f"There is a {it['gt_objects'][0]}." + (" There is a blue circle." if k == 0 else "")}
            for it in items])
        done(k, "eval", {key: metrics[key] for key in ("chair_s", "chair_i", "recall", "pope_f1", "n")}, 30.0)

    def done(k, stage, info, seconds):
        store.mark_done(k, stage, {**info, "seconds": seconds})
        store.append_metrics({"round": k, "stage": stage, **info, "seconds": seconds})

    def prompts(k):
        rows = []
        for item in world.prompt_pool(4, start=(k - 1) * 4):
            buffer = io.BytesIO()
            item["image"].save(buffer, format="PNG")
            rows.append({"id": item["id"], "image_bytes": buffer.getvalue(), "question": item["question"],
                         "reference": item["reference"], "gt_objects": item["gt_objects"], "layout": item["layout"]})
        store.write_shard(k, "prompts", 0, rows)
        done(k, "prompts", {"rows": 4, "skipped": 0}, 0.5)
        return rows

    def samples(rows):
        return [{"prompt_id": p["id"], "sample": i, "response": f"There is a {p['gt_objects'][0]}." +
                 (" There is a small green diamond at the top right." if i else "")}
                for p in rows for i in range(2)]

    evaluate(0, 0.30)
    rows = prompts(1)
    sampled = samples(rows)
    for shard in range(2):
        store.write_shard(1, "sample", shard, sampled[shard * 4:(shard + 1) * 4])
    done(1, "sample", {"shards": 2, "shards_run": 2, "items": 4}, 12.0)
    split = split_answers(sampled)
    store.write_shard(1, "split", 0, split)
    done(1, "split", {"rows": len(split)}, 0.2)
    verified = [{"prompt_id": s["prompt_id"], "sample": s["sample"], "response": s["response"],
                 "p_yes": _answer_claims(0, len(s["claims"])), "claims": len(s["claims"]), "unscored": False,
                 "score": -(len(s["claims"]) // 2)} for s in split]
    store.write_shard(1, "verify", 0, verified)
    done(1, "verify", {"shards": 2, "shards_run": 2, "items": len(split)}, 8.0)
    by_id = {p["id"]: p for p in rows}
    pairs = [preference_row(by_id[c["prompt_id"]], c["response"], r["response"], id=f"{c['prompt_id']}:0>1",
                            round_index=1, source="rlaifv", group=f"{c['prompt_id']}:0>1", scores=(c["score"], r["score"]))
             for c, r in zip(verified[0::2], verified[1::2])]
    store.write_shard(1, "pairs", 0, pairs, pairs_schema())
    done(1, "pairs", {"rows": len(pairs), "answers": 8}, 0.3)
    log_history = [{"loss": 0.69 - 0.05 * s, "rewards/accuracies": 0.5 + 0.1 * s, "rewards/margins": 0.1 * s,
                    "step": s + 1, "epoch": (s + 1) / 2} for s in range(4)] + [{"train_loss": 0.6, "step": 4}]
    figures = {"pairs": len(pairs), "steps": 4, "loss_first": 0.69, "loss_last": 0.54, "reward_accuracy": 0.75,
               "reward_margin": 0.2}
    store.write_json("rounds/001/policy/candor_train.json", {**figures, "log_history": log_history})
    done(1, "train", figures, 20.0)
    evaluate(1, 0.20)
    rows2 = prompts(2)
    store.write_shard(2, "sample", 0, samples(rows2)[:4])
    return root
