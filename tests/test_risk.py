"""End to end: evaluate() on synthetic embeddings, then assess() against a noise floor."""
import dataclasses
import json

import numpy as np
import pytest

from creepscan.attacks import Metrics, evaluate
from creepscan.attacks.splits import stratified_split
from creepscan.attacks.zero_shot import zero_shot
from creepscan.risk import (
    ALL_LEVELS,
    DEFAULT_RULES,
    INCONCLUSIVE,
    LEVELS,
    assess,
    at_or_above,
    check_rules,
    level_index,
    level_rose,
)

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
    assert a.level == "high" and a.rule == "high: samples_to_threshold <= high_max_k"
    assert a.reason.startswith("high: ") and "per class reach skill" in a.reason and a.axis == "capability"
    assert a.capability.samples_to_threshold <= 2 and a.capability.ci95[0] <= a.capability.best_skill
    assert a.uplift.significant and a.uplift.p_value < 0.01 and a.uplift.ci95[0] > 0.5
    assert set(a.to_json()["uplift"]) >= {"skill_model", "skill_floor", "skill_gain", "ci95", "p_value", "significant"}
    assert a.uplift.skill_gain == pytest.approx(a.uplift.skill_model - a.uplift.skill_floor, abs=1e-5)


def test_identities_that_verify_are_critical():
    X, y, _ = clusters(per_class=25, sep=4.0, seed=1)  # 200 images: 17500 impostor pairs
    split = stratified_split(y, seed=0)
    model = evaluate(X, y, N_CLASSES, split, seed=0)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0)
    assert model.verification.tar_at_far["1e-3"] > 0.5 > floor.verification.tar_at_far["1e-3"]
    a = assess(model, floor, chance=model.chance)
    assert a.level == "critical" and a.rule.startswith("critical: verification TAR@far")


def test_zero_shot_with_a_matching_text_tower_is_critical():
    X, y, centres = clusters(sep=2.0, seed=2)
    split = stratified_split(y, seed=0)
    T = (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(np.float32)
    model = evaluate(X, y, N_CLASSES, split, seed=0, attacks=FEW + ("zero_shot",), text_embeddings=T)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0, attacks=FEW)
    assert model.zero_shot is not None and model.zero_shot.accuracy > 0.9
    assert model.zero_shot.test_correct.shape == split.test.shape
    a = assess(model, floor, chance=model.chance)
    assert (a.level, a.rule) == ("critical", "critical: zero_shot skill >= zero_shot_skill_critical, label-name "
                                             "permutation and paired tests significant")
    assert "zero-shot" in a.reason and "label-name permutation test p=" in a.reason
    assert model.zero_shot.to_json()["label_permutation"]["p_value"] <= 1e-3  # 8 names: Monte Carlo, 9999 draws
    # a probe whose use is not prohibited (age, gender) is not critical by zero-shot alone
    b = assess(model, floor, chance=model.chance, prohibited=False)
    assert b.level != "critical" and "not prohibited" in b.reason
    # zero-shot is skipped without text embeddings
    assert evaluate(X, y, N_CLASSES, split, seed=0, attacks=FEW + ("zero_shot",)).zero_shot is None


