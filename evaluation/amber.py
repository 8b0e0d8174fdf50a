"""AMBER (Wang et al. 2023) scored as its released ``inference.py`` does, from its released files.

Files (the AMBER repository's ``data/`` folder): ``annotations.json`` (entry ``id`` is query ``id``;
generative entries have ``truth`` and ``hallu`` object lists, discriminative ones ``truth`` "yes"/"no"
and a ``type``), ``relation.json`` (object -> associated words), ``safe_words.txt`` and
``query/query_*.json`` (``[{"id", "image", "query"}]``).

Generative task, per answer: the nouns of the answer, WordNet-lemmatized, kept when they are AMBER
objects; a kept noun that is a safe word is skipped, one that is a truth object (or a word associated
with one) covers it, any other is a hallucination, and one that is a ``hallu`` object (or associated
with one) also marks that object. CHAIR = hallucinated / kept nouns, Cover = covered / truth objects,
Hal = answers with a hallucination / answers, Cog = marked / ``hallu`` objects.
Discriminative task: accuracy, and precision / recall / F1 with "no" the positive class, per
existence, attribute and relation.

Differences from the release, each documented in docs/benchmarks.md: NLTK's POS-tagger data cannot be
installed here, so every token is a noun candidate (a listed object used as a verb counts); the spaCy
``en_core_web_lg`` similarity pass is a pluggable ``similar(noun, word)`` that is off by default
(exact lemma matches only); answers are read as yes/no by their first word instead of the exact strings
"Yes"/"No"; F1 is not computed from figures rounded to 0.1.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Callable

from evaluation.coco import read_json
from evaluation.hallucination import InputError, parse_yes_no, read_text_file, safe_ratio

DISCRIMINATIVE = {"discriminative-hallucination": "existence", "discriminative-attribute-state": "attribute",
                  "discriminative-attribute-number": "attribute", "discriminative-attribute-action": "attribute",
                  "discriminative-relation": "relation"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORDNET_FILES = ("index.noun", "data.noun", "noun.exc")


class WordNetLemmatizer:
    """WordNet's noun lemma (as NLTK's WordNetLemmatizer: the shortest morphy form, else the word itself),
    read from a WordNet 3.0 dict folder such as Debian's ``/usr/share/wordnet`` (package ``wordnet-base``)."""

    def __init__(self, folder: str | Path):
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader

        folder = Path(folder)
        missing = [name for name in _WORDNET_FILES if not (folder / name).is_file()]
        if missing:
            raise InputError(f"amber.wordnet: {folder} lacks WordNet files {', '.join(missing)}; AMBER matches "
                             f"nouns by WordNet lemma: install Debian's wordnet-base (apt-get install wordnet-base) "
                             f"or point amber.wordnet at a WordNet 3.0 dict folder")

        class _DictFolderReader(WordNetCorpusReader):
            # Debian's folder lacks the "lexnames" list NLTK reads at start (only synset lexnames use it) and
            # NLTK would map it to a downloaded WordNet; neither matters for lemmas.
            def open(self, file):
                return io.StringIO("") if file == "lexnames" else super().open(file)

            def map_wn(self, version="wordnet"):
                return None

        if str(folder) not in nltk.data.path:
            nltk.data.path.append(str(folder))  # NLTK reads corpora only under its data path
        with warnings.catch_warnings():  # "multilingual functions are not available": AMBER uses none
            warnings.simplefilter("ignore", UserWarning)
            self._reader = _DictFolderReader(str(folder), None)

    def __call__(self, word: str) -> str:
        lemmas = self._reader._morphy(word, "n")
        return min(lemmas, key=len) if lemmas else word


def answer_nouns(text: str, lemma: Callable[[str], str], objects: set[str] = frozenset()) -> list[str]:
    """Word tokens of the answer (NLTK's Treebank tokenizer per sentence, case kept, as word_tokenize),
    lemmatized; two neighbours that form a two-word object of ``objects`` are joined into one ("red circle").
    The released files list one-word objects only, so the join changes nothing there."""
    from nltk.tokenize import TreebankWordTokenizer

    tokenizer = TreebankWordTokenizer()
    words = [lemma(tok) for sentence in _SENTENCE_END.split(text) for tok in tokenizer.tokenize(sentence)]
    nouns, i = [], 0
    while i < len(words):
        pair = " ".join(words[i:i + 2])
        step = 2 if i + 1 < len(words) and pair in objects else 1
        nouns.append(pair if step == 2 else words[i])
        i += step
    return nouns


