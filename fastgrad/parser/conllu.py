"""CoNLL-U files: read with every line kept, checked line by line, written back.

A parser's input is a user's file, so reading it is strict about what would
make a wrong parse or a wrong score (column counts, word IDs out of sequence,
a HEAD that is not a number or points outside the sentence, several roots or a
cycle in a gold tree) and names the file and line of the problem, while it
keeps what it does not use (comments, multiword-token lines ``1-2``, empty nodes
``8.1``, every other column) so that a parsed file is the input with HEAD and
DEPREL filled in. Format: https://universaldependencies.org/format.html
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field

__all__ = ["CoNLLUError", "Sentence", "read", "write", "parse_text"]

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


def _fail(name: str, line_no: int, message: str):
    raise CoNLLUError(f"{name}:{line_no}: {message}")


def _finish(sentence: Sentence, name: str, need_tree: bool) -> Sentence:
    """Check the sentence's HEADs once all its words are known."""
    n = len(sentence.words)
    if n == 0:
        _fail(name, sentence.first_line, "a sentence without any word line (ID 1, 2, ...)")
    roots = []
    for k, (head, line_no) in enumerate(zip(sentence.heads, sentence.line_numbers)):
        if head is None:
            if need_tree:
                _fail(name, line_no, "HEAD is '_'; a gold tree needs a number (0 for the root)")
            continue
        if head > n:
            _fail(name, line_no, f"HEAD {head} points past the sentence's last word ({n})")
        if head == k + 1:
            _fail(name, line_no, f"word {k + 1} is its own HEAD")
        if head == 0:
            roots.append(line_no)
        if need_tree and sentence.deprels[k] is None:
            _fail(name, line_no, "DEPREL is '_'; a gold tree needs a relation")
    if need_tree:
        if len(roots) != 1:
            _fail(name, roots[1] if roots else sentence.first_line,
                  f"{len(roots)} words with HEAD 0; a sentence has exactly one root")
        for k in range(n):                       # every word must reach the root
            seen, at = set(), k + 1
            while at != 0:
                if at in seen:
                    _fail(name, sentence.line_numbers[k], "the HEADs of this sentence form a cycle")
                seen.add(at)
                at = sentence.heads[at - 1]
    return sentence


def _read_lines(lines, name: str, need_tree: bool) -> list[Sentence]:
    sentences: list[Sentence] = []
    current = Sentence()
    line_no = 0
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if current.lines:
                sentences.append(_finish(current, name, need_tree))
                current = Sentence()
            continue
        if not current.lines:
            current.first_line = line_no
        if line.startswith("#"):
            current.lines.append(line)
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            _fail(name, line_no, f"{len(cols)} tab-separated columns; CoNLL-U has 10")
        token_id = cols[ID]
        if "-" in token_id or "." in token_id:   # a multiword token or an empty node
            sep = "-" if "-" in token_id else "."
            parts = token_id.split(sep)
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                _fail(name, line_no, f"ID {token_id!r} is not N, N-M or N.M")
            current.lines.append(line)
            continue
        if not token_id.isdigit():
            _fail(name, line_no, f"ID {token_id!r} is not N, N-M or N.M")
        if int(token_id) != len(current.words) + 1:
            _fail(name, line_no, f"word ID {token_id} where {len(current.words) + 1} was due "
                                 "(IDs count 1, 2, ... within a sentence)")
        if not cols[FORM]:
            _fail(name, line_no, "FORM is empty")
        head_text = cols[HEAD]
        if head_text == "_":
            head = None
        elif head_text.isdigit():
            head = int(head_text)
        else:
            _fail(name, line_no, f"HEAD {head_text!r} is neither a number nor '_'")
        current.word_lines.append(len(current.lines))
        current.lines.append(line)
        current.words.append(cols)
        current.line_numbers.append(line_no)
        current.heads.append(head)
        current.deprels.append(None if cols[DEPREL] in ("_", "") else cols[DEPREL])
    if current.lines:                            # no blank line after the last sentence
        sentences.append(_finish(current, name, need_tree))
    return sentences


def read(path, *, need_tree: bool) -> list[Sentence]:
    """The sentences of a CoNLL-U file ("-": standard input).

    need_tree: every word must have a numeric HEAD and a DEPREL, forming one tree
    per sentence (training and gold files); else HEAD and DEPREL may be ``_``
    (files to parse). Raises CoNLLUError naming the file and line of a problem,
    and FileNotFoundError for a missing file.
    """
    if path in ("-", None):
        name = "<stdin>"
        text = sys.stdin.buffer.read()
    else:
        name = os.fspath(path)
        with open(name, "rb") as f:
            text = f.read()
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = text[:e.start].count(b"\n") + 1
        raise CoNLLUError(f"{name}:{line_no}: not UTF-8 ({e.reason})") from None
    if decoded.startswith("\ufeff"):             # a byte-order mark
        decoded = decoded[1:]
    sentences = _read_lines(io.StringIO(decoded), name, need_tree)
    if not sentences:
        raise CoNLLUError(f"{name}:1: no sentences in the file")
    return sentences


def parse_text(text: str, *, need_tree: bool, name: str = "<text>") -> list[Sentence]:
    """read() on a string (for tests and callers holding the text)."""
    return _read_lines(io.StringIO(text), name, need_tree)


def write(sentences, path) -> None:
    """Write sentences as CoNLL-U ("-" or None: standard output); each ends with a blank line.

    A file is written whole to a temporary name and renamed, so a failed run
    never leaves half a file where the output should be.
    """
    text = "".join("\n".join(s.lines) + "\n\n" for s in sentences)
    if path in ("-", None):   # UTF-8 bytes, whatever the terminal's encoding is set to
        raw = getattr(sys.stdout, "buffer", None)
        if raw is None:
            sys.stdout.write(text)
        else:
            sys.stdout.flush()
            raw.write(text.encode("utf-8"))
            raw.flush()
        return
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
