"""Paired differences between two models scored on the same probe (same images, splits and episodes):
B minus A per metric with its paired test, and the headline test. ``compare``, ``sweep`` and an adapted
model's ``adaptation`` block all compute them here (this module does not import the pipeline)."""
from __future__ import annotations

from .attacks.few_shot import paired_few_shot
from .attacks.stats import holm, paired_bootstrap
from .levels import level_rose

__all__ = ["compare_row", "headline", "paired_differences"]


def compare_row(pr, i: int, j: int, seed: int) -> dict:
    """Model j against model i on one probe: both blocks, B minus A per metric with its paired test,
    the headline test, and whether the level rose (a move to inconclusive counts)."""
    a, b = pr.models[i], pr.models[j]
    delta, tests = paired_differences(a.metrics, b.metrics, len(pr.labelled.classes), seed)
    p = pr.probe
    return {
        "id": p.id, "title": p.title, "capability": p.capability, "policy": p.policy, "reference": p.reference,
        "level_a": a.block["risk_level"], "level_b": b.block["risk_level"],
        "risk_rose": level_rose(a.block["risk_level"], b.block["risk_level"]),
        "delta": delta, "tests": tests, **headline(delta, tests),
        "a": a.block, "b": b.block,
    }


def headline(delta: dict, tests: dict) -> dict:
    """The probe's headline test: its metric tests (linear probe, zero-shot, each few-shot k)
    Holm-adjusted within the probe, the smallest adjusted p taken. A saturated linear probe (both
    models at 100%) can hide a large change in how few images suffice; this catches it."""
    named = [("linear_probe", delta["linear_probe"], tests["linear_probe"]["p_value"])]
    if "zero_shot" in tests:
        named.append(("zero_shot", delta["zero_shot"], tests["zero_shot"]["p_value"]))
    named += [(f"few_shot k={k}", delta["few_shot"][k], t["p_value"]) for k, t in tests["few_shot"].items()]
    adjusted = holm([p for _, _, p in named])
    best = min(range(len(named)), key=lambda i: (adjusted[i], -abs(named[i][1]), i))
    return {"p_value": adjusted[best],
            "headline": {"metric": named[best][0], "change": named[best][1], "p_within_probe": adjusted[best]}}


def _method(result: dict, what: str = "") -> str:
    """How a paired result was computed, as the statistics say it (exact or Monte Carlo sign-flip,
    and the interval's method)."""
    test = result.get("method", "paired sign-flip test")
    ci = result.get("ci_method")
    return f"{test} over test images{' ' + what if what else ''}" + (f" (CI: {ci})" if ci else "")


def paired_differences(ma, mb, n_classes, seed):
    """B minus A for each metric both models have, with its paired test (over the images both were
    scored on: the union of the test folds; with groups, whole groups are the units)."""
    y_test = ma.linear_probe.test_labels
    cl = getattr(ma, "test_clusters", None)
    lp = paired_bootstrap(y_test, ma.linear_probe.test_correct, mb.linear_probe.test_correct, n_classes, seed,
                          clusters=cl)
    delta = {"linear_probe": lp["delta"], "zero_shot": None, "few_shot": {}, "verification_tar_1e-3": None,
             "verification_auc": None}
    tests = {"linear_probe": {"ci95": lp["ci95"], "p_value": lp["p_value"],
                              "method": _method(lp)}}
    if ma.zero_shot is not None and mb.zero_shot is not None:
        zs = paired_bootstrap(y_test, ma.zero_shot.test_correct, mb.zero_shot.test_correct, n_classes, seed,
                              clusters=cl)
        delta["zero_shot"] = zs["delta"]
        tests["zero_shot"] = {"ci95": zs["ci95"], "p_value": zs["p_value"],
                              "method": _method(zs)}
    ks_a = set(ma.few_shot.ks) if ma.few_shot is not None else set()
    ks_b = set(mb.few_shot.ks) if mb.few_shot is not None else set()
    tests["few_shot"] = {}
    for k in sorted(ks_a & ks_b):
        # Episodes are drawn from the labels and seed alone, so episode i is the same for A and B.
        t = paired_few_shot(ma.few_shot[k], mb.few_shot[k], n_classes, seed, clusters=cl)
        delta["few_shot"][str(k)] = t["delta"]
        tests["few_shot"][str(k)] = {"ci95": t["ci95"], "p_value": t["p_value"],
                                     "method": _method(t, "of episode-averaged correctness")}
    if ma.verification is not None and mb.verification is not None:
        va, vb = ma.verification.to_json(), mb.verification.to_json()
        ta, tb = va["tar_at_far"].get("1e-3"), vb["tar_at_far"].get("1e-3")
        if ta is not None and tb is not None:
            delta["verification_tar_1e-3"] = round(tb - ta, 6)
        delta["verification_auc"] = round(vb["auc"] - va["auc"], 6)
    return delta, tests
