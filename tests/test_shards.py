"""On-disk sample sets: what `data make` writes, that it is atomic, and how damage is reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import HarnessError
from harness.data import shards
from harness.data.shards import MANIFEST, check_all, make_shards, open_shards, parse_shape

ROOT = Path(__file__).resolve().parents[1]


def make(root: Path, samples: int = 37, shard_size: int = 5, seed: int = 3) -> Path:
    make_shards(root, samples=samples, shape=(8, 8), classes=4, seed=seed, shard_size=shard_size)
    return root


def test_make_writes_shards_and_a_manifest_that_reads_back(tmp_path: Path) -> None:
    root = make(tmp_path / "set")
    manifest = json.loads((root / MANIFEST).read_text())
    assert [s["samples"] for s in manifest["shards"]] == [5] * 7 + [2]
    found = open_shards(root)
    images, labels = found.read(np.arange(37))
    assert images.shape == (37, 8, 8) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels.tolist()) <= {0, 1, 2, 3}
    assert found.samples == 37 and found.classes == 4 and found.shape == (8, 8)


def test_content_depends_on_seed_not_on_shard_size(tmp_path: Path) -> None:
    a, b = (
        open_shards(make(tmp_path / "a", shard_size=5)),
        open_shards(make(tmp_path / "b", shard_size=300)),
    )
    c = open_shards(make(tmp_path / "c", seed=4))
    order = np.random.default_rng(0).permutation(37)
    assert all(np.array_equal(x, y) for x, y in zip(a.read(order), b.read(order)))
    assert not np.array_equal(a.read(order)[0], c.read(order)[0])


def test_classes_are_learnable_templates_not_noise(tmp_path: Path) -> None:
    """Samples of one class are closer to their class mean than to other classes' means."""
    found = open_shards(make(tmp_path / "set", samples=400))
    images, labels = found.read(np.arange(400))
    x = images.reshape(400, -1).astype(float)
    means = np.stack([x[labels == c].mean(axis=0) for c in range(4)])
    nearest = ((x[:, None, :] - means[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert (nearest == labels).mean() > 0.9


def test_interrupted_make_leaves_nothing_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = shards._write_file, []

    def interrupted(path: Path, array: np.ndarray) -> dict:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, array)

    monkeypatch.setattr(shards, "_write_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path / "set")
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary folder


def test_a_folder_without_manifest_is_never_complete(tmp_path: Path) -> None:
    root = make(tmp_path / "set")
    (root / MANIFEST).unlink()  # what a killed `data make` would leave (under another name)
    with pytest.raises(HarnessError, match="has no manifest.json: not a complete"):
        open_shards(root)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "is unreadable"),
        ('{"format": "other", "version": 1}', "is not a ft-harness-shards version 1 manifest"),
        ('{"format": "ft-harness-shards", "version": 1, "shards": [{}]}', "is malformed"),
    ],
)
def test_bad_manifest_is_named(tmp_path: Path, text: str, message: str) -> None:
    root = make(tmp_path / "set")
    (root / MANIFEST).write_text(text)
    with pytest.raises(HarnessError, match=message) as info:
        open_shards(root)
    assert MANIFEST in str(info.value)


def test_missing_and_truncated_shards_fail_when_opened(tmp_path: Path) -> None:
    root = make(tmp_path / "set")
    (root / "shard-00002.labels.u8").unlink()
    with pytest.raises(HarnessError, match=r"shard .*shard-00002.labels.u8 is missing"):
        open_shards(root)
    root = make(tmp_path / "other")
    with (root / "shard-00001.images.u8").open("r+b") as f:
        f.truncate(100)
    with pytest.raises(
        HarnessError, match=r"shard-00001.images.u8 is truncated: 100 bytes, the manifest says 320"
    ):
        open_shards(root)


def test_corrupted_shard_fails_on_first_read_of_it(tmp_path: Path) -> None:
    root = make(tmp_path / "set")
    path = root / "shard-00004.images.u8"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    found = open_shards(root)  # sizes are right: only the checksum can tell
    found.read(np.arange(0, 20))  # shards 0-3 are fine
    with pytest.raises(HarnessError, match=r"shard .*shard-00004.images.u8 is corrupted: sha256"):
        found.read(np.array([21]))
    with pytest.raises(HarnessError, match="shard-00004.images.u8 is corrupted"):
        check_all(root)


def test_make_refuses_a_folder_with_files_and_fills_an_empty_one(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    make(tmp_path / "empty")
    with pytest.raises(HarnessError, match="already exists and is not an empty folder"):
        make(tmp_path / "empty")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples": 0}, "samples=0 must be >= 1"),
        ({"shard_size": 0}, "shard_size=0 must be >= 1"),
        ({"seed": -1}, "seed=-1 must be >= 0"),
        ({"classes": 300}, r"classes=300 must be in \[2, 256\]"),
    ],
)
def test_make_validates_its_options(tmp_path: Path, kwargs: dict, message: str) -> None:
    options = {"samples": 10, "shape": (8, 8), "classes": 4, "seed": 0, "shard_size": 4, **kwargs}
    with pytest.raises(HarnessError, match=message):
        make_shards(tmp_path / "set", **options)


