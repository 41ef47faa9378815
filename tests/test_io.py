"""fastgrad.save / load, and fit's checkpoints: round trips, bad files, kills."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import fastgrad
from fastgrad import ModelFileError

from fastgrad.testing import copy_params, make_problem


def make_optimizer(kind, p):
    return {"none": lambda: None,
            "sgd": lambda: fastgrad.SGD(p, lr=0.1),
            "momentum": lambda: fastgrad.SGD(p, lr=0.1, momentum=0.9),
            "adagrad": lambda: fastgrad.AdaGrad(p, lr=0.05, eps_inside_sqrt=True),
            "adam": lambda: fastgrad.Adam(p, lr=0.01, betas=(0.8, 0.99))}[kind]()


@pytest.mark.parametrize("kind", ["none", "sgd", "momentum", "adagrad", "adam"])
def test_round_trip_then_training_goes_on_identically(tmp_path, dtype, kind):
    p, idx, y = make_problem(dtype, n=30, vocab_used=15)
    opt = make_optimizer(kind, p)
    step_opt = opt or fastgrad.SGD(p, lr=0.1)
    for step in range(3):
        fastgrad.train_step(p, idx, y, step_opt, dropout=0.2, rng=step)
    meta = {"vocab": ["<unk>", "ä", "b"], "layout": {"words": 18}, "lr": 0.1}
    fastgrad.save(tmp_path / "m.npz", p, opt, meta)
    q, opt_q, meta_q = fastgrad.load(tmp_path / "m.npz")
    assert meta_q == meta
    for a, b in zip(p, q):
        np.testing.assert_array_equal(a, b)
        assert b.dtype == dtype and b.flags.writeable
    if opt is None:
        assert opt_q is None
        return
    assert type(opt_q) is type(opt) and opt_q.steps == opt.steps == 3
    for step in range(3, 6):
        fastgrad.train_step(p, idx, y, opt, dropout=0.2, rng=step)
        fastgrad.train_step(q, idx, y, opt_q, dropout=0.2, rng=step)
    for a, b in zip(p, q):
        np.testing.assert_array_equal(a, b)


def test_the_file_is_a_plain_npz(tmp_path):
    p, _, _ = make_problem(np.float32)
    fastgrad.save(tmp_path / "m.npz", p, fastgrad.AdaGrad(p))
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        header = json.loads(f["fastgrad.json"].tobytes())
        np.testing.assert_array_equal(f["p.W"], p.W)
        assert "opt.state1.L" in f.files
    assert header["format"] == "fastgrad-model" and header["version"] == 1


@pytest.fixture
def saved(tmp_path):
    p, _, _ = make_problem(np.float64)
    path = tmp_path / "m.npz"
    fastgrad.save(path, p, fastgrad.Adam(p), {"a": 1})
    return path


def rewrite(path, change):
    """Rewrite the archive at path with change(members) applied."""
    with np.load(path, allow_pickle=False) as f:
        members = {name: f[name] for name in f.files}
    change(members)
    with zipfile.ZipFile(path, "w") as z:
        for name, a in members.items():
            with z.open(name + ".npy", "w") as out:
                np.lib.format.write_array(out, a, allow_pickle=True)


def set_header(members, **fields):
    header = json.loads(members["fastgrad.json"].tobytes())
    header.update(fields)
    members["fastgrad.json"] = np.frombuffer(json.dumps(header).encode(), np.uint8)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        fastgrad.load(tmp_path / "nope.npz")


def test_truncated_file(saved):
    data = saved.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        saved.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=str(saved.name)):
            fastgrad.load(saved)


def test_flipped_bit(saved):
    data = bytearray(saved.read_bytes())
    with np.load(saved) as f:
        offset = bytes(data).find(f["p.W"].tobytes()[:64])
    data[offset + 40] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"m\.npz.*(damaged|checksum)"):
        fastgrad.load(saved)


def test_bit_flip_behind_a_fixed_zip_crc_fails_the_checksum(saved):
    def flip(members):
        members["p.U"] = members["p.U"].copy()
        members["p.U"][0, 0] = np.nextafter(members["p.U"][0, 0], 1)
    rewrite(saved, flip)
    with pytest.raises(ModelFileError, match=r"p\.U fails its checksum"):
        fastgrad.load(saved)


def test_other_format_version(saved):
    rewrite(saved, lambda m: set_header(m, version=99))
    with pytest.raises(ModelFileError, match="format version 99"):
        fastgrad.load(saved)


def test_pickled_object_is_refused(saved):
    def add(members):
        members["evil"] = np.array([{"x": 1}], dtype=object)
    rewrite(saved, add)
    with pytest.raises(ModelFileError, match="pickled object"):
        fastgrad.load(saved)


def test_wrong_optimizer_shapes(saved):
    def shrink(members):
        members["opt.state1.W"] = members["opt.state1.W"][:-1].copy()
        set_header(members, arrays={**json.loads(members["fastgrad.json"].tobytes())["arrays"],
                                    "opt.state1.W": {"shape": list(members["opt.state1.W"].shape),
                                                     "crc32": fastgrad._io._crc(
                                                         members["opt.state1.W"])}})
    rewrite(saved, shrink)
    with pytest.raises(ModelFileError, match=r"opt\.state1\.W has shape"):
        fastgrad.load(saved)


def test_not_a_fastgrad_file(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a fastgrad model file"):
        fastgrad.load(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ModelFileError, match="not a fastgrad model file"):
        fastgrad.load(tmp_path / "text.npz")


def test_refused_save_writes_nothing(saved):
    before = saved.read_bytes()
    p, _, _ = make_problem(np.float64)
    with pytest.raises(TypeError, match="meta must hold only what JSON can"):
        fastgrad.save(saved, p, None, {"f": object()})
    with pytest.raises(TypeError, match="meta must be a dict"):
        fastgrad.save(saved, p, None, ["x"])
    q, _, _ = make_problem(np.float64, n_vocab=41)
    with pytest.raises(ValueError, match="opt was made for"):
        fastgrad.save(saved, p, fastgrad.Adam(q))
    assert saved.read_bytes() == before
    assert [f.name for f in saved.parent.iterdir()] == [saved.name]   # no temporary left


SAVER = textwrap.dedent("""
    import sys, numpy as np, fastgrad
    path = sys.argv[1]
    models = [fastgrad.init_params(3000, 8, 20, 64, 5, dtype=np.float64, seed=s) for s in (1, 2)]
    opts = [fastgrad.Adam(m) for m in models]
    fastgrad.save(path, models[0], opts[0])
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        fastgrad.save(path, models[i % 2], opts[i % 2])
""")


def test_a_process_killed_while_saving_leaves_a_whole_file(tmp_path):
    path = tmp_path / "m.npz"
    expected = [fastgrad.init_params(3000, 8, 20, 64, 5, dtype=np.float64, seed=s)
                for s in (1, 2)]
    rng = np.random.default_rng(0)
    for attempt in range(12):
        child = subprocess.Popen([sys.executable, "-c", SAVER, str(path)],
                                 stdout=subprocess.PIPE, text=True, cwd=tmp_path)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        child.wait()
        p, opt, _ = fastgrad.load(path)          # never torn: one model or the other
        assert any(all(np.array_equal(a, b) for a, b in zip(p, e)) for e in expected)
        assert isinstance(opt, fastgrad.Adam)


TRAINER = textwrap.dedent("""
    import sys, numpy as np, fastgrad
    ckpt, epochs = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 2000, size=(6000, 12)); y = rng.integers(0, 7, size=6000)
    p = fastgrad.init_params(2000, 12, 16, 48, 7, dtype=np.float64, seed=3)
    opt = fastgrad.AdaGrad(p, lr=0.02)
    resume = sys.argv[3] if len(sys.argv) > 3 else None
    fastgrad.set_num_threads(1)
    hist = fastgrad.fit(p, idx, y, opt, epochs=epochs, batch_size=50, dropout=0.3, l2=1e-5,
                        shuffle_seed=11, validation=(idx[:500], y[:500]), progress=False,
                        checkpoint=ckpt, checkpoint_every=7, resume=resume)
    fastgrad.save(sys.argv[1] + ".final.npz", p, opt, {"loss": [h.loss for h in hist],
                                                       "val": [h.val_loss for h in hist]})
