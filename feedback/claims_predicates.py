"""Tokens, mentions and facts of the English claim splitter, and the parsing of predicates: what follows a
subject ("is red", "is riding a bicycle down a street", "has green eyes", "sits on the counter").

``claims_parser.Parser`` adds clauses and noun phrases on top of ``Phrases``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from feedback import claims_lexicon as lex

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[,;:.!?]")
_MULTI_WORD = sorted((p.split() for p in lex.PREPOSITIONS if " " in p), key=len, reverse=True)
PREPOSITIONS = frozenset(lex.PREPOSITIONS)
PUNCTUATION = {",", ";", ":", ".", "!", "?"}
FUNCTION = (lex.DETERMINERS | lex.BE | lex.HAVE | lex.MODALS | lex.SUBJECT_PRONOUNS | lex.OBJECT_PRONOUNS
             | lex.RELATIVES | lex.CONJUNCTIONS | PREPOSITIONS | set(lex.NUMBERS) | PUNCTUATION
             | {"not", "no", "there", "does", "do", "did"})
BOUNDARY = PUNCTUATION | {"and", "while", "whereas", "but", "or"}


def tokenize(text: str) -> list[str]:
    text = re.sub(r"\bsuch as\b", "including", text.lower().replace("\u2019", "'"))
    words = [w[:-2] if w.endswith("'s") else w for w in _TOKEN.findall(text)]
    tokens, i = [], 0
    while i < len(words):
        multi = next((m for m in _MULTI_WORD if words[i:i + len(m)] == m), None)
        tokens.append(" ".join(multi) if multi else words[i])
        i += len(multi) if multi else 1
    return tokens


@dataclass(eq=False)
class Mention:
    lemma: str                       # singular name: "fire hydrant"
    surface: str                     # as written: "fire hydrants"
    plural: bool = False
    count: int | None = None
    mass: bool = False               # "water", "grass": no article
    attrs: list[str] = field(default_factory=list)
    scene: bool = False              # "the left side of the road": places things, is no object
    words: tuple = ()                # a scene mention's words as written ("left side")
    det: str | None = None
    of: "Mention | None" = None      # "a cup of coffee": the coffee; "the side of the road": the road


@dataclass(frozen=True, eq=False)
class Fact:
    kind: str                        # exist | count | attr | rel | have
    subject: Mention
    words: tuple = ()                # the predicate: words and Mentions in order; a rel may start with its verb
    negated: bool = False
    tense: str = "be"                # be: "Is the X ...?"; do: "Does the X <verb> ...?"


class Phrases:
    """Token tests and predicate parsing over ``self.t``; noun phrases (``_np_list``) come from the parser."""
    t: list[str]
    facts: list[Fact]

    # ---- token tests --------------------------------------------------------------------------------------
    def _at(self, i: int) -> str:
        return self.t[i] if 0 <= i < len(self.t) else ""

    def _np_start(self, i: int) -> bool:
        w = self._at(i)
        if not w or w in ("there", "not", "no", "and", "or") or w in lex.HEDGES or w in PUNCTUATION:
            return False
        if w in lex.DETERMINERS or w in lex.NUMBERS or w.isdigit() or w in lex.OBJECT_PRONOUNS:
            return True
        return w not in FUNCTION and (lex.is_noun(w) or lex.is_adjective(w)) and not lex.gerund(w)

    def _verb_start(self, i: int, plural: bool) -> bool:
        w = self._at(i)
        if not w or w in PUNCTUATION:
            return False
        return (w in lex.BE or w in lex.HAVE or w in lex.MODALS or w in ("does", "do") or w in lex.HEDGES
                or lex.gerund(w) or lex.participle(w) or lex.is_third_person_verb(w)
                or (plural and w not in FUNCTION and lex.is_verb(w) and lex.verb_lemma(w) == w))

    def _infinitive(self, i: int) -> bool:
        w = self._at(i)
        return w == "be" or (lex.is_verb(w) and lex.verb_lemma(w) == w and (self._np_start(i + 1) or not self._at(i + 1)))

    def _action_look(self, i: int) -> bool:
        """ "looking at the camera" is an action; "looks delicious", "looks like" are impressions."""
        return self._at(i) in ("look", "looks", "looking") and self._at(i + 1) in ("at", "into", "towards", "toward", "out of")

    def _skip(self, i: int) -> int:
        while i < len(self.t) and self.t[i] not in BOUNDARY:
            i += 1
        return i

    def _fact(self, kind: str, subject: Mention, words: tuple = (), negated: bool = False, tense: str = "be"):
        self.facts.append(Fact(kind, subject, words, negated, tense))

    # ---- predicates ---------------------------------------------------------------------------------------
    def _predicate(self, subjects: list[Mention], i: int) -> int:
        """Coordinated verb groups of the same subjects: "is black and has a silver exhaust pipe", "is
        holding an umbrella while walking in the rain", "are standing on the sidewalk, waiting for the bus"."""
        plural = len(subjects) > 1 or subjects[0].plural
        while True:
            i = self._examples(self._verb_group(subjects, i))
            k = i + (self._at(i) == ",")
            k += self._at(k) in ("and", "while", "but")
            if k == i:
                return i
            if self._np_start(k):
                peek, p = self._noun_phrase(k)
                if peek is not None and self._verb_start(p, peek.plural):
                    return i  # a new clause with its own subject
            if not self._verb_start(k, plural):
                return i
            i = k

    def _verb_group(self, subjects: list[Mention], i: int) -> int:
        w, negated = self._at(i), False
        if w in lex.MODALS and self._at(i + 1) == "be" and self._at(i + 2) in lex.TRANSPARENT:
            i, w = i + 1, "be"  # "can be seen in the background"
        if w in lex.HEDGES and not self._action_look(i) or w in lex.MODALS:
            return self._skip(i)
        if w in ("does", "do", "did") and self._at(i + 1) == "not":
            return self._verb(subjects, i + 2, "do", True)
        if w in lex.HAVE:
            negated = self._at(i + 1) in ("no", "not")
            objs, i = self._np_list(i + 1 + negated, claim=not negated, mode="full", exclude=tuple(subjects))
            for s in subjects:
                for o in objs:
                    self._fact("have", s, (o,), negated)
            return i
        if w in lex.BE:
            i += 1
            if self._at(i) in ("not", "n't"):
                negated, i = True, i + 1
            while self._at(i) in lex.ADVERBS and not (self._at(i) in PREPOSITIONS and self._np_start(i + 1)):
                i += 1
            w = self._at(i)
            if w in lex.HEDGES and not self._action_look(i):
                return self._skip(i)
            if w in lex.TRANSPARENT:
                return self._prepositions(subjects, None, i + 1, negated)
            if w in PREPOSITIONS and w != "of":
                if not self._np_start(i + 1):  # "the lights are on"
                    for s in subjects:
                        self._fact("attr", s, (w,), negated)
                    return i + 1
                return self._prepositions(subjects, None, i, negated)
            if lex.gerund(w) or lex.participle(w):
                return self._verb(subjects, i, "be", negated)
            if lex.is_adjective(w) and not lex.is_noun(self._at(i + 1)):
                return self._adjectives(subjects, i, negated)
            return self._skip(i)  # "is a ...": a predicate noun says what a thing is, not what is there
        if lex.gerund(w) or lex.participle(w):
            return self._verb(subjects, i, "be", negated)
        if w not in FUNCTION and lex.is_verb(w) and (lex.is_third_person_verb(w) or lex.verb_lemma(w) == w):
            return self._verb(subjects, i, "do", negated)
        return i

    def _adjectives(self, subjects: list[Mention], i: int, negated: bool) -> int:
        while True:
            w = self._at(i)
            if w in lex.COLORS and self._at(i + 1) == "and" and self._at(i + 2) in lex.COLORS:
                adjective, i = f"{w} and {self._at(i + 2)}", i + 3
            elif w in lex.ADVERBS:
                i += 1
                continue
            elif w and w not in FUNCTION and (lex.is_adjective(w) or lex.participle(w)) and w not in lex.HEDGES:
                adjective, i = w, i + 1
            else:
                break
            for s in subjects if adjective not in lex.OPINION_ADJECTIVES else ():
                self._fact("attr", s, (adjective,), negated)
            k = i + (self._at(i) == ",")
            if self._at(k) == "and" and lex.is_adjective(self._at(k + 1)) and not self._verb_start(k + 1, False):
                i = k + 1
                continue
            break
        if self._at(i) == "with" and self._np_start(i + 1):
            objs, i = self._np_list(i + 1, claim=not negated, mode="pp", exclude=tuple(subjects))
            for s in subjects:
                for o in objs:
                    self._fact("have", s, (o,), negated)
        elif self._at(i) in PREPOSITIONS and self._np_start(i + 1):  # "wet from the rain": the rain is there
            _, i = self._np_list(i + 1, claim=not negated, mode="pp", exclude=tuple(subjects))
        return i

    def _verb(self, subjects: list[Mention], i: int, tense: str, negated: bool) -> int:
        """A verb with its objects and places: "riding a bicycle down a street", "sits on the counter"."""
        verb, i = self._at(i), i + 1
        while self._at(i) in lex.ADVERBS and not (self._at(i) in PREPOSITIONS and self._np_start(i + 1)):
            i += 1
        if self._at(i) == "to" and (not self._np_start(i + 1) or self._infinitive(i + 1)):  # "jumping to catch": a purpose
            for s in subjects:
                self._fact("rel", s, (verb,), negated, tense)
            return self._skip(i)
        objects = []
        if self._np_start(i) and self._at(i) not in PREPOSITIONS:
            objects, i = self._np_list(i, claim=not negated, mode="object", exclude=tuple(subjects))
        for s in subjects:
            for o in objects:
                self._fact("rel", s, (verb, o), negated, tense)
        if self._at(i) in PREPOSITIONS and self._at(i) != "of" and self._np_start(i + 1):
            return self._prepositions(subjects, verb, i, negated, tense)
        for s in subjects if not objects else ():
            self._fact("rel", s, (verb,), negated, tense)
        return i

    def _prepositions(self, subjects: list[Mention], verb: str | None, i: int, negated: bool,
                      tense: str = "be") -> int:
        """A chain of places: the first belongs to the verb (or the subject); a later one to the object before
        it (that object's own post-modifiers take it), or to the subject again after a scene word."""
        while self._at(i) in PREPOSITIONS and self._at(i) != "of" and self._np_start(i + 1):
            prep = self._at(i)
            objs, i = self._np_list(i + 1, claim=not negated, mode="pp", exclude=tuple(subjects))
            for s in subjects:
                for o in objs:
                    if prep == "with" and verb is None:
                        self._fact("have", s, (o,), negated)
                    else:
                        self._fact("rel", s, (verb, prep, o) if verb else (prep, o), negated, tense if verb else "be")
            if not objs or not all(o.scene for o in objs):
                return i
            verb = None
        return i
