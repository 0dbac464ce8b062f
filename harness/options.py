"""An option of a plug-in (workload, strategy or model), declared once, where the plug-in is.

The command line (`run --NAME`), the configuration's validation, `list --json` and the bench's
command lines are all built from these declarations: an option is never restated by hand.
Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import HarnessError


@dataclass(frozen=True, kw_only=True)
class Option:
    """One setting. `kind` is bool, int, float or str; a None default means "not given".

    Validation is declarative where it can be (choices, minimum), so that every error says which
    value is wrong and what would be accepted; `check` adds a rule of the plug-in's own that
    returns an error message, or "" when the value is fine.
    """

    name: str  # the RunConfig field, e.g. "threads_per_rank" (CLI: --threads-per-rank)
    kind: type = str
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    check: Callable[[Any], str] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def validate(self, value: Any) -> None:
        """HarnessError naming the value and what is accepted, if it is not acceptable."""
        if value is None and self.default is None:
            return
        if not _is_kind(value, self.kind):
            raise HarnessError(f"{self.name}={value!r} must be {_kind_words(self.kind)}")
        if self.kind is float and not math.isfinite(value):
            raise HarnessError(f"{self.name}={value!r} must be a finite number")
        if self.choices and value not in self.choices:
            raise HarnessError(
                f"{self.name}={value!r} is not one of: {', '.join(map(str, self.choices))}"
            )
        if self.minimum is not None and value < self.minimum:
            raise HarnessError(
                f"{self.name}={value!r} must be {_kind_words(self.kind)} >= {self.minimum:g}"
            )
        problem = self.check(value) if self.check else ""
        if problem:
            raise HarnessError(f"{self.name}={value!r} {problem}")

    def describe(self) -> dict[str, Any]:
        """The option as `list --json` shows it."""
        return {
            "name": self.name,
            "flag": self.flag,
            "type": self.kind.__name__,
            "default": self.default,
            "help": self.help,
            "choices": list(self.choices),
            "minimum": self.minimum,
        }


def _is_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _kind_words(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        kind, kind.__name__
    )
