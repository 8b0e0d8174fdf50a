"""Word classes for the English claim splitter: WordNet 3.0 (through NLTK, no download) for open-class words,
closed lists for the function words, colours, sizes, materials and the scene words that name no object.

WordNet comes from Debian's ``wordnet-base`` + ``wordnet-sense-index`` packages, placed where NLTK looks by
``scripts/install_wordnet.sh``. A POS tagger would need downloaded models, so a word's class is read off
WordNet plus the closed lists: good enough for the sentences VLMs write about images.
"""
from __future__ import annotations

import re
from functools import lru_cache

DETERMINERS = {"a", "an", "the", "this", "that", "these", "those", "some", "several", "many", "few", "various",
               "multiple", "numerous", "other", "another", "each", "every", "all", "his", "her", "its", "their",
               "my", "your", "our", "any", "more", "most", "both"}
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "eleven": 11, "twelve": 12}
NUMBER_WORDS = {v: k for k, v in NUMBERS.items()}
BE = {"is", "are", "was", "were", "be", "being", "been"}
HAVE = {"has", "have", "had"}
MODALS = {"can", "could", "may", "might", "will", "would", "should", "must"}
SUBJECT_PRONOUNS = {"it", "he", "she", "they", "i", "we", "you"}
OBJECT_PRONOUNS = {"it", "him", "her", "them"}
RELATIVES = {"that", "which", "who", "where"}
CONJUNCTIONS = {"and", "or", "but", "while", "whereas", "as"}
# Multi-word prepositions first: the tokenizer joins them into one token.
PREPOSITIONS = ("in front of", "on top of", "next to", "close to", "out of", "away from",
                "on", "in", "at", "near", "beside", "besides", "behind", "under", "underneath", "beneath", "above",
                "below", "over", "inside", "outside", "along", "alongside", "across", "through", "towards",
                "toward", "around", "against", "between", "among", "by", "from", "into", "onto", "with",
                "without", "of", "for", "down", "up", "to", "atop", "past", "within", "throughout", "beyond")
COLORS = {"red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray", "grey",
          "silver", "gold", "golden", "beige", "tan", "navy", "teal", "maroon", "turquoise", "dark", "light",
          "colorful", "multicolored", "striped", "spotted", "checkered", "plaid"}
SIZES = {"small", "large", "big", "tiny", "huge", "little", "tall", "short", "long", "giant", "massive",
         "smaller", "larger", "bigger", "taller"}
MATERIALS = {"glass", "metal", "plastic", "stone", "brick", "leather", "paper", "cardboard", "clay", "dirt",
             "steel", "stainless steel", "concrete", "marble", "ceramic", "wicker", "straw", "cotton", "wool",
             "denim", "gravel", "porcelain", "rubber", "tile", "wood", "iron", "fabric"}
# Words that place or frame things but are no object of the scene: never an existence claim.
SCENE_WORDS = {"image", "picture", "photo", "photograph", "scene", "view", "background", "foreground", "side",
               "left", "right", "top", "bottom", "middle", "center", "centre", "corner", "edge", "front", "back",
               "distance", "area", "part", "element", "item", "detail", "setting", "atmosphere", "ambiance",
               "moment", "day", "time", "night", "daytime", "environment", "space", "feature", "composition",
               "mix", "half", "surroundings", "kind", "type", "sort", "spread", "shot", "snapshot", "frame",
               "display", "arrangement", "variety", "object", "thing", "close-up", "closeup", "portrait", "depiction"}
# "a group of people" names the people: the counting noun is no object of its own.
QUANTITY_NOUNS = {"group", "pile", "piece", "bunch", "herd", "flock", "crowd", "couple", "pair", "number", "lot",
                  "lots", "set", "stack", "handful", "collection", "assortment", "array", "range", "row", "line",
                  "team", "pack", "swarm", "variety", "selection", "plenty", "series", "cluster"}
