"""Paired differences between two models scored on the same probe (same images, splits and episodes):
B minus A per metric with its paired test, and the headline test. ``compare``, ``sweep`` and an adapted
model's ``adaptation`` block all compute them here (this module does not import the pipeline)."""
from __future__ import annotations

from .attacks.few_shot import paired_few_shot
from .attacks.stats import holm, paired_bootstrap
from .levels import level_rose
from .result import CompareProbe, Headline, MetricDelta, MetricTests, PairedTest

__all__ = ["compare_row", "headline", "paired_differences"]


def compare_row(pr, i: int, j: int, seed: int) -> CompareProbe:
    """Model j against model i on one probe: both blocks, B minus A per metric with its paired test,
    the headline test, and whether the level rose (a move to inconclusive counts). ``p_adjusted`` and
    what follows from it are left to the caller (Holm across probes, or across a sweep's steps)."""
    a, b = pr.models[i], pr.models[j]
    delta, tests = paired_differences(a.metrics, b.metrics, len(pr.labelled.classes), seed)
    p = pr.probe
    p_value, head = headline(delta, tests)
    return CompareProbe(
        id=p.id, title=p.title, capability=p.capability, policy=p.policy, reference=p.reference,
        level_a=a.block.risk_level, level_b=b.block.risk_level,
        risk_rose=level_rose(a.block.risk_level, b.block.risk_level),
        delta=delta, tests=tests, p_value=p_value, headline=head,
        a=a.block, b=b.block,
    )


def headline(delta: MetricDelta, tests: MetricTests) -> tuple[float, Headline]:
    """The probe's headline test: its metric tests (linear probe, zero-shot, each few-shot k)
    Holm-adjusted within the probe, the smallest adjusted p taken (returned with the ``Headline``). A
    saturated linear probe (both models at 100%) can hide a large change in how few images suffice;
    this catches it."""
    named = [("linear_probe", delta.linear_probe, tests.linear_probe.p_value)]
    if tests.zero_shot is not None:
        named.append(("zero_shot", delta.zero_shot, tests.zero_shot.p_value))
    named += [(f"few_shot k={k}", delta.few_shot[k], t.p_value) for k, t in tests.few_shot.items()]
    adjusted = holm([p for _, _, p in named])
    best = min(range(len(named)), key=lambda i: (adjusted[i], -abs(named[i][1]), i))
    return adjusted[best], Headline(metric=named[best][0], change=named[best][1], p_within_probe=adjusted[best])


def _method(result: dict, what: str = "") -> str:
    """How a paired result was computed, as the statistics say it (exact or Monte Carlo sign-flip,
    and the interval's method)."""
    test = result.get("method", "paired sign-flip test")
    ci = result.get("ci_method")
    return f"{test} over test images{' ' + what if what else ''}" + (f" (CI: {ci})" if ci else "")


def _paired_test(result: dict, what: str = "") -> PairedTest:
    return PairedTest(ci95=result["ci95"], p_value=result["p_value"], method=_method(result, what))


def paired_differences(ma, mb, n_classes, seed) -> tuple[MetricDelta, MetricTests]:
    """B minus A for each metric both models have, with its paired test (over the images both were
    scored on: the union of the test folds; with groups, whole groups are the units)."""
    y_test = ma.linear_probe.test_labels
    cl = getattr(ma, "test_clusters", None)
    lp = paired_bootstrap(y_test, ma.linear_probe.test_correct, mb.linear_probe.test_correct, n_classes, seed,
                          clusters=cl)
    delta = MetricDelta(linear_probe=lp["delta"])
    tests = MetricTests(linear_probe=_paired_test(lp))
    if ma.zero_shot is not None and mb.zero_shot is not None:
        zs = paired_bootstrap(y_test, ma.zero_shot.test_correct, mb.zero_shot.test_correct, n_classes, seed,
                              clusters=cl)
        delta.zero_shot = zs["delta"]
        tests.zero_shot = _paired_test(zs)
    ks_a = set(ma.few_shot.ks) if ma.few_shot is not None else set()
    ks_b = set(mb.few_shot.ks) if mb.few_shot is not None else set()
    for k in sorted(ks_a & ks_b):
        # Episodes are drawn from the labels and seed alone, so episode i is the same for A and B.
        t = paired_few_shot(ma.few_shot[k], mb.few_shot[k], n_classes, seed, clusters=cl)
        delta.few_shot[str(k)] = t["delta"]
        tests.few_shot[str(k)] = _paired_test(t, "of episode-averaged correctness")
    if ma.verification is not None and mb.verification is not None:
        va, vb = ma.verification.to_result(), mb.verification.to_result()
        ta, tb = va.tar_at_far.get("1e-3"), vb.tar_at_far.get("1e-3")
        if ta is not None and tb is not None:
            delta.verification_tar_1e_3 = round(tb - ta, 6)
        delta.verification_auc = round(vb.auc - va.auc, 6)
    return delta, tests
