"""Attachment scores as the CoNLL 2018 UD shared task's evaluation script defines them.

With gold tokenization every system word is aligned with the gold word at the
same place, and the script's F1 scores are accuracies over the words (multiword
tokens and empty nodes are not words):

* UAS: the share of words whose HEAD is right;
* LAS: HEAD right and the universal part of DEPREL right (``nmod:poss`` counts
  as ``nmod``: the subtype after the colon is ignored);
* full-label LAS (``las_full``): HEAD and the whole DEPREL right.

Punctuation counts, as in the official script; the ``_no_punct`` variants
leave out words whose gold UPOS is PUNCT (the convention of Chen & Manning).
"""

from __future__ import annotations

from fastgrad.parser.conllu import CoNLLUError

__all__ = ["attachment_scores", "score_arrays", "score_words", "universal"]

PUNCT = "PUNCT"


def universal(deprel: str) -> str:
    """The universal part of a DEPREL: ``nmod:poss`` → ``nmod``."""
    return deprel.split(":", 1)[0]


def score_words(sentences) -> dict:
    """Scores from (gold heads, gold deprels, gold UPOS, heads, deprels) per sentence,
    each a sequence over the sentence's words (deprel None: no relation)."""
    counts = dict.fromkeys(("words", "uas", "las", "las_full", "words_no_punct",
                            "uas_no_punct", "las_no_punct", "las_full_no_punct"), 0)
    for gold_heads, gold_rels, gold_upos, heads, rels in sentences:
        for gh, gr, tag, h, r in zip(gold_heads, gold_rels, gold_upos, heads, rels):
            head = gh == h
            full = head and r is not None and gr == r
            labelled = head and r is not None and universal(gr) == universal(r)
            for suffix in ("",) if tag == PUNCT else ("", "_no_punct"):
                counts["words" + suffix] += 1
                counts["uas" + suffix] += head
                counts["las" + suffix] += labelled
                counts["las_full" + suffix] += full
    scores: dict = {"words": counts["words"], "words_no_punct": counts["words_no_punct"]}
    for suffix in ("", "_no_punct"):
        n = max(counts["words" + suffix], 1)
        for metric in ("uas", "las", "las_full"):
            scores[metric + suffix] = 100.0 * counts[metric + suffix] / n
    return scores


def score_arrays(gold_heads, gold_rels, gold_upos, heads, rels) -> dict:
    """score_words over all words at once: heads as integer arrays, relations and
    UPOS as sequences of str (the training loop's dev scores; the same numbers)."""
    import numpy as np

    head = np.asarray(gold_heads) == np.asarray(heads)
    gold_rels, rels = np.array(gold_rels, object), np.array(rels, object)
    full = head & (gold_rels == rels)
    labelled = head & (np.array([universal(r) for r in gold_rels], object)
                       == np.array([universal(r) for r in rels], object))
    kept = np.array([tag != PUNCT for tag in gold_upos], bool)
    scores: dict = {"words": len(head), "words_no_punct": int(kept.sum())}
    for suffix, mask in (("", slice(None)), ("_no_punct", kept)):
        n = max(len(head[mask]), 1)
        for metric, hits in (("uas", head), ("las", labelled), ("las_full", full)):
            scores[metric + suffix] = 100.0 * int(hits[mask].sum()) / n
    return scores


def attachment_scores(gold, system, *, system_name: str = "system") -> dict:
    """Scores of system against gold, two lists of conllu.Sentence over the same words.

    Returns percentages: uas, las, las_full, their _no_punct variants, and the
    counts words and words_no_punct. Raises CoNLLUError when the two differ in
    sentences or words (then they cannot be aligned by position).
    """
    if len(gold) != len(system):
        raise CoNLLUError(f"{system_name}: {len(system)} sentences where the gold file "
                          f"has {len(gold)}")
    for g, s in zip(gold, system):
        if g.forms != s.forms:
            k = next((i for i, (a, b) in enumerate(zip(g.forms, s.forms)) if a != b),
                     min(len(g), len(s)))
            where = s.line_numbers[k] if k < len(s) else s.first_line
            raise CoNLLUError(f"{system_name}:{where}: the words differ from the gold "
                              f"sentence at line {g.first_line}; scores need the same words")
    return score_words((g.heads, g.deprels, g.upos, s.heads, s.deprels)
                       for g, s in zip(gold, system))
