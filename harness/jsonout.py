"""JSON that every parser accepts: NaN and ±Infinity (which `json.dumps` writes by default, and
which are not JSON) become null, and a `non_finite` entry says which fields they were and why."""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(obj: Any, **options: Any) -> str:
    """json.dumps of `obj` with every non-finite float replaced by null (allow_nan=False makes any
    miss an error here rather than a file another program cannot read)."""
    reasons: dict[str, str] = {}
    clean = _finite(obj, "", reasons)
    if reasons and isinstance(clean, dict):
        clean["non_finite"] = reasons
    return json.dumps(clean, allow_nan=False, **options)


def _finite(obj: Any, where: str, reasons: dict[str, str]) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        reasons[where or "value"] = f"{obj} (not a JSON number; the training may have diverged)"
        return None
    if isinstance(obj, dict):
        return {k: _finite(v, f"{where}.{k}" if where else str(k), reasons) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, f"{where}[{i}]", reasons) for i, v in enumerate(obj)]
    return obj
