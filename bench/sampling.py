"""Stage 1, sampling: Candor's sampler stage vs a bare ``vllm.LLM.generate`` and vs HF ``generate``.

Candor's path is what rounds.py runs per shard: a ``SamplerActor`` in Ray, ``rlaifv.sample_answers`` and the
run store writing the shard, driven by ``Rounds.run_stage``. The bare path hands the same prompts and the same
per-prompt ``SamplingParams`` to the ``vllm.LLM`` an in-process ``VLLMEngine`` holds, in one call. HF's path
samples the first prompts with ``model.generate`` in batches. All three count tokens by re-tokenising the
answer texts. The warm-up uses held-out images, so no path finds the measured prompts in a prefix cache.
"""
from __future__ import annotations

import os

import ray

from bench.common import Context, Timer, count_tokens, ratio
from bench.report import Section
from engine.generation import chat_prompt


def warm_items(count: int = 2) -> list[tuple]:
    from evaluation.shapes import ShapesWorld

    return [(it["image"], it["question"]) for it in ShapesWorld(1234, 0.5).eval_set(count)]


def start_samplers(rounds) -> tuple[list, float]:
    """The round machine's sampler actors, started, loaded and warmed up; returns them and the start time."""
    with Timer() as t:
        actors = rounds.models.samplers().actors
        ray.get([a.pid.remote() for a in actors])
    ray.get([a.generate.remote(warm_items(), 2, 0.7, 16, None, None) for a in actors])
    return actors, t.seconds


def candor_sampler_stage(ctx: Context, rounds) -> tuple[float, list[dict]]:
    """Round 1's sample stage as the round machine runs it, best of ``ctx.repeats``; seconds and stored rows."""
    start_samplers(rounds)
    seconds = min(ctx.run_stage(rounds, "sample") for _ in range(ctx.repeats))
    return seconds, rounds.store.read(1, "sample")


def set_torch_threads(threads: int) -> None:
    """torch's intra-op (OpenMP) threads; vLLM's CPU worker disables ``torch.set_num_threads`` once an engine
    exists in the process, so this calls what it wraps."""
    import torch

    torch._C.set_num_threads(threads)


def bare_vllm(ctx: Context, thread_counts: list[int]) -> tuple[dict, list[str]]:
    """One ``LLM.generate`` on all prompts with the sampler's per-prompt SamplingParams on one in-process
    engine, per thread count (the prefix cache emptied before each); best-of seconds per thread count."""
    from vllm import SamplingParams  # the baseline is bare vLLM by definition

    from engine.actors import engine_kwargs
    from engine.generation import VLLMEngine

    s = ctx.cfg.sampling
    engine = VLLMEngine(ctx.policy, **engine_kwargs(ctx.cfg, lora=True))
    params = [SamplingParams(n=s.n, temperature=s.temperature, max_tokens=s.max_tokens, seed=seed) for seed in ctx.seeds()]
    requests = [{"prompt": engine.prompt(q), "multi_modal_data": {"image": image}} for image, q in ctx.items()]
    seconds = {threads: float("inf") for threads in thread_counts}
    for _ in range(ctx.repeats):
        for threads in thread_counts:
            set_torch_threads(threads)
            engine.generate(warm_items(), n=2, temperature=0.7, max_tokens=16)
            engine.llm.reset_prefix_cache()
            with Timer() as t:
                outputs = engine.llm.generate(requests, params, use_tqdm=False)
            seconds[threads] = min(seconds[threads], t.seconds)
    set_torch_threads(os.cpu_count() or 1)
    texts = [c.text.strip() for out in outputs for c in out.outputs]
    del engine
    return seconds, texts


