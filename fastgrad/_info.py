"""fastgrad.show_config(): what this build of fastgrad runs on."""

from __future__ import annotations

import os
import platform


def show_config() -> dict:
    """Print and return the version, BLAS, OpenMP and thread settings of this build."""
    import numpy as np
    import scipy
    import scipy.linalg  # noqa: F401  (loads the BLAS that the kernels bind to)
    from threadpoolctl import threadpool_info

    from fastgrad import __version__, _blas_library, _kernels
    from fastgrad._threads import get_num_threads, thread_count_source

    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
            f"{i.get('num_threads')} threads) {i.get('filepath')}"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    info = {
        "fastgrad": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "kernels_blas": (f"{_kernels.BLAS.name} {_kernels.BLAS.version} "
                         f"({_kernels.BLAS.corename}) {_kernels.BLAS.path}"),
        "kernels_blas_from": (f"{_blas_library.ENVIRONMENT_VARIABLE}="
                              f"{os.environ[_blas_library.ENVIRONMENT_VARIABLE]}"
                              if os.environ.get(_blas_library.ENVIRONMENT_VARIABLE)
                              else "the fastest available (scipy-openblas32, else scipy)"),
        "blas": blas,
        "openmp": bool(_kernels.OPENMP),
        "openmp_max_threads": _kernels.openmp_max_threads(),
        "openmp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "the OpenMP runtime's default"),
        "fastgrad_threads": get_num_threads(),
        "fastgrad_threads_from": thread_count_source(),
        "dtypes": ["float32", "float64"],
    }
    for key, value in info.items():
        if isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print(f"  {item}")
        else:
            print(f"{key}: {value}")
    return info
