"""End to end: evaluate() on synthetic embeddings, then assess() against a noise floor."""
import dataclasses
import json

import numpy as np
import pytest

from creepscan.attacks import Metrics, evaluate
from creepscan.attacks.splits import stratified_split
from creepscan.risk import DEFAULT_RULES, LEVELS, assess, check_rules, level_index

N_CLASSES = 8


def clusters(per_class=30, dim=32, sep=1.0, seed=0, n_classes=N_CLASSES):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * sep
    y = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    return (centres[y] + rng.standard_normal((y.size, dim))).astype(np.float32), y, centres


def noise(n, dim=16, seed=99):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def keys_anywhere(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from keys_anywhere(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from keys_anywhere(v)


FEW = ("linear_probe", "few_shot")


def test_separable_model_is_high_against_a_noise_floor():
    X, y, _ = clusters(sep=2.5)
    split = stratified_split(y, seed=0)
    model = evaluate(X, y, N_CLASSES, split, seed=0, attacks=FEW)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0, attacks=FEW)
    assert model.linear_probe.skill > 0.9 and model.samples_to_threshold is not None
    assert model.samples_to_threshold <= 2
    a = assess(model, floor, chance=model.chance)
    assert a.level == "high" and a.rule == "high: samples_to_threshold <= 8"
    assert a.reason.startswith("high: ") and "per class reach skill" in a.reason
    assert a.uplift["significant"] and a.uplift["p_value"] < 0.01 and a.uplift["ci95"][0] > 0.5
    assert set(a.uplift) >= {"skill_model", "skill_floor", "skill_gain", "ci95", "p_value", "significant"}
    assert a.uplift["skill_gain"] == pytest.approx(a.uplift["skill_model"] - a.uplift["skill_floor"], abs=1e-5)


def test_identities_that_verify_are_critical():
    X, y, _ = clusters(per_class=25, sep=4.0, seed=1)  # 200 images: 17500 impostor pairs
    split = stratified_split(y, seed=0)
    model = evaluate(X, y, N_CLASSES, split, seed=0)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0)
    assert model.verification.tar_at_far["1e-3"] > 0.5 > floor.verification.tar_at_far["1e-3"]
    a = assess(model, floor, chance=model.chance)
    assert a.level == "critical" and a.rule == "critical: verification TAR@1e-3 >= 0.50 and above the floor"


def test_zero_shot_with_a_matching_text_tower_is_critical():
    X, y, centres = clusters(sep=2.0, seed=2)
    split = stratified_split(y, seed=0)
    T = (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(np.float32)
    model = evaluate(X, y, N_CLASSES, split, seed=0, attacks=FEW + ("zero_shot",), text_embeddings=T)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0, attacks=FEW)
    assert model.zero_shot is not None and model.zero_shot.accuracy > 0.9
    assert model.zero_shot.test_correct.shape == split.test.shape
    a = assess(model, floor, chance=model.chance)
    assert (a.level, a.rule) == ("critical", "critical: zero_shot skill >= 0.50")
    assert "zero-shot" in a.reason
    # zero-shot is skipped without text embeddings
    assert evaluate(X, y, N_CLASSES, split, seed=0, attacks=FEW + ("zero_shot",)).zero_shot is None


def test_shuffled_labels_are_none():
    X, y, _ = clusters(sep=2.5, seed=3)
    y = np.random.default_rng(1).permutation(y)
    split = stratified_split(y, seed=0)
    model = evaluate(X, y, N_CLASSES, split, seed=0, attacks=FEW)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0, attacks=FEW)
    lo, hi = model.linear_probe.ci95
    assert lo <= 1 / N_CLASSES <= hi
    a = assess(model, floor, chance=model.chance)
    assert a.level == "none" and not a.uplift["significant"]
    assert a.uplift["ci95"][0] <= 0 <= a.uplift["ci95"][1] or a.uplift["skill_gain"] <= 0
    assert model.samples_to_threshold is None


def test_rule_order_medium_and_low():
    X, y, _ = clusters(sep=0.4, seed=4)
    split = stratified_split(y, seed=0)
    model = evaluate(X, y, N_CLASSES, split, seed=0, attacks=FEW)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0, attacks=FEW)
    assert model.linear_probe.skill > 0.6
    # the same probe, but pretend few-shot never got off the ground: medium
    weak = dataclasses.replace(model, few_shot=dataclasses.replace(
        model.few_shot, entries=[dataclasses.replace(e, accuracy=model.chance) for e in model.few_shot.entries]))
    a = assess(weak, floor, chance=model.chance)
    assert (a.level, a.rule) == ("medium", "medium: linear_probe skill >= 0.50")
    # a threshold above what the probe reaches: low
    reached = max([model.linear_probe.skill] + [e.skill for e in model.few_shot if e.k <= 8])
    assert reached < 0.99
    b = assess(model, floor, chance=model.chance, rules={"skill_threshold": reached + 0.005})
    assert b.level == "low" and b.rule.startswith("low: significant uplift, linear_probe skill < ")
    assert b.reason.startswith("low: ") and b.uplift["significant"]
    # high_max_k decides whether few-shot counts as high
    c = assess(model, floor, chance=model.chance, rules={"high_max_k": 1})
    assert c.level in ("high", "medium")


