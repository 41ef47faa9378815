import numpy as np
import pytest


@pytest.fixture(params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


@pytest.fixture(params=["dense", "factored"])
def path(request):
    return request.param
