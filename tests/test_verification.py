import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from creepscan.attacks.verification import roc_auc, roc_curve_points, tar_at_far, verification


def clusters(n_classes, per_class, dim=16, sep=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * sep
    y = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    return (centres[y] + rng.standard_normal((y.size, dim))).astype(np.float32), y


def brute_force_scores(X, y):
    Xn = X.astype(np.float64) / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    gen, imp = [], []
    for i, j in itertools.combinations(range(len(y)), 2):
        (gen if y[i] == y[j] else imp).append(float(Xn[i] @ Xn[j]))
    return np.array(gen), np.array(imp)


def brute_tar(gen, imp, far):
    """Scan every candidate threshold; keep the best TAR with FAR <= far, accept = score > t."""
    best = 0.0
    for t in np.concatenate([[-np.inf], np.unique(np.concatenate([gen, imp]))]):
        if np.mean(imp > t) <= far:
            best = max(best, np.mean(gen > t))
    return best


def test_matches_brute_force_on_all_pairs():
    X, y = clusters(8, 20, sep=0.8)  # 160 images: 12720 pairs, 1520 genuine
    res = verification(X, y, seed=0)
    gen, imp = brute_force_scores(X, y)
    assert not res.sampled
    assert (res.n_genuine, res.n_impostor) == (gen.size, imp.size) == (1520, 11200)
    labels = np.r_[np.ones(gen.size), np.zeros(imp.size)]
    assert res.auc == pytest.approx(roc_auc_score(labels, np.r_[gen, imp]), abs=1e-6)
    for name, far in (("1e-2", 1e-2), ("1e-3", 1e-3)):
        assert res.tar_at_far[name] == pytest.approx(brute_tar(gen, imp, far), abs=2 / gen.size)
    assert res.not_measurable == []
    out = res.to_json()
    json.dumps(out, allow_nan=False)
    assert set(out) == {"tar_at_far", "auc", "n_genuine", "n_impostor", "not_measurable", "roc"}
    roc = np.array(out["roc"])
    assert 2 <= len(roc) <= 200 and roc[-1].tolist() == [1.0, 1.0]
    assert np.all(np.diff(roc[:, 0]) >= 0) and np.all(np.diff(roc[:, 1]) >= 0)


def test_tar_and_auc_on_hand_made_scores_with_ties():
    rng = np.random.default_rng(0)
    imp = np.round(rng.random(5000), 2)   # heavy ties
    gen = np.round(rng.random(300) * 0.5 + 0.5, 2)
    for far in (1e-2, 1e-3, 0.05):
        assert tar_at_far(gen, imp, far) == pytest.approx(brute_tar(gen, imp, far))
    labels = np.r_[np.ones(gen.size), np.zeros(imp.size)]
    assert roc_auc(gen, imp) == pytest.approx(roc_auc_score(labels, np.r_[gen, imp]))
    # all impostors tied at the top: no threshold admits any without admitting all -> TAR 0
    assert tar_at_far(np.array([1.0, 1.0]), np.full(1000, 1.0), 1e-2) == 0.0
    for far, tar in roc_curve_points(gen, imp):
        assert np.mean(imp > 0) >= 0 and 0 <= far <= 1 and 0 <= tar <= 1


def test_far_level_not_measurable_with_few_impostor_pairs():
    X, y = clusters(3, 20, sep=2.0)  # 60 images: 1200 impostor pairs, >= 10 / 1e-2 but < 10 / 1e-3
    res = verification(X, y, seed=0)
    assert res.n_impostor == 60 * 59 // 2 - 3 * 190 == 1200
    assert res.tar_at_far["1e-3"] is None and res.not_measurable == ["1e-3"]
    assert res.tar_at_far["1e-2"] is not None
    assert res.to_json()["tar_at_far"]["1e-3"] is None
    few = verification(X[:30], y[:30], seed=0)
    assert few.not_measurable == ["1e-2", "1e-3"] and few.tar_at_far == {"1e-2": None, "1e-3": None}


def test_sampled_pairs_are_seeded_within_budget_and_close_to_exact():
    X, y = clusters(20, 30, sep=0.7, seed=1)  # 600 images, 179700 pairs
    exact = verification(X, y, seed=0)
    a = verification(X, y, seed=0, max_pairs=40_000)
    b = verification(X, y, seed=0, max_pairs=40_000)
    assert a.sampled and not exact.sampled
    assert a.n_genuine + a.n_impostor <= 40_000
    assert a.n_genuine == exact.n_genuine  # 8700 genuine pairs fit in half the budget: all kept
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())
    assert a.auc == pytest.approx(exact.auc, abs=0.02)
    assert a.tar_at_far["1e-2"] == pytest.approx(exact.tar_at_far["1e-2"], abs=0.05)
    c = verification(X, y, seed=0, max_pairs=6_000)  # genuine pairs sampled too
    assert c.n_genuine + c.n_impostor <= 6_000 and c.n_genuine < exact.n_genuine
    assert c.auc == pytest.approx(exact.auc, abs=0.04)


def test_separable_identities_verify_and_bad_inputs():
    X, y = clusters(10, 20, sep=6.0, seed=2)
    res = verification(X, y, seed=0)
    assert res.auc > 0.99 and res.tar_at_far["1e-3"] > 0.9
    with pytest.raises(ValueError, match="NaN"):
        verification(np.full((4, 2), np.nan), np.array([0, 0, 1, 1]), seed=0)
    with pytest.raises(ValueError, match=">= 2 classes"):
        verification(X[:5], np.zeros(5, int), seed=0)
