"""Paired tests when the test images come in groups (a person's photos are right or wrong together):
the units are the groups, so the tests keep their false-positive rate and the upper bound behind
"none" keeps its coverage, where image-level tests do not."""
import numpy as np
import pytest

from creepscan.attacks.stats import (
    bootstrap_ci,
    clustered_ci,
    clustered_variance,
    paired_bootstrap,
    paired_episodes,
    t_quantile,
)


def grouped_pair(rng, classes=2, groups_per_class=8, photos=25, spread=0.35, shift=0.0):
    """Two classifiers equally good on average (plus ``shift`` for B): each person gets its own
    success rate for A and for B (a person easy for one model need not be easy for the other)."""
    y, cl, a, b = [], [], [], []
    g = 0
    for c in range(classes):
        for _ in range(groups_per_class):
            pa, pb = np.clip(0.5 + rng.uniform(-spread, spread, 2) + [0.0, shift], 0.0, 1.0)
            y += [c] * photos
            cl += [g] * photos
            a += list(rng.random(photos) < pa)
            b += list(rng.random(photos) < pb)
            g += 1
    return np.array(y), np.array(cl), np.array(a), np.array(b)


def test_group_units_keep_the_false_positive_rate_and_the_upper_bound_covers():
    rng = np.random.default_rng(0)
    rejected = {"images": 0, "groups": 0}
    covered = {"images": 0, "groups": 0}
    reps = 150
    for r in range(reps):
        y, cl, a, b = grouped_pair(rng)
        for name, clusters in (("images", None), ("groups", cl)):
            t = paired_bootstrap(y, a, b, 2, seed=r, n_boot=500, clusters=clusters)
            rejected[name] += t["p_value"] < 0.05
            covered[name] += t["upper95"] >= 0.0  # the true difference is 0
    # image-level units: people's shared luck reads as signal (and as a tight bound: a false "none")
    assert rejected["images"] / reps > 0.25 and covered["images"] / reps < 0.85
    assert rejected["groups"] / reps <= 0.09
    assert covered["groups"] / reps >= 0.9


def test_group_units_still_find_a_real_difference():
    rng = np.random.default_rng(1)
    powered = 0
    for r in range(40):
        y, cl, a, b = grouped_pair(rng, groups_per_class=15, shift=0.3)
        t = paired_bootstrap(y, a, b, 2, seed=r, n_boot=500, clusters=cl)
        powered += t["p_value"] < 0.05 and t["ci95"][0] > 0
        assert "whole test groups" in t["method"]
    assert powered >= 36


def test_one_image_per_group_is_the_image_level_test():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 200)
    a, b = rng.random(200) < 0.6, rng.random(200) < 0.7
    plain = paired_bootstrap(y, a, b, 4, seed=3)
    alone = paired_bootstrap(y, a, b, 4, seed=3, clusters=np.arange(200))
    # the same test (Monte Carlo draws aside); the interval differs by the t correction for 196 df
    assert alone["p_value"] == pytest.approx(plain["p_value"], abs=0.02) and alone["delta"] == plain["delta"]
    assert alone["ci95"] == pytest.approx(plain["ci95"], rel=0.03)
    assert alone["upper95"] == pytest.approx(plain["upper95"], rel=0.03)
    assert clustered_ci(y, a, np.arange(200), 4, seed=5) == pytest.approx(bootstrap_ci(y, a, 4, seed=5), rel=0.01)
    assert t_quantile(0.975, 196) == pytest.approx(1.972, abs=1e-3)
    assert t_quantile(0.975, 3) == pytest.approx(3.182, abs=5e-3)


def test_a_class_that_is_one_person_counts_its_photos():
    """Identity probes: the class is the person. Groups equal to classes leave nothing to cluster
    within a class, so the tests are the image-level ones, not a K-unit test."""
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(5), 30)
    a, b = rng.random(150) < 0.5, rng.random(150) < 0.75
    plain = paired_bootstrap(y, a, b, 5, seed=1)
    by_person = paired_bootstrap(y, a, b, 5, seed=1, clusters=y.copy())
    assert by_person["ci95"] == pytest.approx(plain["ci95"], rel=0.03)
    assert by_person["p_value"] == pytest.approx(plain["p_value"], abs=0.02)
    assert clustered_variance(y, b.astype(float) - a, y) == pytest.approx(
        clustered_variance(y, b.astype(float) - a, np.arange(150)))


