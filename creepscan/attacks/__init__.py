"""The adaptation attacks: arrays in, metrics out (no I/O).

``evaluate`` runs the attacks a probe asks for on one encoder's features and returns ``Metrics``;
``Metrics.to_json()`` is the report's ``metrics`` block and the object keeps the arrays that paired
tests need (``linear_probe.test_correct``, ``zero_shot.test_correct``,
``few_shot[k].episode_accuracy``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .few_shot import FewShotResult, few_shot_curve, paired_few_shot, samples_to_threshold
from .linear_probe import LinearProbeResult, check_inputs, linear_probe
from .splits import Split, stratified_split
from .verification import VerificationResult, verification
from .zero_shot import ZeroShotResult, class_text_embeddings, zero_shot

__all__ = [
    "ATTACKS", "Metrics", "evaluate", "Split", "stratified_split", "linear_probe", "few_shot_curve",
    "verification", "zero_shot", "class_text_embeddings", "samples_to_threshold", "paired_few_shot",
    "LinearProbeResult", "FewShotResult", "VerificationResult", "ZeroShotResult",
]

ATTACKS = ("linear_probe", "few_shot", "verification", "zero_shot")


@dataclass
class Metrics:
    """All attack results for one encoder on one probe.

    ``chance`` is 1 / the number of kept classes (classes with enough images to be split)."""

    linear_probe: LinearProbeResult
    few_shot: FewShotResult | None
    verification: VerificationResult | None
    zero_shot: ZeroShotResult | None
    samples_to_threshold: int | None
    skill_threshold: float
    chance: float
    n_classes_kept: int

    def to_json(self) -> dict:
        return {
            "zero_shot": self.zero_shot.to_json() if self.zero_shot is not None else None,
            "linear_probe": self.linear_probe.to_json(),
            "few_shot": self.few_shot.to_json() if self.few_shot is not None else [],
            "few_shot_unavailable": self.few_shot.unavailable_json() if self.few_shot is not None else [],
            "verification": self.verification.to_json() if self.verification is not None else None,
            "samples_to_threshold": self.samples_to_threshold,
        }


def evaluate(X, y, n_classes: int, split: Split, *, seed: int, attacks: Sequence[str] = ATTACKS,
             skill_threshold: float = 0.5, text_embeddings=None, device="cpu") -> Metrics:
    """Run the attacks on one encoder's features.

    X : float [n, d] features of every image, y : int [n] labels in 0..n_classes-1, split : from
    ``stratified_split(y, seed)``. The linear probe always runs (first: its chosen C is reused by
    the few-shot logistic heads). Verification scores all images of the kept classes (nothing is
    fitted); zero-shot runs when asked for and ``text_embeddings`` [n_classes, d] is given, and is
    scored on ``split.test``. ``samples_to_threshold`` is the smallest few-shot k whose skill
    reaches ``skill_threshold``.
    """
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; choose from {list(ATTACKS)}")
    X, y = check_inputs(X, y, n_classes, split)
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} feature rows contain NaN or inf (e.g. row {int(np.flatnonzero(bad)[0])}); "
                         "drop those images or fix the encoder")
    if not 0.0 < float(skill_threshold) <= 1.0:
        raise ValueError(f"skill_threshold must be in (0, 1], got {skill_threshold}")
    kept = np.unique(y[split.train])
    chance = 1.0 / kept.size

    lp = linear_probe(X, y, n_classes, split, seed=seed, device=device)
    fs = None
    if "few_shot" in attacks:
        fs = few_shot_curve(X, y, n_classes, split, seed=seed, C=lp.C, device=device)
    ver = None
    if "verification" in attacks:
        rows = np.flatnonzero(np.isin(y, kept))
        ver = verification(X[rows], y[rows], seed=seed, device=device)
    zs = None
    if "zero_shot" in attacks and text_embeddings is not None:
        zs = zero_shot(X[split.test], y[split.test], text_embeddings, n_classes, seed=seed, candidates=kept)
    stt = samples_to_threshold(fs.entries, chance, skill_threshold) if fs is not None else None
    return Metrics(linear_probe=lp, few_shot=fs, verification=ver, zero_shot=zs,
                   samples_to_threshold=stt, skill_threshold=float(skill_threshold), chance=chance,
                   n_classes_kept=int(kept.size))
