"""Strict JSON: what swinface writes parses with any JSON parser.

Python's `json` writes `NaN` and `Infinity` by default, which JavaScript's
`JSON.parse` and strict parsers reject. Missing or non-finite numbers become
`null` here, and `allow_nan=False` guards the rest.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["SCHEMA_VERSION", "dumps", "finite"]

SCHEMA_VERSION = 1
"""Version of the analysis record (`docs/analysis-record.schema.json`); bumped on any change."""


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float (also inside lists and dicts) made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` that writes `null` for non-finite numbers and never writes NaN."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
