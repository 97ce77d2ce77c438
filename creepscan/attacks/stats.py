"""Balanced accuracy, its bootstrap confidence interval, paired tests and Holm's correction.

Everything here is deterministic given ``seed`` and works on plain numpy arrays. Bootstraps are
class-stratified (each class keeps its size, as a test set built per class would): resampling the
n_c images of a class of which s_c are correct is the same as drawing Binomial(n_c, s_c / n_c), so
the bootstraps draw binomials / multinomials per class instead of index arrays.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "balanced_accuracy", "balanced_accuracy_rows", "balanced_accuracy_var", "bootstrap_ci",
    "paired_bootstrap", "paired_episodes", "holm", "skill",
]


def skill(accuracy: float, chance: float) -> float:
    """(accuracy - chance) / (1 - chance): 0 at chance, 1 when perfect, comparable across tasks."""
    if not 0.0 <= chance < 1.0:
        raise ValueError(f"chance must be in [0, 1), got {chance}")
    return float((accuracy - chance) / (1.0 - chance))


def _labels(y_true, n_classes: int) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-d, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("y_true is empty: balanced accuracy needs at least one scored image")
    y = y.astype(np.int64, copy=False)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be in 0..{n_classes - 1} (n_classes={n_classes}), "
                         f"got range {int(y.min())}..{int(y.max())}")
    return y


def _class_tallies(y_true, correct, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_c, s_c) for the classes present in y_true: images and correct predictions per class."""
    y = _labels(y_true, n_classes)
    ok = np.asarray(correct)
    if ok.shape != y.shape:
        raise ValueError(f"correct must have one entry per label: {ok.shape} vs {y.shape}")
    n = np.bincount(y, minlength=n_classes)
    s = np.bincount(y, weights=ok.astype(np.float64), minlength=n_classes)
    present = n > 0
    return n[present].astype(np.int64), s[present]


def balanced_accuracy(y_true, y_pred, n_classes: int) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    y = _labels(y_true, n_classes)
    y_pred = np.asarray(y_pred)
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred must match y_true's shape: {y_pred.shape} vs {y.shape}")
    n, s = _class_tallies(y, y_pred == y, n_classes)
    return float(np.mean(s / n))