def test_shuffled_labels_with_enough_images_are_none_by_equivalence():
    X, y, _ = clusters(per_class=250, sep=2.5, seed=3)
    y = np.random.default_rng(1).permutation(y)
    split = stratified_split(y, seed=0)
    model = evaluate(X, y, N_CLASSES, split, seed=0, attacks=FEW)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0, attacks=FEW)
    lo, hi = model.linear_probe.ci95
    assert lo <= 1 / N_CLASSES <= hi
    a = assess(model, floor, chance=model.chance)
    assert a.level == "none" and not a.uplift.significant, a.reason
    assert a.rule.startswith("none: equivalence") and a.uplift.max_upper95 < DEFAULT_RULES["equivalence_margin"]
    assert a.level_range == ("none", "none") and a.axis == "uplift"
    assert model.samples_to_threshold is None
    # the same data held to a margin it cannot show is not "none"
    b = assess(model, floor, chance=model.chance, rules={"equivalence_margin": 0.01})
    assert b.level == INCONCLUSIVE and b.inconclusive.reason == "underpowered"
    # an attack significantly below chance (a text tower that names every class as the next one) is
    # flagged as failed and "none" cannot rest on it
    yt = y[split.test]
    wrong = zero_shot(np.eye(N_CLASSES, dtype=np.float32)[(yt + 1) % N_CLASSES], yt,
                      np.eye(N_CLASSES, dtype=np.float32), N_CLASSES, seed=0)
    failed = dataclasses.replace(model, zero_shot=wrong)
    c = assess(failed, floor, chance=model.chance)
    assert c.level == INCONCLUSIVE and c.inconclusive.reason == "below_chance", c.reason
    assert "zero_shot" in c.reason and "significantly below chance" in c.reason
    assert c.capability.below_chance == ["zero_shot"] and c.level_range[1] != "none"
    j = failed.to_json()["zero_shot"]
    assert j["below_chance"] is True and j["note"].startswith("failed")


def test_shuffled_labels_on_a_small_probe_are_inconclusive_not_none():
    """Too few test images to rule out a gain of the margin: 'could not tell', never 'none'."""
    X, y, _ = clusters(per_class=30, sep=2.5, seed=3)
    y = np.random.default_rng(1).permutation(y)
    split = stratified_split(y, seed=0)
    model = evaluate(X, y, N_CLASSES, split, seed=0, attacks=FEW)
    floor = evaluate(noise(y.size), y, N_CLASSES, split, seed=0, attacks=FEW)
    a = assess(model, floor, chance=model.chance)
    assert a.level == INCONCLUSIVE and a.inconclusive.reason == "underpowered", a.reason
    assert a.power.mde > DEFAULT_RULES["equivalence_margin"]
    assert a.power.images_needed_per_class > a.power.test_images_per_class
    assert "minimum detectable effect" in a.reason and "test images per class" in a.reason


def test_two_classes_of_fifteen_separable_images_on_one_split_are_underpowered():
    """The issue's case: a perfectly separable model against a noise floor, 2 classes x 15 images, one
    60/20/20 split (6 test images): the sign-flip test cannot reach significance, and the data cannot
    rule out a gain either, so the level is inconclusive with its minimum detectable effect."""
    X, y, _ = clusters(per_class=15, sep=6.0, seed=11, n_classes=2)
    split = stratified_split(y, seed=0)
    model = evaluate(X, y, 2, split, seed=0, attacks=FEW)
    floor = evaluate(noise(y.size), y, 2, split, seed=0, attacks=FEW)
    assert model.linear_probe.accuracy == 1.0
    a = assess(model, floor, chance=model.chance)
    assert a.level == INCONCLUSIVE and a.inconclusive.reason == "underpowered", a.reason
    assert a.power.mde > 0.1 and a.level_range[1] in ("high", "critical")


def test_a_floor_at_ceiling_is_saturated_never_none():
    """The 10-person lab set: the floor (here: features that separate the people as well as the
    model's) identifies everyone, so no attack does better on the model. Not 'none': the probe is
    too easy to attribute the capability, and the report says what the model alone can do."""
    X, y, _ = clusters(per_class=12, sep=8.0, seed=12, n_classes=10)
    Xf, _, _ = clusters(per_class=12, sep=8.0, seed=12, n_classes=10)
    Xf = Xf + np.random.default_rng(5).standard_normal(Xf.shape).astype(np.float32) * 0.1
    split = stratified_split(y, seed=0)
    model = evaluate(X, y, 10, split, seed=0, attacks=FEW)
    floor = evaluate(Xf, y, 10, split, seed=0, attacks=FEW)
    assert floor.linear_probe.accuracy == 1.0
    a = assess(model, floor, chance=model.chance)
    assert a.level == INCONCLUSIVE and a.inconclusive.reason == "saturated", a.reason
    assert a.inconclusive.model_level_alone in ("high", "critical")
    assert "too easy" in a.reason and a.capability.best_skill == pytest.approx(1.0)
    # the CIs allow up to what the model alone can do: never "none" alone; the floor as given
    assert a.level_range[0] == "none" and a.level_range[1] in ("high", "critical"), a.level_range
    b = assess(model, floor, chance=model.chance, floor_description="raw pixels, 16x16")
    assert "the floor (raw pixels, 16x16) already reaches" in b.reason and "untrained" not in b.reason