class AmberData:
    """The released files, checked: every generative object must have an entry in relation.json."""

    def __init__(self, folder: str | Path, query_file: str = "query/query_all.json"):
        folder = Path(folder)
        entries = read_json(folder / "annotations.json")
        self.association = read_json(folder / "relation.json")
        self.safe_words = set(read_text_file(folder / "safe_words.txt").split("\n"))
        self.queries = read_json(folder / query_file)
        try:
            self.entries = {e["id"]: e for e in entries}
        except (KeyError, TypeError):
            raise InputError(f"{folder / 'annotations.json'}: expected a list of entries, each with an 'id'") from None
        for q in self.queries:
            if not isinstance(q, dict) or not {"id", "image", "query"} <= set(q):
                raise InputError(f"{folder / query_file}: each query needs 'id', 'image' and 'query'; got {q!r}")
        self.objects = set(self.association) | {w for words in self.association.values() for w in words}
        for q in self.queries:
            entry = self.entries.get(q["id"])
            if entry is None:
                raise InputError(f"{folder / 'annotations.json'}: no entry for query id {q['id']}")
            if entry["type"] == "generative":
                unknown = [w for w in entry["truth"] + entry["hallu"] if w not in self.association]
                if unknown:
                    raise InputError(f"{folder / 'relation.json'}: no entry for {', '.join(unknown)} (query {q['id']})")
            elif entry["type"] not in DISCRIMINATIVE:
                raise InputError(f"{folder / 'annotations.json'}: entry {q['id']} has unknown type {entry['type']!r}")


def _owner(noun: str, objects: list[str], association: dict, match) -> int | None:
    """The index of the object a noun lands on, scanning as the release does: every object's associated
    words first (in object order), then the objects themselves; None when nothing matches."""
    for i, obj in enumerate(objects):
        if any(match(noun, w) for w in association[obj]):
            return i
    return next((i for i, obj in enumerate(objects) if match(noun, obj)), None)


def score_generative(nouns: list[str], entry: dict, data: AmberData,
                     similar: Callable[[str, str], bool] | None = None) -> dict:
    """One answer's kept nouns, hallucinated nouns, covered truth flags and marked hallu flags."""
    kept = [n for n in nouns if n in data.objects]
    truth, hallu = entry["truth"], entry["hallu"]
    covered, marked, hallucinated = [False] * len(truth), [False] * len(hallu), []
    exact = str.__eq__
    for noun in kept:
        if noun in data.safe_words:
            continue
        if (i := _owner(noun, truth, data.association, exact)) is not None:
            covered[i] = True
            continue
        for match in (exact, similar) if similar else (exact,):
            if (i := _owner(noun, hallu, data.association, match)) is not None:
                marked[i] = True
        if similar and (i := _owner(noun, truth, data.association, similar)) is not None:
            covered[i] = True
            continue
        hallucinated.append(noun)
    return {"kept": kept, "hallucinated": hallucinated, "covered": covered, "marked": marked}


def generative_metrics(results: list[dict]) -> dict:
    return {"chair": safe_ratio(sum(len(r["hallucinated"]) for r in results), sum(len(r["kept"]) for r in results)),
            "cover": safe_ratio(sum(sum(r["covered"]) for r in results), sum(len(r["covered"]) for r in results)),
            "hal": safe_ratio(sum(bool(r["hallucinated"]) for r in results), len(results)),
            "cog": safe_ratio(sum(sum(r["marked"]) for r in results), sum(len(r["marked"]) for r in results)),
            "generative_n": len(results)}


def discriminative_metrics(answers: list[str], entries: list[dict]) -> dict:
    """Per dimension (existence, attribute, relation) and over all: accuracy, precision, recall, F1 with "no"
    the positive class, and the count; a dimension without questions is left out."""
    metrics = {}
    for dimension in ("existence", "attribute", "relation", "all"):
        pairs = [(parse_yes_no(a) is False, e["truth"] == "no") for a, e in zip(answers, entries)
                 if dimension == "all" or DISCRIMINATIVE[e["type"]] == dimension]
        if not pairs:  # a query file without this dimension: no figure rather than a misleading 0
            continue
        hits = sum(said and truth for said, truth in pairs)
        precision = safe_ratio(hits, sum(said for said, _ in pairs))
        recall = safe_ratio(hits, sum(truth for _, truth in pairs))
        metrics.update({f"{dimension}_accuracy": safe_ratio(sum(s == t for s, t in pairs), len(pairs)),
                        f"{dimension}_precision": precision, f"{dimension}_recall": recall,
                        f"{dimension}_f1": safe_ratio(2 * precision * recall, precision + recall),
                        f"{dimension}_n": len(pairs)})
    return metrics
