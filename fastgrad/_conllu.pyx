# cython: language_level=3
"""CoNLL-U in C: scan a block of bytes into sentences, words and column offsets,
check it line by line, encode columns into ids, and write parsed sentences back.

Design. A reader hands ``scan`` a buffer of bytes; the scan walks it once, line
by line, without making a Python object per line or per word, and records
offsets: every kept line (its start and end, the ``\\r`` of CRLF left out), the
start of each word line's ten columns, each word's HEAD as a number. It stops
after the last *complete* sentence (a blank line, or the end of the input when
``final``), so a caller can stream a file block by block and carry the rest over.
The checks are fastgrad.parser.conllu's (that module builds every message from
the error code and the numbers recorded here), in the same order, so a malformed
file fails at the same line with the same words whichever path reads it.

A ``Chunk`` then answers what the parser needs as arrays: the ids of a column's
values through a dict from bytes to ids (``encode``), the heads, and the output
file's bytes with HEAD and DEPREL replaced (``write_parsed``): every other byte of
every kept line is copied as it was.
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.string cimport memchr, memcpy

import numpy as np

# error codes: fastgrad/parser/conllu.py turns (code, line, a, b) into its messages
cdef enum:
    OK = 0
    E_COLUMNS = 1        # a: the number of columns
    E_ID = 2             # the ID column is not N, N-M or N.M
    E_WORD_ID = 3        # a: the ID, b: the one due
    E_FORM = 4
    E_HEAD_TEXT = 5      # HEAD neither a number nor '_'
    E_NO_WORD = 6        # a sentence of comments and multiword lines only
    E_HEAD_PAST = 7      # a: HEAD, b: words in the sentence
    E_OWN_HEAD = 8       # a: the word
    E_HEAD_BLANK = 9
    E_DEPREL_BLANK = 10
    E_ROOTS = 11         # a: how many words have HEAD 0
    E_CYCLE = 12

ERROR_CODES = {"columns": E_COLUMNS, "id": E_ID, "word_id": E_WORD_ID, "form": E_FORM,
               "head_text": E_HEAD_TEXT, "no_word": E_NO_WORD, "head_past": E_HEAD_PAST,
               "own_head": E_OWN_HEAD, "head_blank": E_HEAD_BLANK,
               "deprel_blank": E_DEPREL_BLANK, "roots": E_ROOTS, "cycle": E_CYCLE}

cdef enum:
    NO_HEAD = -1         # HEAD '_'
    BIG = 1 << 30        # numbers are read up to this, then held there


cdef inline bint _blank(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Only ASCII whitespace (str.strip's ASCII set) on the line."""
    cdef Py_ssize_t k
    for k in range(n):
        if not (p[k] == 32 or 9 <= p[k] <= 13 or 28 <= p[k] <= 31):
            return False
    return True


