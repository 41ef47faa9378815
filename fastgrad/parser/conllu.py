"""CoNLL-U files: read with every line kept, checked line by line, written back.

A parser's input is a user's file, so reading it is strict about what would
make a wrong parse or a wrong score (column counts, word IDs out of sequence,
a HEAD that is not a number or points outside the sentence, several roots or a
cycle in a gold tree) and names the file and line of the problem, while it
keeps what it does not use (comments, multiword-token lines ``1-2``, empty nodes
``8.1``, every other column) so that a parsed file is the input with HEAD and
DEPREL filled in. Format: https://universaldependencies.org/format.html

The reading itself is compiled (fastgrad/_conllu.pyx): a file is scanned block
by block into Chunks of whole sentences, offsets and arrays with no Python
object per word; ``chunks`` streams them (the parser's input), ``read`` makes
Sentence objects of them (scoring, tests, small files).
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field

from fastgrad import _conllu
from fastgrad._files import output_file

__all__ = ["CoNLLUError", "Sentence", "read", "write", "parse_text", "chunks", "sentences_of"]

ID, FORM, LEMMA, UPOS, XPOS, FEATS, HEAD, DEPREL, DEPS, MISC = range(10)


class CoNLLUError(ValueError):
    """A CoNLL-U file that cannot be used; the message starts with ``file:line:``."""


@dataclass
class Sentence:
    """One sentence: its words' columns, and every line as read (for writing back).

    words[i] holds the 10 columns of word i + 1; heads[i] is its HEAD as an int
    (None where the file has ``_``), deprels[i] its DEPREL (None for ``_``).
    """

    lines: list = field(default_factory=list)        # every line, verbatim, in order
    word_lines: list = field(default_factory=list)   # index in lines of each word line
    words: list = field(default_factory=list)        # per word: its 10 columns
    line_numbers: list = field(default_factory=list)  # per word: its line in the file
    heads: list = field(default_factory=list)
    deprels: list = field(default_factory=list)
    first_line: int = 0

    @property
    def forms(self) -> list:
        return [w[FORM] for w in self.words]

    @property
    def upos(self) -> list:
        return [w[UPOS] for w in self.words]

    def __len__(self) -> int:
        return len(self.words)

    def with_tree(self, heads, deprels) -> "Sentence":
        """A copy whose words have these HEAD and DEPREL values."""
        out = Sentence(list(self.lines), list(self.word_lines), [list(w) for w in self.words],
                       list(self.line_numbers), list(heads), list(deprels), self.first_line)
        for k, (h, rel) in enumerate(zip(heads, deprels)):
            out.words[k][HEAD], out.words[k][DEPREL] = str(h), rel
            out.lines[out.word_lines[k]] = "\t".join(out.words[k])
        return out


_MESSAGES = {
    "columns": "{a} tab-separated columns; CoNLL-U has 10",
    "id": "ID {id!r} is not N, N-M or N.M",
    "word_id": "word ID {id} where {b} was due (IDs count 1, 2, ... within a sentence)",
    "form": "FORM is empty",
    "head_text": "HEAD {head!r} is neither a number nor '_'",
    "no_word": "a sentence without any word line (ID 1, 2, ...)",
    "head_past": "HEAD {head_value} points past the sentence's last word ({b})",
    "own_head": "word {a} is its own HEAD",
    "head_blank": "HEAD is '_'; a gold tree needs a number (0 for the root)",
    "deprel_blank": "DEPREL is '_'; a gold tree needs a relation",
    "roots": "{a} words with HEAD 0; a sentence has exactly one root",
    "cycle": "the HEADs of this sentence form a cycle",
}
_CODE_NAMES = {code: name for name, code in _conllu.ERROR_CODES.items()}


def _scan_error(name: str, error, data: bytes) -> CoNLLUError:
    """The compiled scan's (code, line, a, b, column starts) as a message."""
    code, line_no, a, b, starts = error

    def column(k):
        return data[starts[k]:starts[k + 1] - 1].decode("utf-8", "replace")

    fields = {"a": a, "b": b}
    if starts is not None:
        fields.update(id=column(ID), head=column(HEAD))
        if column(HEAD).isdigit():
            fields["head_value"] = int(column(HEAD))
    message = _MESSAGES[_CODE_NAMES[code]].format(**fields)
    return CoNLLUError(f"{name}:{line_no}: {message}")