""")


def test_training_killed_mid_epoch_resumes_bit_for_bit(tmp_path):
    ckpt = tmp_path / "run.npz"
    epochs = 3
    # the run that is never interrupted
    # cwd: a folder without the source tree, so the children import the installed fastgrad
    subprocess.run([sys.executable, "-c", TRAINER, str(tmp_path / "ref.npz"), str(epochs)],
                   check=True, timeout=300, cwd=tmp_path)
    ref_p, ref_opt, ref_meta = fastgrad.load(str(tmp_path / "ref.npz") + ".final.npz")
    # the run that is killed mid-epoch, once a few checkpoints exist
    child = subprocess.Popen([sys.executable, "-c", TRAINER, str(ckpt), str(epochs)],
                             cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ckpt.exists():
            with np.load(ckpt) as f:
                header = json.loads(f["fastgrad.json"].tobytes())
            if header["fit"]["epoch"] == 2 and header["fit"]["start"] > 0:
                break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not os.path.exists(str(ckpt) + ".final.npz")   # it was stopped before the end
    subprocess.run([sys.executable, "-c", TRAINER, str(ckpt), str(epochs), str(ckpt)],
                   check=True, timeout=300, cwd=tmp_path)
    p, opt, meta = fastgrad.load(str(ckpt) + ".final.npz")
    for a, b in zip(p, ref_p):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(opt.state1, ref_opt.state1):
        np.testing.assert_array_equal(a, b)
    assert opt.steps == ref_opt.steps
    assert meta == ref_meta   # every epoch's loss, the interrupted one included


def test_resume_refuses_another_runs_checkpoint(tmp_path):
    p, idx, y = make_problem(np.float64, n=40)
    opt = fastgrad.SGD(p, lr=0.1)
    ckpt = tmp_path / "c.npz"
    fastgrad.fit(p, idx, y, opt, epochs=1, batch_size=8, checkpoint=ckpt, progress=False)
    q = copy_params(p)
    with pytest.raises(ValueError, match="batch_size"):
        fastgrad.fit(p, idx, y, opt, epochs=2, batch_size=16, resume=ckpt, progress=False)
    with pytest.raises(ValueError, match="data_crc32"):
        fastgrad.fit(p, idx, (y + 1) % 6, opt, epochs=2, batch_size=8, resume=ckpt,
                     progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        fastgrad.fit(p, idx, y, fastgrad.SGD(p, lr=0.2), epochs=2, batch_size=8, resume=ckpt,
                     progress=False)
    for a, b in zip(p, q):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="checkpoint_every needs checkpoint"):
        fastgrad.fit(p, idx, y, opt, checkpoint_every=3)
    fastgrad.save(tmp_path / "model.npz", p, opt)
    with pytest.raises(ModelFileError, match="not a checkpoint"):
        fastgrad.fit(p, idx, y, opt, resume=tmp_path / "model.npz", progress=False)


def test_resume_with_more_epochs_continues_the_history(tmp_path):
    p, idx, y = make_problem(np.float64, n=40)
    q = copy_params(p)
    opt, opt_q = fastgrad.Adam(p), fastgrad.Adam(q)
    ckpt = tmp_path / "c.npz"
    fastgrad.fit(p, idx, y, opt, epochs=1, batch_size=8, checkpoint=ckpt, progress=False)
    hist = fastgrad.fit(p, idx, y, opt, epochs=3, batch_size=8, resume=ckpt, progress=False)
    ref = fastgrad.fit(q, idx, y, opt_q, epochs=3, batch_size=8, progress=False)
    assert [h.loss for h in hist] == [h.loss for h in ref]
    for a, b in zip(p, q):
        np.testing.assert_array_equal(a, b)


def _header_edit(members, edit):
    header = json.loads(members["fastgrad.json"].tobytes())
    edit(header)
    members["fastgrad.json"] = np.frombuffer(json.dumps(header).encode(), np.uint8)


@pytest.mark.parametrize("field,edit", [
    ("dtype", lambda h: h.pop("dtype")),
    ("dtype", lambda h: h.update(dtype=3)),
    ("arrays", lambda h: h.pop("arrays")),
    ("arrays", lambda h: h.update(arrays=[1, 2])),
    ("arrays.p.W", lambda h: h["arrays"].update({"p.W": 5})),
    ("arrays.p.W.shape", lambda h: h["arrays"]["p.W"].update(shape="big")),
    ("arrays.p.W.crc32", lambda h: h["arrays"]["p.W"].pop("crc32")),
    ("optimizer", lambda h: h.update(optimizer="Adam")),
    ("optimizer.kind", lambda h: h["optimizer"].pop("kind")),
    ("optimizer.hyper", lambda h: h["optimizer"].update(hyper=None)),
    ("optimizer.steps", lambda h: h["optimizer"].update(steps=-3)),
    ("optimizer.steps", lambda h: h["optimizer"].update(steps=1.5)),
    ("meta", lambda h: h.update(meta=[1])),
])
def test_every_header_field_is_checked_by_name(saved, field, edit):
    rewrite(saved, lambda m: _header_edit(m, edit))
    with pytest.raises(ModelFileError) as e:
        fastgrad.load(saved)
    assert str(e.value).startswith(f"{saved}: header field {field!r}")


def test_a_symlinked_model_file_stays_a_link(tmp_path):
    p, _, _ = make_problem(np.float64)
    real = tmp_path / "real.npz"
    fastgrad.save(real, p)
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    fastgrad.save(link, p, meta={"again": True})
    assert link.is_symlink() and fastgrad.load(real)[2] == {"again": True}
