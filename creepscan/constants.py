"""Names and defaults that several modules share, each defined once here, importable without torch
(``probes.py`` validates probe files with them; the attacks, the risk rules and the CLI use them).
"""
from __future__ import annotations

__all__ = ["HEADS", "DEFAULT_ATTACKS", "ATTACKS", "FINETUNE", "PROBE_ATTACKS", "FAR_LEVELS", "DEFAULT_RULES", "round6"]

# Heads beyond linear that a probe file may list (``attacks.heads``).
HEADS = ("knn", "prototype_cl2n", "mlp", "gd_budget")
# The attacks ``attacks.evaluate`` runs on frozen embeddings, by default and in all.
DEFAULT_ATTACKS = ("linear_probe", "few_shot", "verification", "zero_shot")
ATTACKS = DEFAULT_ATTACKS + HEADS
# Fine-tuning adapts the tower, so the pipeline runs it (``attacks.finetune``), not ``evaluate``.
FINETUNE = "finetune"
# What a probe file's ``attacks`` may list.
PROBE_ATTACKS = ATTACKS + (FINETUNE,)

# False-accept rates at which verification reports TAR: report key -> rate.
FAR_LEVELS = {"1e-2": 1e-2, "1e-3": 1e-3}

# The risk rules' settings (a probe file's ``[risk]`` table overrides them; ``risk.check_rules`` checks them).
DEFAULT_RULES = {
    "skill_threshold": 0.5,
    "high_max_k": 8,
    "zero_shot_skill_critical": 0.5,
    "verification_tar_critical": 0.5,
    "verification_far": "1e-3",
    "alpha": 0.05,
    "equivalence_margin": 0.1,
}


def round6(x, nd: int = 6) -> float | None:
    """``x`` as a float rounded to ``nd`` decimals (6: every figure in the report), None kept as None."""
    return None if x is None else float(round(float(x), nd))