def hf_generate(ctx: Context, prompts: int, batch: int, threads: int) -> tuple[float, list[str]]:
    """HF transformers sampling of the first ``prompts`` prompts, ``batch`` prompts (x n answers) per call."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    s = ctx.cfg.sampling
    set_torch_threads(threads)
    processor = AutoProcessor.from_pretrained(ctx.policy)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(ctx.policy, dtype=torch.float32).eval()
    items, texts = ctx.items()[:prompts], []
    with Timer() as t, torch.inference_mode():
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            inputs = processor(images=[im for im, _ in chunk], text=[chat_prompt(processor, q) for _, q in chunk],
                               return_tensors="pt", padding=True)
            # vLLM's defaults: no top-k, no top-p; same temperature, length and answers per prompt.
            out = model.generate(**inputs, do_sample=True, temperature=s.temperature, top_k=0, top_p=1.0,
                                 max_new_tokens=s.max_tokens, num_return_sequences=s.n)
            new = out[:, inputs["input_ids"].shape[1]:]
            texts += [x.strip() for x in processor.tokenizer.batch_decode(new, skip_special_tokens=True)]
    return t.seconds, texts


def bench_sampling(ctx: Context, hf_prompts: int, hf_batch: int) -> Section:
    section = Section("1. Sampling (tokens/s)")
    rounds = ctx.rounds("sampling")
    candor_s, rows = candor_sampler_stage(ctx, rounds)
    rounds.models.shutdown()
    ctx._cache["candor_samples"] = rows
    threads, cores = ctx.actor_threads(), os.cpu_count() or 1
    bare_s, bare_texts = bare_vllm(ctx, sorted({threads, cores}))
    tokenizer = ctx.tokenizer()
    candor_tok = count_tokens(tokenizer, [r["response"] for r in rows])
    bare_tok = count_tokens(tokenizer, bare_texts)
    candor_rate = candor_tok / candor_s
    bare_rate = {k: bare_tok / v for k, v in bare_s.items()}
    section.add(f"Candor sampler stage vs bare LLM.generate, both {threads} thread(s) "
                f"({ctx.prompts} prompts x n={ctx.cfg.sampling.n})",
                f"{candor_rate:,.0f} tok/s ({candor_tok} tok, {candor_s:.2f}s)",
                f"{bare_rate[threads]:,.0f} tok/s ({bare_tok} tok, {bare_s[threads]:.2f}s)",
                ratio(candor_rate, bare_rate[threads]), ">= 0.9x", candor_rate / bare_rate[threads] >= 0.9)
    if cores != threads:
        section.add(f"Candor sampler stage ({threads} thread) vs bare LLM.generate on all {cores} cores",
                    f"{candor_rate:,.0f} tok/s", f"{bare_rate[cores]:,.0f} tok/s ({bare_s[cores]:.2f}s)",
                    ratio(candor_rate, bare_rate[cores]), "report")
        section.note(f"Ray gives an actor OMP_NUM_THREADS = its num_cpus (resources.sampler.cpus="
                     f"{ctx.cfg.resources.sampler.cpus}), so the sampler computes on {threads} thread(s) "
                     f"where a bare script uses {cores}")
    same = sum(a == b for a, b in zip([r["response"] for r in rows], bare_texts))
    section.note(f"same seeds, same answers: {same}/{len(bare_texts)} answers identical between the two vLLM paths")
    for hf_threads in sorted({threads, cores}):
        hf_s, hf_texts = hf_generate(ctx, hf_prompts, hf_batch, hf_threads)
        hf_rate = count_tokens(tokenizer, hf_texts) / hf_s
        section.add(f"Candor sampler stage vs HF generate on {hf_threads} thread(s) (batches of {hf_batch} prompts "
                    f"x n, first {hf_prompts} prompts)", f"{candor_rate:,.0f} tok/s",
                    f"{hf_rate:,.0f} tok/s ({hf_s:.1f}s)", ratio(candor_rate, hf_rate), "report")
    set_torch_threads(cores)
    return section


def bench_sampler_actors(ctx: Context) -> Section:
    """The sample stage with 1 and 2 sampler actors on the same prompts, split into 4 shards."""
    section = Section("5b. Sampling with 1 vs 2 sampler actors")
    shard = max(1, ctx.prompts // 4)
    rates = {}
    for actors in (1, 2):
        cfg = ctx.config(f"sampling.shard_size={shard}", f"resources.sampler_actors={actors}")
        rounds = ctx.rounds(f"actors-{actors}", cfg)
        seconds, rows = candor_sampler_stage(ctx, rounds)
        rounds.models.shutdown()
        tokens = count_tokens(ctx.tokenizer(), [r["response"] for r in rows])
        rates[actors] = tokens / seconds
    section.add(f"sample stage, 2 actors vs 1 ({ctx.prompts} prompts in 4 shards)", f"{rates[2]:,.0f} tok/s",
                f"{rates[1]:,.0f} tok/s", ratio(rates[2], rates[1]), "report")
    section.note(f"each actor computes on {ctx.actor_threads()} thread(s) (Ray's OMP_NUM_THREADS), so {os.cpu_count()} "
                 "cores hold two actors; shards go to the actors round-robin, one thread per actor")
    return section
