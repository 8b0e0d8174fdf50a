"""Where a resident sampler's memory goes, round by round: the policy's vLLM engine in this process, no Ray.

    python scripts/sampler_memory.py [--run-dir DIR] [--rounds 20] [--no-mm-cache]

Does what the sampler actor does in a round of the soak (scripts/soak.py): samples 4 answers to each of 32
new prompts and evaluates 50 held-out scenes, with round k's adapter from ``DIR/rounds/k/policy`` when a
finished run is given (else the base policy). After each round it prints RSS, glibc's live and free-but-held
bytes (``mallinfo2``) and resident memory by mapping, and at the end their growth per round over rounds
3..N. ``--no-mm-cache`` turns off vLLM's multimodal processor cache (``model.mm_processor_cache_gb=0``),
which keeps each new image's processed tensors. Set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=1024`` (oneDNN's default)
to see the sampler as it was before engine/generation.py capped that cache.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil

from driver_memory import MB, malloc_mb, mapped_mb  # scripts/ is on the path when a script runs
from soak import slope

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", help="a finished run whose round adapters to serve (default: none)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-mm-cache", action="store_true", help="model.mm_processor_cache_gb=0")
    args = parser.parse_args()
    from engine.actors import engine_kwargs
    from evaluation.layout import RunLayout
    from engine.config import Config
    from engine.evaluate import evaluate_model
    from engine.generation import Adapter, VLLMEngine
    from engine.run import resolve_models
    from evaluation.shapes import ShapesWorld

    cfg = Config()
    policy, _ = resolve_models(cfg)
    kwargs = engine_kwargs(cfg, lora=args.run_dir is not None)
    if args.no_mm_cache:
        kwargs["mm_processor_cache_gb"] = 0
    engine = VLLMEngine(policy, **kwargs)
    world = ShapesWorld(cfg.data.world_seed, cfg.data.prior)
    rows = []
    for k in range(1, args.rounds + 1):
        adapter = Adapter(str(RunLayout(args.run_dir).policy(k)), k) if args.run_dir else None
        items = [(p["image"], p["question"]) for p in world.prompt_pool(32, start=32 * k)]
        start = time.time()
        engine.generate(items, n=4, temperature=1.0, max_tokens=96, seeds=list(range(32)), adapter=adapter)
        evaluate_model(engine, world, 50, adapter)
        (in_use, held), mapped = malloc_mb(), mapped_mb()
        figures = {"RSS": psutil.Process().memory_info().rss / MB, "malloc in use": in_use, "malloc free": held,
                   "heap mapping": mapped["heap"], "anonymous mapping": mapped["anonymous"]}
        rows.append(figures)
        print(f"[sampler] round {k}: {time.time() - start:.1f}s (MB): "
              + ", ".join(f"{name} {mb:.1f}" for name, mb in figures.items()), flush=True)
    print(f"[sampler] growth per round over rounds 3..{args.rounds} (MB): "
          + ", ".join(f"{name} {slope([r[name] for r in rows[2:]]):+.2f}" for name in rows[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
