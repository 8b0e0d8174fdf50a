"""The LLM divide step's prompts and the reading of what the model writes back.

Both prompts are few-shot: small instruct models (SmolLM2-135M) asked zero-shot comment on the task instead of
doing it. The readers expect the worst of a model's formatting: numbered lists, bullets of any kind, quotes,
"Facts:" / "Question:" prefixes, a few-shot pattern continued past the answer, a paragraph instead of a list.
What they list is screened (``screen_facts``): a small model repeats a fact until its token limit, copies the
worked example's facts instead of the answer's, or states what the answer never mentions.
"""
from __future__ import annotations

import re
from functools import lru_cache

from feedback.claims_lexicon import ADVERBS, CLOSED_CLASS, FRAME_VERBS, SCENE_WORDS, TRANSPARENT, wordnet

# The worked example of the fact-list prompt; a small model that copies it instead of splitting the answer
# is caught by comparing its facts with these (screen_facts).
EXAMPLE_DESCRIPTION = "The image shows a brown dog lying on a rug. It is next to two red balls. There is no cat."
EXAMPLE_FACTS = ("There is a dog.", "The dog is brown.", "There is a rug.", "The dog is lying on the rug.",
                 "There are two balls.", "The balls are red.", "The dog is next to the balls.", "There is no cat.")
LIST_FACTS_PROMPT = (
    "List every atomic fact the description states about the image, one per line, each line starting with '- '. "
    "Each fact is a short sentence about one object: that it is there, one attribute (colour, size, material, "
    "count), or one relation or action. Replace pronouns by what they refer to, keep negations, leave out "
    "opinions and guesses.\n\n"
    f"Description: {EXAMPLE_DESCRIPTION}\nFacts:\n" + "".join(f"- {fact}\n" for fact in EXAMPLE_FACTS)
    + "\nDescription: {answer}\nFacts:\n"
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
    return [f.strip() for f in facts if f.strip()]  # repeats stay: screen_facts drops and counts them


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


# Why screen_facts drops a listed fact, in the order it asks.
DROP_REASONS = ("repeated", "copied", "unrelated")
# Words that carry no content of their own: the same fact is stated with or without them.
_FUNCTION_WORDS = CLOSED_CLASS | SCENE_WORDS | TRANSPARENT | FRAME_VERBS | ADVERBS


@lru_cache(maxsize=None)
def _lemmas(word: str) -> frozenset:
    """The word and its WordNet base forms as noun, verb and adjective ("lying" -> lie, "balls" -> ball)."""
    morphy = wordnet()._morphy
    return frozenset({word, *(form for pos in "nva" for form in morphy(word, pos))})


@lru_cache(maxsize=None)
def _base_form(word: str) -> str:
    """One base form per word, the same for its inflections ("is", "are" -> be; "dogs" -> dog)."""
    morphy = wordnet()._morphy
    return next((forms[0] for forms in (morphy(word, pos) for pos in "vna") if forms), word)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())


def _content_words(text: str) -> list[frozenset]:
    return [_lemmas(w) for w in _words(text) if w not in _FUNCTION_WORDS and len(w) > 1]


def _said_in(word: frozenset, words: list[frozenset]) -> bool:
    return any(word & other for other in words)


def _same_content(a: list[frozenset], b: list[frozenset]) -> bool:
    """Every content word of each is, up to inflection, one of the other's: "There are two balls." and
    "The ball is there." say the same; "The ball is red." does not."""
    return all(_said_in(w, b) for w in a) and all(_said_in(w, a) for w in b)


@lru_cache(maxsize=1)
def _example_facts(sentences) -> tuple[list[frozenset], ...]:
    return tuple(_content_words(fact) for fact in (*EXAMPLE_FACTS, *sentences(EXAMPLE_DESCRIPTION)))


def _stated(content: list[frozenset], denies: bool, said: list[frozenset], denials: list[list[frozenset]]) -> bool:
    """The answer states the fact: each of its content words is the answer's; a denial ("There is no cat."),
    each in one sentence of the answer that denies something too."""
    if denies:
        return any(all(_said_in(w, sentence) for w in content) for sentence in denials)
    return all(_said_in(w, said) for w in content)


def screen_facts(facts: list[str], answer: str, sentences) -> tuple[list[str], list[tuple[str, str]]]:
    """The listed facts worth asking, and the dropped ones with their reason (``DROP_REASONS``): ``repeated``,
    a fact listed before up to inflection and articles (small models loop until their token limit); ``copied``,
    a fact of the few-shot example (its facts or its description's sentences) with the same content words, that
    the answer does not state; ``unrelated``, a fact sharing no content word with the answer. Content words are
    compared by WordNet lemma, function words left out; ``sentences`` splits the answer into sentences."""
    said = _content_words(answer)
    denials = [_content_words(s) for s in sentences(answer) if _NEGATION.search(s)]
    kept, dropped, seen = [], [], set()
    for fact in facts:
        key = tuple(_base_form(w) for w in _words(fact) if w not in ("a", "an", "the"))
        content = _content_words(fact)
        if key in seen:
            dropped.append((fact, "repeated"))
        elif any(_same_content(content, example) for example in _example_facts(sentences)) \
                and not _stated(content, bool(_NEGATION.search(fact)), said, denials):
            dropped.append((fact, "copied"))
        elif not any(_said_in(w, said) for w in content):
            dropped.append((fact, "unrelated"))
        else:
            kept.append(fact)
        seen.add(key)
    return kept, dropped


def negated(fact: str, question: str) -> bool:
    """A fact that denies ("There is no cat.") asked as the positive question: accepted when the answer is no."""
    return bool(_NEGATION.search(fact)) and not _NEGATION.search(question)