def _utf8_error_line(data: bytes, begin: int, end: int, first_line: int):
    """The line of the first byte in data[begin:end] that is not UTF-8, with the
    reason; None when it is all UTF-8."""
    try:
        str(memoryview(data)[begin:end], "utf-8")
    except UnicodeDecodeError as e:
        return first_line + data.count(b"\n", begin, begin + e.start), e.reason
    return None


def _open_input(path):
    if path in ("-", None):
        return "<stdin>", sys.stdin.buffer, False
    name = os.fspath(path)
    return name, open(name, "rb"), True


BLOCK_BYTES = 1 << 22


def chunks(path, *, need_tree: bool, block_bytes: int = BLOCK_BYTES):
    """The sentences of a CoNLL-U file ("-": standard input) as compiled Chunks,
    read block by block: memory holds one block (and a sentence that crosses its
    end), not the file. need_tree as in read(). Raises CoNLLUError at the first
    problem in file order, after the chunks before it were given."""
    name, f, close = _open_input(path)
    try:
        yield from _chunks_of(f, name, need_tree, block_bytes)
    finally:
        if close:
            f.close()


def _chunks_of(f, name: str, need_tree: bool, block_bytes: int):
    carry, line, begin, any_sentence = b"", 1, 0, False
    first = True
    while True:
        block = f.read(block_bytes)
        final = not block
        data = carry + block if carry else block
        if first:
            first = False
            if data.startswith(b"\xef\xbb\xbf"):   # a byte-order mark
                begin = 3
        end = len(data) if final else data.rfind(b"\n") + 1
        bad = _utf8_error_line(data, begin, end, line)
        chunk, consumed, n_lines, error = _conllu.scan(data, begin, line, need_tree, final)
        if bad is not None and (error is None or error[1] >= bad[0]):
            raise CoNLLUError(f"{name}:{bad[0]}: not UTF-8 ({bad[1]})")
        if error is not None:
            raise _scan_error(name, error, data)
        if chunk is not None:
            any_sentence = True
            yield chunk
        line += n_lines
        if final:
            break
        carry, begin = data[consumed:], 0
    if not any_sentence:
        raise CoNLLUError(f"{name}:1: no sentences in the file")


def sentences_of(chunk) -> list[Sentence]:
    """A compiled Chunk as Sentence objects (every line decoded)."""
    data = chunk.data
    text = [data[a:b].decode("utf-8") for a, b in zip(chunk.line_start.tolist(),
                                                        chunk.line_end.tolist())]
    numbers = chunk.line_number.tolist()
    word_line = chunk.word_line.tolist()
    heads = chunk.heads.tolist()
    lines, words = chunk.sentence_lines.tolist(), chunk.sentence_words.tolist()
    out = []
    for s in range(chunk.n_sentences):
        a, w0, w1 = lines[s], words[s], words[s + 1]
        sentence = Sentence(text[a:lines[s + 1]], [k - a for k in word_line[w0:w1]],
                            first_line=numbers[a])
        sentence.words = [text[k].split("\t") for k in word_line[w0:w1]]
        sentence.line_numbers = [numbers[k] for k in word_line[w0:w1]]
        sentence.heads = [None if h < 0 else h for h in heads[w0:w1]]
        sentence.deprels = [None if w[DEPREL] in ("_", "") else w[DEPREL]
                            for w in sentence.words]
        out.append(sentence)
    return out


def read(path, *, need_tree: bool) -> list[Sentence]:
    """The sentences of a CoNLL-U file ("-": standard input).

    need_tree: every word must have a numeric HEAD and a DEPREL, forming one tree
    per sentence (training and gold files); else HEAD and DEPREL may be ``_``
    (files to parse). Raises CoNLLUError naming the file and line of a problem,
    and FileNotFoundError for a missing file.
    """
    return [s for chunk in chunks(path, need_tree=need_tree) for s in sentences_of(chunk)]


def parse_text(text: str, *, need_tree: bool, name: str = "<text>") -> list[Sentence]:
    """read() on a string (for tests and callers holding the text)."""
    try:
        return [s for chunk in _chunks_of(io.BytesIO(text.encode("utf-8")), name, need_tree,
                                          BLOCK_BYTES) for s in sentences_of(chunk)]
    except CoNLLUError as e:
        if str(e).endswith("no sentences in the file"):
            return []
        raise


def write(sentences, path) -> None:
    """Write sentences as CoNLL-U ("-" or None: standard output, as UTF-8 whatever the
    terminal's encoding); each ends with a blank line. A regular file is written
    whole or not at all (fastgrad._files.output_file)."""
    text = "".join("\n".join(s.lines) + "\n\n" for s in sentences)
    with output_file(path) as f:
        f.write(text.encode("utf-8"))
