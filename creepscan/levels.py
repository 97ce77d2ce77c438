"""The risk levels, defined once (and importable without torch: the CLI and the report use them).

LEVELS are ordered claims about a capability; INCONCLUSIVE is not a point on that scale: it says
the evidence cannot place the probe (saturated or underpowered). ``creepscan.risk`` decides them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .constants import FAR_LEVELS

if TYPE_CHECKING:  # the typed report's blocks; result.py imports nothing heavy, but levels needs none at run time
    from .result import Uplift

__all__ = ["LEVELS", "INCONCLUSIVE", "ALL_LEVELS", "FAR_LEVELS", "level_index", "at_or_above", "level_rose",
           "CitedGain", "cited_gain"]

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


@dataclass(frozen=True)
class CitedGain:
    """The skill gain a level's reason cites, its 95% CI ([lower, upper], skill units) and the attack it
    comes from (None: no gain was measured)."""

    attack: Optional[str]
    skill_gain: Any
    ci95: Any


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def cited_gain(uplift: "Optional[Uplift]") -> CitedGain:
    """The uplift test a level's reason cites, from the typed ``result.Uplift`` (one place: the report, the
    model card and the use spec's evidence show this gain beside a level, so the figure and the reason agree).

    Among the tests with a finite gain: with a significant uplift, the strongest test (``uplift.strongest``;
    failing that, as ``risk.assess`` chooses it: the smallest adjusted p, then the largest gain); else the one
    with the largest upper 95% bound (the one that decides equivalence or its absence). When no test decides,
    the uplift block's own gain (the linear probe's summary); all None without an uplift block."""
    if uplift is None:
        return CitedGain(None, None, None)
    tests = [t for t in uplift.tests or [] if _finite(t.skill_gain)]
    chosen = None
    if uplift.significant:
        lead = [t for t in tests if t.attack == uplift.strongest]
        ranked = [t for t in tests if _finite(t.p_adjusted)]
        if lead or ranked:
            chosen = lead[0] if lead else min(ranked, key=lambda t: (t.p_adjusted, -t.skill_gain))
    elif tests and all(_finite(t.upper95) for t in tests):
        chosen = max(tests, key=lambda t: t.upper95)
    if chosen is not None:
        return CitedGain(chosen.attack, chosen.skill_gain, chosen.ci95)
    return CitedGain("linear_probe" if _finite(uplift.skill_gain) else None, uplift.skill_gain, uplift.ci95)
