"""vLLM on the CPU: deterministic seeded sampling, yes/no probabilities."""
from evaluation.shapes import DESCRIBE, ShapesWorld


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
