"""vLLM on the CPU against HF: same log-probs, deterministic seeded sampling, yes/no probabilities."""
import torch

from evaluation.shapes import DESCRIBE, ShapesWorld


def test_vllm_and_hf_agree_on_answer_logprobs(small_zoo, policy_engine):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    world = ShapesWorld()
    items = [(world.scene("eval", i).render(), DESCRIBE) for i in range(3)]
    answers = ["There is a large red circle at the top left.", "A small blue square is at the bottom right.",
               "I see a small green diamond in the top right. There is a large yellow triangle at the bottom left."]
    vllm_lps = policy_engine.answer_logprobs(items, answers)
    model = AutoModelForImageTextToText.from_pretrained(small_zoo["policy"], dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(small_zoo["policy"])
    worst = 0.0
    for (image, question), answer, lps in zip(items, answers, vllm_lps):
        text = policy_engine.prompt(question) + f" {answer}</s>"
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0].float()
        ids = inputs["input_ids"][0]
        hf = torch.log_softmax(logits[:-1], -1).gather(1, ids[1:, None])[:, 0][-len(lps):]
        assert len(lps) == len(processor.tokenizer(f" {answer}</s>", add_special_tokens=False)["input_ids"])
        worst = max(worst, float((hf - torch.tensor(lps)).abs().max()))
    assert worst <= 1e-3, worst


def test_seeded_sampling_is_reproducible_and_varied(policy_engine):
    image = ShapesWorld().scene("eval", 1).render()
    first = policy_engine.generate([(image, DESCRIBE)], n=4, temperature=1.0, seeds=[7], max_tokens=40)
    again = policy_engine.generate([(image, DESCRIBE)], n=4, temperature=1.0, seeds=[7], max_tokens=40)
    assert first == again
    assert len(set(first[0])) > 1


def test_yes_no_probabilities_are_a_distribution_part(policy_engine):
    image = ShapesWorld().scene("eval", 2).render()
    [(p_yes, p_no)] = policy_engine.yes_no([(image, "Is there a red circle in the image? Please answer yes or no.")])
    assert 0.0 <= p_yes <= 1.0 and 0.0 <= p_no <= 1.0 and p_yes + p_no <= 1.0 + 1e-6


def test_prompt_spliced_into_the_rendered_template_equals_a_full_render(policy_engine):
    for question in ("Is there a red circle in the image? Please answer yes or no.", "{{ odd }} {% text %}", ""):
        assert policy_engine.prompt(question) == policy_engine._render(question)
