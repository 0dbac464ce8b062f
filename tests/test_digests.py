"""Digest guard: the results of fixed settings must stay bitwise what they were when recorded.

The fixture tests/fixtures/digests.json was written by `python -m tests.test_digests --record`
BEFORE the hot path was reworked (issue 11), so any change that alters one bit of training on any
strategy fails here. Digests are a property of one interpreter build and one NumPy/BLAS, so each
record is keyed by them; where no record exists for the running interpreter the test skips and
says which key it lacked (record it on the old code, never on the code under test).
"""

from __future__ import annotations

import json
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.config import RunConfig
from harness.runner import execute
from strategies.base import blas_summary

FIXTURE = Path(__file__).parent / "fixtures" / "digests.json"
DATA_SEED = 3

DP = {
    "workload": "data-parallel",
    "model": "tiny",
    "steps": 12,
    "train_samples": 4096,
    "test_samples": 256,
}
ASYNC = {
    "workload": "async-sgd",
    "model": "tiny",
    "updates": 40,
    "batch": 64,
    "train_samples": 2048,
    "test_samples": 256,
}
FROM_DISK = {
    "workload": "data-parallel",
    "model": "64-16-10",
    "steps": 6,
    "batch": 256,
    "test_samples": 256,
}
LOADER = {"workload": "loader", "batch": 128, "epochs": 1}

# name -> (settings, which result field is the digest, whether it needs the on-disk set)
CASES: dict[str, tuple[dict[str, Any], str, bool]] = {
    "dp-serial": ({**DP, "strategy": "serial"}, "params_sha256", False),
    "dp-threads-w1": ({**DP, "strategy": "threads", "workers": 1}, "params_sha256", False),
    "dp-threads-w2": ({**DP, "strategy": "threads", "workers": 2}, "params_sha256", False),
    "dp-processes-w2": ({**DP, "strategy": "processes", "workers": 2}, "params_sha256", False),
    "dp-asyncio-w2": ({**DP, "strategy": "asyncio", "workers": 2}, "params_sha256", False),
    "dp-small-threads-w2": (
        {
            **DP,
            "model": "small",
            "steps": 4,
            "strategy": "threads",
            "workers": 2,
            "microbatches": 8,
        },
        "params_sha256",
        False,
    ),
    "dp-3layers-serial": (
        {**DP, "model": "64-48-24-10", "steps": 6, "strategy": "serial"},
        "params_sha256",
        False,
    ),
    "dp-disk-serial": ({**FROM_DISK, "strategy": "serial"}, "params_sha256", True),
    "dp-disk-threads-w2": (
        {**FROM_DISK, "strategy": "threads", "workers": 2},
        "params_sha256",
        True,
    ),
    "async-serial": ({**ASYNC, "strategy": "serial"}, "params_sha256", False),
    "async-threads-w1-lock": ({**ASYNC, "strategy": "threads"}, "params_sha256", False),
    "async-threads-w1-striped": (
        {**ASYNC, "strategy": "threads", "policy": "striped"},
        "params_sha256",
        False,
    ),
    "async-processes-w1-hogwild": (
        {**ASYNC, "strategy": "processes", "policy": "hogwild"},
        "params_sha256",
        False,
    ),
    "loader-serial": ({**LOADER, "strategy": "serial"}, "batches_sha256", True),
    "loader-threads-w2": ({**LOADER, "strategy": "threads", "workers": 2}, "batches_sha256", True),
    "loader-processes-w2": (
        {**LOADER, "strategy": "processes", "workers": 2},
        "batches_sha256",
        True,
    ),
}


def build_key() -> str:
    """What a digest depends on: interpreter build (free-threaded or not), NumPy, BLAS."""
    impl = sys.implementation.name + "".join(map(str, sys.version_info[:2]))
    flavour = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    blas = blas_summary()
    return (
        f"{impl}{flavour}-numpy{np.__version__}-{blas['library']}{blas['version']}"
        f"-{blas['architecture']}"
    )


def make_data(folder: Path) -> str:
    """A small on-disk set (8x8 images, 10 classes) through the real `data make` command."""
    from harness.__main__ import main

    target = folder / "set"
    rc = main(
        [
            "data",
            "make",
            "--dir",
            str(target),
            "--samples",
            "1536",
            "--shape",
            "8x8",
            "--seed",
            str(DATA_SEED),
            "--shard-size",
            "256",
        ]
    )
    assert rc == 0
    return str(target)


def digest_of(name: str, data: str | None) -> str:
    settings, field, needs_data = CASES[name]
    extra = {"data": data} if needs_data else {}
    return execute(RunConfig(**settings, **extra))[field]


def recorded() -> dict[str, str] | None:
    table = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {}
    return table.get(build_key())


@pytest.fixture(scope="module")
def data_dir() -> Any:
    with tempfile.TemporaryDirectory() as folder:
        yield make_data(Path(folder))


@pytest.mark.parametrize("name", sorted(CASES))
def test_digest_unchanged_since_recorded(name: str, data_dir: str) -> None:
    table = recorded()
    if table is None or name not in table:
        pytest.skip(f"no digest recorded for {name!r} on {build_key()} (record on the old code)")
    assert digest_of(name, data_dir if CASES[name][2] else None) == table[name]


def record() -> None:
    """Write this interpreter's digests into the fixture, keeping other interpreters' records."""
    table = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {}
    with tempfile.TemporaryDirectory() as folder:
        data = make_data(Path(folder))
        table[build_key()] = {name: digest_of(name, data) for name in sorted(CASES)}
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(CASES)} digests for {build_key()}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m tests.test_digests --record")
    record()
