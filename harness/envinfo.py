"""What a result must say about where it ran: interpreter, GIL state, NumPy/BLAS, CPU."""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from harness import HarnessError, __version__
from strategies.base import blas_summary, gil_enabled, usable_cpus

CONFIG_ENV = "FT_HARNESS_CONFIG"  # set by nox/bench to the toolchain's configuration name


def configuration_name() -> str:
    """The toolchain name (cp313, cp313t, cp313t-gil) if told, else inferred from this build."""
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return tag
    return f"{tag}t-gil" if gil_enabled() else f"{tag}t"


def interpreter_info() -> dict[str, Any]:
    return {
        "name": configuration_name(),
        "version": platform.python_version(),
        "executable": sys.executable,
        "py_gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": gil_enabled(),
        "python_gil_env": os.environ.get("PYTHON_GIL"),
        "config_args": sysconfig.get_config_var("CONFIG_ARGS") or "",
    }


def cpu_info() -> dict[str, Any]:
    model, cores = platform.processor() or platform.machine(), set()
    try:
        physical = "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name":
                model = value
            elif key == "physical id":
                physical = value
            elif key == "core id":
                cores.add((physical, value))
    except OSError:
        pass
    usable = usable_cpus()
    return {
        "model": model,
        "logical": os.cpu_count(),
        "physical": len(cores) or None,
        "usable": usable,
    }


def numpy_info() -> dict[str, Any]:
    return {"version": np.__version__, "blas": blas_summary()}


def require_blas() -> None:
    """Refuse a NumPy built without BLAS: its matmuls are an order of magnitude slower."""
    if blas_summary()["library"] is None:
        raise HarnessError(
            f"numpy {np.__version__} at {Path(np.__file__).parent} has no BLAS library "
            "(built from source without one?); reinstall a wheel: "
            "python -m pip install --only-binary numpy 'numpy==2.4.*'"
        )


def environment() -> dict[str, Any]:
    return {
        "harness_version": __version__,
        "interpreter": interpreter_info(),
        "numpy": numpy_info(),
        "cpu": cpu_info(),
        "platform": platform.platform(),
        "blas_env": {
            k: os.environ[k]
            for k in sorted(os.environ)
            if k.startswith(("OPENBLAS", "OMP_", "MKL_"))
        },
    }
