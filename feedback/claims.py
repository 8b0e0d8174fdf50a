"""Divide: an answer becomes atomic, self-contained claims, each rewritten as a yes/no question.

``split_claims`` is the rule-based default. It splits sentences with Punkt (no downloaded data); a sentence in
ShapesWorld's grammar ("there is a large red circle at the top left") is broken into existence, size and
position claims by that grammar's patterns, any other sentence goes to the general English splitter
(``english_claims``: object mentions, attributes, counts, relations, pronouns, negations; WordNet through
NLTK, installed by ``scripts/install_wordnet.sh``). ``llm_split`` is the RLAIF-V way: an instruct LLM lists the
facts, a screen drops the repeated, copied and unrelated ones (counted), then the model rewrites each fact as a
question (prompts, reply parsing and the screen in ``llm_claims``). A negated claim ("there is no dog") keeps
its negation: it is asked as the positive question and accepted when the answer is no.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

from evaluation.shapes import grammar_text
from feedback.claims_parser import Parser
from feedback.english_claims import lines, render
from feedback.llm_claims import (LIST_FACTS_PROMPT, QUESTION_MAX_TOKENS, TO_QUESTION_PROMPT, negated, parse_facts,
                                  parse_question, screen_facts)

_SENTENCES = PunktSentenceTokenizer(PunktParameters())
_SENTENCES._params.abbrev_types.update({"e.g", "i.e", "etc", "mr", "mrs", "dr", "vs"})
_OPINION = re.compile(r"\b(i think|i believe|beautiful|lovely|nice|pretty|interesting|seems?|probably|maybe|"
                      r"might|perhaps|overall|in summary)\b", re.I)
_SIZES = ("small", "large", "big", "tiny", "huge", "little")
_DETERMINERS = r"(?:a|an|the|one|two|three|four|some|several|many)"
_PLACE = r"(?:\s+(?P<prep>at|in|on|near|next to|behind|under|above)\s+(?P<where>.+))?"
_PATTERNS = (
    re.compile(rf"^there (?:is|are) (?P<neg>no )?(?P<obj>.+?){_PLACE}$", re.I),
    re.compile(rf"^(?:i see|i can see|we can see|the image shows|it shows) (?P<obj>.+?){_PLACE}$", re.I),
    re.compile(rf"^(?P<obj>{_DETERMINERS} .+?) (?:is|are) (?P<prep>at|in|on|near|next to|behind|under|above) (?P<where>.+)$", re.I),
)
_PREDICATE = re.compile(r"^the (?P<subj>[\w\s]+?) (?P<verb>is|are) (?P<neg>not )?(?P<pred>[\w\s]+)$", re.I)


@dataclass(frozen=True)
class Claim:
    text: str
    question: str
    negated: bool = False


@dataclass(frozen=True)
class LLMSplit:
    """One answer's LLM split: its claims, the listed facts the screen dropped as (fact, reason), and whether
    the rule splitter divided it because no listed fact was left."""
    claims: list[Claim]
    dropped: list[tuple[str, str]]
    by_rule: bool = False


def sentences(answer: str) -> list[str]:
    return [s.strip() for s in _SENTENCES.tokenize(answer) if s.strip()]


def _object_claims(obj: str, negated: bool, prep: str | None, where: str | None) -> list[Claim]:
    words = re.sub(rf"^{_DETERMINERS}\s+", "", obj.strip(), flags=re.I).split()
    sizes = [w for w in words if w.lower() in _SIZES]
    name = " ".join(w for w in words if w.lower() not in _SIZES)
    if not name:
        return []
    if negated:
        return [Claim(f"There is no {name}.", f"Is there a {name} in the image?", negated=True)]
    claims = [Claim(f"There is a {name}.", f"Is there a {name} in the image?")]
    claims += [Claim(f"The {name} is {size}.", f"Is the {name} {size}?") for size in sizes]
    if where:
        claims.append(Claim(f"The {name} is {prep} {where}.", f"Is the {name} {prep} {where}?"))
    return claims


@lru_cache(maxsize=1)
def _shapes_words() -> frozenset:
    """The words a zoo policy can say: its word-level tokenizer holds the grammar and the chat roles."""
    return frozenset(re.findall(r"[a-z]+", " ".join(grammar_text()).lower())) | {"user", "assistant"}


def in_shapes_grammar(text: str) -> bool:
    """Every word is one of ShapesWorld's (a zoo policy can say nothing else): its patterns split it."""
    return set(re.findall(r"[a-z]+", text.lower())) <= _shapes_words()


