"""The layering promises of ARCHITECTURE.md that a refactor could break silently."""

import os
import subprocess
import sys
import textwrap

import fastgrad

PACKAGE_DIR = os.path.dirname(fastgrad.__file__)


def test_reference_imports_with_numpy_alone():
    # fastgrad.reference (and the record types it uses) must not need the compiled
    # extension: a child process that cannot import any compiled module loads it
    code = textwrap.dedent(f"""
        import importlib.abc, sys, types
        class NoCompiled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name in ("fastgrad._kernels", "fastgrad._grouping", "fastgrad._workspace",
                            "scipy", "threadpoolctl"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, NoCompiled())
        package = types.ModuleType("fastgrad")      # the package without its __init__
        package.__path__ = [{PACKAGE_DIR!r}]
        sys.modules["fastgrad"] = package
        import numpy as np
        from fastgrad import reference
        from fastgrad._types import Params
        p = Params(np.ones((4, 2)), np.ones((6, 3)), np.zeros(3), np.ones((3, 2)), np.zeros(2))
        print(reference.predict_proba(p, np.array([[0, 1, 2]])).shape)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 2)"


def test_every_constant_is_defined_once_and_exported():
    from fastgrad import _kernels
    modes = [_kernels.MODE_PROBA, _kernels.MODE_LOSS, _kernels.MODE_GRAD, _kernels.MODE_UPDATE]
    rules = [_kernels.RULE_SGD, _kernels.RULE_MOMENTUM, _kernels.RULE_ADAGRAD, _kernels.RULE_ADAM]
    assert len(set(modes)) == 4 and len(set(rules)) == 4
    assert _kernels.PATH_DENSE != _kernels.PATH_FACTORED
    assert len(_kernels.PHASES) == len(set(_kernels.PHASES)) == 12
