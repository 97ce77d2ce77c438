"""Few-shot CIs under the null: label-blind features must not look significantly below (or above)
chance.

Features that know nothing of the labels (iid Gaussian per image, as the label-blind test plug-in
gives) have a population balanced accuracy of exactly 1/K for every support, so an interval that
excludes 1/K is simply wrong. The layout is the one a small probe gets in the pipeline (5 classes x
14 images, ``make_splits``' 5 rotating test folds, supports from ``draw_supports``, folds merged
by ``attacks._merge_few_shot``); the head is a numpy replica of few_shot_curve's prototype head (the
interval arithmetic does not depend on the head, and the real heads cost ~15 s a draw).

Why this test exists: an interval whose pool term came from the per-image values covered the
coverage world of test_coverage.py (one split) at nominal width, but with merged folds a fold's test
images are the other folds' pool images; the per-image terms miss that covariance, and on the
compare test it called a blind plug-in's k=2 and k=4 significantly below chance.
"""
from functools import lru_cache

import numpy as np

from creepscan.attacks import _merge_few_shot
from creepscan.attacks.few_shot import FewShotEntry, FewShotResult, draw_supports
from creepscan.attacks.splits import make_splits, scored_images
from creepscan.attacks.stats import balanced_accuracy_rows, few_shot_variance, proportion_ci

K, PER, DIM, EPISODES, DRAWS, KS = 5, 14, 8, 40, 160, (1, 2, 4)
LAYOUTS = 8  # split seeds cycled through: the supports of a layout are drawn once (they depend on labels only)
CHANCE = 1.0 / K
Y = np.arange(K * PER) % K


@lru_cache(maxsize=None)
def _layout(seed: int):
    """make_splits' folds for split seed ``seed`` and each fold's supports per k (as few_shot_curve draws them)."""
    splits = make_splits(Y, seed)
    sup = {(f, k): draw_supports(Y[s.train], np.unique(Y[s.train]), k, seed, range(EPISODES))
           for f, s in enumerate(splits) for k in KS}
    return splits, sup


def _prototype_entry(X, y, split, k: int, sup: np.ndarray) -> FewShotEntry:
    """One fold's k-shot entry from the nearest normalised class mean (few_shot_curve's prototype);
    ``sup`` [E, K k]: the episodes' supports, positions in ``split.train``."""
    y_tr = y[split.train]
    classes = np.unique(y_tr)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    protos = Xn[split.train][sup].reshape(EPISODES, K, k, -1).mean(2)
    protos /= np.linalg.norm(protos, axis=-1, keepdims=True)
    correct = classes[np.einsum("nd,ekd->enk", Xn[split.test], protos).argmax(-1)] == y[split.test]
    y_te = y[split.test]
    acc = balanced_accuracy_rows(y_te, correct, K)
    none = np.zeros(0)
    return FewShotEntry(k=k, accuracy=float(acc.mean()), ci95=(0.0, 1.0), episodes=EPISODES, winner="prototype",
                        skill=0.0, prototype_accuracy=float(acc.mean()), logistic_accuracy=0.0,
                        prototype_val_accuracy=0.0, logistic_val_accuracy=0.0, episode_accuracy=acc,
                        prototype_episode_accuracy=acc, logistic_episode_accuracy=none,
                        test_correct_rate=correct.mean(axis=0), test_labels=y_te, episode_correct=correct,
                        pool_size=int(np.bincount(y_tr).min()))


def _merged(X, y, seed: int) -> FewShotResult:
    splits, sup = _layout(seed)
    fss = [FewShotResult(entries=[_prototype_entry(X, y, s, k, sup[f, k]) for k in KS], unavailable=[],
                         chance=CHANCE, C=1.0) for f, s in enumerate(splits)]
    test_index = scored_images(splits)
    positions = [np.searchsorted(test_index, s.test) for s in splits]
    return _merge_few_shot(fss, positions, y[test_index], K, CHANCE, 1.0, None, seed)


def _per_image_ci(e) -> tuple[float, float]:
    """The interval that flagged the blind plug-in: pool term from the per-image values."""
    v = few_shot_variance(e.episode_accuracy, e.test_labels, e.test_correct_rate, K, k=e.k, pool_size=e.pool_size,
                          per_image=e.episode_correct)
    return proportion_ci(e.accuracy, v.total, v.n_max, seed=0)


def test_merged_folds_cover_chance_for_label_blind_features():
    y = Y
    ours, per_image = {k: [] for k in KS}, {k: [] for k in KS}
    for r in range(DRAWS):
        X = np.random.default_rng([r, 19]).standard_normal((y.size, DIM))
        res = _merged(X, y, seed=r % LAYOUTS)
        assert res.ks == list(KS)
        for e in res:
            assert e.folds == 5
            ours[e.k].append(e.ci95)
            per_image[e.k].append(_per_image_ci(e))

    def coverage(cis):
        lo, hi = np.asarray(cis).T
        return float(np.mean((lo <= CHANCE) & (CHANCE <= hi)))

    for k in KS:
        assert coverage(ours[k]) >= 0.94, k
    # a false "significantly below chance" (which makes the verdict inconclusive) stays rare
    below = np.any([np.asarray(ours[k])[:, 1] < CHANCE for k in KS], axis=0)
    assert below.mean() <= 0.02
    # the check can fail: the per-image interval misses chance too often on the same draws
    assert np.mean([coverage(per_image[k]) for k in KS]) < 0.93


def test_below_chance_flag_reads_each_attacks_own_95_percent_interval():
    """Kept without a correction over a model's many attacks and k's (README, CIs): a false flag can
    only turn an all-clear into inconclusive, never the reverse, and a real one (an attack that found
    structure and failed to use it) must not be lost to a Holm correction over attacks that did not
    fail. What keeps false flags rare is intervals that cover chance under the null (above: no draw
    flagged); a CI that merely touches chance is not a flag."""
    from creepscan.attacks import _flag_below_chance

    flagged = _flag_below_chance({"accuracy": 0.15, "ci95": [0.10, 0.199]}, CHANCE)
    assert flagged["below_chance"] is True and flagged["note"].startswith("failed: significantly below chance")
    assert "below_chance" not in _flag_below_chance({"accuracy": 0.15, "ci95": [0.10, 0.2]}, CHANCE)
    assert "below_chance" not in _flag_below_chance({"accuracy": None, "ci95": [None, None]}, CHANCE)
