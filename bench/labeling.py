"""Stage 2, claim verification: Candor's labeler stage vs the RLAIF-V reference path; prefix caching on vs off.

The claims are the rule splitter's questions about round 1's sampled answers. Candor's path is the verify
stage as rounds.py runs it (``rlaifv.verify_claims`` with a ``VLMLabeler`` over a ``LabelerActor``'s
``VLLMEngine.yes_no``, one call per shard). The reference asks HF ``generate`` one question at a time (batch
size 1, ``max_new_tokens=1``, ``output_scores=True``) and reads p_yes/p_no off the first token's scores, as
RLAIF-V's code does, on the first questions. Prefix caching is compared on in-process engines.
"""
from __future__ import annotations

import os

import ray

from bench.common import Context, Timer, ratio
from bench.report import Section
from bench.sampling import set_torch_threads, warm_items
from engine.generation import chat_prompt


def candor_labeler_stage(ctx: Context) -> tuple[float, float, list[dict]]:
    """Round 1's split and verify stages as the round machine runs them, on a started LabelerActor; returns
    the actor's start seconds, the verify stage's best-of seconds and the verified rows."""
    rounds = ctx.rounds("labeling")
    rounds.store.write_shard(1, "sample", 0, ctx.samples())
    rounds.store.mark_done(1, "sample", {})
    ctx.run_stage(rounds, "split")
    with Timer() as start:
        actors = rounds.models.labelers().actors
        ray.get([a.pid.remote() for a in actors])
    ray.get([a.yes_no.remote([(im, q + " Please answer yes or no.") for im, q in warm_items()]) for a in actors])
    seconds = min(ctx.run_stage(rounds, "verify") for _ in range(ctx.repeats))
    rounds.models.shutdown()
    return start.seconds, seconds, rounds.store.read(1, "verify")


def prefix_caching_gain(ctx: Context, split_rows: list[dict], threads: int) -> dict:
    """Best-of-``ctx.repeats`` seconds to verify every claim in one call, prefix caching on and off, alternating
    (the cache emptied before each run), on in-process labeler engines with the actor's thread count."""
    from engine.actors import engine_kwargs
    from engine.generation import VLLMEngine
    from feedback import rlaifv
    from feedback.labelers import VLMLabeler

    by_id = {p["id"]: p for p in ctx.prompt_rows()}
    set_torch_threads(threads)
    engines = {on: VLLMEngine(ctx.labeler, **engine_kwargs(ctx.cfg, False, "labeler"), enable_prefix_caching=on)
               for on in (True, False)}
    best = {True: float("inf"), False: float("inf")}
    for _ in range(ctx.repeats):
        for on, engine in engines.items():
            engine.yes_no(warm_items())
            engine.llm.reset_prefix_cache()
            with Timer() as t:
                rlaifv.verify_claims(split_rows, by_id, VLMLabeler(engine.yes_no), "vlm")
            best[on] = min(best[on], t.seconds)
    set_torch_threads(os.cpu_count() or 1)
    del engines
    return best


def reference_path(ctx: Context, questions: list[tuple], threads: int) -> tuple[float, list[float]]:
    """RLAIF-V's way: one HF generate per question, p_yes normalised over yes/no from the first-token scores."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from engine.generation import NO_WORDS, YES_WORDS

    set_torch_threads(threads)
    processor = AutoProcessor.from_pretrained(ctx.labeler)
    model = AutoModelForImageTextToText.from_pretrained(ctx.labeler, dtype=torch.float32).eval()
    vocab = processor.tokenizer.get_vocab()
    yes = [vocab[w] for w in YES_WORDS if w in vocab]
    no = [vocab[w] for w in NO_WORDS if w in vocab]
    p_yes = []
    with Timer() as t, torch.inference_mode():
        for image, question in questions:
            inputs = processor(images=image, text=chat_prompt(processor, question), return_tensors="pt")
            out = model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True)
            probs = out.scores[0][0].float().softmax(-1)
            y, n = probs[yes].sum().item(), probs[no].sum().item()
            p_yes.append(y / (y + n) if y + n > 0 else 0.5)
    return t.seconds, p_yes


def bench_labeler(ctx: Context, reference_claims: int) -> Section:
    from feedback import rlaifv
    from feedback.inputs import decode_image
    from feedback.labelers import QUESTION_SUFFIX

    section = Section("2. Claim verification (claims/s)")
    split_rows = rlaifv.split_answers(ctx.samples())
    claims = sum(len(r["questions"]) for r in split_rows)
    start_s, candor_s, verified = candor_labeler_stage(ctx)
    candor_rate = claims / candor_s

    by_id = {p["id"]: p for p in ctx.prompt_rows()}
    questions = [(decode_image(by_id[r["prompt_id"]]["image_bytes"]), q + QUESTION_SUFFIX)
                 for r in split_rows for q in r["questions"]][:reference_claims]
    threads, cores = ctx.actor_threads(), os.cpu_count() or 1
    for ref_threads in sorted({threads, cores}):
        ref_s, ref_p = reference_path(ctx, questions, ref_threads)
        ref_rate = len(questions) / ref_s
        section.add(f"labeler stage ({claims} claims of {len(split_rows)} answers, {threads} thread(s)) vs RLAIF-V "
                    f"reference (HF generate per question, first {len(questions)}, {ref_threads} thread(s))",
                    f"{candor_rate:,.0f} claims/s ({candor_s:.2f}s)", f"{ref_rate:,.1f} claims/s ({ref_s:.1f}s)",
                    ratio(candor_rate, ref_rate), ">= 20x", candor_rate / ref_rate >= 20)
    set_torch_threads(cores)
    candor_p = [p for r in verified for p in r["p_yes"]][:len(ref_p)]
    gap = max((abs(a - b) for a, b in zip(candor_p, ref_p)), default=0.0)
    section.note(f"same claims, same answers: max |p_yes(vLLM) - p_yes(HF)| = {gap:.2e} over {len(ref_p)} claims; "
                 f"LabelerActor start + model load {start_s:.1f}s (not in the rate)")
    best = prefix_caching_gain(ctx, split_rows, threads)
    section.add(f"prefix caching on vs off (in-process engines, {threads} thread(s), all claims in one call, "
                f"best of {ctx.repeats})", f"{claims / best[True]:,.0f} claims/s", f"{claims / best[False]:,.0f} claims/s",
                ratio(best[False], best[True]), "report")
    return section
