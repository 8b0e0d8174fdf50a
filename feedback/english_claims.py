"""The rule splitter for general English: an answer's facts (``claims_parser``) rendered as claims and
grammatical yes/no questions.

- existence per object mention: "Is there a dog in the image?", "Are there cars in the image?", "Is there
  water in the image?"; and a count: "Are there two dogs in the image?"
- attributes: "Is the car red?", "Are the cabinets white?", "Is the vase made of glass?"
- relations and actions: "Is the man riding a bicycle?", "Is the man riding down the street?", "Is the cup
  next to the plate?", "Does the fence surround the pasture?", "Does the plate have eggs?"
- a negation keeps its claim and asks the positive question ("The man is not wearing glasses." -> "Is the
  man wearing glasses?", negated); hedged clauses and opinions are dropped.
Answers come as paragraphs or as Markdown lists (Qwen2.5-VL's "1. **Vehicles**: A red car ..."): list
markers, emphasis and short item labels are removed and each line is split into sentences.
"""
from __future__ import annotations

import re

from feedback import claims_lexicon as lex
from feedback.claims_predicates import PREPOSITIONS, Fact, Mention

_LIST_MARKER = re.compile(r"^\s*(?:#+\s*|\d+[.)]\s+|[-*\u2022]\s+)")
_EMPHASIS = re.compile(r"\*\*|__|`")
_ITEM_LABEL = re.compile(r"^[A-Za-z][\w' -]{0,30}:\s+(?=\S)")


def lines(answer: str) -> list[str]:
    """The answer's lines without list markers, emphasis and item labels ("**Vehicles**: ...")."""
    out = []
    for line in answer.splitlines():
        line = _ITEM_LABEL.sub("", _LIST_MARKER.sub("", _EMPHASIS.sub("", line)).strip())
        if line:
            out.append(line)
    return out


def _ref(m: Mention, role: str) -> str:
    """How a mention reads in a question: "a bicycle" as an object, "the street" elsewhere."""
    if m.scene:
        phrase = f"{m.det if m.det in ('both', 'the') else 'the'} {' '.join(m.words)}"
        return f"{phrase} of {_ref(m.of, 'place')}" if m.of is not None else phrase
    if role == "object" and m.det != "the":
        return m.surface if m.plural else m.lemma if m.mass else f"{lex.article(m.lemma)} {m.lemma}"
    return f"the {m.surface if m.plural else m.lemma}"


def _predicate(words: tuple, verb_form=None) -> str:
    parts = []
    for k, w in enumerate(words):
        if isinstance(w, Mention):
            parts.append(_ref(w, "object" if k == 1 and words[0] not in PREPOSITIONS else "place"))
        else:
            parts.append(verb_form(w) if k == 0 and verb_form else w)
    return " ".join(parts)


def _existence(m: Mention) -> tuple[str, str]:
    """(the "there is" part, the question's opening) of an existence claim."""
    if m.plural and not m.count:
        return f"are {m.surface}", f"Are there {m.surface}"
    name = m.lemma if m.mass else f"{lex.article(m.lemma)} {m.lemma}"
    return f"is {name}", f"Is there {name}"


def render(fact: Fact) -> tuple[str, str]:
    """(claim, question) of one fact."""
    m, neg = fact.subject, fact.negated
    subject = _ref(m, "subject")
    be = "are" if m.plural else "is"
    if fact.kind == "exist":
        there, ask = _existence(m)
        where = f" {_predicate(fact.words)}" if fact.words else ""
        claim = f"There {there.replace('is ', 'is no ', 1).replace('are ', 'are no ', 1) if neg else there}{where}."
        if neg and not m.plural:
            claim = f"There is no {m.lemma}{where}."
        return claim, f"{ask}{where or ' in the image'}?"
    if fact.kind == "count":
        number = lex.NUMBER_WORDS.get(m.count, str(m.count))
        return f"There are {number} {m.surface}.", f"Are there {number} {m.surface} in the image?"
    if fact.kind == "attr":
        return (f"{subject} {be}{' not' if neg else ''} {fact.words[0]}.".capitalize(),
                f"{be.capitalize()} {subject} {fact.words[0]}?")
    does = "do" if m.plural else "does"
    if fact.kind == "have":
        obj = _ref(fact.words[0], "object")
        claim = f"{subject} {does + ' not have' if neg else 'have' if m.plural else 'has'} {obj}."
        return claim[0].upper() + claim[1:], f"{does.capitalize()} {subject} have {obj}?"
    if fact.tense == "do":
        rest = _predicate(fact.words, lex.verb_lemma)
        written = _predicate(fact.words)
        claim = f"{subject} {does} not {rest}." if neg else f"{subject} {written}."
        return claim[0].upper() + claim[1:], f"{does.capitalize()} {subject} {rest}?"
    rest = _predicate(fact.words)
    claim = f"{subject} {be}{' not' if neg else ''} {rest}."
    return claim[0].upper() + claim[1:], f"{be.capitalize()} {subject} {rest}?"
