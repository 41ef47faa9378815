"""The compiled CoNLL-U reader and writer (fastgrad/_conllu.pyx, fastgrad/parser/conllu.py)."""

import io
import random

import numpy as np
import pytest

from fastgrad.parser import conllu

SENTENCE = ("# newdoc\n# text = Vámonos al mar\n"
            "1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_\n"
            "1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_\n"
            "2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_\n"
            "2.1\tx\t_\t_\t_\t_\t_\t_\t_\t_\n"
            "3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_\n"
            "3\ta\ta\tADP\t_\t_\t5\tcase\t_\t_\n"
            "4\tel\tel\tDET\t_\t_\t5\tdet\t_\t_\n"
            "5\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\tSpaceAfter=No\n")
WORD = "1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n"


def sentences_by_blocks(text: str, block: int, need_tree: bool = True):
    chunks = conllu._chunks_of(io.BytesIO(text.encode("utf-8")), "f", need_tree, block)
    return [vars(s) for c in chunks for s in conllu.sentences_of(c)]


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 22])
def test_any_block_size_reads_the_same_sentences(block):
    text = "\n".join(SENTENCE.replace("mar", f"mar{i}") for i in range(12))
    whole = sentences_by_blocks(text, 1 << 22)
    assert len(whole) == 12 and sentences_by_blocks(text, block) == whole
    assert whole[3]["first_line"] == 3 * 11 + 1 and whole[3]["line_numbers"][0] == 3 * 11 + 4


def test_line_kinds_round_trip(tmp_path):
    # comments, multiword tokens, empty nodes, CRLF, a BOM, blank-line runs and
    # whitespace-only lines between sentences, no final newline
    text = "\ufeff" + SENTENCE.replace("\n", "\r\n") + "\n \t\n\n" + WORD.rstrip("\n")
    path = tmp_path / "in.conllu"
    path.write_bytes(text.encode("utf-8"))
    sentences = conllu.read(path, need_tree=True)
    assert [s.forms for s in sentences] == [["Vamos", "nos", "a", "el", "mar"], ["a"]]
    out = tmp_path / "out.conllu"
    conllu.write(sentences, out)
    assert out.read_text(encoding="utf-8") == SENTENCE + "\n" + WORD + "\n"


def test_write_parsed_replaces_head_and_deprel_only():
    from fastgrad import _conllu
    chunk, _, _, error = _conllu.scan((SENTENCE + "\n" + WORD).encode(), 0, 1, False, True)
    assert error is None and chunk.n_sentences == 2
    heads = np.array([2, 0, 5, 5, 1, 0], np.int32)
    labels = np.array([1, 0, 2, 2, 1, 0], np.int32)
    names = [b"root", b"dep", b"x:y"]
    written = bytes(chunk.write_parsed(heads, labels, names)).decode()
    expected = conllu.sentences_of(chunk)
    expected = [s.with_tree(h, [n.decode() for n in r]) for s, h, r in
                zip(expected, ([2, 0, 5, 5, 1], [0]), ([names[k] for k in (1, 0, 2, 2, 1)],
                                                       [names[0]]))]
    assert written == "".join("\n".join(s.lines) + "\n\n" for s in expected)
    with pytest.raises(ValueError, match="out of range"):
        chunk.write_parsed(heads, np.array([0, 0, 0, 0, 0, 3], np.int32), names)


MORE_BAD = [
    ("1\t\t_\tX\t_\t_\t0\troot\t_\t_\n", 1, "FORM is empty"),
    ("1-x\ta\t_\t_\t_\t_\t_\t_\t_\t_\n" + WORD, 1, "is not N, N-M or N.M"),
    ("1\ta\t_\tX\t_\t_\t\troot\t_\t_\n", 1, "HEAD '' is neither"),
    (WORD + "\n" + WORD + "1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n", 4, "word ID 1 where 2"),
    (WORD + "\n" * 5 + "# c\n1\ta\t_\tX\t_\t_\t2\tx\t_\t_\n", 8, "points past"),
]


@pytest.mark.parametrize("text,line,message", MORE_BAD)
@pytest.mark.parametrize("block", [3, 1 << 22])
def test_errors_name_the_same_line_whatever_the_block(text, line, message, block):
    with pytest.raises(conllu.CoNLLUError) as e:
        sentences_by_blocks(text, block)
    assert str(e.value).startswith(f"f:{line}: ") and message in str(e.value)


def test_not_utf8_in_a_later_block_names_its_line():
    text = (WORD + "\n") * 50
    data = text.encode() + b"1\t\xe9\t_\tX\t_\t_\t0\troot\t_\t_\n"
    with pytest.raises(conllu.CoNLLUError, match=r"^f:101: not UTF-8"):
        list(conllu._chunks_of(io.BytesIO(data), "f", True, 64))


def test_long_chains_and_cycles():
    n = 20000   # a chain as deep as it is long: checked in one walk per word
    chain = "".join(f"{k}\tw\t_\tX\t_\t_\t{k - 1}\tdep\t_\t_\n" for k in range(1, n + 1))
    [s] = conllu.parse_text(chain, need_tree=True)
    assert s.heads[-1] == n - 1
    cycle = chain.replace("1\tw\t_\tX\t_\t_\t0\t", f"1\tw\t_\tX\t_\t_\t{n}\t", 1) + \
        f"{n + 1}\tr\t_\tX\t_\t_\t0\troot\t_\t_\n"
    with pytest.raises(conllu.CoNLLUError, match=r"<text>:1: the HEADs of this sentence form a "):
        conllu.parse_text(cycle, need_tree=True)


def test_mutated_files_fail_or_read_alike_in_any_block_size():
    rng = random.Random(0)
    base = SENTENCE + "\n" + WORD
    for _ in range(300):
        chars = list(base)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(len(chars))] = rng.choice(["\t", "\n", "_", "0", "9", "-", "."])
        text = "".join(chars)
        results = []
        for block in (5, 1 << 22):
            try:
                results.append(sentences_by_blocks(text, block, need_tree=False))
            except conllu.CoNLLUError as e:
                results.append(str(e))
        assert results[0] == results[1], text