def test_few_shot_pairs_take_groups_too():
    rng = np.random.default_rng(5)
    y, cl, _, _ = grouped_pair(rng)
    person = np.repeat(rng.uniform(-0.3, 0.3, cl.max() + 1), np.bincount(cl))
    rate_a = np.clip(0.5 + person + rng.normal(0, 0.02, y.size), 0, 1)
    rate_b = np.clip(0.5 - person + rng.normal(0, 0.02, y.size), 0, 1)
    acc_a, acc_b = 0.5 + rng.normal(0, 0.01, 50), 0.5 + rng.normal(0, 0.01, 50)
    kw = dict(y_test=y, rate_a=rate_a, rate_b=rate_b, n_classes=2, k=2, pool_size=40)
    plain = paired_episodes(acc_a, acc_b, 0, **kw)
    grouped = paired_episodes(acc_a, acc_b, 0, clusters=cl, **kw)
    assert grouped["se"] > 2 * plain["se"] and grouped["upper95"] > plain["upper95"]
    assert "whole test groups" in grouped["method"] and "whole test groups" not in plain["method"]
    with pytest.raises(ValueError, match="one id per test image"):
        paired_episodes(acc_a, acc_b, 0, clusters=cl[:-1], **kw)


def test_the_uplift_tests_of_an_audit_flip_whole_people():
    """evaluate() keeps the test images' groups; the risk module's paired tests then use them."""
    from creepscan.attacks import evaluate, make_splits
    from creepscan.risk import uplift_tests

    rng = np.random.default_rng(6)
    y = np.repeat([0, 1], 120)
    groups = [f"p{i // 6}" for i in range(y.size)]          # 20 people per class, 6 photos each
    person = rng.normal(0, 1, (40, 16))
    X = person[np.arange(y.size) // 6] + 0.3 * rng.normal(0, 1, (y.size, 16))
    X_floor = rng.normal(0, 1, X.shape)
    folds = make_splits(y, 0, groups=groups)
    lp = ("linear_probe",)  # (the few-shot pair takes the same clusters: test_few_shot_pairs_take_groups_too)
    m = evaluate(X, y, 2, folds, seed=0, attacks=lp, groups=groups)
    f = evaluate(X_floor, y, 2, folds, seed=0, attacks=lp, groups=groups)
    assert m.test_clusters is not None and np.unique(m.test_clusters).size == 40
    tests = uplift_tests(m, f, chance=0.5, seed=0)
    assert all("whole test groups" in t["method"] for t in tests), [t["method"] for t in tests]
    plain = uplift_tests(evaluate(X, y, 2, folds, seed=0, attacks=lp),
                         evaluate(X_floor, y, 2, folds, seed=0, attacks=lp), chance=0.5, seed=0)
    assert not any("whole test groups" in t["method"] for t in plain)
    # people are the units: the same difference is less certain than over 240 photos
    assert tests[0]["se"] > plain[0]["se"]
    # a fine-tuning point carries its test images' groups to its paired test
    import dataclasses
    from types import SimpleNamespace

    def tuned(metrics, clusters):
        lp = metrics.linear_probe
        point = SimpleNamespace(k=1, steps=100, test_labels=lp.test_labels, test_correct=lp.test_correct,
                                test_clusters=clusters)
        return dataclasses.replace(metrics, finetune=SimpleNamespace(points=[point]))

    ft = [t for t in uplift_tests(tuned(m, m.test_clusters), tuned(f, f.test_clusters), chance=0.5, seed=0)
          if t["attack"].startswith("finetune")]
    assert len(ft) == 1 and "whole test groups" in ft[0]["method"]
