import json

import numpy as np
import pytest

from creepscan.attacks.few_shot import draw_supports, few_shot_curve, paired_few_shot, samples_to_threshold
from creepscan.attacks.splits import stratified_split
from creepscan.attacks.stats import paired_episodes


def clusters(n_classes=8, per_class=40, dim=24, sep=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * sep
    y = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    return (centres[y] + rng.standard_normal((y.size, dim))).astype(np.float32), y


def test_supports_come_from_train_only_k_per_class_and_are_reproducible():
    _, y = clusters(per_class=30)
    split = stratified_split(y, seed=0)
    y_tr = y[split.train]
    classes = np.unique(y_tr)
    sup = draw_supports(y_tr, classes, 4, seed=0, episodes=range(6))
    assert sup.shape == (6, classes.size * 4)
    global_idx = split.train[sup]
    assert np.isin(global_idx, split.train).all()
    assert not np.isin(global_idx, np.concatenate([split.val, split.test])).any()
    for row in sup:
        assert np.array_equal(y_tr[row], np.repeat(classes, 4))   # class-major, exactly k each
        assert np.unique(row).size == row.size                    # no repeats within an episode
    # same labels -> same episodes, whatever the batching
    assert np.array_equal(draw_supports(y_tr, classes, 4, 0, range(3, 6)), sup[3:])
    assert not np.array_equal(draw_supports(y_tr, classes, 4, 1, range(6)), sup)
    assert not np.array_equal(sup[0], sup[1])


def test_separable_clusters_need_few_shots():
    X, y = clusters(sep=4.0)
    split = stratified_split(y, seed=0)
    res = few_shot_curve(X, y, 8, split, seed=0, C=1.0)
    assert res.ks == [1, 2, 4, 8, 16]
    assert res.unavailable == []
    assert res[1].accuracy > 0.9
    assert samples_to_threshold(res.entries, 1 / 8, 0.5) == 1
    for e in res:
        assert e.winner in ("prototype", "logistic")
        assert e.accuracy == (e.logistic_accuracy if e.winner == "logistic" else e.prototype_accuracy)
        # the winner is the one better on validation (ties go to the prototype)
        if e.winner == "logistic":
            assert e.logistic_val_accuracy > e.prototype_val_accuracy
        else:
            assert e.prototype_val_accuracy >= e.logistic_val_accuracy
        assert e.ci95[0] <= e.accuracy <= e.ci95[1]
        assert 10 <= e.episodes <= 100 and e.episode_accuracy.shape == (e.episodes,)


def test_shuffled_labels_stay_at_chance():
    X, y = clusters(sep=3.0, seed=1)
    y = np.random.default_rng(0).permutation(y)
    split = stratified_split(y, seed=0)
    res = few_shot_curve(X, y, 8, split, seed=0, ks=[1, 4, 16])
    for e in res:
        assert abs(e.skill) < 0.12
        assert e.ci95[0] - 0.02 <= 1 / 8 <= e.ci95[1] + 0.02
    assert samples_to_threshold(res.entries, 1 / 8, 0.5) is None


def test_small_classes_give_a_partial_curve_and_say_why():
    rng = np.random.default_rng(2)
    counts = [6, 7, 8, 10, 12, 14]
    y = np.repeat(np.arange(6), counts)
    X = (np.eye(6)[y] * 1.5 + rng.standard_normal((y.size, 6))).astype(np.float32)
    split = stratified_split(y, seed=0)
    res = few_shot_curve(X, y, 6, split, seed=0)
    # train sizes 4, 5, 4, 6, 8, 8: k = 1, 2 for all; 4 is every image of the smallest classes (its
    # pool's luck unmeasured: unavailable, not [0.02, 1.00]); 8 only for two classes
    assert res.ks == [1, 2]
    assert res.unavailable[1] == {"k": 8, "reason": "4 of 6 classes have fewer than 8 training images"}
    assert res.unavailable[0]["k"] == 4 and "every training image of the smallest class" in res.unavailable[0]["reason"]
    assert [(u.k, u.reason) for u in res.unavailable_result()] == [(u["k"], u["reason"]) for u in res.unavailable]
    for e in res:
        assert e.ci95[1] - e.ci95[0] > 0.1  # 7 test images: wide, honest intervals
    with pytest.raises(KeyError):
        res[8]


def test_test_rows_never_enter_a_support_or_a_fit():
    X, y = clusters(sep=1.2, seed=3)
    split = stratified_split(y, seed=0)
    clean = few_shot_curve(X, y, 8, split, seed=0, ks=[1, 4])
    poisoned = X.copy()
    poisoned[split.test] = np.nan
    res = few_shot_curve(poisoned, y, 8, split, seed=0, ks=[1, 4])
    for a, b in zip(clean, res):
        assert a.prototype_val_accuracy == b.prototype_val_accuracy
        assert a.logistic_val_accuracy == b.logistic_val_accuracy
        assert a.winner == b.winner and a.episodes == b.episodes


def test_identical_episodes_across_encoders_pair_up():
    X, y = clusters(sep=1.0, seed=4)
    split = stratified_split(y, seed=0)
    weaker = X + np.random.default_rng(9).standard_normal(X.shape).astype(np.float32) * 2.0
    a = few_shot_curve(weaker, y, 8, split, seed=0, ks=[4])
    b = few_shot_curve(X, y, 8, split, seed=0, ks=[4])
    r = paired_episodes(a[4].episode_accuracy, b[4].episode_accuracy, seed=0)
    assert r["delta"] > 0.1 and r["p_value"] < 0.01
    again = few_shot_curve(X, y, 8, split, seed=0, ks=[4])[4]
    same = paired_episodes(b[4].episode_accuracy, again.episode_accuracy, seed=0)
    assert (same["delta"], same["ci95"], same["p_value"]) == (0.0, [0.0, 0.0], 1.0)


def test_episode_budget_json_and_determinism():
    X, y = clusters(sep=0.7, seed=5)
    split = stratified_split(y, seed=0)
    res = few_shot_curve(X, y, 8, split, seed=0, ks=[1, 2], min_episodes=4, max_episodes=6,
                         target_halfwidth=1e-6)
    assert [e.episodes for e in res] == [6, 6]
    again = few_shot_curve(X, y, 8, split, seed=0, ks=[1, 2], min_episodes=4, max_episodes=6,
                           target_halfwidth=1e-6)
    assert json.dumps(res.to_json()) == json.dumps(again.to_json())
    assert set(res.to_json()[0]) == {"k", "accuracy", "ci95", "episodes", "winner", "skill",
                                     "prototype_accuracy", "logistic_accuracy", "preprocess"}
    with pytest.raises(ValueError, match="min_episodes"):
        few_shot_curve(X, y, 8, split, seed=0, min_episodes=0)


def test_samples_to_threshold():
    entries = [{"k": 1, "accuracy": 0.3}, {"k": 2, "accuracy": 0.55}, {"k": 4, "accuracy": 0.8}]
    assert samples_to_threshold(entries, 0.1, 0.5) == 2
    assert samples_to_threshold(entries, 0.1, 0.9) is None
    assert samples_to_threshold([], 0.1, 0.5) is None


def test_paired_few_shot_counts_the_shared_test_sets_noise():
    # Two encoders with nothing to learn (shuffled labels): their episode accuracies differ
    # consistently by test-set luck alone. Over episodes only that looks significant; with the
    # test images resampled too, it must not.
    rng = np.random.default_rng(11)
    y = rng.permutation(np.repeat(np.arange(8), 30))
    split = stratified_split(y, seed=0)
    found = 0
    for s in range(6):
        a = few_shot_curve(rng.standard_normal((y.size, 16)).astype(np.float32), y, 8, split, seed=0, ks=[8])[8]
        b = few_shot_curve(rng.standard_normal((y.size, 16)).astype(np.float32), y, 8, split, seed=0, ks=[8])[8]
        honest = paired_few_shot(a, b, 8, seed=s)
        naive = paired_episodes(a.episode_accuracy, b.episode_accuracy, seed=s)
        assert honest["delta"] == pytest.approx(naive["delta"])
        assert honest["ci95"][1] - honest["ci95"][0] > naive["ci95"][1] - naive["ci95"][0]
        found += honest["p_value"] < 0.05
    assert found <= 1
    same = paired_few_shot(a, a, 8, seed=0)
    # no difference seen, but other test images or another pool could show one: a real interval
    assert same["delta"] == 0.0 and same["p_value"] == 1.0 and same["ci95"][0] < 0 < same["ci95"][1]