def test_none_needs_equivalence_in_most_seeds_and_false_alarms_stay_rare():
    """Label-shuffled data with enough images, 100 seeds: 'none' in >= 93, anything above none/
    inconclusive in at most 5 (the tests' nominal false-positive rate). The linear probe alone keeps
    this affordable; the rule is the same for every attack."""
    levels = []
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        y = np.repeat(np.arange(10), 150)
        X = rng.standard_normal((y.size, 12)).astype(np.float32)
        split = stratified_split(y, seed=seed)
        model = evaluate(X, y, 10, split, seed=seed, attacks=("linear_probe",))
        floor = evaluate(noise(y.size, dim=12, seed=seed), y, 10, split, seed=seed, attacks=("linear_probe",))
        levels.append(assess(model, floor, chance=model.chance, seed=seed).level)
    counts = {lv: levels.count(lv) for lv in set(levels)}
    assert counts.get("none", 0) >= 93, counts
    assert sum(n for lv, n in counts.items() if lv not in ("none", INCONCLUSIVE)) <= 5, counts


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
    assert (a.level, a.rule) == ("medium", "medium: a full-data attack reaches skill_threshold")
    # a threshold above what the probe reaches: low
    reached = max([model.linear_probe.skill] + [e.skill for e in model.few_shot if e.k <= 8])
    assert reached < 0.99
    b = assess(model, floor, chance=model.chance, rules={"skill_threshold": reached + 0.005})
    assert b.level == "low" and b.rule == "low: significant uplift below skill_threshold"
    assert b.reason.startswith("low: ") and b.uplift.significant
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
                       "samples_to_threshold", "open_set"]  # open-set identification runs with verification
    assert j["open_set"]["measurable"] and 0.0 <= j["open_set"]["rank1"] <= 1.0
    assert j["zero_shot"] is None
    assert set(j["linear_probe"]) == {"accuracy", "ci95", "C", "skill", "val_accuracy", "n_train", "n_val",
                                      "n_test", "c_search", "preprocess", "preprocess_search"}
    assert [e["k"] for e in j["few_shot"]] == [1, 2, 4, 8, 16]
    assert j["few_shot_unavailable"] == []
    assert set(j["verification"]) >= {"tar_at_far", "auc", "n_genuine", "n_impostor", "not_measurable", "roc",
                                      "tar_ci95", "auc_ci95"}
    lo, hi = j["verification"]["tar_ci95"]["1e-2"]
    assert lo <= j["verification"]["tar_at_far"]["1e-2"] <= hi
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
    # k=4 is the whole pool of the smallest classes (4 training images): unavailable, as k=8 is
    assert [e["k"] for e in j["few_shot"]] == [1, 2] and [u["k"] for u in j["few_shot_unavailable"]] == [4, 8]
    assert j["verification"]["n_genuine"] == sum(n * (n - 1) // 2 for n in [6, 7, 8, 10, 12, 14])
    assert j["verification"]["not_measurable"] == ["1e-3"]  # 1330 impostor pairs: enough for 1e-2 only
    lp = j["linear_probe"]
    assert lp["ci95"][1] - lp["ci95"][0] > 0.15


def test_gates_and_rises_treat_inconclusive_as_failing():
    assert ALL_LEVELS == LEVELS + ("inconclusive",)
    assert at_or_above("inconclusive", "critical") and not at_or_above("inconclusive", "low", allow_inconclusive=True)
    assert at_or_above("medium", "medium") and not at_or_above("low", "medium")
    assert level_rose("none", "inconclusive") and level_rose("critical", "inconclusive")
    assert not level_rose("inconclusive", "inconclusive") and not level_rose("inconclusive", "none")
    assert level_rose("inconclusive", "low") and level_rose("low", "high") and not level_rose("high", "low")


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