def test_parse_shape() -> None:
    assert parse_shape("28x28") == (28, 28) and parse_shape("16X12") == (16, 12)
    for bad in ("28", "3x3", "axb", "2x2x2"):
        with pytest.raises(HarnessError, match="must look like 28x28"):
            parse_shape(bad)


def test_cli_data_make_and_check(tmp_path: Path) -> None:
    def harness(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "harness", "data", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    made = harness(
        "make",
        "--dir",
        str(tmp_path / "set"),
        "--samples",
        "30",
        "--shape",
        "8x8",
        "--seed",
        "1",
        "--shard-size",
        "8",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["shards"] == 4
    checked = harness("check", "--dir", str(tmp_path / "set"))
    assert checked.returncode == 0 and "30 samples in 4 shards" in checked.stdout
    (tmp_path / "set" / "shard-00003.labels.u8").write_bytes(b"\0" * 6)  # same size, other bytes
    failed = harness("check", "--dir", str(tmp_path / "set"))
    assert failed.returncode == 2 and failed.stdout == ""
    assert (
        failed.stderr.startswith("error: shard ")
        and "shard-00003.labels.u8 is corrupted" in failed.stderr
    )
    assert failed.stderr.count("\n") == 1


# ---- damaged manifests (issue 12, item 6): every field checked, one line naming file, field ---

DELETE = object()


def damaged(root: Path, field: str, value: object) -> None:
    """Set the manifest's `field` (dotted: `shards.1.images.name`) to `value`, or delete it."""
    manifest = json.loads((root / MANIFEST).read_text())
    *path, last = field.split(".")
    parent = manifest
    for key in path:
        parent = parent[int(key)] if isinstance(parent, list) else parent[key]
    key = int(last) if isinstance(parent, list) else last
    if value is DELETE:
        del parent[key]
    else:
        parent[key] = value
    (root / MANIFEST).write_text(json.dumps(manifest))  # NaN is written as NaN, as json allows


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("shape", [-8, 8], "shape.0 = -8 must be an integer >= 1"),
        ("shape", [64], "shape = [64] must be [height, width]"),
        ("shape", [2**40, 2**40], "does not match shard_size=5 and shape"),
        ("samples", float("nan"), "samples = nan must be an integer >= 1"),
        ("samples", 37.9, "samples = 37.9 must be an integer >= 1"),
        ("samples", True, "samples = True must be an integer >= 1"),
        ("classes", 1000, "classes = 1000 must be an integer in [2, 256]"),
        ("shard_size", "5", "shard_size = '5' must be an integer >= 1"),
        ("shards", [], "shards = [] must be a non-empty list"),
        ("shards.0.labels", DELETE, "shards.0.labels.name is missing"),
        ("shards.1.images.name", "../x", "shards.1.images.name = '../x' must be a file name"),
        ("shards.1.images.name", "/etc/x", "shards.1.images.name = '/etc/x' must"),
        ("shards.2.labels.size", -1, "shards.2.labels.size = -1 must be an integer >= 0"),
        ("shards.0.images.sha256", "x" * 64, "shards.0.images.sha256 = 'xxxxx"),
    ],
)
def test_every_manifest_field_is_checked(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    root = make(tmp_path / "set")
    damaged(root, field, value)
    with pytest.raises(HarnessError) as info:
        open_shards(root)
    text = str(info.value)
    assert f"{root / MANIFEST} is malformed" in text or f"{root / MANIFEST}:" in text
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_shard_that_is_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    """A plain name can still lead elsewhere through a symlink: the set's files stay its own."""
    root = make(tmp_path / "set")
    outside = tmp_path / "elsewhere.u8"
    (root / "shard-00000.labels.u8").rename(outside)
    (root / "shard-00000.labels.u8").symlink_to(outside)
    with pytest.raises(
        HarnessError, match=r"shard-00000.labels.u8 leads to .*elsewhere.u8, outside"
    ):
        open_shards(root)


def test_a_lying_classes_is_caught_by_check_and_by_the_reader(tmp_path: Path) -> None:
    """Labels 0-3 with `classes: 2` passed `data check` and the loader, then failed in training
    with an IndexError; now the first read of a shard compares its labels with `classes`."""
    root = make(tmp_path / "set")
    damaged(root, "classes", 2)
    found = open_shards(root)
    with pytest.raises(HarnessError, match=r"holds label [23], but .*manifest.json says classes=2"):
        found.read(np.arange(37))
    with pytest.raises(HarnessError, match="says classes=2"):
        check_all(root)


def test_training_on_a_lying_set_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.__main__ import main

    root = make(tmp_path / "set", samples=200)
    damaged(root, "classes", 2)
    status = main(
        [
            "run",
            "--data",
            str(root),
            "--model",
            "64-8-2",
            "--batch",
            "32",
            "--steps",
            "2",
            "--microbatches",
            "4",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "says classes=2" in err
