"""One encoder's attacks on one probe: the step that the pipeline hands to an engine, and that every
engine runs (in process or in a Ray task). It lives apart from ``pipeline`` so that the engines need
not import the pipeline that drives them."""
from __future__ import annotations

from dataclasses import dataclass

from .attacks import evaluate
from .attacks.zero_shot import class_text_embeddings
from .constants import ATTACKS, DEFAULT_RULES
from .encoders import has_text
from .risk import assess

__all__ = ["rules_for", "zero_shot_names", "evaluate_encoder", "risk_block", "ModelResult", "ProbeResult"]


def rules_for(probe) -> dict:
    """The risk rule settings for ``probe``: the defaults, overridden by the probe file's ``[risk]``."""
    return {**DEFAULT_RULES, **probe.risk}


def zero_shot_names(probe, encoder, classes) -> list[str] | None:
    """The class names the zero-shot attack prompts ``encoder``'s text tower with (one per entry of
    ``classes``), or None when zero-shot does not run: the probe does not ask for it, has no prompt
    templates, or the encoder has no text tower."""
    if "zero_shot" in probe.attacks and has_text(encoder) and probe.templates:
        return [probe.display_name(c) for c in classes]
    return None


def evaluate_encoder(encoder, X, ls, splits, probe, options, groups=None):
    """All the probe's attacks on one encoder's features ``X`` (float [n, d], rows of ``ls``, a
    ``pipeline.LabelledSet``), over ``splits``; returns ``attacks.Metrics``."""
    names = zero_shot_names(probe, encoder, ls.classes)
    text = class_text_embeddings(encoder.encode_text, names, probe.templates) if names is not None else None
    attacks = [a for a in probe.attacks if a in ATTACKS]  # "finetune" adapts the tower: run_finetune
    split = splits if len(splits) > 1 else splits[0]
    return evaluate(X, ls.y, len(ls.classes), split, seed=options.seed, attacks=attacks,
                    skill_threshold=rules_for(probe)["skill_threshold"], text_embeddings=text,
                    device=options.device, groups=groups)


def risk_block(probe, m_model, m_floor, chance: float, seed: int, n_test_per_class: float,
               floor_description: str | None = None) -> dict:
    """The level, its reason and both axes, for one model against its floor (``floor_description``:
    what the floor is, its encoder's spec): the ``result.Probe`` fields ``risk_level`` ... ``power``, by
    name (the blocks as ``result`` dataclasses)."""
    a = assess(m_model, m_floor, chance, rules_for(probe), seed=seed, n_test_per_class=n_test_per_class,
               prohibited=probe.use_prohibited, floor_description=floor_description)
    level, reason, rule = a.level, a.reason, a.rule
    if probe.reference:
        reason = f"reference task, not a prohibited capability (would otherwise rate {reason})"
        level, rule = "none", "reference probe"
    return {"risk_level": level, "risk_reason": reason, "risk_rule": rule, "risk_axis": a.axis,
            "level_range": list(a.level_range), "inconclusive": None if probe.reference else a.inconclusive,
            "capability_axis": a.capability, "uplift": a.uplift, "power": a.power}


@dataclass
class ModelResult:
    """One model on one probe: its metrics and its floor's (arrays kept for paired tests), and the
    probe's report block for this model (``result.Probe``: header + risk + metrics + control)."""

    encoder: object
    metrics: object
    floor_metrics: object
    block: object  # result.Probe


@dataclass
class ProbeResult:
    probe: object  # probes.Probe
    header: dict  # the result.Probe fields every model's block shares (pipeline.probe_header)
    labelled: object  # pipeline.LabelledSet
    splits: list
    models: list[ModelResult]
