"""fastgrad parser train / parse / evaluate on user files (fastgrad/parser/)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastgrad
from fastgrad.testing import mpiexec
from fastgrad.parser import cli, conllu
from fastgrad.parser.model import ParserModel, ParserModelError
from fastgrad.parser.training import read_embeddings
from fastgrad.parser.scoring import attachment_scores, universal
from fastgrad.parser.vocab import Vocabulary

# A toy treebank: subject-verb-object sentences with determiners and punctuation,
# one multiword token, one empty node and comments, as UD files have them.
WORDS = ["dog", "cat", "man", "bird", "fish", "girl"]
VERBS = ["saw", "likes", "sees", "feeds"]


def toy_sentence(i: int) -> str:
    subj, obj, verb = WORDS[i % 6], WORDS[(i * 5 + 1) % 6], VERBS[i % 4]
    rows = [("the", "DET", 2, "det"), (subj, "NOUN", 3, "nsubj"), (verb, "VERB", 0, "root"),
            ("a", "DET", 5, "det"), (obj, "NOUN", 3, "obj:thing"), (".", "PUNCT", 3, "punct")]
    lines = [f"# sent_id = s{i}", f"# text = the {subj} {verb} a {obj} ."]
    for k, (form, tag, head, rel) in enumerate(rows, start=1):
        lines.append(f"{k}\t{form}\t{form}\t{tag}\t_\t_\t{head}\t{rel}\t_\t_")
    return "\n".join(lines) + "\n"


def toy_file(path, sentences) -> str:
    path.write_text("\n".join(toy_sentence(i) for i in sentences) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("parser")
    train = toy_file(d / "train.conllu", range(60))
    dev = toy_file(d / "dev.conllu", range(60, 80))
    model = str(d / "model.npz")
    rc = cli.main(["train", "--train", train, "--dev", dev, "--model", model, "--epochs", "6",
                   "--hidden", "32", "--embed-dim", "16", "--batch-size", "32",
                   "--dropout", "0.1", "--lr", "0.05", "--min-count", "1", "--quiet"])
    assert rc == 0
    return d, model, dev


def test_read_keeps_every_line_and_writes_it_back(tmp_path):
    from test_conllu import SENTENCE   # comments, 1-2, 2.1, 3-4 and words
    text = SENTENCE.rstrip("\n")       # no final newline at all
    [s] = conllu.parse_text(text, need_tree=True)
    assert s.forms == ["Vamos", "nos", "a", "el", "mar"] and s.heads == [0, 1, 5, 5, 1]
    out = tmp_path / "out.conllu"
    conllu.write([s], out)
    assert out.read_text(encoding="utf-8") == text + "\n\n"     # same lines, a final blank


BAD_FILES = [
    ("1\ta\t_\tX\t_\t_\t0\troot\t_\n", 1, "9 tab-separated columns"),
    ("1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n3\tb\t_\tX\t_\t_\t1\tdep\t_\t_\n", 2, "word ID 3"),
    ("1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n2\tb\t_\tX\t_\t_\tx\tdep\t_\t_\n", 2, "HEAD 'x'"),
    ("1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n2\tb\t_\tX\t_\t_\t7\tdep\t_\t_\n", 2, "points past"),
    ("# c\n1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n2\tb\t_\tX\t_\t_\t0\troot\t_\t_\n", 3,
     "exactly one root"),
    ("1\ta\t_\tX\t_\t_\t2\tdep\t_\t_\n2\tb\t_\tX\t_\t_\t1\tdep\t_\t_\n"
     "3\tc\t_\tX\t_\t_\t0\troot\t_\t_\n", 1, "cycle"),
    ("1\ta\t_\tX\t_\t_\t1\tdep\t_\t_\n", 1, "its own HEAD"),
    ("1\ta\t_\tX\t_\t_\t_\t_\t_\t_\n", 1, "HEAD is '_'"),
    ("1\ta\t_\tX\t_\t_\t0\t_\t_\t_\n", 1, "DEPREL is '_'"),
    ("1a\ta\t_\tX\t_\t_\t0\troot\t_\t_\n", 1, "is not N, N-M or N.M"),
    ("# only a comment\n", 1, "without any word line"),
    ("\n\n", 1, "no sentences"),
]


@pytest.mark.parametrize("text,line,message", BAD_FILES)
def test_malformed_conllu_names_file_line_and_problem(tmp_path, text, line, message):
    path = tmp_path / "bad.conllu"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(conllu.CoNLLUError) as e:
        conllu.read(path, need_tree=True)
    assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.conllu"
    path.write_bytes(b"1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n\n1\t\xe9t\xe9\t_\tX\t_\t_\t0\troot\t_\t_\n")
    with pytest.raises(conllu.CoNLLUError, match=r"latin1.conllu:3: not UTF-8"):
        conllu.read(path, need_tree=True)


def test_files_to_parse_may_leave_head_and_deprel_empty():
    [s] = conllu.parse_text("1\ta\t_\tX\t_\t_\t_\t_\t_\t_\n2\tb\t_\tY\t_\t_\t_\t_\t_\t_",
                            need_tree=False)
    assert s.heads == [None, None] and s.deprels == [None, None]


def test_official_scores():
    gold = conllu.parse_text("1\ta\t_\tNOUN\t_\t_\t2\tnmod:poss\t_\t_\n"
                             "2\tb\t_\tVERB\t_\t_\t0\troot\t_\t_\n"
                             "3\t.\t_\tPUNCT\t_\t_\t2\tpunct\t_\t_\n", need_tree=True)
    system = [gold[0].with_tree([2, 0, 1], ["nmod", "root", "punct"])]
    s = attachment_scores(gold, system)
    assert universal("nmod:poss") == "nmod"
    assert s["uas"] == pytest.approx(200 / 3) and s["las"] == pytest.approx(200 / 3)
    assert s["las_full"] == pytest.approx(100 / 3)                 # nmod ≠ nmod:poss in full
    assert s["uas_no_punct"] == 100 and s["las_no_punct"] == 100 and s["las_full_no_punct"] == 50
    other = [gold[0].with_tree([2, 0, 2], ["nmod", "root", "punct"])]
    other[0].words[0][1] = "z"
    with pytest.raises(conllu.CoNLLUError, match="words differ"):
        attachment_scores(gold, other)


def test_training_learns_the_toy_grammar_and_keeps_the_best_epoch(trained):
    d, model_path, dev = trained
    model = ParserModel.load(model_path)
    gold = conllu.read(dev, need_tree=True)
    scores = attachment_scores(gold, model.parse(gold))
    assert scores["uas"] > 90 and scores["las"] > 85, scores
    assert model.options["hidden"] == 32 and model.vocab.labels == sorted(
        {"det", "nsubj", "root", "obj:thing", "punct"})


def test_parsed_output_is_valid_conllu_with_everything_else_kept(trained, tmp_path):
    _, model_path, _ = trained
    text = ("# newdoc id = x\n# text = the zebra saw a dog .\n"
            "1\tthe\tthe\tDET\t_\t_\t_\t_\t_\t_\n"
            "2-3\tzebrasaw\t_\t_\t_\t_\t_\t_\t_\t_\n"
            "2\tzebra\tzebra\tPROPN\t_\tA=B\t_\t_\t_\t_\n"              # unseen word and tag
            "3\tsaw\tsee\tVERB\t_\t_\t_\t_\t_\t_\n"
            "3.1\tgone\t_\t_\t_\t_\t_\t_\t_\t_\n"
            "4\ta\ta\tDET\t_\t_\t_\t_\t_\t_\n"
            "5\tdog\tdog\tNOUN\t_\t_\t_\t_\t_\tSpaceAfter=No\n"
            "6\t.\t.\tPUNCT\t_\t_\t_\t_\t_\t_")                            # no final newline
    src = tmp_path / "in.conllu"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "out.conllu"
    assert cli.main(["parse", "--model", model_path, str(src), "-o", str(out)]) == 0
    written = out.read_text(encoding="utf-8")
    assert written.endswith("\n\n")
    [parsed] = conllu.read(out, need_tree=True)             # one root, heads in range, no cycle
    in_lines, out_lines = text.split("\n"), written.rstrip("\n").split("\n")
    assert len(in_lines) == len(out_lines)
    for a, b in zip(in_lines, out_lines):
        ca, cb = a.split("\t"), b.split("\t")
        if len(ca) < 10 or not ca[0].isdigit():
            assert a == b                                    # comments, 2-3, 3.1 untouched
        else:
            assert ca[:6] + ca[8:] == cb[:6] + cb[8:]       # only HEAD and DEPREL filled
    assert parsed.heads[2] == 0 and parsed.deprels[1] == "nsubj"


def test_round_trip_in_a_fresh_process_equals_evaluate(trained, tmp_path):
    _, model_path, dev = trained
    out = tmp_path / "parsed.conllu"
    # a count set: the three processes parse at the same thread count whatever the load
    env = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="2")
    run = [sys.executable, "-m", "fastgrad", "parser"]
    with open(dev, "rb") as stdin:      # standard input to standard output
        parsed = subprocess.run(run + ["parse", "--model", model_path], stdin=stdin,
                                capture_output=True, check=True, cwd="/", env=env).stdout
    out.write_bytes(parsed)
    via_system = subprocess.run(run + ["evaluate", "--system", str(out), dev, "--json"],
                                capture_output=True, text=True, check=True, cwd="/", env=env)
    via_model = subprocess.run(run + ["evaluate", "--model", model_path, dev, "--json"],
                               capture_output=True, text=True, check=True, cwd="/", env=env)
    a, b = json.loads(via_system.stdout), json.loads(via_model.stdout)
    assert a == b and {"uas", "las", "las_full"} <= set(a)
    gold = conllu.read(dev, need_tree=True)
    assert a == attachment_scores(gold, conllu.read(out, need_tree=True))


def test_model_files_of_other_kinds_are_refused(trained, tmp_path):
    _, model_path, _ = trained
    p, _, meta = fastgrad.load(model_path)
    plain = tmp_path / "plain.npz"
    fastgrad.save(plain, p)
    with pytest.raises(ParserModelError, match="not a parser model"):
        ParserModel.load(plain)
    old = tmp_path / "old.npz"
    fastgrad.save(old, p, meta={**meta, "format_version": 99})
    with pytest.raises(ParserModelError, match="format version 99"):
        ParserModel.load(old)
    assert cli.main(["parse", "--model", str(old), model_path]) == 1


def test_embeddings_fill_known_words(tmp_path):
    vocab = Vocabulary([conllu_tree("dog saw cat")], min_count=1)
    L = np.zeros((vocab.size, 3))
    path = tmp_path / "vec.txt"
    path.write_text("3 3\ndog 1 2 3\nunicorn 4 5 6\ncat 7 8 9\n", encoding="utf-8")
    assert read_embeddings(path, vocab, L) == 2
    assert L[vocab.word_id["dog"]].tolist() == [1, 2, 3]
    path.write_text("dog 1 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vec.txt:1: a word and 2 numbers, where 3"):
        read_embeddings(path, vocab, L)
    path.write_text("dog 1 x 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vec.txt:1: not a number"):
        read_embeddings(path, vocab, L)


def conllu_tree(words):
    from fastgrad.parser.transitions import Tree
    ws = words.split()
    return Tree(ws, ["X"] * len(ws), [0] + [1] * (len(ws) - 1), ["root"] + ["dep"] * (len(ws) - 1))


@pytest.mark.parametrize("argv", [
    ["parser", "--epochs", "-1"], ["parser", "--hidden", "0"], ["parser", "--dropout", "1"],
    ["parser", "train", "--train", "a", "--dev", "b", "--model", "c", "--lr", "-1"],
    ["parser", "train", "--train", "a"], ["parser", "evaluate", "gold.conllu"],
    ["parser", "train", "--train", "a", "--dev", "b", "--model", "c", "--tag-columns", "pos"],
    ["parser", "parse", "x.conllu"], ["parser", "parse", "--model", "m", "--threads", "0"],
    ["bench", "--rounds", "0"], ["bench", "--threads", "0"],
    ["bench", "--config", "nope"], ["inference", "--config", "nope"],
    ["inference", "--top-words", "-3"], ["nope"], ["bench", "--methods", "fastgrad,nosuch"],
    ["bench", "--json", "/nonexistent-folder/x.json"], ["bench", "--json", "/"],
])
def test_bad_arguments_are_usage_errors(argv):
    out = subprocess.run([sys.executable, "-m", "fastgrad", *argv], capture_output=True,
                         text=True, cwd="/", env=dict(os.environ, PYTHONPATH=""))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "error:" in out.stderr.splitlines()[-1]


def test_xpos_and_feats_feed_tag_features_when_the_file_has_them(tmp_path):
    from fastgrad.parser.model import available_tag_columns, to_tree
    text = ("1\tthe\tthe\tDET\tDT\tDefinite=Def\t2\tdet\t_\t_\n"
            "2\tdog\tdog\tNOUN\tNN\tNumber=Sing\t0\troot\t_\t_\n")
    sentences = conllu.parse_text(text, need_tree=True)
    assert available_tag_columns(sentences) == ["upos", "xpos", "feats"]
    tree = to_tree(sentences[0], ["upos", "feats"])
    assert tree.tags == ["DET", "NOUN"] and tree.extra_tags == (["feats=Definite=Def",
                                                                  "feats=Number=Sing"],)
    train = tmp_path / "t.conllu"
    train.write_text((text + "\n") * 30, encoding="utf-8")
    model = tmp_path / "m.npz"
    assert cli.main(["train", "--train", str(train), "--dev", str(train), "--model", str(model),
                     "--epochs", "2", "--hidden", "8", "--embed-dim", "4", "--min-count", "1",
                     "--tag-columns", "upos,feats", "--quiet"]) == 0
    loaded = ParserModel.load(model)
    assert loaded.vocab.tag_columns == ["upos", "feats"] and loaded.vocab.n_features == 66
    assert len(loaded.parse(sentences)) == 1


def test_outputs_write_through_links_fifos_and_devices(trained, tmp_path):
    import stat
    import threading
    _, model_path, dev = trained
    target = tmp_path / "target.conllu"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o640)
    link = tmp_path / "link.conllu"
    link.symlink_to(target)
    assert cli.main(["parse", "--model", model_path, dev, "-o", str(link)]) == 0
    assert link.is_symlink() and target.read_text(encoding="utf-8").startswith("# sent_id")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640          # the file's mode is kept
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert cli.main(["parse", "--model", model_path, dev, "-o", str(fifo)]) == 0
    reader.join(timeout=60)
    assert got and got[0] == target.read_bytes() and stat.S_ISFIFO(fifo.stat().st_mode)
    if os.access("/dev/null", os.W_OK):
        assert cli.main(["parse", "--model", model_path, dev, "-o", "/dev/null"]) == 0
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_new_files_follow_the_umask(trained, tmp_path):
    _, model_path, dev = trained
    old = os.umask(0o027)
    try:
        out, model = tmp_path / "new.conllu", tmp_path / "m.npz"
        assert cli.main(["parse", "--model", model_path, dev, "-o", str(out)]) == 0
        p, _, meta = fastgrad.load(model_path)
        fastgrad.save(model, p, meta=meta)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o640 and model.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("where,message", [
    ("{tmp}", "is a folder, not a file"), ("{tmp}/nope/out.conllu", "its folder does not exist")])
def test_bad_output_paths_are_one_line_naming_the_path(trained, tmp_path, where, message):
    _, model_path, dev = trained
    path = where.format(tmp=tmp_path)
    out = subprocess.run([sys.executable, "-m", "fastgrad", "parser", "parse", "--model",
                          model_path, dev, "-o", path], capture_output=True, text=True,
                         cwd="/", env=dict(os.environ, PYTHONPATH=""))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"fastgrad parser parse: error: {path}: {message}"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_train_refuses_a_model_path_that_is_its_treebank(tmp_path):
    train = toy_file(tmp_path / "train.conllu", range(10))
    before = open(train, "rb").read()
    assert cli.main(["train", "--train", train, "--dev", train, "--model", train,
                     "--epochs", "1", "--quiet"]) == 1
    assert open(train, "rb").read() == before


def test_parse_and_evaluate_take_a_thread_count_and_parse_the_same_at_any(trained, tmp_path,
                                                                         capsys):
    from fastgrad import get_num_threads, set_num_threads
    _, model_path, dev = trained
    outputs = []
    try:
        for threads in ("1", "3"):
            out = tmp_path / f"parsed{threads}.conllu"
            assert cli.main(["parse", "--model", model_path, "--threads", threads, dev,
                             "-o", str(out)]) == 0
            assert get_num_threads() == int(threads)
            outputs.append(out.read_bytes())
            assert cli.main(["evaluate", "--model", model_path, "--threads", threads, "--json",
                             dev]) == 0
            outputs.append(capsys.readouterr().out)
    finally:
        set_num_threads(None)
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]


def test_streamed_parse_equals_parsing_sentences(trained, tmp_path):
    _, model_path, dev = trained
    model = ParserModel.load(model_path)
    gold = conllu.read(dev, need_tree=True)
    streamed = b"".join(bytes(model.parse_chunk(c))
                        for c in conllu._chunks_of(open(dev, "rb"), dev, False, 300))
    expected = "".join("\n".join(s.lines) + "\n\n" for s in model.parse(gold))
    assert streamed.decode("utf-8") == expected


@pytest.mark.skipif(mpiexec() is None, reason="needs mpiexec and mpi4py (pip install '.[mpi]')")
def test_two_ranks_train_the_model_one_process_trains(tmp_path):
    train = toy_file(tmp_path / "train.conllu", range(60))
    dev = toy_file(tmp_path / "dev.conllu", range(60, 80))
    args = ["parser", "train", "--train", train, "--dev", dev, "--epochs", "1",
            "--hidden", "32", "--embed-dim", "16", "--batch-size", "32", "--dropout", "0.1",
            "--lr", "0.05", "--min-count", "1", "--threads", "1"]
    env = dict(os.environ, PYTHONPATH="")
    one = subprocess.run([sys.executable, "-m", "fastgrad", *args, "--model",
                          str(tmp_path / "one.npz")], capture_output=True, text=True,
                         cwd="/", env=env, timeout=300)
    two = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m", "fastgrad", *args,
                          "--model", str(tmp_path / "two.npz")], capture_output=True,
                         text=True, cwd="/", env=env, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert "on each of 2 MPI ranks" in two.stdout and two.stdout.count("\nepoch 1:") == 1
    a, b = ParserModel.load(tmp_path / "one.npz"), ParserModel.load(tmp_path / "two.npz")
    for x, y in zip(a.p, b.p):   # the same global batches: equal to float32 sums' order
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    explored = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m", "fastgrad",
                               *args, "--epochs", "2", "--explore-after", "1", "--model",
                               str(tmp_path / "x2.npz")],
                              capture_output=True, text=True, cwd="/", env=env, timeout=300)
    assert explored.returncode == 0, explored.stderr
    assert explored.stdout.count("explored in") == 1
    assert ParserModel.load(tmp_path / "x2.npz").options["oracle"] == "dynamic"
    bad = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m", "fastgrad",
                          *args[:3], str(tmp_path / "missing.conllu"), *args[4:],
                          "--model", str(tmp_path / "x.npz")], capture_output=True, text=True,
                         cwd="/", env=env, timeout=120)
    assert bad.returncode != 0 and bad.stderr.count("missing.conllu") == 2
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("damage", [
    lambda m: m.pop("vocabulary"), lambda m: m["vocabulary"].update(words="abc"),
    lambda m: m["vocabulary"].update(labels=[1, 2]), lambda m: m.update(vocabulary=[]),
    lambda m: m.update(options=5)])
def test_damaged_parser_metadata_is_one_line(trained, tmp_path, damage):
    _, model_path, dev = trained
    p, _, meta = fastgrad.load(model_path)
    damage(meta)
    bad = tmp_path / "bad.npz"
    fastgrad.save(bad, p, meta=meta)
    with pytest.raises(ParserModelError, match="bad.npz"):
        ParserModel.load(bad)
    out = subprocess.run([sys.executable, "-m", "fastgrad", "parser", "parse", "--model",
                          str(bad), dev, "-o", str(tmp_path / "o.conllu")],
                         capture_output=True, text=True, cwd="/",
                         env=dict(os.environ, PYTHONPATH=""))
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1


def test_only_the_word_attached_to_root_is_labelled_root(trained):
    from fastgrad.parser.transitions import parse, parse_in_python
    _, model_path, dev = trained
    model = ParserModel.load(model_path)
    p = fastgrad.init_params(model.p.L.shape[0], model.vocab.n_features, 16, 32,
                             model.vocab.n_transitions, dtype=np.float32, seed=3)
    untrained = ParserModel(p, model.vocab, model.options)   # scores at random
    gold = conllu.read(dev, need_tree=True)
    parsed = untrained.parse(gold)
    pairs = [(h, r) for s in parsed for h, r in zip(s.heads, s.deprels)]
    assert sum(h == 0 for h, _ in pairs) == len(gold)
    assert all((h == 0) == (r == "root") for h, r in pairs)
    trees = [conllu_tree(" ".join(s.forms)) for s in gold]
    predict = untrained._predictor()
    assert parse(predict, trees, model.vocab) == parse_in_python(predict, trees, model.vocab)


def test_each_tag_slot_caches_its_own_column_only(tmp_path):
    from fastgrad.parser.model import Treebank
    text = ("1\tthe\tthe\tDET\tDT\tDefinite=Def\t2\tdet\t_\t_\n"
            "2\tdog\tdog\tNOUN\tNN\tNumber=Sing\t0\troot\t_\t_\n")
    path = tmp_path / "t.conllu"
    path.write_text(text, encoding="utf-8")
    columns = ["upos", "xpos", "feats"]
    vocab = Vocabulary(Treebank.read(str(path)).trees(columns), min_count=1,
                       tag_columns=columns)
    rows = vocab.rows_to_cache()
    names = [[vocab.tags[r - vocab.n_words] for r in rows[18 + 18 * c]] for c in range(3)]
    assert sorted(names[0][3:]) == ["DET", "NOUN"]
    assert sorted(names[1][3:]) == ["xpos=DT", "xpos=NN"]
    assert sorted(names[2][3:]) == ["feats=Definite=Def", "feats=Number=Sing"]
    assert all(n[:3] == ["<NULL>", "<ROOT>", "<UNK>"] for n in names)


def test_ctrl_c_in_train_is_one_line_and_keeps_the_best_model(tmp_path):
    import signal
    train = toy_file(tmp_path / "train.conllu", range(60))
    model = tmp_path / "m.npz"
    proc = subprocess.Popen([sys.executable, "-u", "-m", "fastgrad", "parser", "train",
                             "--train", train, "--dev", train, "--model", str(model),
                             "--epochs", "100000", "--patience", "100000", "--hidden", "8",
                             "--embed-dim", "4", "--min-count", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd="/", env=dict(os.environ, PYTHONPATH=""))
    try:
        for line in proc.stdout:            # the first epoch saved a model
            if line.startswith("epoch 1:"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines() == [f"fastgrad parser train: interrupted; the best model "
                                         f"so far is in {model}"]
    assert ParserModel.load(model).options["hidden"] == 8


def nonprojective_sentence(i: int) -> str:
    """"the dog saw a cat today that ran": the relative clause hangs from "cat"
    across "today" (a non-projective arc)."""
    rows = [("the", "DET", 2, "det"), ("dog", "NOUN", 3, "nsubj"), ("saw", "VERB", 0, "root"),
            ("a", "DET", 5, "det"), ("cat", "NOUN", 3, "obj"), ("today", "ADV", 3, "advmod"),
            ("that", "PRON", 8, "nsubj"), ("ran", "VERB", 5, "acl:relcl")]
    lines = [f"# sent_id = np{i}"] + [f"{k}\t{f}\t{f}\t{t}\t_\t_\t{h}\t{r}\t_\t_"
                                      for k, (f, t, h, r) in enumerate(rows, start=1)]
    return "\n".join(lines) + "\n"


def test_nonprojective_trees_are_lifted_for_training_and_lowered_in_parses(tmp_path, capsys):
    text = "\n".join(toy_sentence(i) if i % 3 else nonprojective_sentence(i)
                     for i in range(60)) + "\n"
    train = tmp_path / "train.conllu"
    train.write_text(text, encoding="utf-8")
    model = tmp_path / "m.npz"
    args = ["train", "--train", str(train), "--dev", str(train), "--epochs", "8",
            "--hidden", "32", "--embed-dim", "16", "--batch-size", "32", "--dropout", "0.1",
            "--lr", "0.05", "--min-count", "1", "--threads", "1"]
    assert cli.main(args + ["--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "(20 non-projective, lifted)" in out and "word vectors: skip-gram on" in out
    loaded = ParserModel.load(model)
    assert "acl:relcl||obj" in loaded.vocab.labels
    assert loaded.options["nonprojective"] == "lift"
    assert loaded.options["word_vectors"]["source"] == "skipgram"
    assert fastgrad.load(model)[2]["format_version"] == 2
    parsed = tmp_path / "parsed.conllu"
    assert cli.main(["parse", "--model", str(model), str(train), "-o", str(parsed)]) == 0
    assert "||" not in parsed.read_text(encoding="utf-8")
    gold = conllu.read(train, need_tree=True)
    system = conllu.read(parsed, need_tree=True)
    crossing = [s for s, g in zip(system, gold) if len(g.words) == 8]
    assert sum(s.heads == [2, 3, 0, 5, 3, 3, 8, 5] for s in crossing) >= 15
    assert attachment_scores(gold, system)["las"] > 95.0
    # the same model through ParserModel.parse (Sentences, not chunks)
    assert [s.heads for s in loaded.parse(gold)] == [s.heads for s in system]
    # skip: trained on the projective sentences only, parses are projective
    assert cli.main(args + ["--model", str(model), "--nonprojective", "skip"]) == 0
    assert "(20 non-projective, skipped)" in capsys.readouterr().out
    assert not any("||" in lab for lab in ParserModel.load(model).vocab.labels)


def test_the_same_command_and_seed_give_the_same_model(tmp_path):
    train = toy_file(tmp_path / "train.conllu", range(40))
    models = []
    for k in range(2):
        models.append(tmp_path / f"m{k}.npz")
        assert cli.main(["train", "--train", train, "--dev", train, "--model",
                         str(models[-1]), "--epochs", "2", "--hidden", "16", "--embed-dim", "8",
                         "--min-count", "1", "--seed", "7", "--quiet"]) == 0
    a, b = (fastgrad.load(m) for m in models)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0]))
    assert a[2]["options"] == b[2]["options"]


def test_raw_text_feeds_the_word_vectors_and_its_words_join_the_vocabulary(tmp_path, capsys):
    train = toy_file(tmp_path / "train.conllu", range(30))
    raw = tmp_path / "raw.txt"
    raw.write_text("the zebra saw a dog .\nthe zebra likes a cat .\n", encoding="utf-8")
    model = tmp_path / "m.npz"
    base = ["train", "--train", train, "--dev", train, "--model", str(model), "--epochs", "1",
            "--hidden", "8", "--embed-dim", "4", "--min-count", "1"]
    assert cli.main(base + ["--raw-text", str(raw)]) == 0
    assert f"(with {raw})" in capsys.readouterr().out
    loaded = ParserModel.load(model)
    assert "zebra" in loaded.vocab.word_id
    assert loaded.options["word_vectors"]["raw_text"] == str(raw)
    vec = tmp_path / "v.txt"
    vec.write_text("dog 1 2 3 4\n", encoding="utf-8")
    before = model.read_bytes()
    assert cli.main(base + ["--raw-text", str(raw), "--embeddings", str(vec)]) == 1
    assert "give one or the other" in capsys.readouterr().err
    assert model.read_bytes() == before
    assert cli.main(base + ["--word-vectors", "none"]) == 0
    assert ParserModel.load(model).options["word_vectors"] == {"source": "none"}


def test_a_deprel_holding_the_lift_separator_is_refused(tmp_path, capsys):
    train = tmp_path / "t.conllu"
    train.write_text("1\ta\ta\tX\t_\t_\t0\troot\t_\t_\n2\tb\tb\tX\t_\t_\t1\tx||y\t_\t_\n\n" * 4,
                     encoding="utf-8")
    args = ["train", "--train", str(train), "--dev", str(train), "--model",
            str(tmp_path / "m.npz"), "--epochs", "1", "--min-count", "1"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "'x||y'" in err and err.count("\n") == 1
    assert cli.main(args + ["--nonprojective", "skip", "--quiet"]) == 0


def test_models_of_format_version_1_still_load_and_parse(trained, tmp_path):
    _, model_path, dev = trained
    p, _, meta = fastgrad.load(model_path)
    options = {k: v for k, v in meta["options"].items()
               if k not in ("nonprojective", "word_vectors")}
    old = tmp_path / "v1.npz"
    fastgrad.save(old, p, meta={**meta, "format_version": 1, "options": options})
    out = tmp_path / "out.conllu"
    assert cli.main(["parse", "--model", str(old), dev, "-o", str(out)]) == 0
    assert out.read_bytes() == ParserModel.load(model_path).parse_chunk(
        next(conllu.chunks(dev, need_tree=False)))


def test_exploration_epochs_follow_the_model_and_are_recorded(tmp_path, capsys):
    train = toy_file(tmp_path / "train.conllu", range(60))
    dev = toy_file(tmp_path / "dev.conllu", range(60, 80))
    model = tmp_path / "m.npz"
    args = ["train", "--train", train, "--dev", dev, "--model", str(model), "--epochs", "4",
            "--hidden", "32", "--embed-dim", "16", "--batch-size", "32", "--dropout", "0.1",
            "--lr", "0.05", "--min-count", "1", "--threads", "1", "--explore-after", "2",
            "--patience", "9"]
    assert cli.main(args) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch")]
    assert ["explored in" in x for x in lines] == [False, False, True, True]
    loaded = ParserModel.load(model)
    assert (loaded.options["oracle"], loaded.options["explore_after"],
            loaded.options["explore_p"], loaded.options["lr_decay"]) == ("dynamic", 2, 0.9, 0.9)
    gold = conllu.read(dev, need_tree=True)
    assert attachment_scores(gold, loaded.parse(gold))["las"] > 95.0
    assert cli.main(args + ["--oracle", "static"]) == 0
    assert "explored" not in capsys.readouterr().out
    for bad in (["--explore-p", "1.5"], ["--explore-after", "-1"], ["--lr-decay", "0"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(args + bad)
        assert exit_.value.code == 2


def test_word_dropout_replaces_rare_words_more_often(monkeypatch):
    from fastgrad.parser import training as parser_training
    from fastgrad.parser.training import _word_counts, word_dropout_rows
    from fastgrad.parser.transitions import Tree
    trees = [Tree(["a"] * 50 + ["b"], ["X"] * 51, [0] + [1] * 50, ["root"] + ["d"] * 50)]
    vocab = Vocabulary(trees, min_count=1)
    counts = _word_counts(trees, vocab)
    a, b, unk = vocab.word_id["a"], vocab.word_id["b"], vocab.word_id["<UNK>"]
    assert counts[a] == 50 and counts[b] == 1 and np.isinf(counts[:3]).all()
    idx = np.full((20000, 30), vocab.tag_id["X"], np.int32)
    idx[:, :18] = np.where(np.arange(18) % 2, a, b)
    idx[:, 5] = vocab.word_id["<NULL>"]
    out = word_dropout_rows(idx, counts, 0.25, unk, seed=1)
    assert (idx[:, :18] != unk).all() and out is not idx
    rate_b = (out[:, :18:2] == unk).mean()
    rate_a = (out[:, 1:18:2][:, [0, 1, 3, 4, 5, 6, 7, 8]] == unk).mean()
    assert abs(rate_b - 0.25 / 1.25) < 0.01 and abs(rate_a - 0.25 / 50.25) < 0.002
    assert (out[:, 5] == vocab.word_id["<NULL>"]).all() and (out[:, 18:] == idx[:, 18:]).all()
    again = word_dropout_rows(idx, counts, 0.25, unk, seed=1, out=np.empty_like(idx))
    assert np.array_equal(out, again)
    # numpy's draws and replacement, written plainly: the same rows, int32 (drawn and
    # replaced on the kernels' threads) or int64 (by numpy)
    rng, want = np.random.default_rng(1), idx.copy()
    p_unk = 0.25 / (0.25 + counts)
    for start in range(0, len(want), 65536):
        words = want[start:start + 65536, :18]
        words[rng.random(words.shape) < p_unk[words]] = unk
    assert np.array_equal(out, want)
    assert np.array_equal(word_dropout_rows(idx.astype(np.int64), counts, 0.25, unk, seed=1),
                          want)
    # drawn block by block (bounded memory): the same draws whatever the block size
    monkeypatch.setattr(parser_training, "_DROPOUT_BLOCK_ROWS", 777)
    assert np.array_equal(word_dropout_rows(idx, counts, 0.25, unk, seed=1), out)


def test_a_set_up_error_cancels_the_word_vectors_instead_of_waiting(tmp_path):
    """The skip-gram job starts as soon as the training file is read; a bad dev file
    found after that ends it at once (with 10^8 epochs, waiting would never end)."""
    import threading

    from fastgrad.parser.training import train
    from fastgrad.parser.word_vectors import SkipGramOptions

    treebank = toy_file(tmp_path / "train.conllu", range(40))
    bad_dev = tmp_path / "dev.conllu"
    bad_dev.write_text("1\tthe\tthe\tDET\t_\t_\t2\tdet\t_\n\n", encoding="utf-8")   # 9 columns
    raised = []

    def run():
        try:
            train(treebank, str(bad_dev), str(tmp_path / "m.npz"), epochs=1, hidden=8,
                  embed_dim=4, threads=2, skipgram=SkipGramOptions(epochs=10**8, min_count=1),
                  log=lambda _: None)
        except conllu.CoNLLUError as err:
            raised.append(err)

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(timeout=120)   # not a speed check: without the cancel it never returns
    assert not caller.is_alive(), "train waited for the word vectors after the error"
    assert len(raised) == 1 and "dev.conllu:1: 9 tab-separated columns" in str(raised[0])
    assert not any(t.name == "fastgrad-skipgram" for t in threading.enumerate())
    assert not (tmp_path / "m.npz").exists()