cdef inline int64_t _number(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """The value of n ASCII digits (held at BIG), or -1 when empty or not all digits."""
    cdef int64_t v = 0
    cdef Py_ssize_t k
    if n == 0:
        return -1
    for k in range(n):
        if p[k] < 48 or p[k] > 57:
            return -1
        if v < BIG:
            v = v * 10 + (p[k] - 48)
    return v if v < BIG else BIG


cdef inline bint _n_sep_m(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """N-M or N.M (what the ID of a multiword token or an empty node must be): the
    first '-' if there is one, else the first '.', splits two runs of digits."""
    cdef const uint8_t* sep = <const uint8_t*> memchr(p, 45, n)     # '-'
    if sep == NULL:
        sep = <const uint8_t*> memchr(p, 46, n)                     # '.'
    cdef Py_ssize_t a = sep - p
    return _number(p, a) >= 0 and _number(sep + 1, n - a - 1) >= 0


@cython.final
cdef class Chunk:
    """Whole sentences of a CoNLL-U text, as offsets into its bytes (see the module)."""

    cdef readonly bytes data              # the bytes the offsets point into
    cdef readonly object line_start, line_end, line_number   # kept (non-blank) lines
    cdef readonly object sentence_lines   # (n_sentences + 1,): sentence s has lines [a, b)
    cdef readonly object sentence_words   # (n_sentences + 1,): its words
    cdef readonly object word_line        # per word: its line (an index into line_*)
    cdef readonly object column_start     # (n_words, 11): where each column starts in data
                                          # (the 11th: one past the line's end)
    cdef readonly object heads            # per word: HEAD, -1 for '_'
    cdef readonly Py_ssize_t n_sentences, n_words

    @property
    def lengths(self):
        """Words per sentence (int32)."""
        return np.diff(self.sentence_words).astype(np.int32)

    def column(self, int column):
        """The values of one column (0 = ID ... 9 = MISC) of every word, as str."""
        cdef const int64_t[:, ::1] start = self.column_start
        cdef const char* base = self.data
        cdef Py_ssize_t w
        out = []
        for w in range(self.n_words):
            out.append(base[start[w, column]:start[w, column + 1] - 1].decode("utf-8"))
        return out

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def encode(self, int column, dict ids, int32_t unknown, int32_t root,
               int32_t[::1] out, Py_ssize_t stride=1, Py_ssize_t offset=0):
        """OUT out[(position) * stride + offset]: the id of each word's value in this
        column (ids maps its bytes to ids; unknown where absent), positions ordered as
        the parser's: per sentence ROOT (given the id root), then its words."""
        cdef const int64_t[:, ::1] start = self.column_start
        cdef const int64_t[::1] sentence_words = self.sentence_words
        cdef const char* base = self.data
        cdef Py_ssize_t s, w, end, at = 0
        cdef PyObject* found
        if out.shape[0] < (self.n_words + self.n_sentences) * stride:
            raise ValueError("out is too short for the chunk's positions")
        for s in range(self.n_sentences):
            out[at * stride + offset] = root
            at += 1
            for w in range(sentence_words[s], sentence_words[s + 1]):
                end = start[w, column + 1] - 1
                key = PyBytes_FromStringAndSize(base + start[w, column],
                                                end - start[w, column])
                found = PyDict_GetItem(ids, key)
                out[at * stride + offset] = unknown if found == NULL else <object> found
                at += 1
        return out

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def write_parsed(self, const int32_t[::1] heads, const int32_t[::1] labels,
                     list label_names):
        """The chunk as CoNLL-U bytes, each word's HEAD and DEPREL replaced by heads[w]
        and label_names[labels[w]] (bytes); every other column, comment, multiword and
        empty-node line as read; lines end in \\n, each sentence with a blank line."""
        cdef const int64_t[:, ::1] start = self.column_start
        cdef const int64_t[::1] line_start = self.line_start, line_end = self.line_end
        cdef const int64_t[::1] sentence_lines = self.sentence_lines
        cdef const int64_t[::1] word_line = self.word_line
        cdef const char* base = self.data
        cdef Py_ssize_t n_labels = len(label_names), s, k, w = 0, size, at = 0, n
        cdef Py_ssize_t longest = 0
        cdef const char* name
        cdef char digits[24]
        cdef int32_t h
        cdef int nd
        if heads.shape[0] != self.n_words or labels.shape[0] != self.n_words:
            raise ValueError(f"heads and labels must hold {self.n_words} values")
        names = [bytes(x) for x in label_names]
        for x in names:
            longest = max(longest, len(x))
        for k in range(self.n_words):
            if labels[k] < 0 or labels[k] >= n_labels or heads[k] < 0:
                raise ValueError(f"word {k}: label {labels[k]} or head {heads[k]} out of range")
        size = len(self.data) + 2 * (self.n_sentences + int(self.line_start.shape[0])) \
            + self.n_words * (12 + longest)
        out = bytearray(size)
        cdef char* o = out
        for s in range(self.n_sentences):
            for k in range(sentence_lines[s], sentence_lines[s + 1]):
                if w < self.n_words and word_line[w] == k:
                    n = start[w, 6] - line_start[k]           # ID .. FEATS and their tabs
                    memcpy(o + at, base + line_start[k], n)
                    at += n
                    h, nd = heads[w], 0
                    while True:
                        digits[nd] = 48 + h % 10
                        nd += 1
                        h //= 10
                        if h == 0:
                            break
                    while nd:
                        nd -= 1
                        o[at] = digits[nd]
                        at += 1
                    o[at] = 9
                    at += 1
                    name_obj = names[labels[w]]
                    name = name_obj
                    memcpy(o + at, name, len(name_obj))
                    at += len(name_obj)
                    n = line_end[k] - (start[w, 8] - 1)       # the tab before DEPS, DEPS, MISC
                    memcpy(o + at, base + start[w, 8] - 1, n)
                    at += n
                    w += 1
                else:
                    n = line_end[k] - line_start[k]
                    memcpy(o + at, base + line_start[k], n)
                    at += n
                o[at] = 10
                at += 1
            o[at] = 10
            at += 1
        del out[at:]
        return out


@cython.boundscheck(False)
@cython.wraparound(False)
def scan(bytes data, Py_ssize_t begin, int64_t first_line, bint need_tree, bint final):
    """Scan data[begin:] for whole sentences.

    Returns (chunk, consumed, lines, error): chunk holds the complete sentences
    (None when there is none), consumed is the offset in data after them (and the
    blank lines that follow), lines the number of lines consumed (blank ones
    included; first_line is the number of data[begin]'s line). error is None or
    (code, line number, a, b, the word's column starts or None) for the first
    problem met; then chunk and consumed cover the sentences before it.
    """
    cdef const uint8_t* base = data
    cdef const uint8_t* c
    cdef const uint8_t* q_ptr
    cdef Py_ssize_t size = len(data), p, q, e, n_lines = 0, k
    # a kept line is at most one per '\n', plus one without
    if begin < size:
        p = begin
        while True:
            q_ptr = <const uint8_t*> memchr(base + p, 10, size - p)
            if q_ptr == NULL:
                break
            n_lines += 1
            p = (q_ptr - base) + 1
    n_lines += 1
    line_start = np.empty(n_lines, np.int64)
    line_end = np.empty(n_lines, np.int64)
    line_number = np.empty(n_lines, np.int64)
    word_line = np.empty(n_lines, np.int64)
    column_start = np.empty((n_lines, 11), np.int64)   # one past: start of the next
    heads = np.empty(n_lines, np.int32)
    deprel_blank = np.empty(n_lines, np.uint8)
    sentence_lines = np.empty(n_lines + 1, np.int64)
    sentence_words = np.empty(n_lines + 1, np.int64)
    state = np.empty(n_lines + 1, np.int32)           # the cycle check's marks
    cdef int64_t[::1] ls = line_start, le = line_end, ln = line_number, wl = word_line
    cdef int64_t[:, ::1] cs = column_start
    cdef int32_t[::1] hd = heads, mark = state
    cdef uint8_t[::1] db = deprel_blank
    cdef int64_t[::1] sl = sentence_lines, sw = sentence_words
    cdef Py_ssize_t n_kept = 0, n_words = 0, n_sent = 0
    cdef Py_ssize_t sent_word0 = 0        # the open sentence's first word
    cdef int64_t sent_first_no = 0, line_no = first_line - 1
    cdef Py_ssize_t consumed = begin, consumed_lines = 0, lines_read = 0
    cdef int code = OK, tabs
    cdef int64_t a = 0, b = 0, err_line = 0, v, err_word = -1
    cdef bint open_sentence = False, complete
    cdef Chunk chunk
    sl[0] = 0
    sw[0] = 0
    p = begin
    with nogil:
        while p <= size:
            q_ptr = <const uint8_t*> memchr(base + p, 10, size - p) if p < size else NULL
            if q_ptr == NULL:
                if p == size:            # nothing after the last newline
                    complete = True
                    e = p
                else:
                    complete = final
                    e = size
                if not complete:
                    break
                q = size
            else:
                q = q_ptr - base
                e = q
            line_no += 1
            lines_read += 1
            while e > p and (base[e - 1] == 13 or base[e - 1] == 10):
                e -= 1
            if q == size and p == size:   # the end of the input, no line here
                lines_read -= 1
                line_no -= 1
            elif _blank(base + p, e - p):
                if open_sentence:
                    code = _finish(sent_word0, n_words, sent_first_no, need_tree, hd, db, ln,
                                   wl, mark, &a, &b, &err_line, &err_word)
                    if code != OK:
                        break
                    n_sent += 1
                    sl[n_sent] = n_kept
                    sw[n_sent] = n_words
                    open_sentence = False
                consumed = q + 1 if q < size else size
                consumed_lines = lines_read
                p = q + 1
                continue
            else:
                if not open_sentence:
                    open_sentence = True
                    sent_word0 = n_words
                    sent_first_no = line_no
                ls[n_kept] = p
                le[n_kept] = e
                ln[n_kept] = line_no
                if base[p] != 35:        # not a comment: ten columns
                    c = base + p
                    tabs = 0
                    cs[n_words, 0] = p
                    for k in range(e - p):
                        if c[k] == 9:
                            tabs += 1
                            if tabs < 10:
                                cs[n_words, tabs] = p + k + 1
                    if tabs != 9:
                        code, a, err_line = E_COLUMNS, tabs + 1, line_no
                        break
                    cs[n_words, 10] = e + 1
                    # ID: N (a word), or N-M / N.M (a multiword token, an empty node)
                    k = cs[n_words, 1] - 1 - p
                    if memchr(c, 45, k) != NULL or memchr(c, 46, k) != NULL:
                        if not _n_sep_m(c, k):
                            code, err_line, err_word = E_ID, line_no, n_words
                            break
                    else:
                        v = _number(c, k)
                        if v < 0:
                            code, err_line, err_word = E_ID, line_no, n_words
                            break
                        if v != n_words - sent_word0 + 1:
                            code, a, b = E_WORD_ID, v, n_words - sent_word0 + 1
                            err_line, err_word = line_no, n_words
                            break
                        if cs[n_words, 2] - cs[n_words, 1] == 1:
                            code, err_line = E_FORM, line_no
                            break
                        k = cs[n_words, 7] - 1 - cs[n_words, 6]
                        if k == 1 and base[cs[n_words, 6]] == 95:     # '_'
                            hd[n_words] = NO_HEAD
                        else:
                            v = _number(base + cs[n_words, 6], k)
                            if v < 0:
                                code, err_line, err_word = E_HEAD_TEXT, line_no, n_words
                                break
                            hd[n_words] = v
                        k = cs[n_words, 8] - 1 - cs[n_words, 7]
                        db[n_words] = k == 0 or (k == 1 and base[cs[n_words, 7]] == 95)
                        wl[n_words] = n_kept
                        n_words += 1
                n_kept += 1
            p = q + 1
        if code == OK and final and open_sentence and p > size:
            code = _finish(sent_word0, n_words, sent_first_no, need_tree, hd, db, ln, wl,
                           mark, &a, &b, &err_line, &err_word)
            if code == OK:
                n_sent += 1
                sl[n_sent] = n_kept
                sw[n_sent] = n_words
                consumed = size
                consumed_lines = lines_read
    error = None
    if code != OK:
        error = (code, err_line, a, b,
                 column_start[err_word].copy() if err_word >= 0 else None)
    if n_sent == 0:
        return None, consumed, consumed_lines, error
    chunk = Chunk.__new__(Chunk)
    chunk.data = data
    n_kept = sl[n_sent]
    n_words = sw[n_sent]
    chunk.line_start, chunk.line_end = line_start[:n_kept], line_end[:n_kept]
    chunk.line_number = line_number[:n_kept]
    chunk.sentence_lines = sentence_lines[:n_sent + 1]
    chunk.sentence_words = sentence_words[:n_sent + 1]
    chunk.word_line = word_line[:n_words]
    chunk.column_start = column_start[:n_words]
    chunk.heads = heads[:n_words]
    chunk.n_sentences, chunk.n_words = n_sent, n_words
    return chunk, consumed, consumed_lines, error


cdef int _finish(Py_ssize_t w0, Py_ssize_t w1, int64_t first_no, bint need_tree,
                 int32_t[::1] hd, uint8_t[::1] db, int64_t[::1] ln, int64_t[::1] wl,
                 int32_t[::1] mark, int64_t* a, int64_t* b, int64_t* line,
                 int64_t* word) noexcept nogil:
    """The checks of a sentence's HEADs once all its words are read (its words are
    w0 .. w1-1): the order and the messages of conllu._finish in Python before."""
    cdef Py_ssize_t n = w1 - w0, k, at
    cdef int64_t roots = 0, second_root = -1
    if n == 0:
        line[0] = first_no
        return E_NO_WORD
    for k in range(n):
        if hd[w0 + k] == NO_HEAD:
            if need_tree:
                line[0] = ln[wl[w0 + k]]
                return E_HEAD_BLANK
            continue
        if hd[w0 + k] > n:
            a[0], b[0], line[0], word[0] = hd[w0 + k], n, ln[wl[w0 + k]], w0 + k
            return E_HEAD_PAST
        if hd[w0 + k] == k + 1:
            a[0], line[0] = k + 1, ln[wl[w0 + k]]
            return E_OWN_HEAD
        if hd[w0 + k] == 0:
            roots += 1
            if roots == 2:
                second_root = ln[wl[w0 + k]]
        if need_tree and db[w0 + k]:
            line[0] = ln[wl[w0 + k]]
            return E_DEPREL_BLANK
    if not need_tree:
        return OK
    if roots != 1:
        a[0], line[0] = roots, (second_root if roots > 1 else first_no)
        return E_ROOTS
    # every word must reach the root: walk up from each word, marking the walk with
    # its number, until a word known to reach the root (mark -1) or ROOT; meeting the
    # walk's own mark is a cycle. Each word is walked over once: linear in n.
    for k in range(n + 1):
        mark[k] = 0
    mark[0] = -1
    for k in range(1, n + 1):
        at = k
        while mark[at] == 0:
            mark[at] = k
            at = hd[w0 + at - 1]
        if mark[at] == k:
            line[0] = ln[wl[w0 + k - 1]]
            return E_CYCLE
        at = k
        while mark[at] == k:
            mark[at] = -1
            at = hd[w0 + at - 1]
    return OK
