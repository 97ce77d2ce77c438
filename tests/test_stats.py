import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from creepscan.attacks.stats import (balanced_accuracy, balanced_accuracy_rows, balanced_accuracy_var,
                                     bootstrap_ci, holm, paired_bootstrap, paired_episodes, skill)


def sample(n=300, k=6, p=0.6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < p, y, rng.integers(0, k, n))
    return y, pred


@pytest.mark.filterwarnings("ignore:y_pred contains classes")
def test_balanced_accuracy_matches_sklearn_and_ignores_absent_classes():
    y, pred = sample()
    assert balanced_accuracy(y, pred, 6) == pytest.approx(balanced_accuracy_score(y, pred))
    # class 9 never appears in y_true: it is not averaged over (but may be predicted)
    pred2 = pred.copy()
    pred2[:5] = 9
    assert balanced_accuracy(y, pred2, 10) == pytest.approx(balanced_accuracy_score(y, pred2))
    rows = balanced_accuracy_rows(y, np.stack([pred == y, pred2 == y]), 10)
    assert rows == pytest.approx([balanced_accuracy(y, pred, 10), balanced_accuracy(y, pred2, 10)])
    with pytest.raises(ValueError, match="0..5"):
        balanced_accuracy(y, pred, 5)
    assert skill(0.55, 0.1) == pytest.approx(0.5)


def test_bootstrap_ci_matches_index_bootstrap_and_is_deterministic():
    y, pred = sample(n=400, seed=1)
    ok = pred == y
    lo, hi = bootstrap_ci(y, ok, 6, seed=0, n_boot=4000)
    assert (lo, hi) == bootstrap_ci(y, ok, 6, seed=0, n_boot=4000)
    acc = balanced_accuracy(y, pred, 6)
    assert lo < acc < hi
    # brute force: resample indices within each class
    rng = np.random.default_rng(5)
    groups = [np.flatnonzero(y == c) for c in range(6)]
    boots = [np.mean([ok[rng.choice(g, g.size)].mean() for g in groups]) for _ in range(4000)]
    blo, bhi = np.quantile(boots, [0.025, 0.975])
    assert lo == pytest.approx(blo, abs=0.01) and hi == pytest.approx(bhi, abs=0.01)
    # and the analytic test-set variance agrees with the bootstrap spread
    assert np.sqrt(balanced_accuracy_var(y, ok, 6)) == pytest.approx(np.std(boots), rel=0.1)


def test_paired_bootstrap_identical_is_exactly_zero():
    y, pred = sample()
    ok = pred == y
    assert paired_bootstrap(y, ok, ok.copy(), 6, seed=3) == {"delta": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0}
    assert paired_episodes([0.3, 0.4], [0.3, 0.4, 0.9], seed=1) == {"delta": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0}


def test_paired_bootstrap_detects_a_real_difference_with_sign_b_minus_a():
    y, pa = sample(n=600, p=0.4, seed=2)
    _, pb = sample(n=600, p=0.4, seed=2)
    rng = np.random.default_rng(9)
    b_ok = (pb == y) | (rng.random(600) < 0.4)
    a_ok = pa == y
    r = paired_bootstrap(y, a_ok, b_ok, 6, seed=0)
    assert r["delta"] == pytest.approx(balanced_accuracy_rows(y, b_ok[None], 6)[0]
                                       - balanced_accuracy_rows(y, a_ok[None], 6)[0])
    assert r["delta"] > 0.15 and r["ci95"][0] > 0 and r["p_value"] < 0.01
    assert r["p_value"] > 0  # +1 correction
    assert r == paired_bootstrap(y, a_ok, b_ok, 6, seed=0)
    rev = paired_bootstrap(y, b_ok, a_ok, 6, seed=0)
    assert rev["delta"] == pytest.approx(-r["delta"]) and rev["ci95"][1] < 0


def test_paired_bootstrap_no_real_difference_gives_large_p():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 400)
    a = rng.random(400) < 0.5
    b = a.copy()
    flip = rng.choice(400, 20, replace=False)
    b[flip[:10]] = ~b[flip[:10]]
    r = paired_bootstrap(y, a, b, 4, seed=0)
    assert r["p_value"] > 0.2 and r["ci95"][0] <= 0 <= r["ci95"][1]


def test_paired_episodes():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.05, 40)
    b = a + 0.03 + rng.normal(0, 0.01, 40)
    r = paired_episodes(a, np.concatenate([b, [0.0, 0.0]]), seed=1)  # extra episodes ignored
    assert r["delta"] == pytest.approx(np.mean(b - a))
    assert r["p_value"] < 0.01 and r["ci95"][0] > 0
    assert r == paired_episodes(a, b, seed=1)
    with pytest.raises(ValueError):
        paired_episodes([], [0.1], seed=0)


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.9, 0.8, 0.2]) == pytest.approx([1.0, 1.0, 0.6])
    assert holm([0.04, 0.9, 0.01]) == pytest.approx([0.08, 0.9, 0.03])
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([1.5])
