"""The LLM divide step's prompts and the reading of what the model writes back.

Both prompts are few-shot: small instruct models (SmolLM2-135M) asked zero-shot comment on the task instead of
doing it. The readers expect the worst of a model's formatting: numbered lists, bullets of any kind, quotes,
"Facts:" / "Question:" prefixes, a few-shot pattern continued past the answer, a paragraph instead of a list.
"""
from __future__ import annotations

import re

LIST_FACTS_PROMPT = (
    "List every atomic fact the description states about the image, one per line, each line starting with '- '. "
    "Each fact is a short sentence about one object: that it is there, one attribute (colour, size, material, "
    "count), or one relation or action. Replace pronouns by what they refer to, keep negations, leave out "
    "opinions and guesses.\n\n"
    "Description: The image shows a brown dog lying on a rug. It is next to two red balls. There is no cat.\n"
    "Facts:\n- There is a dog.\n- The dog is brown.\n- There is a rug.\n- The dog is lying on the rug.\n"
    "- There are two balls.\n- The balls are red.\n- The dog is next to the balls.\n- There is no cat.\n\n"
    "Description: {answer}\nFacts:\n"
)
TO_QUESTION_PROMPT = (
    "Rewrite the statement as a yes/no question about the image that is answered 'yes' exactly when the "
    "statement is true; a negative statement becomes the positive question. Reply with the question only.\n\n"
    "Statement: There is a dog.\nQuestion: Is there a dog in the image?\n\n"
    "Statement: The balls are red.\nQuestion: Are the balls red?\n\n"
    "Statement: The man is not wearing a hat.\nQuestion: Is the man wearing a hat?\n\n"
    "Statement: {fact}\nQuestion:"
)
QUESTION_MAX_TOKENS = 48  # one question; a longer reply is the model rambling

_MARKER = re.compile(r"^\s*(?:[-*\u2022\u2013>]+|\(?\d+[.):]|\(?[a-z][.)]|(?:fact|claim)\s*\d*\s*[:.)-])\s*", re.I)
_PREFIX = re.compile(r"^\s*(?:facts?|claims?|questions?|q|a|answer|statement|rewritten|yes/no question)\s*\d*\s*:\s*", re.I)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019*"
_ECHO = re.compile(r"^\s*(?:description|statement|image)\s*:", re.I)
_AUXILIARIES = ("is", "are", "does", "do", "did", "was", "were", "has", "have", "can", "could", "will", "would")
_NEGATION = re.compile(r"\b(?:no|not|none|never|nothing|nobody|without)\b|n't\b", re.I)


def _clean(line: str) -> str:
    for _ in range(3):  # "1. - Fact: "quoted"" peels in a few rounds
        line = _PREFIX.sub("", _MARKER.sub("", line)).strip().strip(_QUOTES).strip()
    return line


def parse_facts(text: str, sentences) -> list[str]:
    """The facts of a fact-list reply: its listed lines (bullets, numbers), or, in a reply with no list, its
    sentences. Header lines ("Here are the facts:") and fragments under three words are skipped; an echoed
    "Description:" (the few-shot pattern continued) ends the list."""
    raws = []
    for raw in text.splitlines():
        if _ECHO.match(raw):
            break
        raws.append(raw)
    listed = [raw for raw in raws if _MARKER.match(raw) and _MARKER.sub("", raw).strip()]
    facts = []
    for raw in listed or raws:
        line = _clean(raw)
        if line and not line.endswith(":"):
            facts.extend(s for s in sentences(line) if len(s.split()) >= 3)
    return list(dict.fromkeys(f.strip() for f in facts if f.strip()))


_EMBEDDED = re.compile(r"[\"\u201c']\s*((?:is|are|does|do|did|was|were|has|have|can)\b[^?\"\n]*\?)", re.I)
_STOP = {"the", "a", "an", "is", "are", "there", "in", "on", "of", "image", "does", "do", "it", "this", "not", "no"}


def _content(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP}


def parse_question(text: str, fact: str = "") -> str:
    """The yes/no question of a rewrite reply ("" if there is none): prefixes, bullets and quotes removed, cut
    after its question mark; a question quoted inside a sentence ('The answer to "Is there a man?" is no')
    counts. With ``fact``, a question that names under half of the fact's content words is not its rewrite
    (small models copy the few-shot example's question)."""
    for raw in text.splitlines():
        if _ECHO.match(raw):
            break
        line = _clean(raw)
        candidates = [_clean(line[:line.index("?")]) + "?"] if "?" in line else []
        candidates += [_clean(m[1]) for m in _EMBEDDED.finditer(raw)]
        for question in candidates:
            words = question.split()
            if len(words) < 3 or words[0].lower() not in _AUXILIARIES:
                continue
            wanted = _content(fact)
            if wanted and len(wanted & _content(question)) < len(wanted) / 2:
                continue
            return question[0].upper() + question[1:]
    return ""


def negated(fact: str, question: str) -> bool:
    """A fact that denies ("There is no cat.") asked as the positive question: accepted when the answer is no."""
    return bool(_NEGATION.search(fact)) and not _NEGATION.search(question)
