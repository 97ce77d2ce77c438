"""What an adaptation changed: an adapted model (a PEFT adapter, or a fine-tune audited with
``--base``) against its base, on the same images, splits and few-shot episodes.

The base runs in the same pipeline pass as the adapted model (``pipeline.run_probe`` adds it and its
floor), so each probe's ``adaptation`` block is ``compare``'s row for (base, adapted): adapted minus
base per attack with the paired test, Holm within the probe over its metrics, then (here, after all
probes) Holm across the probes; beside it the level the base gets against its own floor, and whether
the adaptation raised, kept or lowered the level.
"""
from __future__ import annotations

from types import SimpleNamespace

from .attacks.stats import holm
from .constants import DEFAULT_RULES
from .evaluation import ModelResult, ProbeResult, risk_block
from .levels import level_rose
from .paired import compare_row
from .result import Adaptation, AdaptationBase

__all__ = ["change_word", "adaptation_block", "adjust_across_probes"]

METHOD = ("adapted minus base on the same test images, splits and few-shot episodes; the paired tests of "
          "compare; Holm within the probe over its metrics, then across probes")


def change_word(level_base: str, level_adapted: str) -> str:
    """``raised``, ``kept`` or ``lowered``: how the adaptation moved the level (a move to
    inconclusive is a rise, as in compare)."""
    if level_rose(level_base, level_adapted):
        return "raised"
    if level_rose(level_adapted, level_base):
        return "lowered"
    return "kept"


def adaptation_block(pr: ProbeResult, base, m_base, f_base, seed: int, n_test_per_class: float) -> Adaptation:
    """One probe's ``adaptation`` block. ``pr`` holds the adapted model's result alone (its
    ``models[0]``); ``m_base``/``f_base``: the base's and its floor's metrics on the same splits."""
    probe, header = pr.probe, pr.header
    base_risk = risk_block(probe, m_base, f_base, header["chance"], seed, n_test_per_class)
    # the base's own level against its floor; compare_row reads only its level
    base_block = SimpleNamespace(risk_level=base_risk["risk_level"])
    pair = ProbeResult(probe, header, pr.labelled, pr.splits,
                       [ModelResult(base, m_base, f_base, base_block), pr.models[0]])
    row = compare_row(pair, 0, 1, seed)
    return Adaptation(
        base=AdaptationBase(spec=base.spec, name=base.name, fingerprint=base.fingerprint,
                            library=getattr(base, "library", "plugin")),
        base_level=row.level_a, base_risk_reason=base_risk["risk_reason"],
        level=row.level_b, change=change_word(row.level_a, row.level_b),
        delta=row.delta, tests=row.tests, headline=row.headline,
        p_value=row.p_value, p_adjusted=None, significant=None,
        method=METHOD,
    )


def adjust_across_probes(results: list, alpha: float = DEFAULT_RULES["alpha"]) -> None:
    """Holm across the probes of each adapted model (in place): ``p_adjusted``, ``significant`` and
    ``significant_change`` (``rose``, ``fell`` or None) of every ``adaptation`` block."""
    n_models = max((len(pr.models) for pr in results), default=0)
    for i in range(n_models):
        blocks = [pr.models[i].block.adaptation for pr in results
                  if i < len(pr.models) and pr.models[i].block.adaptation is not None]
        if not blocks:
            continue
        for block, p in zip(blocks, holm([b.p_value for b in blocks])):
            block.p_adjusted = p
            block.significant = bool(p < alpha)
            change = block.headline.change
            block.significant_change = ("rose" if change > 0 else "fell") if p < alpha and change else None
