"""The risk levels, defined once (and importable without torch: the CLI and the report use them).

LEVELS are ordered claims about a capability; INCONCLUSIVE is not a point on that scale: it says
the evidence cannot place the probe (saturated or underpowered). ``creepscan.risk`` decides them.
"""
from __future__ import annotations

from .constants import FAR_LEVELS

__all__ = ["LEVELS", "INCONCLUSIVE", "ALL_LEVELS", "FAR_LEVELS", "level_index", "at_or_above", "level_rose"]

LEVELS = ("none", "low", "medium", "high", "critical")
INCONCLUSIVE = "inconclusive"
ALL_LEVELS = LEVELS + (INCONCLUSIVE,)


def level_index(name: str) -> int:
    """Position of a level in LEVELS (0 = none ... 4 = critical)."""
    try:
        return LEVELS.index(str(name).lower())
    except ValueError:
        raise ValueError(f"unknown risk level {name!r}; choose one of {', '.join(LEVELS)}") from None


def at_or_above(level: str, gate: str, allow_inconclusive: bool = False) -> bool:
    """Whether a probe at ``level`` fails a gate set at ``gate`` (one of LEVELS). An inconclusive
    probe fails every gate unless ``allow_inconclusive``: a gate must not pass on missing evidence."""
    if level == INCONCLUSIVE:
        return not allow_inconclusive
    return level_index(level) >= level_index(gate)


def level_rose(before: str, after: str) -> bool:
    """Whether a change of level from ``before`` to ``after`` is a rise: up the scale, a move to
    inconclusive (the evidence for the lower level is gone), or from inconclusive to anything above
    none (nothing established the earlier level)."""
    if after == INCONCLUSIVE:
        return before != INCONCLUSIVE
    if before == INCONCLUSIVE:
        return after != "none"
    return level_index(after) > level_index(before)
