"""Unit spellings: EHRs send the same unit many ways (µg/L, ug/L, mcg/L; mL/min/{1.73_m2}, mL/min/1.73 m²)."""

from __future__ import annotations

import re

_DROP = re.compile(r"[\s{}\[\]_]")


def normalize_unit(unit: str | None) -> str:
    """Comparison key for a unit spelling: micro signs to 'u', 'mcg' to 'ug', superscripts and '^' folded,
    braces/brackets/underscores/spaces dropped, lower case.
    Spellings that normalise alike must mean the same unit."""
    if not unit:
        return ""
    u = unit.strip().replace("µ", "u").replace("μ", "u").replace("²", "2").replace("^2", "2")
    u = _DROP.sub("", u).lower()
    return u.replace("mcg", "ug")