# Opinions and impressions a labeler cannot check against the pixels: dropped as modifiers and predicates.
OPINION_ADJECTIVES = {"beautiful", "lovely", "nice", "pretty", "cozy", "peaceful", "serene", "busy", "bustling",
                      "vibrant", "delicious", "tasty", "appetizing", "cute", "adorable", "relaxed", "calm",
                      "well-organized", "interesting", "charming", "picturesque", "stunning", "scenic", "inviting",
                      "lively", "pleasant", "tranquil", "idyllic", "warm", "welcoming", "happy", "content",
                      "playful", "curious", "attentive", "focused", "elegant", "stylish", "modern", "typical",
                      "various", "different", "several", "visible", "overall", "great", "good", "perfect",
                      "impressive", "fun", "enjoyable", "casual", "natural", "rustic", "quaint", "tidy", "clean",
                      "organized", "well-maintained", "healthy", "fresh", "main", "other", "additional", "entire",
                      "whole", "certain", "specific", "ready", "following", "key", "notable", "distinct"}
# A clause with one of these states an impression or a guess, not a fact: it is dropped whole.
HEDGES = {"appears", "appear", "appearing", "seems", "seem", "seemingly", "likely", "possibly", "perhaps", "maybe",
          "probably", "suggesting", "suggests", "indicating", "indicates", "implying", "creating", "adding",
          "giving", "making", "overall", "summary", "conclusion", "might", "may", "could", "would", "should",
          "must", "presumably", "apparently", "evoking", "showcasing", "highlighting", "emphasizing", "reflecting",
          "capturing", "contributing", "enhancing", "providing", "offering", "think", "believe", "feel", "feels",
          "look", "looks", "looking", "like"}
# Verbs that only say something is there: "X can be seen in Y" claims X is in Y.
TRANSPARENT = {"visible", "seen", "shown", "present", "located", "situated", "depicted", "featured", "pictured"}
FRAME_VERBS = {"features", "shows", "depicts", "displays", "captures", "presents", "contains", "includes",
               "portrays", "illustrates", "showcases", "has", "feature", "show", "depict", "include"}
PLURALIA = {"jeans", "shorts", "pants", "trousers", "glasses", "sunglasses", "scissors", "fries", "french fries",
            "clothes", "goggles", "headphones", "earphones", "binoculars", "tongs", "pajamas", "leggings"}
IRREGULAR = {"people": "person"}
PERSONS = {"person", "man", "woman", "boy", "girl", "child", "kid", "baby", "people", "player", "lady", "guy"}
ADVERBS = {"also", "very", "just", "still", "too", "quite", "even", "here", "closely", "by", "away", "together",
           "out", "off", "up", "down", "around", "about", "nearby", "slightly", "partially", "only", "neatly",
           "brightly", "currently", "now", "directly", "mostly", "fully"}


CLOSED_CLASS = (DETERMINERS | BE | HAVE | MODALS | SUBJECT_PRONOUNS | OBJECT_PRONOUNS | RELATIVES | CONJUNCTIONS
                | set(NUMBERS) | {w for p in PREPOSITIONS for w in p.split()}
                | {"not", "no", "there", "does", "do", "did", "than", "if", "so", "then", "because", "n't"})


class WordNetMissing(RuntimeError):
    """WordNet 3.0 is not where NLTK looks."""


@lru_cache(maxsize=1)
def wordnet():
    import nltk
    from nltk.corpus import wordnet as wn

    try:
        wn.ensure_loaded()
    except LookupError:
        raise WordNetMissing(
            "the English claim splitter needs WordNet 3.0 for NLTK (corpora/wordnet under one of "
            f"{nltk.data.path}); run scripts/install_wordnet.sh, which installs Debian's wordnet-base and "
            "wordnet-sense-index and places them there") from None
    return wn


@lru_cache(maxsize=None)
def _synset_kinds(word: str) -> frozenset:
    wn = wordnet()
    return frozenset(pos for pos in "nvar" if wn._morphy(word.replace(" ", "_"), pos))


def is_noun(word: str) -> bool:
    """A WordNet noun, or a word WordNet does not know at all ("wetsuit", "hoodie"): in a description,
    an unknown content word is nearly always the name of a thing."""
    kinds = _synset_kinds(word)
    return word in IRREGULAR or "n" in kinds or (not kinds and word.replace("-", "").isalpha() and len(word) > 2
                                                 and word not in CLOSED_CLASS and word not in HEDGES)


def is_adjective(word: str) -> bool:
    return word in COLORS or word in SIZES or "a" in _synset_kinds(word)