def balanced_accuracy_rows(y_true, correct: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced accuracy of each row of ``correct`` [E, n] (bool or 0/1) against ``y_true`` [n]."""
    y = _labels(y_true, n_classes)
    ok = np.asarray(correct, dtype=np.float64)
    if ok.ndim != 2 or ok.shape[1] != y.size:
        raise ValueError(f"correct must be [E, {y.size}], got {ok.shape}")
    classes, inv, n = np.unique(y, return_inverse=True, return_counts=True)
    onehot = np.zeros((y.size, classes.size))
    onehot[np.arange(y.size), inv] = 1.0 / n[inv]
    return (ok @ onehot).mean(axis=1)


def balanced_accuracy_var(y_true, q, n_classes: int) -> float:
    """Test-set sampling variance of the balanced accuracy of per-image success rates ``q`` [n].

    ``q`` is a 0/1 correctness vector, or correctness averaged over episodes. The value is the exact
    (infinite-draw) variance of the class-stratified bootstrap: sum_c Var_c(q) / n_c / K^2, which for
    0/1 correctness is the binomial p_c (1 - p_c) / n_c per class.
    """
    y = _labels(y_true, n_classes)
    q = np.asarray(q, dtype=np.float64)
    if q.shape != y.shape:
        raise ValueError(f"q must have one entry per label: {q.shape} vs {y.shape}")
    n = np.bincount(y, minlength=n_classes)
    s1 = np.bincount(y, weights=q, minlength=n_classes)
    s2 = np.bincount(y, weights=q * q, minlength=n_classes)
    present = n > 0
    n, s1, s2 = n[present], s1[present], s2[present]
    var_c = np.maximum(s2 / n - (s1 / n) ** 2, 0.0) / n
    return float(var_c.sum() / n.size ** 2)


def bootstrap_ci(y_true, correct, n_classes: int, seed, n_boot: int = 2000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of balanced accuracy under a class-stratified bootstrap of the scored images.

    ``correct`` is a bool per image. Returns ``(lo, hi)``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n, s = _class_tallies(y_true, correct, n_classes)
    rng = np.random.default_rng(seed)
    draws = rng.binomial(n, s / n, size=(int(n_boot), n.size))
    acc = (draws / n).mean(axis=1)
    lo, hi = np.quantile(acc, [(1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0])
    return float(lo), float(hi)


def _two_sided_p(stats: np.ndarray) -> float:
    """2 * min(P(d* <= 0), P(d* >= 0)) with the +1 correction (never 0), capped at 1."""
    b = stats.size
    le = (np.count_nonzero(stats <= 0) + 1) / (b + 1)
    ge = (np.count_nonzero(stats >= 0) + 1) / (b + 1)
    return float(min(1.0, 2.0 * min(le, ge)))


def _no_difference() -> dict:
    return {"delta": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0}


def paired_bootstrap(y_true, correct_a, correct_b, n_classes: int, seed, n_boot: int = 2000) -> dict:
    """Paired, class-stratified bootstrap of the change in balanced accuracy from A to B.

    Both classifiers were scored on the same test images. Per class the images fall into four
    cells (both right, only A, only B, neither); a bootstrap resample of the class is a Multinomial
    over those cells (drawn as only-A / only-B / the rest, since both-right and neither leave the
    difference unchanged). Returns ``{"delta": acc_b - acc_a, "ci95": [lo, hi], "p_value": p}`` with a
    two-sided p; identical correctness gives exactly delta 0, CI [0, 0], p 1.
    """
    a = np.asarray(correct_a).astype(bool)
    b = np.asarray(correct_b).astype(bool)
    y = _labels(y_true, n_classes)
    if a.shape != y.shape or b.shape != y.shape:
        raise ValueError(f"correct_a {a.shape} and correct_b {b.shape} must both match y_true {y.shape}")
    if np.array_equal(a, b):
        return _no_difference()
    n, only_a = _class_tallies(y, a & ~b, n_classes)
    _, only_b = _class_tallies(y, ~a & b, n_classes)
    rest = n - only_a - only_b
    pvals = np.stack([only_a, only_b, rest], axis=1) / n[:, None]
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n, pvals, size=(int(n_boot), n.size))
    d_star = ((cells[..., 1] - cells[..., 0]) / n).mean(axis=1)
    delta = float(np.mean((only_b - only_a) / n))
    lo, hi = np.quantile(d_star, [0.025, 0.975])
    # p from an exact paired sign-flip test over the discordant images (McNemar-like, weighted as
    # balanced accuracy weighs each image): a bootstrap of a class with two or three test images has
    # almost no spread and would call noise significant.
    present = n > 0
    weights = np.zeros(n_classes)
    weights[present] = 1.0 / (present.sum() * n[present])
    contrib = (b.astype(np.float64) - a.astype(np.float64)) * weights[y]
    return {"delta": delta, "ci95": [float(lo), float(hi)], "p_value": sign_flip_p(contrib, rng, int(n_boot))}


def paired_episodes(acc_a, acc_b, seed, n_boot: int = 2000, *, y_test=None, rate_a=None, rate_b=None,
                    n_classes: int | None = None) -> dict:
    """Paired bootstrap of mean(acc_b - acc_a) over the same few-shot episodes (the first
    min(len) of each are paired). Same dict as ``paired_bootstrap``; identical accuracies give
    exactly delta 0, CI [0, 0], p 1.

    Episodes share one test set, so the spread over episodes alone ignores the luck of that test
    set and calls small, consistent differences significant. Pass ``y_test`` with ``rate_a`` and
    ``rate_b`` (each image's correctness averaged over episodes, ``FewShotEntry.test_correct_rate``)
    to add a class-stratified, paired resampling of the test images to every bootstrap draw: the
    test then covers both sources of noise (use it whenever the two sides are compared as models).
    """
    a = np.asarray(acc_a, dtype=np.float64).ravel()
    b = np.asarray(acc_b, dtype=np.float64).ravel()
    m = min(a.size, b.size)
    if m == 0:
        raise ValueError("paired_episodes needs at least one episode on each side")
    d = b[:m] - a[:m]
    if not np.any(d):
        return _no_difference()
    rng = np.random.default_rng(seed)
    delta = float(d.mean())
    d_star = d[rng.integers(0, m, size=(int(n_boot), m))].mean(axis=1)
    if y_test is not None:
        if rate_a is None or rate_b is None:
            raise ValueError("pass both rate_a and rate_b with y_test")
        y = _labels(y_test, int(n_classes) if n_classes is not None else int(np.max(y_test)) + 1)
        diff = np.asarray(rate_b, dtype=np.float64) - np.asarray(rate_a, dtype=np.float64)
        if diff.shape != y.shape:
            raise ValueError(f"rate_a/rate_b must have one entry per test label: {diff.shape} vs {y.shape}")
        classes, inv, n_c = np.unique(y, return_inverse=True, return_counts=True)
        order = np.argsort(inv, kind="stable")
        starts = np.concatenate([[0], np.cumsum(n_c)[:-1]])
        per_class = np.zeros((int(n_boot), classes.size))
        for c in range(classes.size):  # resample each class's images, paired across the two sides
            members = diff[order[starts[c]:starts[c] + n_c[c]]]
            per_class[:, c] = members[rng.integers(0, n_c[c], size=(int(n_boot), n_c[c]))].mean(axis=1)
        test_mean = float(np.mean([diff[inv == c].mean() for c in range(classes.size)]))
        d_star = d_star + (per_class.mean(axis=1) - test_mean)
        lo, hi = np.quantile(d_star, [0.025, 0.975])
        # A bootstrap of a class with two or three test images has almost no spread, so its p-value
        # would be far too small. The p-value comes from a paired sign-flip test over test images
        # instead (each image's episode-averaged difference, weighted as balanced accuracy weighs
        # it): exact in small samples, and it can only be as small as the test set allows.
        weights = 1.0 / (classes.size * n_c[inv])
        return {"delta": delta, "ci95": [float(lo), float(hi)],
                "p_value": sign_flip_p(diff * weights, rng, int(n_boot))}
    lo, hi = np.quantile(d_star, [0.025, 0.975])
    return {"delta": delta, "ci95": [float(lo), float(hi)], "p_value": _two_sided_p(d_star)}


def sign_flip_p(contrib: np.ndarray, rng: np.random.Generator, n_draws: int = 2000) -> float:
    """Two-sided p of a paired sign-flip (randomisation) test of sum(contrib) = 0, where contrib
    holds each pair's weighted difference. Exact enumeration up to 16 pairs, else Monte Carlo with
    the +1 correction."""
    contrib = np.asarray(contrib, dtype=np.float64)
    contrib = contrib[contrib != 0]
    if contrib.size == 0:
        return 1.0
    observed = abs(contrib.sum()) - 1e-12
    if contrib.size <= 16:
        signs = ((np.arange(2 ** contrib.size)[:, None] >> np.arange(contrib.size)) & 1) * 2 - 1
        return float(np.mean(np.abs(signs @ contrib) >= observed))
    signs = rng.integers(0, 2, size=(n_draws, contrib.size)) * 2 - 1
    return float((1 + np.sum(np.abs(signs @ contrib) >= observed)) / (1 + n_draws))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order."""
    p = np.asarray(list(p_values), dtype=np.float64)
    if p.size == 0:
        return []
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"p-values must be in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj = np.maximum.accumulate(adj)
    out = np.empty(m)
    out[order] = adj
    return out.tolist()
