import pytest

from feedback.claims import Claim, LLMSplit, llm_split, llm_split_claims, sentences, split_claims
from feedback.llm_claims import EXAMPLE_FACTS, QUESTION_MAX_TOKENS, parse_facts, parse_question, screen_facts


def test_shapesworld_sentence_becomes_existence_size_and_position_claims():
    claims = split_claims("There is a large red circle at the top left.")
    assert [c.question for c in claims] == ["Is there a red circle in the image?", "Is the red circle large?",
                                            "Is the red circle at the top left?"]
    assert not any(c.negated for c in claims)


def test_every_grammar_template_is_split():
    answer = "A small blue square is at the bottom right. I see a large green diamond in the top right."
    questions = [c.question for c in split_claims(answer)]
    assert "Is there a blue square in the image?" in questions
    assert "Is the green diamond in the top right?" in questions
    assert len(questions) == 6


def test_negations_are_kept_and_opinions_dropped():
    claims = split_claims("There is no dog in the picture. I think the scene is beautiful. The cat is not black.")
    assert claims == [Claim("There is no dog.", "Is there a dog in the image?", negated=True),
                      Claim("There is a cat.", "Is there a cat in the image?"),
                      Claim("The cat is not black.", "Is the cat black?", negated=True)]


def test_empty_and_repeated_answers():
    assert split_claims("") == []
    assert len(split_claims("There is a red circle. There is a red circle.")) == 1


def test_a_shapesworld_sentence_outside_the_patterns_falls_back_to_a_truth_question():
    [claim] = split_claims("Yes.")
    assert claim.question == "Is it true that yes?"


def test_a_sentence_outside_shapesworld_goes_to_the_english_splitter():
    assert [c.question for c in split_claims("Dogs chase cats.")] == [
        "Are there dogs in the image?", "Are there cats in the image?", "Do the dogs chase cats?"]


def test_llm_splitter_parses_fact_lists_and_questions():
    asked = []

    def complete(prompts, max_tokens):
        asked.append(max_tokens)
        if "List every atomic" in prompts[0]:
            return ["- There is a dog.\n- The dog is brown.\nnoise line", "nothing listed"]
        return ["Is there a dog?", "Is the dog brown?\nextra"]

    assert llm_split_claims(["A brown dog.", "Hmm."], complete, max_tokens=300) == [
        [Claim("There is a dog.", "Is there a dog?"), Claim("The dog is brown.", "Is the dog brown?")],
        split_claims("Hmm.")]  # a reply that lists no fact: the rule splitter divides the answer
    assert asked == [300, QUESTION_MAX_TOKENS]


def test_llm_splitter_falls_back_to_the_rule_rewrite_when_the_model_does_not_ask():
    def complete(prompts, max_tokens):
        if "List every atomic" in prompts[0]:
            return ["- There is a red circle.\n- The red circle is large."]
        return ["Yes.", "Is the red circle large?"]

    assert llm_split_claims(["A large red circle."], complete) == [
        [Claim("There is a red circle.", "Is there a red circle in the image?"),
         Claim("The red circle is large.", "Is the red circle large?")]]


def test_llm_splitter_keeps_negations_and_can_ask_a_separate_rewrite_model():
    def lister(prompts, max_tokens):
        return ["1. There is no cat.\n2. The dog is brown."]

    def rewriter(prompts, max_tokens):
        return ["Question: Is there a cat in the image?", "Is the dog brown?"]

    assert llm_split_claims(["A brown dog, no cat."], lister, rewrite=rewriter) == [
        [Claim("There is no cat.", "Is there a cat in the image?", negated=True),
         Claim("The dog is brown.", "Is the dog brown?")]]


def fact_lister(reply):
    """A text model whose fact list is ``reply`` and whose questions are "Yes." (each kept fact is rewritten by
    the rule splitter); it records the facts it was asked to rewrite."""
    rewritten = []

    def complete(prompts, max_tokens):
        if "List every atomic" in prompts[0]:
            return [reply] * len(prompts)
        rewritten.extend(p.rsplit("Statement: ", 1)[1].split("\n")[0] for p in prompts)
        return ["Yes."] * len(prompts)
    return complete, rewritten


def test_the_few_shot_examples_facts_copied_by_the_model_are_dropped_and_the_rule_splitter_divides_the_answer():
    complete, rewritten = fact_lister("\n".join(f"- {fact}" for fact in EXAMPLE_FACTS))
    answer = "A man rides a bicycle down a city street."
    [split] = llm_split([answer], complete)
    assert split == LLMSplit(split_claims(answer), [(fact, "copied") for fact in EXAMPLE_FACTS], by_rule=True)
    assert "Is there a bicycle in the image?" in [c.question for c in split.claims]
    assert rewritten == []  # no listed fact was left to ask about


