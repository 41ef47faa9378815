"""Output paths (fastgrad/_files.py): whole or nothing, through links and devices."""

import errno
import os

import pytest

from fastgrad._files import output_file, same_file


def test_a_failed_write_leaves_the_old_file_and_names_the_path(tmp_path):
    path = tmp_path / "out.txt"
    path.write_bytes(b"old")
    with pytest.raises(OSError) as e:
        with output_file(path) as f:
            f.write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.txt"]


def test_any_exception_leaves_nothing_behind(tmp_path):
    path = tmp_path / "new.txt"
    with pytest.raises(KeyboardInterrupt):
        with output_file(path) as f:
            f.write(b"x")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_a_read_only_folder_names_the_path(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(PermissionError) as e:
        with output_file(folder / "x.txt"):
            pass
    assert e.value.filename == str(folder / "x.txt")


def test_same_file_follows_links(tmp_path):
    a = tmp_path / "a"
    a.write_text("x")
    (tmp_path / "b").symlink_to(a)
    assert same_file(a, tmp_path / "b") and not same_file(a, tmp_path / "missing")
