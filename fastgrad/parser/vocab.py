"""The parser's vocabulary: one joint id space [words | tags | labels], as the
paper's embedding matrix E, with NULL, ROOT and UNK entries; saved with a model."""

from __future__ import annotations

from collections import Counter
from itertools import repeat

import numpy as np

__all__ = ["NULL", "ROOT", "UNK", "Vocabulary", "column_prefix"]

NULL, ROOT, UNK = "<NULL>", "<ROOT>", "<UNK>"


def column_prefix(name: str) -> str:
    """What a tag column after the first prefixes to its values in the joint id
    space (``feats=Case=Nom``), so that equal strings of two columns stay apart."""
    return name + "="


class Vocabulary:
    """Words (rare ones → UNK), tags and labels, each with NULL/ROOT/UNK entries."""

    def __init__(self, sentences, min_count: int = 2, tag_columns=("upos",), extra_words=()):
        """sentences: transitions.Trees; tag_columns: the names of the tag columns the
        Trees carry (tags, then each of extra_tags), each a group of 18 feature slots;
        extra_words: words to keep however rare in the sentences (those that have
        pretrained vectors), after the frequent ones, in their given order."""
        counts = Counter(w for s in sentences for w in s.words)
        # most frequent first (ties alphabetical): a model's first word ids are the
        # ones worth caching for inference, with no counts saved beside it
        words = sorted((w for w, c in counts.items() if c >= min_count),
                       key=lambda w: (-counts[w], w))
        known = set(words)
        words += [w for w in dict.fromkeys(extra_words) if w not in known]
        tag_counts = Counter(t for s in sentences for column in (s.tags, *s.extra_tags)
                             for t in column)
        tags = sorted(tag_counts, key=lambda t: (-tag_counts[t], t))   # most frequent first
        labels = sorted({lab for s in sentences for lab in s.labels})
        self._build(words, tags, labels, tag_columns)

    def _build(self, words, tags, labels, tag_columns=("upos",)):
        self.tag_columns = list(tag_columns)
        # 18 word slots, 18 per tag column, 12 label slots (transitions.features)
        self.n_features = 18 + 18 * len(self.tag_columns) + 12
        words = [NULL, ROOT, UNK] + [w for w in words if w not in (NULL, ROOT, UNK)]
        tags = [NULL, ROOT, UNK] + [t for t in tags if t not in (NULL, ROOT, UNK)]
        self.labels = list(labels)
        label_entries = [NULL, UNK] + self.labels
        self.word_id = {w: i for i, w in enumerate(words)}
        self.tag_id = {t: len(words) + i for i, t in enumerate(tags)}
        self.label_id = {lab: len(words) + len(tags) + i for i, lab in enumerate(label_entries)}
        self.n_words, self.n_tags, self.n_label_entries = len(words), len(tags), len(label_entries)
        self.size = len(words) + len(tags) + len(label_entries)
        # transitions: 0 = SHIFT, 1 + k = LEFT-ARC(labels[k]), 1 + L + k = RIGHT-ARC(labels[k])
        self.n_transitions = 1 + 2 * len(self.labels)
        self.label_index = {lab: k for k, lab in enumerate(self.labels)}
        self.words, self.tags = words, tags

    def to_meta(self) -> dict:
        """What a saved model keeps of the vocabulary (JSON: lists of strings)."""
        return {"words": self.words[3:], "tags": self.tags[3:], "labels": self.labels,
                "tag_columns": self.tag_columns}

    @classmethod
    def from_meta(cls, meta: dict) -> "Vocabulary":
        """The vocabulary a saved model was trained with."""
        vocab = cls.__new__(cls)
        vocab._build(meta["words"], meta["tags"], meta["labels"],
                     meta.get("tag_columns", ["upos"]))
        return vocab

    def encode(self, sentence):
        """Per token (0 = ROOT) of a transitions.Tree: word ids, and one list of tag ids
        per tag column."""
        unk_w, unk_t, root_t = self.word_id[UNK], self.tag_id[UNK], self.tag_id[ROOT]
        words = [self.word_id[ROOT]] + [self.word_id.get(w, unk_w) for w in sentence.words]
        tags = [[root_t] + [self.tag_id.get(t, unk_t) for t in column]
                for column in (sentence.tags, *sentence.extra_tags)]
        return words, tags

    def encode_all(self, sentences):
        """Word ids, tag ids (int32, ROOT before each sentence's words; a position's
        tags of every column side by side) and the sentences' lengths, for many
        sentences at once (the parser's input)."""
        forms, tags = [], []
        k = len(self.tag_columns)
        for s in sentences:
            forms.append(ROOT)
            forms += s.words
            tags += [ROOT] * k
            if k == 1:
                tags += s.tags
            else:   # position-major: a position's k tags side by side
                tags += [t for per_word in zip(s.tags, *s.extra_tags) for t in per_word]
        word = np.fromiter(map(self.word_id.get, forms, repeat(self.word_id[UNK])), np.int32,
                           len(forms))
        tag = np.fromiter(map(self.tag_id.get, tags, repeat(self.tag_id[UNK])), np.int32,
                          len(tags))
        lengths = np.fromiter(map(len, (s.words for s in sentences)), np.int32, len(sentences))
        return word, tag, lengths

    def _byte_ids(self):
        """The word ids and each tag column's ids keyed by the values' UTF-8 bytes, as
        a compiled chunk looks them up (the same mapping as encode_all's: a further
        column's values carry its name as a prefix here)."""
        if getattr(self, "_bytes", None) is None:
            words = {w.encode("utf-8"): i for w, i in self.word_id.items()}
            columns = [{t.encode("utf-8"): i for t, i in self.tag_id.items()}]
            for name in self.tag_columns[1:]:
                prefix = column_prefix(name)
                columns.append({t[len(prefix):].encode("utf-8"): i
                                for t, i in self.tag_id.items() if t.startswith(prefix)})
            self._bytes = (words, columns)
        return self._bytes

    def encode_chunk(self, chunk, columns):
        """encode_all's arrays for the sentences of a compiled CoNLL-U chunk, straight
        from its bytes; columns: the CoNLL-U column of each tag column."""
        words, tag_ids = self._byte_ids()
        k, n = len(self.tag_columns), chunk.n_words + chunk.n_sentences
        word = np.empty(n, np.int32)
        chunk.encode(1, words, self.word_id[UNK], self.word_id[ROOT], word)   # FORM
        tag = np.empty(n * k, np.int32)
        for c, (column, ids) in enumerate(zip(columns, tag_ids)):
            chunk.encode(column, ids, self.tag_id[UNK], self.tag_id[ROOT], tag, k, c)
        return word, tag, chunk.lengths

    def rows_to_cache(self, top_words: int = 1000, top_tags: int = 256) -> list[np.ndarray]:
        """Per feature slot, the rows a parser caches: the top_words most frequent
        words, each tag column's top_tags most frequent values (every UPOS tag; FEATS
        columns have hundreds of rare values) with the NULL, ROOT and UNK entries, every
        label (Chen & Manning cache the 10,000 most frequent words); words and tags are
        numbered most frequent first. A tag slot caches only its own column's values:
        no other value can reach it (encode_all and encode_chunk look a column's values
        up under its prefix), and a smaller table stays in cache."""
        frequent = np.arange(min(self.n_words, 3 + top_words))
        labels = np.arange(self.n_words + self.n_tags, self.size)
        prefixes = [column_prefix(name) for name in self.tag_columns[1:]]
        columns = []
        for c, name in enumerate(self.tag_columns):
            mine = [k for k, tag in enumerate(self.tags[3:], start=3)
                    if (tag.startswith(prefixes[c - 1]) if c > 0
                        else not any(tag.startswith(x) for x in prefixes))]
            columns.append(self.n_words + np.array([0, 1, 2] + mine[:top_tags], np.int64))
        return [frequent] * 18 + [c for c in columns for _ in range(18)] + [labels] * 12
