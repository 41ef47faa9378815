import numpy as np
import pytest


@pytest.fixture(params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


@pytest.fixture(params=["dense", "factored"])
def path(request):
    return request.param


class _NoOtherLoad:
    def cores_busy(self) -> float:
        return 0.0


@pytest.fixture(autouse=True)
def _steady_thread_count(monkeypatch):
    """Without a count set, a step uses the cores other processes leave free; a test
    that compares two runs bit for bit must not see that count change because a
    child process (or CI's neighbours) kept a core busy in between. Tests of that
    rule install their own load reader."""
    from fastgrad import _threads
    monkeypatch.setattr(_threads, "_other_load", _NoOtherLoad())
