import json

import numpy as np
import pytest
import torch

from creepscan.attacks import linear_probe
from creepscan.attacks.few_shot import few_shot_curve
from creepscan.attacks.heads import HEADS, fit_heads, run_head
from creepscan.attacks.splits import stratified_split
from creepscan.attacks.stats import balanced_accuracy

FAST_MLP = {"hidden": 32, "max_epochs": 12}


def clusters(n_classes=6, per_class=30, dim=12, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * sep
    y = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    return (centres[y] + rng.standard_normal((y.size, dim))).astype(np.float32), y


def rings(per_class=60, noise_dims=4, seed=0):
    """Three concentric rings in the first two coordinates: no linear boundary separates them."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), per_class)
    r = y + rng.uniform(0.15, 0.85, y.size)
    theta = rng.uniform(0, 2 * np.pi, y.size)
    X = np.c_[r * np.cos(theta), r * np.sin(theta), 0.3 * rng.standard_normal((y.size, noise_dims))]
    return X.astype(np.float32), y


def ill_conditioned(per_class=60, dim=16, n_classes=4, seed=0):
    """The classes live in two coordinates scaled by 1e-3 beside 14 unit-variance nuisance
    coordinates: linearly separable, but a gradient step sized for the nuisance barely moves the
    weights that matter (condition number ~1e6)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    centres = rng.standard_normal((n_classes, 2)) * 3
    signal = (centres[y] + 0.5 * rng.standard_normal((y.size, 2))) * 1e-3
    return np.c_[signal, rng.standard_normal((y.size, dim - 2))].astype(np.float32), y


def _settings(name):
    return FAST_MLP if name == "mlp" else {}


@pytest.mark.parametrize("name", HEADS)
def test_each_head_learns_separable_clusters_and_reports_consistently(name):
    X, y = clusters()
    split = stratified_split(y, seed=0)
    r = run_head(name, X, y, 6, split, seed=0, **_settings(name))
    assert r.name == name and r.accuracy > 0.9 and r.skill > 0.85
    assert r.test_correct.shape == r.test_pred.shape == r.test_labels.shape == split.test.shape
    assert np.array_equal(r.test_labels, y[split.test])
    assert np.array_equal(r.test_correct, r.test_pred == y[split.test])
    assert r.accuracy == pytest.approx(balanced_accuracy(y[split.test], r.test_pred, 6))
    assert r.ci95[0] <= r.accuracy <= r.ci95[1]
    js = json.loads(json.dumps(r.to_json()))
    assert js["accuracy"] == pytest.approx(r.accuracy, abs=1e-6) and js["params"] == pytest.approx(r.params)
    # same seed, same numbers
    again = run_head(name, X, y, 6, split, seed=0, **_settings(name))
    assert json.dumps(again.to_json()) == json.dumps(r.to_json())
    assert np.array_equal(again.test_pred, r.test_pred)


@pytest.mark.parametrize("name", HEADS)
def test_test_rows_never_enter_a_fit_or_a_choice(name):
    X, y = clusters(sep=0.8, seed=2)
    split = stratified_split(y, seed=0)
    clean = run_head(name, X, y, 6, split, seed=0, **_settings(name))
    poisoned = X.copy()
    poisoned[split.test] = np.nan  # anything computed from a test row would turn NaN
    res = run_head(name, poisoned, y, 6, split, seed=0, **_settings(name))
    assert res.val_accuracy == clean.val_accuracy and res.params == clean.params
    assert [b["val_accuracy"] for b in res.budgets] == [b["val_accuracy"] for b in clean.budgets]
    # and the validation rows choose: other validation labels can change the choice, never the fit
    shuffled = y.copy()
    shuffled[split.val] = np.random.default_rng(0).permutation(y[split.val])
    assert run_head(name, X, shuffled, 6, split, seed=0, **_settings(name)).val_accuracy < clean.val_accuracy


def test_knn_choice_is_made_on_validation_and_matches_sklearn():
    from sklearn.neighbors import KNeighborsClassifier

    X, y = clusters(sep=0.9, seed=3, per_class=40)
    split = stratified_split(y, seed=0)
    r = run_head("knn", X, y, 6, split, seed=0)
    val_acc = {}
    for k in (1, 3, 5, 10, 20, 50):
        knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
        clf = knn.fit(X[split.train], y[split.train])
        val_acc[k] = balanced_accuracy(y[split.val], clf.predict(X[split.val]), 6)
    assert r.val_accuracy == pytest.approx(max(val_acc.values()), abs=0.03)  # ties may break differently
    clf = KNeighborsClassifier(n_neighbors=r.params["k"], metric="cosine", algorithm="brute").fit(X[split.train],
                                                                                                  y[split.train])
    assert np.mean(clf.predict(X[split.test]) == r.test_pred) > 0.95


def test_prototype_cl2n_is_nearest_centroid_on_centred_normalised_features():
    from sklearn.neighbors import NearestCentroid

    X, y = clusters(sep=0.7, seed=4)
    X = X + 5.0  # a common offset: centring must remove it
    split = stratified_split(y, seed=0)
    r = run_head("prototype_cl2n", X, y, 6, split, seed=0)
    mean = X[split.train].mean(0)

    def cl2n(a):
        a = a - mean
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    clf = NearestCentroid().fit(cl2n(X[split.train]), y[split.train])
    assert np.array_equal(clf.predict(cl2n(X[split.test])), r.test_pred)


def test_non_linear_classes_defeat_linear_heads_but_not_mlp_or_knn():
    X, y = rings()
    split = stratified_split(y, seed=0)
    lp = linear_probe(X, y, 3, split, seed=0)
    gd = run_head("gd_budget", X, y, 3, split, seed=0)
    mlp = run_head("mlp", X, y, 3, split, seed=0)
    knn = run_head("knn", X, y, 3, split, seed=0)
    assert lp.accuracy < 0.5 and gd.accuracy < 0.5
    assert mlp.accuracy > lp.accuracy + 0.2 and knn.accuracy > lp.accuracy + 0.2


def test_ill_conditioned_features_are_slow_for_a_step_budget_not_for_an_mlp():
    X, y = ill_conditioned()
    split = stratified_split(y, seed=0)
    gd = run_head("gd_budget", X, y, 4, split, seed=0, budgets=(100, 1000))
    mlp = run_head("mlp", X, y, 4, split, seed=0)
    assert [b["steps"] for b in gd.budgets] == [100, 1000]
    for b in gd.budgets:
        assert b["stopped_at"] <= b["steps"] and b["ci95"][0] <= b["accuracy"] <= b["ci95"][1]
    assert gd.budgets[1]["val_accuracy"] >= gd.budgets[0]["val_accuracy"]  # a bigger budget can stop earlier
    assert gd.accuracy == gd.budgets[-1]["accuracy"]
    assert gd.accuracy < 0.5 and mlp.accuracy > 0.75  # chance is 0.25
    # the same head on the same task without the bad conditioning is fine
    rescaled = X.copy()
    rescaled[:, :2] *= 1e3
    assert run_head("gd_budget", rescaled, y, 4, split, seed=0, budgets=(100,)).accuracy > 0.75


def test_batched_episodes_match_one_at_a_time():
    X, y = clusters(sep=1.0, seed=5)
    classes = np.arange(6)
    rng = np.random.default_rng(0)
    F = torch.from_numpy(X[:90].reshape(3, 30, -1).copy())
    yF = torch.from_numpy(rng.integers(0, 6, (3, 30)))
    yF[:, :6] = torch.from_numpy(classes)  # every class in every episode
    Q = torch.from_numpy(X[90:])
    y_val = torch.from_numpy(y[90:130])
    for name in HEADS:
        kw = {"budgets": (30,)} if name == "gd_budget" else _settings(name)
        together = fit_heads(name, F, yF, Q, 6, y_val, [11, 12, 13], **kw)
        for e in range(3):
            alone = fit_heads(name, F[e:e + 1], yF[e:e + 1], Q, 6, y_val, [11 + e], **kw)
            agree = (alone.pred[0] == together.pred[e]).float().mean().item()
            assert agree > 0.98, (name, e, agree)
            assert alone.params[0] == together.params[e]


def test_bad_input_names_the_problem():
    X, y = clusters()
    split = stratified_split(y, seed=0)
    with pytest.raises(ValueError, match="unknown head 'svm'"):
        run_head("svm", X, y, 6, split, seed=0)
    with pytest.raises(ValueError, match="takes no setting"):
        run_head("knn", X, y, 6, split, seed=0, hidden=3)
    with pytest.raises(ValueError, match="budgets"):
        run_head("gd_budget", X, y, 6, split, seed=0, budgets=())
    bad = X.copy()
    bad[split.train[0]] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        run_head("mlp", bad, y, 6, split, seed=0)


def test_few_shot_curve_chooses_the_best_head_on_validation_and_names_it():
    X, y = rings(per_class=50, noise_dims=1)
    split = stratified_split(y, seed=0)
    heads = ("prototype", "logistic", "prototype_cl2n", "knn", "mlp", "gd_budget")
    res = few_shot_curve(X, y, 3, split, seed=0, ks=[2, 16], heads=heads, min_episodes=4, max_episodes=4,
                         head_settings={"mlp": FAST_MLP, "gd_budget": {"budgets": (50,)}})
    for e in res:
        assert set(e.head_accuracy) == set(heads)
        best_val = max(e.head_val_accuracy.values())
        assert e.head_val_accuracy[e.winner] == best_val
        assert e.accuracy == e.head_accuracy[e.winner]
        js = e.to_json()
        assert js["winner"] == e.winner and set(js["heads"]) == set(heads)
    # on rings a non-linear head wins once there are enough shots
    assert res[16].winner in ("knn", "mlp")
    assert res[16].accuracy > res[16].head_accuracy["logistic"] + 0.15
    # the default curve is unchanged: no "heads" in its JSON
    plain = few_shot_curve(X, y, 3, split, seed=0, ks=[2], min_episodes=4, max_episodes=4)
    assert "heads" not in plain[2].to_json()
    # same episodes with or without the extra heads: the default winner's accuracy is the same
    assert plain[2].accuracy == pytest.approx(res[2].head_accuracy[plain[2].winner])
    with pytest.raises(ValueError, match="must include 'prototype' and 'logistic'"):
        few_shot_curve(X, y, 3, split, seed=0, heads=("knn",))
    with pytest.raises(ValueError, match="head_settings"):
        few_shot_curve(X, y, 3, split, seed=0, head_settings={"mlp": {}})


def test_cross_fitted_validation_accuracy_does_not_flatter_a_head_with_many_choices():
    # nothing to learn: the best of many (step, step size) candidates on the validation rows still
    # looks better than chance; choosing on one half and scoring on the other does not
    rng = np.random.default_rng(7)
    E, m, D, K = 32, 40, 8, 4
    F = torch.from_numpy(rng.standard_normal((E, m, D)).astype(np.float32))
    yF = torch.from_numpy(np.tile(np.arange(K), (E, m // K)))
    Q = torch.from_numpy(rng.standard_normal((100, D)).astype(np.float32))
    y_val = torch.from_numpy(np.repeat(np.arange(K), 20))
    for name, kw in (("gd_budget", {"budgets": (60,)}), ("knn", {})):
        fit = fit_heads(name, F, yF, Q, K, y_val, list(range(E)), **kw)
        assert fit.val_accuracy.mean() > fit.val_unbiased.mean() + 0.03, name
        assert abs(fit.val_unbiased.mean() - 1 / K) < 0.04, name
