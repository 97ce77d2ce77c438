import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from creepscan.attacks.stats import (
    balanced_accuracy,
    balanced_accuracy_rows,
    balanced_accuracy_var,
    bootstrap_ci,
    few_shot_variance,
    holm,
    images_needed_per_class,
    minimum_detectable_effect,
    paired_bootstrap,
    paired_episodes,
    proportion_ci,
    sign_flip_p,
    sign_flip_test,
    skill,
)


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


def test_bootstrap_ci_is_clopper_pearson_for_one_class_and_deterministic():
    from scipy.stats import beta

    # one class: the interval is exact Clopper-Pearson (up to the draws' quantile error)
    for n, s in [(5, 4), (12, 12), (9, 0), (40, 23)]:
        y = np.zeros(n, np.int64)
        ok = np.arange(n) < s
        lo, hi = bootstrap_ci(y, ok, 1, seed=0)
        cp_lo = beta.ppf(0.025, s, n - s + 1) if s > 0 else 0.0
        cp_hi = beta.ppf(0.975, s + 1, n - s) if s < n else 1.0
        assert lo == pytest.approx(cp_lo, abs=0.01) and hi == pytest.approx(cp_hi, abs=0.01)
        assert (lo, hi) == bootstrap_ci(y, ok, 1, seed=0)
    # equal classes, all right: Clopper-Pearson on all the images together, never zero width
    y = np.repeat(np.arange(10), 3)
    lo, hi = bootstrap_ci(y, np.ones(30, bool), 10, seed=1)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 30), abs=0.005)
    lo, hi = bootstrap_ci(y, np.zeros(30, bool), 10, seed=1)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 30), abs=0.005)


def test_bootstrap_ci_on_a_large_test_set_is_the_normal_interval():
    # many images per class: no small-sample widening left, the width is 2 * 1.96 * the design SE
    y, pred = sample(n=3000, seed=1)
    ok = pred == y
    lo, hi = bootstrap_ci(y, ok, 6, seed=0)
    acc = balanced_accuracy(y, pred, 6)
    assert lo < acc < hi
    se = np.sqrt(balanced_accuracy_var(y, ok, 6))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.06)
    # brute force: the class-stratified bootstrap spread agrees with the analytic variance
    rng = np.random.default_rng(5)
    groups = [np.flatnonzero(y == c) for c in range(6)]
    boots = [np.mean([ok[rng.choice(g, g.size)].mean() for g in groups]) for _ in range(2000)]
    assert se == pytest.approx(np.std(boots), rel=0.1)


def test_proportion_ci_widens_with_variance_and_never_collapses():
    narrow = proportion_ci(0.8, 1e-4, 100000, seed=0)
    wide = proportion_ci(0.8, 4e-3, 100000, seed=0)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]
    assert narrow[1] - narrow[0] == pytest.approx(2 * 1.96 * 0.01, rel=0.08)
    assert proportion_ci(1.0, 0.0, 4, seed=0)[0] == pytest.approx(0.025 ** 0.25, abs=0.01)
    lo, hi = proportion_ci(0.6, float("inf"), 100, seed=0)  # unknown variance: one image's worth
    assert lo < 0.05 and hi > 0.95
    with pytest.raises(ValueError, match="proportion"):
        proportion_ci(1.2, 0.01, 10, seed=0)
    with pytest.raises(ValueError, match="variance"):
        proportion_ci(0.5, -0.01, 10, seed=0)


def test_paired_bootstrap_identical_gives_zero_delta_but_an_honest_interval():
    y, pred = sample()
    ok = pred == y
    r = paired_bootstrap(y, ok, ok.copy(), 6, seed=3)
    assert r["delta"] == 0.0 and r["p_value"] == 1.0
    assert r["ci95"][0] < 0 < r["ci95"][1]            # no discordant image is not proof of equality
    assert r["ci95"][1] - r["ci95"][0] < 0.05          # ... but 300 images say it is small
    assert r["method"] == "exact sign-flip (no nonzero pairs)"
    assert set(r) == {"delta", "ci95", "p_value", "se", "upper95", "method", "ci_method"}
    # both perfect on 2 images per class: the difference is barely constrained
    y2 = np.repeat([0, 1], 2)
    r2 = paired_bootstrap(y2, np.ones(4, bool), np.ones(4, bool), 2, seed=0)
    assert r2["ci95"][1] - r2["ci95"][0] > 0.8 and r2["se"] > 0.1 and r2["upper95"] > 0.3
    naive = paired_episodes([0.3, 0.4], [0.3, 0.4, 0.9], seed=1)  # episodes only: no other noise to see
    assert naive["delta"] == 0.0 and naive["ci95"] == [0.0, 0.0] and naive["p_value"] == 1.0


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
    assert r["method"].startswith("Monte Carlo sign-flip, 2000 draws")
    assert r["ci95"][0] < r["delta"] < r["upper95"] < r["ci95"][1]
    # the SE is the design SE of the paired difference on a test set this large
    d = b_ok.astype(float) - a_ok.astype(float)
    assert r["se"] == pytest.approx(np.sqrt(balanced_accuracy_var(y, d, 6) * 600 / 594), rel=0.1)
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
    few = paired_bootstrap(y[:40], a[:40], b[:40] | (np.arange(40) < 3), 4, seed=0)
    assert few["method"].startswith("exact sign-flip")