def test_metrics_json_shape_and_no_delta_keys():
    X, y, _ = clusters(sep=1.5, seed=5)
    split = stratified_split(y, seed=0)
    m = evaluate(X, y, N_CLASSES, split, seed=0)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0)
    j = m.to_json()
    assert list(j) == ["zero_shot", "linear_probe", "few_shot", "few_shot_unavailable", "verification",
                       "samples_to_threshold"]
    assert j["zero_shot"] is None
    assert set(j["linear_probe"]) == {"accuracy", "ci95", "C", "skill", "val_accuracy", "n_train", "n_val",
                                      "n_test", "c_search"}
    assert [e["k"] for e in j["few_shot"]] == [1, 2, 4, 8, 16]
    assert j["few_shot_unavailable"] == []
    assert set(j["verification"]) == {"tar_at_far", "auc", "n_genuine", "n_impostor", "not_measurable", "roc"}
    json.dumps(j, allow_nan=False)
    a = assess(m, floor, chance=m.chance)
    assert "delta" not in set(keys_anywhere(j)) | set(keys_anywhere(a.to_json()))
    assert isinstance(m, Metrics) and m.few_shot[4].episode_accuracy.size == j["few_shot"][2]["episodes"]


def test_evaluate_is_deterministic():
    X, y, _ = clusters(sep=1.0, seed=6)
    split = stratified_split(y, seed=0)
    a = evaluate(X, y, N_CLASSES, split, seed=3)
    b = evaluate(X, y, N_CLASSES, split, seed=3)
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=3)
    assert assess(a, floor, a.chance, seed=1) == assess(b, floor, b.chance, seed=1)


def test_a_label_leaking_feature_on_test_rows_changes_nothing():
    rng = np.random.default_rng(7)
    y = rng.permutation(np.repeat(np.arange(N_CLASSES), 30))
    split = stratified_split(y, seed=0)
    X = rng.standard_normal((y.size, 16)).astype(np.float32)
    leak = np.zeros((y.size, N_CLASSES), np.float32)
    leak[split.test, y[split.test]] = 50.0  # only test rows carry their label
    m = evaluate(np.hstack([X, leak]), y, N_CLASSES, split, seed=0, attacks=FEW)
    # had any fit, standardisation or support seen a test row, these would be near 100%
    assert m.linear_probe.accuracy < 0.35
    assert all(e.accuracy < 0.35 for e in m.few_shot)


def test_small_probe_end_to_end():
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(6), [6, 7, 8, 10, 12, 14])
    y = np.concatenate([y, [6, 6]])  # a class with 2 images: excluded
    X = (np.eye(7)[y] * 2.0 + rng.standard_normal((y.size, 7))).astype(np.float32)
    split = stratified_split(y, seed=0)
    assert split.excluded_classes == (6,)
    m = evaluate(X, y, 7, split, seed=0)
    assert m.n_classes_kept == 6 and m.chance == pytest.approx(1 / 6)
    j = m.to_json()
    assert [e["k"] for e in j["few_shot"]] == [1, 2, 4] and j["few_shot_unavailable"][0]["k"] == 8
    assert j["verification"]["n_genuine"] == sum(n * (n - 1) // 2 for n in [6, 7, 8, 10, 12, 14])
    assert j["verification"]["not_measurable"] == ["1e-3"]  # 1330 impostor pairs: enough for 1e-2 only
    lp = j["linear_probe"]
    assert lp["ci95"][1] - lp["ci95"][0] > 0.15


def test_rules_and_levels():
    assert LEVELS == ("none", "low", "medium", "high", "critical")
    assert [level_index(x) for x in LEVELS] == [0, 1, 2, 3, 4] and level_index("HIGH") == 3
    with pytest.raises(ValueError, match="unknown risk level"):
        level_index("severe")
    assert check_rules(None) == DEFAULT_RULES
    assert check_rules({"verification_far": 0.01})["verification_far"] == "1e-2"
    with pytest.raises(ValueError, match="unknown risk rule"):
        check_rules({"skil_threshold": 0.5})
    with pytest.raises(ValueError, match="high_max_k"):
        check_rules({"high_max_k": 0})
    with pytest.raises(ValueError, match="verification_far"):
        check_rules({"verification_far": "1e-4"})
    with pytest.raises(ValueError, match="skill_threshold"):
        check_rules({"skill_threshold": 1.5})


def test_model_and_floor_must_share_the_test_images():
    X, y, _ = clusters(seed=9)
    a = evaluate(X, y, N_CLASSES, stratified_split(y, seed=0), seed=0, attacks=("linear_probe",))
    b = evaluate(X, y, N_CLASSES, stratified_split(y, seed=1), seed=0, attacks=("linear_probe",))
    with pytest.raises(ValueError, match="same split"):
        assess(a, b, chance=a.chance)
    with pytest.raises(ValueError, match="unknown attack"):
        evaluate(X, y, N_CLASSES, stratified_split(y, seed=0), seed=0, attacks=("linear_prob",))
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        evaluate(bad, y, N_CLASSES, stratified_split(y, seed=0), seed=0)
