"""One full RLAIF-V round per real architecture through iterate.py on the CPU: vLLM sampling, the rule
splitter, the architecture itself as the vlm labeler (yes/no scoring), TRL DPO with PEFT, and evaluation
served with the round's LoRA adapter."""
import json
import os

import pytest
from test_loop import ENV, ROOT

from engine.archs import ARCHS, build_arch

ROUND = ["run.rounds=1", "sampling.prompts_per_round=8", "sampling.n=4", "sampling.shard_size=8",
         "sampling.max_tokens=24", "sampling.temperature=1.0", "eval.n=8", "train.epochs=1", "train.batch_size=4",
         "train.save_steps=0", "feedback.labeler=vlm", "feedback.splitter=rule", "model.max_model_len=4096",
         # vLLM profiles a start-up batch of this many tokens with maximal dummy images: the config's 65536 made
         # each Qwen2.5-VL engine start take ~400 s on a loaded 2-core machine; 16384 holds a shard's prefill.
         "model.max_num_batched_tokens=16384"]


# Minutes per architecture on 2 cores (LLaVA-1.5 332 s; Qwen2.5-VL's engine start alone ~400 s under load): opt-in,
# so the default suite stays inside CI's time.
SLOW = pytest.mark.skipif(os.environ.get("CANDOR_ARCH_ROUNDS") != "1",
                          reason="a full round per architecture takes minutes each: set CANDOR_ARCH_ROUNDS=1")


@SLOW
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_one_rlaifv_round_per_architecture(name, tmp_path):
    import subprocess
    import sys

    # warmed up on ShapesWorld captions, so its answers hold claims the rule splitter finds
    folder = build_arch(name, tmp_path / name, warm_up_steps=150)
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "iterate.py"), "--config", str(ROOT / "configs/shapes-rlaifv.yaml"),
           "--run-dir", str(run), f"model.policy={folder}", f"feedback.labeler_model={folder}", *ROUND]
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verify = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    stages = {row["stage"]: row for row in verify if row["round"] == 1}
    assert {"sample", "split", "verify", "pairs", "train", "eval/shapesworld"} <= set(stages)
    assert stages["pairs"]["rows"] > 0 and stages["train"]["steps"] >= 1
    assert (run / "rounds/001/policy/adapter_model.safetensors").exists()
    metrics = json.loads((run / "rounds/001/eval/shapesworld/metrics.json").read_text())
    assert metrics["n"] == 8 and 0.0 <= metrics["chair_i"] <= 1.0