def test_an_example_fact_the_answer_states_is_kept_and_a_near_copy_it_does_not_state_is_dropped():
    complete, rewritten = fact_lister("- There is a dog.\n- The dog is brown.\n- The dogs lie on a rug.\n"
                                      "- There is a cat.\n- There is no cat.")
    [split] = llm_split(["A brown dog sleeps next to a cat."], complete)
    # "The dogs lie on a rug." is the example's "The dog is lying on the rug." up to inflection, and the answer
    # names no rug; "There is a cat." is no example fact (that one denies); the example's denial is copied: the
    # answer names a cat but denies nothing
    assert rewritten == ["There is a dog.", "The dog is brown.", "There is a cat."]
    assert split.dropped == [("The dogs lie on a rug.", "copied"), ("There is no cat.", "copied")]
    assert [c.question for c in split.claims] == ["Is there a dog in the image?", "Is the dog brown?",
                                                  "Is there a cat in the image?"]


def test_the_examples_denial_is_kept_when_the_answer_denies_it_too():
    assert screen_facts(["There is no cat."], "A dog sleeps on the sofa. No cats are in the room.", sentences) == (
        ["There is no cat."], [])
    assert screen_facts(["There is no cat."], "Two cats sleep on the sofa. There is no dog.", sentences) == (
        [], [("There is no cat.", "copied")])


def test_a_fact_repeated_until_the_token_limit_is_asked_once_and_each_repeat_counted():
    complete, rewritten = fact_lister("- There is a man.\n- The man is riding a bicycle.\n"
                                      + "- The man is riding a bicycle.\n" * 3 + "- the man is riding a bicycle")
    [split] = llm_split(["A man is riding a bicycle."], complete)
    assert rewritten == ["There is a man.", "The man is riding a bicycle."]
    assert split.dropped == [("The man is riding a bicycle.", "repeated")] * 3 + [
        ("the man is riding a bicycle", "repeated")]


def test_a_fact_sharing_no_content_word_with_the_answer_is_dropped_as_unrelated():
    kept, dropped = screen_facts(["There is a man.", "The sky is blue.", "It is there.", "Men ride bicycles."],
                                 "A man is riding a bicycle on the beach.", sentences)
    # content words by WordNet lemma ("men" -> man, "ride" ~ "riding"); "It is there." has none
    assert kept == ["There is a man.", "Men ride bicycles."]
    assert dropped == [("The sky is blue.", "unrelated"), ("It is there.", "unrelated")]


def test_a_good_fact_list_passes_the_screen_whole():
    facts = ["There is a woman.", "The woman is holding an umbrella.", "The umbrella is red.",
             "There are two dogs.", "There is no car."]
    answer = "A woman holds a red umbrella while two dogs play. No cars are around."
    assert screen_facts(facts, answer, sentences) == (facts, [])


@pytest.mark.parametrize("reply", [
    "- There is a dog.\n- The dog is brown.",
    "1. There is a dog.\n2) The dog is brown.",
    "Here are the facts:\n* \"There is a dog.\"\n\u2022 'The dog is brown.'",
    "Facts:\n- Fact 1: There is a dog.\n- Fact 2: The dog is brown.\n\nDescription: A cat.\nFacts:\n- There is a cat.",
    "There is a dog. The dog is brown.",
])
def test_fact_lists_survive_the_formats_models_write(reply):
    assert parse_facts(reply, sentences) == ["There is a dog.", "The dog is brown."]


@pytest.mark.parametrize("reply, question", [
    ("Is the dog brown?", "Is the dog brown?"),
    ("Question: Is the dog brown?", "Is the dog brown?"),
    ('"Is the dog brown?"', "Is the dog brown?"),
    ("- Q: is the dog brown? Yes, it is.", "Is the dog brown?"),
    ("Sure!\n1. Is the dog brown?\nStatement: The cat is black.", "Is the dog brown?"),
    ('The answer to the question "Is the dog brown?" is "No."', "Is the dog brown?"),
    ("Yes.", ""),
    ("The dog is brown.", ""),
    ("What colour is the dog?", ""),
    ('The answer to the question "Is there a cat in the image?" is "No."', ""),  # the few-shot's, not this fact's
])
def test_rewrite_replies_give_their_yes_no_question_or_nothing(reply, question):
    assert parse_question(reply, "The dog is brown.") == question
