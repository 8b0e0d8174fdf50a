"""Phrase parsing for the English claim splitter: a sentence becomes facts about object mentions.

A small recursive-descent parser over the shapes VLM descriptions take ("The image features a man riding a
bicycle down a street.", "There are two cats on a windowsill.", "He is wearing a red shirt.", list items
"A cup of coffee next to the plate."). Noun phrases are found with WordNet (``claims_lexicon``); each
mention is an existence fact (and a count fact for "two dogs"), each modifier an attribute fact, each verb or
preposition linking it to something a relation fact. Pronouns resolve to the last fitting topic (a subject
or a listed object). ``english_claims`` renders the facts as claims and yes/no questions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from feedback import claims_lexicon as lex

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[,;:.!?]")
_MULTI_WORD = sorted((p.split() for p in lex.PREPOSITIONS if " " in p), key=len, reverse=True)
PREPOSITIONS = frozenset(lex.PREPOSITIONS)
_PUNCTUATION = {",", ";", ":", ".", "!", "?"}
_FUNCTION = (lex.DETERMINERS | lex.BE | lex.HAVE | lex.MODALS | lex.SUBJECT_PRONOUNS | lex.OBJECT_PRONOUNS
             | lex.RELATIVES | lex.CONJUNCTIONS | PREPOSITIONS | set(lex.NUMBERS) | _PUNCTUATION
             | {"not", "no", "there", "does", "do", "did"})
_BOUNDARY = _PUNCTUATION | {"and", "while", "whereas", "but", "or"}
_FRAME_SUBJECTS = {"image", "picture", "photo", "photograph", "scene"}


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


class Parser:
    """One answer's parser: topics (what pronouns point back to) carry from sentence to sentence."""

    def __init__(self):
        self.topics: list[Mention] = []
        self.minor: set[int] = set()  # ids of topics named only after "with": pronouns of their own sentence only

    def sentence(self, text: str) -> list[Fact]:
        self.t, self.facts, self.first_topic = tokenize(text), [], len(self.topics)
        if any(w in ("overall", "summary", "conclusion") for w in self.t[:3]):
            return []  # a summary restates the answer as impressions
        i = 0
        while i < len(self.t):
            i = max(self._clause(i), i + 1)
            while i < len(self.t) and self.t[i] in _BOUNDARY:
                i += 1
        return [f for f in self.facts if not f.subject.scene and not (f.kind == "have" and f.words[0].scene)]

    # ---- token tests --------------------------------------------------------------------------------------
    def _at(self, i: int) -> str:
        return self.t[i] if 0 <= i < len(self.t) else ""

    def _np_start(self, i: int) -> bool:
        w = self._at(i)
        if not w or w in ("there", "not", "no", "and", "or") or w in lex.HEDGES or w in _PUNCTUATION:
            return False
        if w in lex.DETERMINERS or w in lex.NUMBERS or w.isdigit() or w in lex.OBJECT_PRONOUNS:
            return True
        return w not in _FUNCTION and (lex.is_noun(w) or lex.is_adjective(w)) and not lex.gerund(w)

    def _verb_start(self, i: int, plural: bool) -> bool:
        w = self._at(i)
        if not w or w in _PUNCTUATION:
            return False
        return (w in lex.BE or w in lex.HAVE or w in lex.MODALS or w in ("does", "do") or w in lex.HEDGES
                or lex.gerund(w) or lex.participle(w) or lex.is_third_person_verb(w)
                or (plural and w not in _FUNCTION and lex.is_verb(w) and lex.verb_lemma(w) == w))

    def _infinitive(self, i: int) -> bool:
        w = self._at(i)
        return w == "be" or (lex.is_verb(w) and lex.verb_lemma(w) == w and (self._np_start(i + 1) or not self._at(i + 1)))

    def _action_look(self, i: int) -> bool:
        """ "looking at the camera" is an action; "looks delicious", "looks like" are impressions."""
        return self._at(i) in ("look", "looks", "looking") and self._at(i + 1) in ("at", "into", "towards", "toward", "out of")

    def _skip(self, i: int) -> int:
        while i < len(self.t) and self.t[i] not in _BOUNDARY:
            i += 1
        return i

    def _fact(self, kind: str, subject: Mention, words: tuple = (), negated: bool = False, tense: str = "be"):
        self.facts.append(Fact(kind, subject, words, negated, tense))

    def _claim(self, m: Mention, into: list | None = None):
        """A mention's existence, count and attributes (and those of what it is "of")."""
        out = self.facts if into is None else into
        if not m.scene:
            out.append(Fact("exist", m))
            if m.count:
                out.append(Fact("count", m))
            out.extend(Fact("attr", m, (a,)) for a in m.attrs)
        if m.of is not None:
            self._claim(m.of, out)

    # ---- clauses ------------------------------------------------------------------------------------------
    def _clause(self, i: int) -> int:
        lead = None
        if self._at(i) in PREPOSITIONS and "," in self.t[i:]:  # "Behind the stop sign, there is a tree."
            comma = self.t.index(",", i)
            obj, j = self._noun_phrase(i + 1)
            if obj is not None and j == comma:
                if not obj.scene:
                    self._claim(obj)
                    lead = (self.t[i], obj)
                i = comma + 1
        if self._at(i) == "there" and self._at(i + 1) in lex.BE:
            return self._there(i + 2, lead)
        if self._at(i) in ("the", "this") and self._at(i + 1) in _FRAME_SUBJECTS and self._at(i + 2) in lex.FRAME_VERBS:
            mentions, i = self._np_list(i + 3, claim=True, topics=True, clause_break=True)
            self._lead(mentions, lead)
            return i
        if self._at(i) in ("i", "we", "you"):  # "I can see a dog": a frame; "I think ...": an opinion
            k = i + 1 + (self._at(i + 1) == "can")
            if self._at(k) in ("see", "notice", "spot"):
                mentions, k = self._np_list(k + 1, claim=True, topics=True, clause_break=True)
                self._lead(mentions, lead)
                return k
            return self._skip(i)
        if self._at(i) in ("this", "it", "here") and self._at(i + 1) in lex.BE and self._np_start(i + 2):
            m, i = self._noun_phrase(i + 2)  # "This is a photo of X": only what the frame is "of" is claimed
            if m is not None and m.scene and m.of is not None:
                self._claim(m.of)
            return self._skip(i)
        mark, known = len(self.facts), set(self.topics)
        subjects, j = self._np_list(i, claim=False, topics=True)
        if not subjects:
            return self._skip(i)
        before = len(self.facts)
        j = self._predicate(subjects, j)
        definite = all(m.det in ("the", "this", "these", "those", "its", "his", "her", "their", "both") or m in known
                       for m in subjects)
        if len(self.facts) > before or not definite:
            claims: list[Fact] = []
            for m in subjects:
                self._claim(m, claims)
            self.facts[mark:mark] = claims
        self._lead(subjects, lead)
        return j

    def _lead(self, mentions: list[Mention], lead):
        for m in mentions if lead else ():
            self._fact("rel", m, lead)

    def _there(self, i: int, lead) -> int:
        while self._at(i) in ("also", "still"):
            i += 1
        negated = self._at(i) in ("no", "not")
        if not negated:
            mentions, i = self._np_list(i, claim=True, topics=True, clause_break=True)
            self._lead(mentions, lead)
            return i
        i += 2 if self._at(i + 1) == "any" else 1
        mentions, i = self._np_list(i, claim=False, mode="bare")
        for m in mentions:  # "no dog": a dog, unless the name is of a substance ("no water")
            m.mass = m.mass and lex.is_mass(m.lemma)
        while self._at(i) in lex.TRANSPARENT or self._at(i) in lex.ADVERBS:
            i += 1
        where = lead or ()
        if self._at(i) in PREPOSITIONS and self._np_start(i + 1):
            prep = self._at(i)
            obj, i = self._noun_phrase(i + 1)
            if obj is not None and not obj.scene:
                where = (prep, obj)
        for m in mentions:
            self._fact("exist", m, where, negated=True)
        return i

    # ---- noun phrases -------------------------------------------------------------------------------------
    def _resolve(self, pronoun: str, exclude=()) -> Mention | None:
        if pronoun in ("i", "we", "you"):
            return None
        topics = [t for k, t in reversed(list(enumerate(self.topics)))
                  if t not in exclude and (id(t) not in self.minor or k >= self.first_topic)]
        if pronoun in ("he", "him", "she", "her"):
            fitting = [t for t in topics if lex.is_person(t.lemma) and not t.plural]
        elif pronoun in ("they", "them"):
            fitting = [t for t in topics if t.plural]
        else:
            fitting = [t for t in topics if not t.plural and not lex.is_person(t.lemma)]
        return (fitting or topics or [None])[0]

    def _noun_phrase(self, i: int, exclude=()) -> tuple[Mention | None, int]:
        """One noun phrase (no post-modifiers but "of"); no side effects, so it can be used to look ahead."""
        start, w = i, self._at(i)
        if w in lex.SUBJECT_PRONOUNS | lex.OBJECT_PRONOUNS and not (w == "her" and self._np_start(i + 1)):
            return self._resolve(w, exclude), i + 1
        det, count = None, None
        while self._at(i) in lex.DETERMINERS or self._at(i) in lex.NUMBERS or self._at(i).isdigit():
            w = self._at(i)
            if w in lex.NUMBERS or w.isdigit():
                count = lex.NUMBERS.get(w) or int(w)
            elif det is None:
                det = w
            i += 1
        if self._at(i) == "of" and (count == 1 or det in ("each", "both", "all", "some", "many", "several", "most")):
            inner, j = self._noun_phrase(i + 1, exclude)  # "one of them": a single one; "some of them": them
            if inner is None or count != 1:
                return inner, (j if inner is not None else start)
            return Mention(inner.lemma, inner.lemma, det=inner.det or "the"), j
        words, ends = [], []
        while True:
            w = self._at(i)
            if w in lex.COLORS and self._at(i + 1) == "and" and self._at(i + 2) in lex.COLORS:
                words.append(f"{w} and {self._at(i + 2)}")
                i += 3
                ends.append(i)
                continue
            if w in lex.MODALS and det is not None and not words:  # "a can of soda"
                words.append(w)
                i += 1
                ends.append(i)
                continue
            if (w in lex.OPINION_ADJECTIVES or w.endswith("-looking")) and w not in lex.DETERMINERS:  # "a cozy room"
                i += 1
                continue
            if not w or w in _FUNCTION or w in lex.HEDGES or w in lex.ADVERBS:
                break
            gerund_like = lex.gerund(w) or lex.participle(w)
            if not (lex.is_noun(w) or lex.is_adjective(w) or gerund_like):
                break
            has_noun = any(lex.is_noun(x) for x in words)
            if has_noun and (gerund_like or self._verb_after_noun(w, words[-1], i) or self._verb_after_plural(w, words[-1], i)):
                break
            words.append(w)
            i += 1
            ends.append(i)
        heads = [k for k, x in enumerate(words) if " and " not in x and lex.is_noun(x)]
        if not heads:
            if det in ("other", "another") or (det == "the" and self._at(start + 1) == "other"):
                return self._resolve("it", exclude), i
            return None, start
        h = heads[-1]
        i = ends[h]
        c = next((h - k + 1 for k in (3, 2) if h - k + 1 >= 0 and lex.is_collocation(tuple(words[h - k + 1:h + 1]))
                  and self._collocation_ok(words[h - k + 1], "_".join(words[h - k + 1:h + 1]))), h)
        while c > 0:  # noun modifiers belong to the name: "city street", "hot dog stand"
            pair = tuple(words[c - 2:c]) if c >= 2 else ()
            if pair and lex.is_collocation(pair) and self._collocation_ok(pair[0], "_".join(pair)):
                c -= 2
            elif lex.is_noun(words[c - 1]) and not lex.is_adjective(words[c - 1]) and words[c - 1] not in lex.MATERIALS \
                    and not lex.participle(words[c - 1]) and not lex.gerund(words[c - 1]):
                c -= 1
            else:
                break
        surface = " ".join(words[c:h + 1])
        mods = words[:c]
        if mods[-2:] == ["stainless", "steel"]:
            mods = mods[:-2] + ["stainless steel"]
        attrs = [f"made of {a}" if a in lex.MATERIALS else a for a in mods if a not in lex.OPINION_ADJECTIVES]
        lemma = lex.noun_lemma(surface)
        earlier = self._earlier(lemma, det, attrs)
        if earlier is not None:
            return earlier, i
        plural = lex.is_plural(surface) or bool(count and count > 1)
        m = Mention(lemma, surface, plural, count if count and count > 1 else None,
                    mass=not plural and count is None and (det in (None, "some", "more") or (det not in ("a", "an") and lex.is_mass(lemma))),
                    attrs=attrs,
                    scene=lemma.split()[-1] in lex.SCENE_WORDS, words=tuple(words[:h + 1]), det=det)
        if self._at(i) == "of" and self._np_start(i + 1):
            inner, j = self._noun_phrase(i + 1, exclude)
            if inner is not None:
                if lemma in lex.QUANTITY_NOUNS:
                    inner.attrs = attrs + inner.attrs
                    return inner, j
                m.of, i = inner, j
        return m, i

    def _earlier(self, lemma: str, det: str | None, attrs: list[str]) -> Mention | None:
        """ "the table" after "a coffee table": the same object, not a new one."""
        if det != "the" or attrs:
            return None
        return next((t for t in reversed(self.topics) if t.lemma != lemma and t.lemma.endswith(f" {lemma}")), None)

    def _verb_after_noun(self, w: str, previous: str, i: int) -> bool:
        """ "A bowl sits on...", "buildings line both sides": a verb that WordNet also knows as a noun."""
        nxt = self._at(i + 1)
        if not (nxt in PREPOSITIONS or nxt in lex.DETERMINERS or nxt in lex.NUMBERS or nxt in lex.ADVERBS) \
                or not lex.is_verb(w) or lex.is_adjective(previous) or lex.is_collocation((previous, lex.noun_lemma(w))):
            return False
        if lex.is_third_person_verb(w):
            return lex.verb_more_than_noun(w)
        return lex.is_plural(previous) and lex.verb_lemma(w) == w and not lex.is_plural(w)

    def _verb_after_plural(self, w: str, previous: str, i: int) -> bool:
        """ "Dogs chase cats": a plural noun, then a verb's base form, then its object."""
        return (lex.is_plural(previous) and lex.is_verb(w) and lex.verb_lemma(w) == w and not lex.is_plural(w)
                and not lex.is_adjective(previous) and self._np_start(i + 1) and lex.verb_more_than_noun(w))

    @staticmethod
    def _collocation_ok(first: str, joined: str) -> bool:
        """ "living room", "hot dog", "fire hydrant" are things of their own; "black bear", "young woman",
        "fried egg", "double bed" are a bear, a woman, an egg, a bed with an attribute."""
        if first in lex.SIZES or first in lex.MATERIALS or first in lex.COLORS or lex.participle(first):
            return False
        return lex.gerund(first) or not lex.is_adjective(first) or "noun.food" in lex.lexnames(joined)

    def _np_list(self, i: int, claim: bool, mode: str = "full", exclude=(), topics: bool | str = False,
                 clause_break: bool = False) -> tuple[list[Mention], int]:
        """Coordinated noun phrases ("a cat, a dog and two birds"), each with its post-modifiers; a prepositional
        phrase after the last one only ("tomatoes, carrots and onions on the counter") holds for all.
        ``topics``: pronouns may point back to them ("minor": within the sentence only); ``clause_break``: "..., and a dog is lying ..." starts a
        clause of its own instead of continuing the list."""
        out, own = [], []
        while True:
            m, j = self._noun_phrase(i, exclude)
            if m is not None and m.scene and m.of is not None and mode == "full":
                m = m.of  # "a close-up of a burger with ...": the burger is what is listed
            if m is None:
                break
            if claim:
                self._claim(m)
            if topics and not m.scene and m not in self.topics:
                self.topics.append(m)
                if topics == "minor":
                    self.minor.add(id(m))
            before = len(self.facts)
            i = self._postmods(m, j, mode, exclude)
            out.append(m)
            own.append([f for f in self.facts[before:] if f.subject is m])
            k = i + (self._at(i) == ",")
            k += self._at(k) in ("and", "or")
            if k == i or not self._np_start(k):
                break
            peek, p = self._noun_phrase(k, exclude)
            if peek is None or ((clause_break or self._at(i) == ",") and self._verb_start(p, peek.plural)):
                break
            i = k
        shared = [f for f in own[-1] if f.kind == "rel" and f.words and f.words[0] in PREPOSITIONS] if own else []
        for m, facts in zip(out[:-1], own[:-1]):
            for f in shared if not facts else ():
                if m not in f.words:
                    self._fact("rel", m, f.words)
        return out, i

    def _postmods(self, m: Mention, i: int, mode: str, exclude=()) -> int:
        """What follows a noun and belongs to it: "with ...", prepositional phrases, participles, "that ..."."""
        if mode == "bare":
            return i
        while True:
            i = self._examples(i)
            if m.scene:
                return i
            w = self._at(i)
            if w == "," and self._at(i + 1) == "with" and mode != "pp":  # a place's ", with" is its owner's
                i, w = i + 1, "with"
            if w == "with" and self._np_start(i + 1):
                objs, i = self._np_list(i + 1, claim=True, exclude=(m,), topics="minor")
                for o in objs:
                    self._fact("have", m, (o,))
                continue
            if mode == "object":
                return i
            if w in PREPOSITIONS and w not in ("of", "with") and self._np_start(i + 1):
                objs, i = self._np_list(i + 1, claim=True, mode="pp", exclude=(m,))
                for o in objs:
                    self._fact("rel", m, (w, o))
                continue
            if mode == "pp":
                return i
            if w in lex.RELATIVES and self._verb_start(i + 1, m.plural):
                i = self._predicate([m], i + 1)
            elif lex.gerund(w) or lex.participle(w):
                i = self._predicate([m], i)
            else:
                return i

    def _examples(self, i: int) -> int:
        """ "..., including a microwave and an oven" / "such as forks": the things named are there."""
        k = i + (self._at(i) == ",")
        if self._at(k) == "including" and self._np_start(k + 1):
            _, i = self._np_list(k + 1, claim=True, topics="minor")
        return i

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
        if w not in _FUNCTION and lex.is_verb(w) and (lex.is_third_person_verb(w) or lex.verb_lemma(w) == w):
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
            elif w and w not in _FUNCTION and (lex.is_adjective(w) or lex.participle(w)) and w not in lex.HEDGES:
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
