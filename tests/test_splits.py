import numpy as np
import pytest

from creepscan.attacks.splits import Split, make_splits, stratified_split


def labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def per_class(split, y, c):
    return tuple(int(np.count_nonzero(y[getattr(split, s)] == c)) for s in ("train", "val", "test"))


@pytest.mark.parametrize("n, expected", [(3, (1, 1, 1)), (4, (2, 1, 1)), (6, (4, 1, 1)), (10, (6, 2, 2)),
                                         (14, (8, 3, 3)), (100, (60, 20, 20))])
def test_class_sizes_round_on_purpose(n, expected):
    y = labels([n, 50])
    s = stratified_split(y, seed=0)
    assert per_class(s, y, 0) == expected


def test_partition_sorted_disjoint_and_excludes_small_classes():
    y = labels([20, 2, 7, 1, 3, 9])
    rng = np.random.default_rng(1)
    y = rng.permutation(y)
    s = stratified_split(y, seed=3)
    assert isinstance(s, Split)
    assert s.excluded_classes == (1, 3)
    allidx = np.concatenate([s.train, s.val, s.test])
    assert len(set(allidx.tolist())) == allidx.size
    assert set(allidx.tolist()) == set(np.flatnonzero(~np.isin(y, [1, 3])).tolist())
    for part in (s.train, s.val, s.test):
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)
        assert not np.isin(y[part], [1, 3]).any()
    for c in (0, 2, 4, 5):
        assert min(per_class(s, y, c)) >= 1
    assert s.sizes() == {"train": s.train.size, "val": s.val.size, "test": s.test.size}
    assert s.classes_of(y).tolist() == [0, 2, 4, 5]


def test_deterministic_and_seed_dependent():
    y = labels([30] * 5)
    a, b = stratified_split(y, 7), stratified_split(y, 7)
    assert a == b and a != stratified_split(y, 8)
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    c = stratified_split(y, 8)
    assert not np.array_equal(a.test, c.test)


def test_a_class_assignment_does_not_depend_on_other_classes():
    y = labels([12, 15, 9])
    y2 = np.concatenate([y, np.full(11, 3)])           # a new class appended
    y3 = y[np.flatnonzero(y != 1)]                      # class 1 removed (indices of 0 unchanged)
    a, b, c = stratified_split(y, 5), stratified_split(y2, 5), stratified_split(y3, 5)
    for name in ("train", "val", "test"):
        pa, pb, pc = getattr(a, name), getattr(b, name), getattr(c, name)
        assert np.array_equal(pa[y[pa] == 0], pb[y2[pb] == 0])
        assert np.array_equal(pa[y[pa] == 0], pc[y3[pc] == 0])


def test_min_per_class_and_bad_inputs():
    y = labels([5, 4, 10])
    s = stratified_split(y, 0, min_per_class=5)
    assert s.excluded_classes == (1,)
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(y, 0, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="min_per_class"):
        stratified_split(y, 0, min_per_class=2)
    with pytest.raises(ValueError, match="integer class ids"):
        stratified_split(np.array(["a", "b", "a"]), 0)
    with pytest.raises(ValueError, match=">= 0"):
        stratified_split(np.array([0, -1, 0]), 0)
    with pytest.raises(ValueError, match="1-d"):
        stratified_split(np.zeros((3, 2), int), 0)


def test_other_fractions_keep_one_of_each():
    y = labels([3, 4, 40])
    s = stratified_split(y, 0, fractions=(0.8, 0.1, 0.1))
    assert per_class(s, y, 0) == (1, 1, 1)
    assert per_class(s, y, 2) == (32, 4, 4)


def test_excluded_classes_carry_their_reason():
    y = labels([20, 2, 7])
    s = stratified_split(y, seed=0)
    assert s.excluded_classes == (1,)
    assert s.excluded_reasons == ("2 images, fewer than min_per_class=3",)


def test_group_split_keeps_people_on_one_side_and_every_class_in_every_split():
    rng = np.random.default_rng(2)
    n_people = 40
    photos = rng.integers(1, 9, n_people)                      # 1..8 photos per person
    person = np.repeat(np.arange(n_people), photos)
    y = (np.arange(n_people) % 4)[person]                      # one label per person
    groups = [f"p{p}" for p in person]
    s = make_splits(y, seed=5, groups=groups, n_folds=1)[0]
    sides = [{groups[i] for i in getattr(s, name)} for name in ("train", "val", "test")]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert np.array_equal(np.sort(np.concatenate([s.train, s.val, s.test])), np.arange(y.size))
    for c in range(4):
        n_c = [int(np.count_nonzero(y[getattr(s, name)] == c)) for name in ("train", "val", "test")]
        assert min(n_c) >= 1
        assert 0.4 < n_c[0] / sum(n_c) < 0.8                   # stratified as far as whole people allow


# ---------------------------------------------------------------------------------------------
# The pipeline's near-duplicate guard and its count-first check (issue 23)
# ---------------------------------------------------------------------------------------------

def _probe_inputs(X_ref, y, hashes):
    """A LabelledSet, ProbeData and floor Features for ``make_probe_splits`` (no model, no files)."""
    from pathlib import Path
    from types import SimpleNamespace

    from creepscan.data import ImageSet
    from creepscan.pipeline import LabelledSet, ProbeData
    from creepscan.probes import select

    n = y.size
    probe = select("fixtures", ["attribute-gender"])[0]
    images = ImageSet(root=Path("/x"), paths=[Path(f"/x/{i}.png") for i in range(n)],
                      labels=[str(c) for c in y], source="test")
    ls = LabelledSet(y=y, rows={}, kept=list(range(n)), classes=["0", "1"], excluded=[],
                     skipped=[])
    return ls, ProbeData(probe, images, hashes, {}), SimpleNamespace(X=X_ref)


def test_near_identical_images_above_the_fold_limit_keep_a_test_split():
    """2 x 3,000 near-identical images (one split, 20% test): the floor calls every test image a
    near-duplicate; the guard judged the share against all images (1,200 of 6,000 is not > 20%), so
    an empty test split reached the attacks (exit 3). Judged against the test images, it falls back
    to exact duplicates and says so."""
    from creepscan.options import Options
    from creepscan.pipeline import make_probe_splits

    rng = np.random.default_rng(0)
    y = labels([3000, 3000])
    X = np.where(y[:, None] == 0, 1.0, -1.0) * np.ones((1, 8)) + 1e-4 * rng.standard_normal((y.size, 8))
    ls, pd, floor = _probe_inputs(X.astype(np.float32), y, [f"h{i}" for i in range(y.size)])
    splits, block, _ = make_probe_splits(ls, pd, floor.X, Options(seed=0))
    assert len(splits) == 1 and splits[0].test.size == 1200
    assert block["near_duplicates_dropped"] == 0 and "only exact duplicates" in block["warning"]


def test_a_probe_whose_test_images_are_all_copies_is_exit_2_not_an_empty_split():
    from creepscan.errors import DataUnavailable
    from creepscan.options import Options
    from creepscan.pipeline import make_probe_splits

    y = labels([20, 20])
    X = np.random.default_rng(1).standard_normal((40, 8)).astype(np.float32)
    ls, pd, floor = _probe_inputs(X, y, [f"class{c}" for c in y])  # every file of a class has one content
    with pytest.raises(DataUnavailable, match="every test image is a copy"):
        make_probe_splits(ls, pd, floor.X, Options(seed=0))
