"""A trained parser: the network's parameters with the vocabulary and options it
was trained with; parse, save and load (training is fastgrad/parser/training.py).

The model file is a fastgrad model file (fastgrad.save: parameters, checksums,
atomic writes) whose metadata holds the vocabulary, the feature layout and the
options, under a format name and version of its own, so that a file from
another version, or a fastgrad model that is not a parser, is refused clearly.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

import fastgrad
from fastgrad.parser import conllu
from fastgrad.parser.joint_tags import JointTags
from fastgrad.parser.projectivize import Lowering
from fastgrad.parser.transitions import Tree, parse, parse_encoded
from fastgrad.parser.vocab import NULL, Vocabulary, column_prefix

__all__ = ["ParserModel", "ParserModelError", "Treebank", "to_tree", "available_tag_columns",
           "PARSER_FORMAT", "PARSER_FORMAT_VERSION"]

PARSER_FORMAT = "fastgrad-parser"
# 2: labels may carry pseudo-projective decorations (a||b), lowered after parsing;
# options record how non-projective trees and word vectors were handled. Version 1
# files (no decorations) still load.
PARSER_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)


def feature_layout(vocab: Vocabulary) -> dict:
    """18 word slots, 18 per tag column, 12 label slots (see transitions.features)."""
    return {"words": 18, "tags": 18 * len(vocab.tag_columns), "labels": 12,
            "tag_columns": vocab.tag_columns}


class ParserModelError(ValueError):
    """A file that is not a parser model this version of fastgrad can use."""


TAG_COLUMNS = {"upos": conllu.UPOS, "xpos": conllu.XPOS, "feats": conllu.FEATS}


def to_tree(sentence: conllu.Sentence, tag_columns=("upos",)) -> Tree:
    """The words, tags (the first tag column; the others as extra_tags, each value
    prefixed by its column's name), heads and relations of a CoNLL-U sentence."""
    columns = [[w[TAG_COLUMNS[name]] for w in sentence.words] for name in tag_columns]
    extra = tuple([column_prefix(name) + v for v in values]
                  for name, values in zip(tag_columns[1:], columns[1:]))
    return Tree(sentence.forms, columns[0], sentence.heads, sentence.deprels, extra)


class Treebank(NamedTuple):
    """A gold CoNLL-U file as columns over all its words (what training and its dev
    scores read): words of sentence k are lengths[:k].sum() onwards."""

    columns: dict          # FORM, UPOS, XPOS, FEATS, DEPREL (conllu's numbers): lists of str
    heads: np.ndarray      # int32
    lengths: np.ndarray    # int32, words per sentence

    @classmethod
    def read(cls, source) -> "Treebank":
        """From a path ("-": standard input; read by the compiled reader, with no
        Sentence objects) or a list of conllu.Sentences."""
        names = (conllu.FORM, conllu.UPOS, conllu.XPOS, conllu.FEATS, conllu.DEPREL)
        if isinstance(source, (str, bytes, os.PathLike)):
            chunks = list(conllu.chunks(source, need_tree=True))
            return cls({c: [v for chunk in chunks for v in chunk.column(c)] for c in names},
                       np.concatenate([chunk.heads for chunk in chunks]).astype(np.int32),
                       np.concatenate([chunk.lengths for chunk in chunks]).astype(np.int32))
        words = [w for s in source for w in s.words]
        return cls({c: [w[c] for w in words] for c in names},
                   np.array([h for s in source for h in s.heads], np.int32),
                   np.array([len(s) for s in source], np.int32))

    def trees(self, tag_columns) -> list:
        """One transitions.Tree per sentence (to_tree's)."""
        tags = [self.columns[TAG_COLUMNS[name]] for name in tag_columns]
        tags[1:] = [[column_prefix(name) + v for v in values]
                    for name, values in zip(tag_columns[1:], tags[1:])]
        forms, rels, heads = self.columns[conllu.FORM], self.columns[conllu.DEPREL], \
            self.heads.tolist()
        out, at = [], 0
        for n in self.lengths.tolist():
            b = at + n
            out.append(Tree(forms[at:b], tags[0][at:b], heads[at:b], rels[at:b],
                            tuple(column[at:b] for column in tags[1:])))
            at = b
        return out


def available_tag_columns(sentences) -> list:
    """UPOS, and XPOS and FEATS where most words of the sentences (a Treebank or
    conllu.Sentences) have them (not '_')."""
    bank = sentences if isinstance(sentences, Treebank) else Treebank.read(sentences)
    chosen = ["upos"]
    for name in ("xpos", "feats"):
        given = sum(v != "_" for v in bank.columns[TAG_COLUMNS[name]])
        if given > len(bank.heads) // 2:
            chosen.append(name)
    return chosen


class ParserModel:
    """Parameters, vocabulary and options of a trained parser."""

    def __init__(self, p: fastgrad.Params, vocab: Vocabulary, options: dict):
        self.p, self.vocab, self.options = p, vocab, dict(options)
        # pseudo-projective labels undone (models that lifted their training trees)
        self.lowering = Lowering(vocab.labels, self.options.get("nonprojective") == "lift")
        self._pre = self._label_names = self._joint = None

    def _predictor(self, refresh: bool = False):
        """Precomputed inference's predict_proba (refresh: the cache multiplied again
        from the parameters' current values, in place)."""
        if self._pre is None:   # cached L[v] W_j: frequent words and tags, every label
            self._pre = fastgrad.precompute(self.p, self.vocab.rows_to_cache())
        elif refresh:
            self._pre.refresh()
        return self._pre.predict_proba

    def parse_chunk(self, chunk) -> bytearray:
        """A compiled CoNLL-U chunk (conllu.chunks) parsed, as the output file's bytes:
        HEAD and DEPREL filled in, every other byte of every line as it was."""
        columns = [TAG_COLUMNS[name] for name in self.vocab.tag_columns]
        encoded = self.vocab.encode_chunk(chunk, columns)
        if len(columns) > 1:    # a token's tag columns as one cached row: 48 reads, not 84
            if self._joint is None:
                self._joint = JointTags(self.p, self.vocab, self.vocab.tag_id[NULL])
            predict, tuples, no_token = self._joint.for_chunk(encoded[1])
            batch = parse_encoded(predict, self.vocab, *encoded, joint=(tuples, no_token))
        else:
            batch = parse_encoded(self._predictor(), self.vocab, *encoded)
        heads, labels = batch.result_arrays()
        heads = self.lowering(heads, labels, encoded[2])
        if self._label_names is None:
            self._label_names = [name.encode("utf-8") for name in self.lowering.plain_names]
        return chunk.write_parsed(heads, labels, self._label_names)

    def parse(self, sentences, batch_size: int = 4096) -> list:
        """Parsed copies of conllu.Sentences: HEAD and DEPREL filled in (one root;
        projective unless the model lifts non-projective trees, then lowered); every
        other column and line kept as it was."""
        predictor = self._predictor()
        names = self.lowering.plain_names
        out = []
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start:start + batch_size]
            trees = [to_tree(s, self.vocab.tag_columns) for s in chunk]
            for sentence, (heads, labels) in zip(chunk, parse(predictor, trees, self.vocab)):
                heads = self.lowering(heads, labels, [len(heads)]).tolist()
                out.append(sentence.with_tree(heads, [names[k] for k in labels]))
        return out

    def save(self, path) -> None:
        """Write the model (atomically) through fastgrad.save."""
        meta = {"format": PARSER_FORMAT, "format_version": PARSER_FORMAT_VERSION,
                "vocabulary": self.vocab.to_meta(), "features": feature_layout(self.vocab),
                "options": self.options}
        fastgrad.save(path, self.p, meta=meta)

    @classmethod
    def load(cls, path) -> "ParserModel":
        """A model written by save; ParserModelError for any other file."""
        p, _, meta = fastgrad.load(path)
        name = os.fspath(path)
        if meta.get("format") != PARSER_FORMAT:
            raise ParserModelError(f"{name} is a fastgrad model file but not a parser model "
                                   "(made by fastgrad parser train)")
        version = meta.get("format_version")
        if version not in READABLE_FORMAT_VERSIONS:
            raise ParserModelError(f"{name} is a parser model of format version {version}; "
                                   f"this fastgrad reads versions "
                                   f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))}: "
                                   "train it again with this version")
        try:
            entries = meta["vocabulary"]
            lists = [entries[k] for k in ("words", "tags", "labels")] + \
                [entries.get("tag_columns", ["upos"])]
            if not all(isinstance(x, list) and all(isinstance(v, str) for v in x)
                       for x in lists):
                raise TypeError
            vocab = Vocabulary.from_meta(entries)
            unknown = set(vocab.tag_columns) - set(TAG_COLUMNS)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise ParserModelError(f"{name}: its vocabulary is missing or damaged") from None
        if not isinstance(meta.get("options", {}), dict):
            raise ParserModelError(f"{name}: its options are not an object")
        if unknown or meta.get("features") != feature_layout(vocab):
            raise ParserModelError(f"{name} has the feature layout {meta.get('features')}, "
                                   "which this version does not know")
        if p.L.shape[0] != vocab.size or p.W.shape[0] != vocab.n_features * p.L.shape[1] \
                or p.U.shape[1] != vocab.n_transitions:
            raise ParserModelError(f"{name}: the parameters' shapes do not fit its vocabulary")
        return cls(p, vocab, meta.get("options", {}))
