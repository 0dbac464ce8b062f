"""Configuration names made from a CPython version (standard library only).

A version `3.N` gives three configurations: `cp3N` (default build), `cp3Nt` (free-threaded
build, PYTHON_GIL=0) and `cp3Nt-gil` (the same free-threaded binary, PYTHON_GIL=1). The toolchain
makes them, nox names its sessions after them, and the report orders and colours by them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

ENV_PYTHON = "FT_HARNESS_PYTHON"  # the versions to use, e.g. "3.14" or "3.13,3.14"
DEFAULT_VERSIONS = "3.13"  # the one series this project's machines can build (INTERPRETERS.md)
FIRST_FREE_THREADED = (3, 13)  # no free-threaded build exists before 3.13
KINDS = ("default", "free-threaded", "free-threaded-gil")  # report order within one version
NAME = re.compile(r"cp(?P<major>3)(?P<minor>\d+)(?P<t>t)?(?P<gil>-gil)?")


@dataclass(frozen=True, order=True)
class Series:
    """One CPython minor version, such as 3.14."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def tag(self) -> str:
        return f"cp{self.major}{self.minor}"

    @property
    def names(self) -> tuple[str, str, str]:
        """The default, free-threaded and free-threaded-with-GIL configuration names."""
        return (self.tag, f"{self.tag}t", f"{self.tag}t-gil")

    @property
    def executables(self) -> tuple[str, str]:
        """What the pair's executables are called once installed (`make install`, uv, PATH)."""
        return (f"python{self}", f"python{self}t")

    def owns(self, version: str) -> bool:
        """Whether a full version string such as '3.14.2' belongs to this series."""
        return version.split(".")[:2] == [str(self.major), str(self.minor)]


def parse_versions(text: str) -> list[Series]:
    """'3.13,3.14' -> [Series(3, 13), Series(3, 14)], each once, in the order given."""
    found: list[Series] = []
    for item in (part.strip() for part in text.split(",")):
        match = re.fullmatch(r"3\.(\d{1,2})", item)
        if not match or (3, int(match[1])) < FIRST_FREE_THREADED:
            raise ValueError(
                f"python version {item!r} not accepted: give MAJOR.MINOR of a CPython "
                "with a free-threaded build (3.13 or later), comma-separated, "
                "e.g. 3.13,3.14"
            )
        series = Series(3, int(match[1]))
        if series not in found:
            found.append(series)
    return found


def versions_from_env() -> list[Series]:
    """The versions FT_HARNESS_PYTHON asks for, else the default (3.13)."""
    return parse_versions(os.environ.get(ENV_PYTHON, "").strip() or DEFAULT_VERSIONS)


def parse_name(name: str) -> tuple[Series, str] | None:
    """'cp314t-gil' -> (Series(3, 14), 'free-threaded-gil'); None for any other name."""
    match = NAME.fullmatch(name)
    if not match or (match["gil"] and not match["t"]):
        return None
    kind = KINDS[2] if match["gil"] else KINDS[1] if match["t"] else KINDS[0]
    return Series(3, int(match["minor"])), kind


def rank(name: str) -> tuple[int, int, int, int, str]:
    """Report order: by version, then default / free-threaded / free-threaded with the GIL;
    names that are no toolchain configuration after those, by name."""
    parsed = parse_name(name)
    if parsed is None:
        return (1, 0, 0, 0, name)
    series, kind = parsed
    return (0, series.major, series.minor, KINDS.index(kind), name)


def baseline(names: list[str]) -> str:
    """The configuration others are compared with: the oldest default build, else the first."""
    defaults = [n for n in names if (p := parse_name(n)) and p[1] == KINDS[0]]
    return min(defaults, key=rank) if defaults else names[0]