def is_verb(word: str) -> bool:
    return "v" in _synset_kinds(word)


@lru_cache(maxsize=None)
def noun_lemma(word: str) -> str:
    """The singular of a noun ("men" -> "man", "fire hydrants" -> "fire hydrant"); pluralia stay."""
    if word in PLURALIA or word in IRREGULAR:
        return IRREGULAR.get(word, word)
    head, _, last = word.rpartition(" ")
    wn = wordnet()
    exception = wn._exception_map["n"].get(last)
    forms = exception or wn._morphy(last, "n") or [last]
    if last in forms and last.endswith("s") and len(forms) > 1:  # "glasses": the plural reading of a plural form
        forms = [f for f in forms if f != last]
    return f"{head} {forms[0]}".strip()


@lru_cache(maxsize=None)
def verb_lemma(word: str) -> str:
    forms = wordnet()._morphy(word, "v")
    return forms[0] if forms else word


def is_collocation(words: tuple[str, ...]) -> bool:
    return len(words) > 1 and bool(wordnet().synsets("_".join(words), "n"))


def lexnames(word: str) -> set[str]:
    return {s.lexname() for s in wordnet().synsets(word.replace(" ", "_"), "n")}


MASS_NOUNS = {"grass", "hair", "fur", "foliage", "traffic", "furniture", "luggage", "clothing", "snow", "rain",
              "smoke", "fog", "sunlight", "shade", "water", "food", "greenery", "vegetation", "graffiti", "lettuce"}


def is_mass(lemma: str) -> bool:
    """A substance ("water", "sand", "coffee"), asked without an article."""
    senses = wordnet().synsets(lemma.replace(" ", "_"), "n")
    return lemma in MASS_NOUNS or (bool(senses) and senses[0].lexname() in ("noun.substance", "noun.food"))


def is_person(lemma: str) -> bool:
    last = lemma.split()[-1]
    return last in PERSONS or "noun.person" in [s.lexname() for s in wordnet().synsets(lemma.replace(" ", "_"), "n")[:1]]


def is_plural(surface: str) -> bool:
    return surface in PLURALIA or noun_lemma(surface) != surface


def is_third_person_verb(word: str) -> bool:
    """ "sits", "hangs", "contains": a present-tense verb of a singular subject."""
    return word.endswith("s") and is_verb(word) and verb_lemma(word) != word


_CONCRETE = {"noun.artifact", "noun.food", "noun.object", "noun.plant", "noun.animal", "noun.substance"}


@lru_cache(maxsize=None)
def gerund(word: str) -> bool:
    """ "riding", "sitting"; not "building" or "ceiling", whose first sense is a thing."""
    if len(word) <= 4 or not word.endswith("ing") or verb_lemma(word) == word:
        return False
    nouns = wordnet().synsets(word, "n")
    return not (nouns and nouns[0].lexname() in _CONCRETE and word in nouns[0].lemma_names())


@lru_cache(maxsize=None)
def participle(word: str) -> bool:
    """ "parked", "lit": a verb's past participle (not "bed", which WordNet also knows as a verb)."""
    return word in _IRREGULAR_PARTICIPLES or (len(word) > 3 and word.endswith("ed") and verb_lemma(word) != word)


_IRREGULAR_PARTICIPLES = {"lit", "cut", "hung", "held", "worn", "laid", "built", "made", "seen", "shown", "drawn",
                          "broken", "stuck", "sold", "known", "ridden", "kept"}


@lru_cache(maxsize=None)
def verb_more_than_noun(word: str) -> bool:
    """ "sits", "rests": a form read as a verb when WordNet's tagged-corpus counts say the verb is common
    ("waves", "tiles" stay nouns)."""
    wn = wordnet()
    noun, verb = noun_lemma(word), verb_lemma(word)
    n = sum(l.count() for s in wn.synsets(noun, "n") for l in s.lemmas() if l.name() == noun)
    v = sum(l.count() for s in wn.synsets(verb, "v") for l in s.lemmas() if l.name() == verb)
    return v > n / 2
ARTICLE = re.compile(r"^[aeiou]")


def article(noun: str) -> str:
    return "an" if ARTICLE.match(noun) else "a"
