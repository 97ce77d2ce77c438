"""Rotating test folds, group-aware splits and near-duplicates, down to the merged metrics."""
import numpy as np
import pytest

from creepscan.attacks import Metrics, evaluate
from creepscan.attacks import splits as splits_mod
from creepscan.attacks.splits import (
    DEFAULT_N_FOLDS,
    FOLDS_MAX_IMAGES,
    drop_near_duplicates,
    make_splits,
    scored_images,
    split_info,
    stratified_split,
)
from creepscan.attacks.stats import bootstrap_ci

LP = ("linear_probe",)


def clusters(n_classes=6, per_class=30, dim=24, sep=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * sep
    y = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    return (centres[y] + rng.standard_normal((y.size, dim))).astype(np.float32), y


def people(n_people=60, photos=5, dim=64, seed=0):
    """Attribute data where only identity predicts the label: each person has one label (half the
    people each) and a strong person-specific direction independent of the label; no feature
    carries the label from one person to another."""
    rng = np.random.default_rng(seed)
    label_of_person = rng.permutation(np.repeat([0, 1], n_people // 2))
    centre = rng.standard_normal((n_people, dim)) * 3.0
    person = np.repeat(np.arange(n_people), photos)
    X = (centre[person] + rng.standard_normal((person.size, dim))).astype(np.float32)
    return X, label_of_person[person], [f"person{p:03d}" for p in person]


def group_sets(split, groups):
    return [{groups[i] for i in getattr(split, name)} for name in ("train", "val", "test")]


# ------------------------------------------------------------------------------------------------
# make_splits
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grouped", [False, True])
def test_every_kept_image_is_a_test_image_exactly_once(grouped):
    rng = np.random.default_rng(4)
    y = rng.permutation(np.repeat(np.arange(5), [40, 23, 9, 31, 2]))
    groups = [f"g{i // 3}" for i in range(y.size)] if grouped else None  # groups mix labels
    folds = make_splits(y, seed=1, groups=groups, n_folds=5)
    assert len(folds) == 5
    kept = np.flatnonzero(~np.isin(y, folds[0].excluded_classes))
    assert 4 in folds[0].excluded_classes  # 2 images
    assert np.array_equal(scored_images(folds), kept)
    for s in folds:
        assert s.excluded_classes == folds[0].excluded_classes
        parts = [s.train, s.val, s.test]
        assert np.array_equal(np.sort(np.concatenate(parts)), kept)  # disjoint, and nothing else
        for p in parts:
            assert p.dtype == np.int64 and np.all(np.diff(p) > 0)
        classes = np.unique(y[kept])
        assert np.array_equal(np.unique(y[s.train]), classes) and np.array_equal(np.unique(y[s.val]), classes)
        if grouped:
            tr, va, te = group_sets(s, groups)
            assert not (tr & va or tr & te or va & te)


def test_no_group_straddles_and_classes_stay_stratified():
    y = np.repeat(np.arange(4), 60)
    groups = [f"person{i // 4}" for i in range(y.size)]        # 15 people per class, 4 photos each
    for n_folds in (1, 5):
        for s in make_splits(y, seed=3, groups=groups, n_folds=n_folds):
            tr, va, te = group_sets(s, groups)
            assert not (tr & va or tr & te or va & te)
            for c in range(4):
                n_c = [int(np.count_nonzero(y[getattr(s, name)] == c)) for name in ("train", "val", "test")]
                assert n_c == [36, 12, 12]                       # 9/3/3 people: 60/20/20 exactly


def test_single_split_without_groups_is_the_per_class_split():
    y = np.random.default_rng(0).permutation(np.repeat(np.arange(3), [14, 9, 30]))
    assert make_splits(y, seed=2, n_folds=1) == [stratified_split(y, 2)]
    assert make_splits(y, seed=2, groups=[None] * y.size, n_folds=1) == [stratified_split(y, 2)]


def test_deterministic_and_seeded():
    y = np.repeat(np.arange(3), 40)
    groups = [f"s{i // 5}" for i in range(y.size)]
    for g in (groups, None):
        a, b = make_splits(y, 7, groups=g), make_splits(y, 7, groups=g)
        assert len(a) == DEFAULT_N_FOLDS and a == b
        assert make_splits(y, 8, groups=g) != a


def test_default_fold_count_follows_the_named_constant(monkeypatch):
    y = np.repeat(np.arange(2), 20)
    assert len(make_splits(y, 0)) == DEFAULT_N_FOLDS
    assert FOLDS_MAX_IMAGES == 5000
    monkeypatch.setattr(splits_mod, "FOLDS_MAX_IMAGES", 39)
    assert make_splits(y, 0) == [stratified_split(y, 0)]
    monkeypatch.setattr(splits_mod, "FOLDS_MAX_IMAGES", 40)
    assert len(make_splits(y, 0)) == DEFAULT_N_FOLDS


def test_classes_the_groups_cannot_split_are_excluded_with_a_reason():
    y = np.repeat([0, 1, 2], [30, 30, 12])
    groups = [f"a{i // 6}" for i in range(60)] + ["b0"] * 6 + ["b1"] * 6   # class 2: two people only
    for n_folds in (1, 5):
        folds = make_splits(y, 0, groups=groups, n_folds=n_folds)
        assert folds[0].excluded_classes == (2,)
        assert "2 group" in folds[0].excluded_reasons[0]
        used = np.concatenate([folds[0].train, folds[0].val, scored_images(folds)])
        assert not np.isin(used, np.arange(60, 72)).any()


def test_bad_split_arguments_name_the_fix():
    y = np.repeat(np.arange(2), 10)
    with pytest.raises(ValueError, match="n_folds"):
        make_splits(y, 0, n_folds=0)
    with pytest.raises(ValueError, match="one entry per image"):
        make_splits(y, 0, groups=["a"] * 3)
    with pytest.raises(ValueError, match="no training share"):
        make_splits(y, 0, n_folds=2, fractions=(0.2, 0.6, 0.2))
    folds = make_splits(y, 0, n_folds=2)
    with pytest.raises(ValueError, match="overlap"):
        scored_images([folds[0], folds[0]])


# ------------------------------------------------------------------------------------------------
# evaluate over folds
# ------------------------------------------------------------------------------------------------

def test_folds_merge_into_one_result_over_every_image():
    X, y = clusters(sep=1.2, per_class=24)
    folds = make_splits(y, 0, n_folds=5)
    single = evaluate(X, y, 6, stratified_split(y, 0), seed=0, attacks=("linear_probe", "few_shot"))
    merged = evaluate(X, y, 6, folds, seed=0, attacks=("linear_probe", "few_shot", "zero_shot"),
                      text_embeddings=np.eye(6, 24, dtype=np.float32))
    assert isinstance(merged, Metrics) and merged.n_folds == 5 and single.n_folds == 1
    order = merged.test_index
    assert np.array_equal(order, np.arange(y.size))                   # every image scored once
    lp = merged.linear_probe
    assert np.array_equal(lp.test_labels, y[order]) and lp.test_correct.shape == (y.size,)
    assert lp.accuracy == pytest.approx(np.mean([np.mean(lp.test_correct[y[order] == c]) for c in range(6)]))
    assert lp.ci95 == bootstrap_ci(y[order], lp.test_correct, 6, seed=[0, 1])
    assert len(lp.fold_C) == 5
    j = merged.to_json()["linear_probe"]
    assert j["C_per_fold"] == [float(f"{c:.6g}") for c in lp.fold_C]
    assert j["C"] == pytest.approx(float(np.median(lp.fold_C)), rel=1e-5)
    assert merged.zero_shot.n_test == y.size and np.array_equal(merged.zero_shot.test_labels, y[order])
    for e in merged.few_shot:
        assert e.episode_accuracy.shape == (e.episodes,) and e.test_correct_rate.shape == (y.size,)
        assert np.array_equal(e.test_labels, y[order]) and len(e.fold_winners) == 5
    # same data, same accuracy level, but five times the test images: a much narrower CI
    assert abs(lp.accuracy - single.linear_probe.accuracy) < 0.1
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(lp.ci95) < 0.7 * width(single.linear_probe.ci95)
    assert width(merged.few_shot[2].ci95) < 0.7 * width(single.few_shot[2].ci95)


def test_one_split_in_a_list_is_the_single_split_and_folds_pair_across_encoders():
    X, y = clusters(sep=2.0, per_class=15, seed=2)
    split = stratified_split(y, 0)
    a, b = evaluate(X, y, 6, split, seed=0, attacks=LP), evaluate(X, y, 6, [split], seed=0, attacks=LP)
    assert a.to_json() == b.to_json() and np.array_equal(a.test_index, split.test)
    folds = make_splits(y, 0, n_folds=3)
    floor = np.random.default_rng(5).standard_normal((y.size, 8)).astype(np.float32)
    m, f = evaluate(X, y, 6, folds, seed=0, attacks=LP), evaluate(floor, y, 6, folds, seed=0, attacks=LP)
    assert np.array_equal(m.linear_probe.test_labels, f.linear_probe.test_labels)
    assert m.linear_probe.accuracy > 0.9 > 0.4 > f.linear_probe.accuracy


def test_a_few_shot_k_counts_only_if_every_fold_has_it():
    X, y = clusters(n_classes=3, per_class=26, seed=1, sep=2.0)
    folds = make_splits(y, 0, n_folds=5)  # per class: fold 0 tests 6 -> 15 train images, others 16
    assert sorted({int(np.count_nonzero(y[s.train] == 0)) for s in folds}) == [15, 16]
    m = evaluate(X, y, 3, folds, seed=0, attacks=("linear_probe", "few_shot"))
    assert m.few_shot.ks == [1, 2, 4, 8]
    assert [u["k"] for u in m.few_shot.unavailable] == [16]
    assert m.few_shot.unavailable[0]["reason"].startswith("fold 0:")


def test_identity_alone_predicts_the_label_until_the_split_is_by_person():
    """The issue's done-when case: image-level splits let the probe recognise the person; group
    splits leave it at chance, with a CI (groups resampled) that includes chance."""
    X, y, groups = people()
    by_image = evaluate(X, y, 2, make_splits(y, 0), seed=0, attacks=LP).linear_probe
    by_person = evaluate(X, y, 2, make_splits(y, 0, groups=groups), seed=0, attacks=LP, groups=groups).linear_probe
    assert by_image.ci95[0] > 0.8
    assert by_person.ci95[0] <= 0.5 <= by_person.ci95[1]
    assert abs(by_person.accuracy - 0.5) < 0.1


def test_group_ci_is_wider_than_the_image_ci_when_photos_of_a_person_agree():
    X, y, groups = people(seed=1)
    folds = make_splits(y, 0, groups=groups)
    plain = evaluate(X, y, 2, folds, seed=0, attacks=LP).linear_probe
    grouped = evaluate(X, y, 2, folds, seed=0, attacks=LP, groups=groups).linear_probe
    assert grouped.accuracy == plain.accuracy
    # five photos per person, all judged alike: the spread grows by about sqrt(5)
    assert (grouped.ci95[1] - grouped.ci95[0]) > 1.5 * (plain.ci95[1] - plain.ci95[0])


# ------------------------------------------------------------------------------------------------
# near-duplicates and the report block
# ------------------------------------------------------------------------------------------------

def test_near_duplicate_copies_in_test_are_dropped_and_counted():
    rng = np.random.default_rng(0)
    X, y = clusters(n_classes=3, per_class=20, dim=16, seed=3)
    # a floor-like reference: every embedding shares a large common part (a narrow cone)
    X_ref = X + 40.0
    copies = np.arange(0, 60, 6)                   # 10 images, each copied once (slightly re-encoded)
    X_all = np.vstack([X, X[copies] + rng.normal(0, 1e-3, (copies.size, 16))]).astype(np.float32)
    X_ref_all = np.vstack([X_ref, X_ref[copies] + 1e-3]).astype(np.float32)
    y_all = np.concatenate([y, y[copies]])
    hashes = [f"h{i}" for i in range(60)] + [None] * copies.size
    hashes[59] = hashes[1]                         # an exact byte copy under another name
    folds = make_splits(y_all, 0, n_folds=5)
    kept, n_dropped = drop_near_duplicates(folds, X_ref_all, hashes)
    pairs = [(int(i), 60 + j) for j, i in enumerate(copies)] + [(1, 59)]
    fold_of = {int(i): f for f, s in enumerate(folds) for i in s.test}
    expected = sorted(i for a, b in pairs if fold_of[a] != fold_of[b] for i in (a, b))
    dropped = sorted(int(i) for s in kept for i in s.dropped_test)
    assert dropped == expected and n_dropped == len(expected) > 0
    for before, after in zip(folds, kept):
        assert np.array_equal(after.train, before.train) and np.array_equal(after.val, before.val)
        assert np.array_equal(np.sort(np.concatenate([after.test, after.dropped_test])), before.test)
    # without copies nothing is dropped, although all raw reference cosines are above 0.98
    Xn = X_ref / np.linalg.norm(X_ref, axis=1, keepdims=True)
    assert (Xn @ Xn.T).min() > 0.98
    assert drop_near_duplicates(make_splits(y, 0), X_ref, [f"h{i}" for i in range(60)])[1] == 0
    info = split_info(kept, None, n_dropped)
    assert info["near_duplicates_dropped"] == n_dropped and info["test"] == y_all.size - n_dropped
    m = evaluate(X_all, y_all, 3, kept, seed=0, attacks=LP)
    assert m.test_index.size == y_all.size - n_dropped and not np.isin(m.test_index, dropped).any()


def test_duplicate_search_runs_in_blocks(monkeypatch):
    X, y = clusters(n_classes=2, per_class=40, dim=8, seed=4)
    X = np.vstack([X, X[:5]])
    y = np.concatenate([y, y[:5]])
    folds = make_splits(y, 1, n_folds=4)
    whole = drop_near_duplicates(folds, X, None)
    monkeypatch.setattr(splits_mod, "_SIM_BLOCK_ROWS", 3)
    assert drop_near_duplicates(folds, X, None) == whole and whole[1] > 0


def test_split_info_reports_folds_groups_and_warnings():
    y = np.repeat(np.arange(2), 30)
    groups = [f"p{i // 3}" for i in range(60)]
    groups[0] = None
    folds = make_splits(y, 0, groups=groups)
    info = split_info(folds, groups, 0)
    assert info["folds"] == len(folds) == 5 and info["grouped"] is True and info["n_groups"] == 20
    assert (info["train"], info["val"]) == (folds[0].train.size, folds[0].val.size) and info["test"] == 60
    assert "1 images have no group" in info["warning"]
    plain = split_info(make_splits(y, 0, n_folds=1), None, 0, warn_ungrouped=True)
    assert plain["grouped"] is False and plain["n_groups"] is None and "no group" in plain["warning"]
    assert split_info(make_splits(y, 0, n_folds=1), None, 0)["warning"] is None
    with pytest.raises(ValueError, match="threshold"):
        drop_near_duplicates(folds, np.zeros((60, 3)), None, threshold=1.5)
