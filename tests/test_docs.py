"""The README's Python examples run as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    if not README.exists():
        return []
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_examples():
    assert len(python_blocks()) >= 2, f"no Python examples found in {README}"


@pytest.mark.parametrize("number", range(len(python_blocks())))
def test_readme_example_runs(number, capsys):
    if "mpi4py" in python_blocks()[number]:
        pytest.importorskip("mpi4py")   # the MPI example runs on one rank under pytest
    namespace: dict = {}
    for block in python_blocks()[:number + 1]:   # later examples build on earlier ones
        exec(compile(block, f"README.md example {number + 1}", "exec"), namespace)
    assert capsys.readouterr().out.strip()        # each example prints its result