def _shapes_sentence_claims(sentence: str) -> list[Claim]:
    if _OPINION.search(sentence):
        return []
    body = sentence.rstrip(".!?").strip()
    for pattern in _PATTERNS:
        match = pattern.match(body)
        if match:
            groups = match.groupdict()
            return _object_claims(groups["obj"], bool(groups.get("neg")), groups.get("prep"), groups.get("where"))
    match = _PREDICATE.match(body)
    if match:
        subject, verb, pred = match["subj"], match["verb"].capitalize(), match["pred"]
        return [Claim(f"{body}.", f"{verb} the {subject} {pred}?", negated=bool(match["neg"]))]
    return [Claim(f"{body}.", f"Is it true that {body[0].lower()}{body[1:]}?")] if body else []


def split_claims(answer: str) -> list[Claim]:
    """Rule-based divide step: atomic claims with their yes/no questions, opinions dropped."""
    claims: list[Claim] = []
    if in_shapes_grammar(answer):
        for sentence in sentences(answer):
            claims += _shapes_sentence_claims(sentence)
        return list(dict.fromkeys(claims))  # a repeated claim counts once
    parser = Parser()  # one per answer: pronouns point back across its sentences
    for line in lines(answer):
        for sentence in sentences(line):
            if in_shapes_grammar(sentence):
                claims += _shapes_sentence_claims(sentence)
            else:
                claims += [Claim(*render(fact), negated=fact.negated) for fact in parser.sentence(sentence)]
    unique: dict[tuple, Claim] = {}
    for claim in claims:  # the same question from two sentences counts once, where first asked
        unique.setdefault((claim.question, claim.negated), claim)
    return list(unique.values())


def llm_split(answers: list[str], complete: Callable[..., list[str]], max_tokens: int = 512,
              rewrite: Callable[..., list[str]] | None = None) -> list[LLMSplit]:
    """RLAIF-V's divide step with an instruct LLM: facts first (up to ``max_tokens`` per answer), screened, then
    one question per fact, asked of ``rewrite`` (a separate question-rewrite model) or of the same model.

    ``complete(prompts, max_tokens=...)`` maps prompts to completions (a text-only vLLM engine in the engine
    layer). Small models repeat a fact until the token limit, list the few-shot example's facts instead of the
    answer's, or state something the answer never mentions: ``screen_facts`` drops those, each with its reason.
    An answer left with no fact (the reply listed none, or the screen dropped them all) is divided by the rule
    splitter instead: with no claim it would score as an answer with nothing wrong and win its pairs. A small
    model often answers the rewrite prompt ("Yes.") instead of asking; such a fact is rewritten by the rule
    splitter instead of being lost. A fact that denies keeps its negation.
    """
    replies = complete([LIST_FACTS_PROMPT.format(answer=a) for a in answers], max_tokens=max_tokens)
    screened = [screen_facts(parse_facts(reply, sentences), answer, sentences)
                for reply, answer in zip(replies, answers)]
    flat = [fact for facts, _ in screened for fact in facts]
    asked = (rewrite or complete)([TO_QUESTION_PROMPT.format(fact=f) for f in flat], max_tokens=QUESTION_MAX_TOKENS) \
        if flat else []
    questions = iter(parse_question(reply, fact) for reply, fact in zip(asked, flat))
    result = []
    for (facts, dropped), answer in zip(screened, answers):
        if not facts:
            result.append(LLMSplit(split_claims(answer), dropped, by_rule=True))
            continue
        claims = []
        for fact in facts:
            question = next(questions)
            claims += [Claim(fact, question, negated(fact, question))] if question else split_claims(fact)
        result.append(LLMSplit(list(dict.fromkeys(claims)), dropped))
    return result


def llm_split_claims(answers: list[str], complete: Callable[..., list[str]], max_tokens: int = 512,
                     rewrite: Callable[..., list[str]] | None = None) -> list[list[Claim]]:
    """Each answer's claims from ``llm_split``, without what its screen dropped."""
    return [split.claims for split in llm_split(answers, complete, max_tokens, rewrite)]
