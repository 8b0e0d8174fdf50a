"""Phrase parsing for the English claim splitter: a sentence becomes facts about object mentions.

A small recursive-descent parser over the shapes VLM descriptions take ("The image features a man riding a
bicycle down a street.", "There are two cats on a windowsill.", "He is wearing a red shirt.", list items
"A cup of coffee next to the plate."). Noun phrases are found with WordNet (``claims_lexicon``); each
mention is an existence fact (and a count fact for "two dogs"), each modifier an attribute fact, each verb or
preposition linking it to something a relation fact. Pronouns resolve to the last fitting topic (a subject
or a listed object). ``english_claims`` renders the facts as claims and yes/no questions.
"""
from __future__ import annotations

from feedback import claims_lexicon as lex
from feedback.claims_predicates import BOUNDARY, FUNCTION, PREPOSITIONS, Fact, Mention, Phrases, tokenize

_FRAME_SUBJECTS = {"image", "picture", "photo", "photograph", "scene"}


class Parser(Phrases):
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
            while i < len(self.t) and self.t[i] in BOUNDARY:
                i += 1
        return [f for f in self.facts if not f.subject.scene and not (f.kind == "have" and f.words[0].scene)]

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
            if not w or w in FUNCTION or w in lex.HEDGES or w in lex.ADVERBS:
                break
            gerund_like = lex.gerund(w) or lex.participle(w)
            if not (lex.is_noun(w) or lex.is_adjective(w) or gerund_like):
                break
            has_noun = any(lex.is_noun(x) for x in words)
            if has_noun and (gerund_like or self._verb_after_noun(w, words[-1], i)
                             or self._verb_after_plural(w, words[-1], i)):
                break
            words.append(w)
            i += 1
            ends.append(i)
        heads = [k for k, x in enumerate(words) if " and " not in x and lex.is_noun(x)]
        if not heads:
            if det in ("other", "another") or (det == "the" and self._at(start + 1) == "other"):
                return self._resolve("it", exclude), i
            return None, start
        return self._mention(words, heads[-1], det, count, ends[heads[-1]], exclude)

    def _mention(self, words: list[str], h: int, det: str | None, count: int | None, i: int, exclude):
        """The mention a noun phrase's words name (head ``h``): its name, attributes, number and what it is of."""
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
                    mass=not plural and count is None
                    and (det in (None, "some", "more") or (det not in ("a", "an") and lex.is_mass(lemma))),
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
        ``topics``: pronouns may point back to them ("minor": within the sentence only); ``clause_break``:
        "..., and a dog is lying ..." starts a clause of its own instead of continuing the list."""
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