def test_paired_episodes():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.05, 40)
    b = a + 0.03 + rng.normal(0, 0.01, 40)
    r = paired_episodes(a, np.concatenate([b, [0.0, 0.0]]), seed=1)  # extra episodes ignored
    assert r["delta"] == pytest.approx(np.mean(b - a))
    assert r["p_value"] < 0.01 and r["ci95"][0] > 0
    assert r["upper95"] < r["ci95"][1] and r["se"] == pytest.approx(np.std(b - a) / np.sqrt(40), rel=0.15)
    assert r["method"] == "bootstrap over 40 episodes, 2000 draws"
    assert r == paired_episodes(a, b, seed=1)
    with pytest.raises(ValueError):
        paired_episodes([], [0.1], seed=0)
    with pytest.raises(ValueError, match="pool_size"):
        paired_episodes(a, b, seed=0, y_test=np.zeros(3, int), rate_a=np.zeros(3), rate_b=np.zeros(3))


def test_few_shot_variance_parts():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 10)
    rates = rng.random(40)
    acc = rng.normal(0.6, 0.05, 25)
    v = few_shot_variance(acc, y, rates, 4, k=1, pool_size=21)
    assert v.monte_carlo == pytest.approx(np.var(acc, ddof=1) / 25)
    # k = 1: the pool term is exactly Var(U) = zeta_1 / N with zeta_1 = V_w + Var(U)
    assert v.training_pool == pytest.approx(np.var(acc, ddof=1) / 20)
    per_class = [np.var(rates[y == c], ddof=1) / 10 for c in range(4)]
    assert v.test_set == pytest.approx(sum(per_class) / 16)
    assert v.kish_size == pytest.approx(40)
    assert v.total == pytest.approx(v.monte_carlo + v.test_set + v.training_pool)
    # the pool term grows as k approaches the pool and is capped by a bounded value's largest variance
    grows = [few_shot_variance(acc, y, rates, 4, k=k, pool_size=21).training_pool for k in (1, 4, 10, 20)]
    assert grows == sorted(grows) and grows[-1] <= 0.25
    assert few_shot_variance(acc, y, rates, 4, k=21, pool_size=21).training_pool == 0.25
    assert few_shot_variance(acc[:1], y, rates, 4, k=1, pool_size=21).monte_carlo == np.inf
    with pytest.raises(ValueError, match="pool_size"):
        few_shot_variance(acc, y, rates, 4, k=30, pool_size=21)
    with pytest.raises(ValueError, match="value_range"):
        few_shot_variance(acc, y, rates - 0.5, 4, k=1, pool_size=21)


def test_sign_flip_test_says_exact_or_monte_carlo():
    from itertools import product

    rng = np.random.default_rng(0)
    contrib = rng.normal(0.2, 1.0, 10)
    p, method = sign_flip_test(contrib, rng)
    brute = np.mean([abs(np.dot(s, contrib)) >= abs(contrib.sum()) - 1e-12 for s in product([-1, 1], repeat=10)])
    assert p == pytest.approx(brute) and method == "exact sign-flip (10 nonzero pairs)"
    assert sign_flip_test(np.r_[contrib, np.zeros(5)], rng) == (p, method)  # zeros are not pairs
    big = rng.normal(0.5, 1.0, 17)
    p_mc, method_mc = sign_flip_test(big, np.random.default_rng(1), n_draws=500)
    assert method_mc == "Monte Carlo sign-flip, 500 draws (17 nonzero pairs)"
    assert p_mc == sign_flip_p(big, np.random.default_rng(1), 500) and 1 / 501 <= p_mc <= 1


def test_minimum_detectable_effect_and_images_needed():
    assert minimum_detectable_effect(0.05) == pytest.approx((1.959964 + 0.841621) * 0.05, rel=1e-6)
    assert minimum_detectable_effect(0.05, alpha=0.01, power=0.9) == pytest.approx((2.575829 + 1.281552) * 0.05,
                                                                                     rel=1e-6)
    assert minimum_detectable_effect(0.0) == 0.0
    n = images_needed_per_class(10, 0.08, 0.1)
    # the smallest n whose SE, shrunk as 1/sqrt(n), brings the MDE down to the target
    assert (minimum_detectable_effect(0.08 * np.sqrt(10 / n)) <= 0.1
            < minimum_detectable_effect(0.08 * np.sqrt(10 / (n - 1))))
    assert images_needed_per_class(100, 0.01, 0.1) < 100  # already enough: fewer would do
    for bad in [dict(se=-1.0), dict(target_mde=0.0), dict(n_per_class=0), dict(alpha=1.5), dict(power=0.0)]:
        args = dict(n_per_class=10, se=0.05, target_mde=0.1) | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            images_needed_per_class(**args)


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.9, 0.8, 0.2]) == pytest.approx([1.0, 1.0, 0.6])
    assert holm([0.04, 0.9, 0.01]) == pytest.approx([0.08, 0.9, 0.03])
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([1.5])
