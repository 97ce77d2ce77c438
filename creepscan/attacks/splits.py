"""Seeded, class-stratified train / validation / test splits: single or rotating (cross-fitted),
by image or by group, with near-duplicates kept out of the scored test images.

Without groups a class's images are assigned with a generator seeded from ``(seed, class)``, so the
assignment of one class never depends on which other classes are present: two probes that share a
class (or the same probe re-run after a class was added) put that class's images in the same splits.

With groups (a person, a video sequence) whole groups are assigned, so photos of one person never
sit on both sides of a split; the groups are placed greedily to keep every class's share of each
split close to its target (stratified by label as well as the groups allow).

With ``n_folds = F > 1`` the test folds partition the kept images: every image is scored exactly
once, and each fold's validation and training images come from the other folds. The splits depend
on the labels, the groups and the seed only, never on features, so two encoders audited on the
same images get the same folds (which is what makes their per-image results pairable).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = [
    "Split", "stratified_split", "make_splits", "drop_near_duplicates", "split_info", "default_n_folds",
    "scored_images", "class_counts", "DEFAULT_N_FOLDS", "FOLDS_MAX_IMAGES", "NEAR_DUPLICATE_COSINE",
]

# Rotating test folds multiply the attack work by F; above this many kept images a single 20% test
# split already holds >= 1,000 images, enough for a tight CI, so the single split is kept there.
DEFAULT_N_FOLDS = 5
FOLDS_MAX_IMAGES = 5000
NEAR_DUPLICATE_COSINE = 0.98
_SIM_BLOCK_ROWS = 1024  # test rows per similarity block: [1024, n_fit] float32 at a time


@dataclass(frozen=True, eq=False)
class Split:
    """Indices into ``X``/``y`` (sorted, int64) and the classes left out of every split.

    A class in ``excluded_classes`` has no image in any of the three index arrays;
    ``excluded_reasons[i]`` says why ``excluded_classes[i]`` was left out. ``dropped_test`` holds the
    images of this split's test share that were not scored (near-duplicates of a train/val image).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    excluded_classes: tuple[int, ...] = ()
    excluded_reasons: tuple[str, ...] = ()
    dropped_test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return (self.excluded_classes == other.excluded_classes
                and all(np.array_equal(getattr(self, n), getattr(other, n))
                        for n in ("train", "val", "test", "dropped_test")))

    __hash__ = None  # holds arrays

    def classes_of(self, y: np.ndarray) -> np.ndarray:
        """The kept classes: sorted labels with training images (each also has val and test images)."""
        return np.unique(np.asarray(y)[self.train])

    def sizes(self) -> dict:
        return {"train": int(self.train.size), "val": int(self.val.size), "test": int(self.test.size)}


def _check_labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-d array of class ids, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"labels must be integer class ids 0..n_classes-1, got dtype {y.dtype}; "
                             "map label strings to ids first (e.g. np.unique(labels, return_inverse=True))")
    if y.size and y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")
    return y.astype(np.int64, copy=False)


def _check_fractions(fractions) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(not np.isfinite(f) or f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three positive shares summing to 1 (train, val, test), got {fractions!r}")
    return fr


def _check_seed_and_min(seed, min_per_class) -> int:
    if int(min_per_class) < 3:
        raise ValueError(f"min_per_class must be >= 3 (one image per split), got {min_per_class}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed


def class_counts(y, n_classes: int | None = None) -> np.ndarray:
    y = _check_labels(y)
    return np.bincount(y, minlength=n_classes or 0)


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Train/val/test sizes for a class of n >= 3 images: val and test get round(n*f) but at least
    one each, train the rest (also at least one). 6 -> 4/1/1, 14 -> 8/3/3, 100 -> 60/20/20."""
    n_val = max(1, int(np.floor(n * fractions[1] + 0.5)))
    n_test = max(1, int(np.floor(n * fractions[2] + 0.5)))
    while n - n_val - n_test < 1:  # only for extreme fractions: take back from the larger side
        if n_val >= n_test and n_val > 1:
            n_val -= 1
        elif n_test > 1:
            n_test -= 1
        else:  # pragma: no cover - n >= 3 guarantees a train image once val = test = 1
            break
    return n - n_val - n_test, n_val, n_test


def _sorted(parts) -> np.ndarray:
    parts = [np.asarray(p, dtype=np.int64) for p in parts]
    return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)


def _too_few_reason(n: int, min_per_class: int) -> str:
    return f"{n} images, fewer than min_per_class={min_per_class}"


def stratified_split(y, seed: int, fractions=(0.6, 0.2, 0.2), min_per_class: int = 3) -> Split:
    """Split image indices into train / val / test, class by class (no groups, one split).

    Parameters
    ----------
    y : int array [n]
        Class id of each image (0..n_classes-1).
    seed : int
        With the class id, seeds each class's shuffle.
    fractions : (train, val, test)
        Target shares; each kept class gets at least one image in every split (rounding in favour of
        val/test, e.g. 6 images -> 4/1/1, 14 -> 8/3/3).
    min_per_class : int
        Classes with fewer images are excluded (listed in ``excluded_classes``, in no split). At least 3.
    """
    y = _check_labels(y)
    fr = _check_fractions(fractions)
    seed = _check_seed_and_min(seed, min_per_class)
    parts: tuple[list, list, list] = ([], [], [])
    excluded, reasons = [], []
    for c, members in _class_members(y):
        n = members.size
        if n < min_per_class:
            excluded.append(c)
            reasons.append(_too_few_reason(n, min_per_class))
            continue
        perm = np.random.default_rng([seed, c]).permutation(members)
        n_tr, n_va, _ = _counts(n, fr)
        parts[0].append(perm[:n_tr])
        parts[1].append(perm[n_tr:n_tr + n_va])
        parts[2].append(perm[n_tr + n_va:])
    return Split(_sorted(parts[0]), _sorted(parts[1]), _sorted(parts[2]), tuple(excluded), tuple(reasons))


def _class_members(y: np.ndarray):
    """(class, ascending indices of its images) for each class present, in class order: the
    ascending order gives every class shuffle a canonical starting point."""
    order = np.argsort(y, kind="stable")
    classes, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    for c, s, n in zip(classes.tolist(), starts.tolist(), counts.tolist()):
        yield int(c), order[s:s + n]


def default_n_folds(n_kept_images: int) -> int:
    """``DEFAULT_N_FOLDS`` rotating test folds up to ``FOLDS_MAX_IMAGES`` kept images, else 1."""
    return DEFAULT_N_FOLDS if int(n_kept_images) <= FOLDS_MAX_IMAGES else 1


def _group_ids(groups, n: int) -> np.ndarray | None:
    """Integer group id per image, or None when no image carries a group. Images whose group is
    None (or "") each become a group of their own, so they can land anywhere."""
    if groups is None:
        return None
    groups = list(groups)
    if len(groups) != n:
        raise ValueError(f"groups must give one entry per image: {len(groups)} groups for {n} labels "
                         "(use None for an image without a group)")
    named = [g is not None and str(g) != "" for g in groups]
    if not any(named):
        return None
    names = sorted({str(g) for g, has in zip(groups, named) if has})
    index = {name: i for i, name in enumerate(names)}
    out = np.empty(n, np.int64)
    next_id = len(names)
    for i, (g, has) in enumerate(zip(groups, named)):
        if has:
            out[i] = index[str(g)]
        else:
            out[i] = next_id
            next_id += 1
    return out


def make_splits(y, seed: int, *, groups: Sequence | None = None, n_folds: int | None = None,
                fractions=(0.6, 0.2, 0.2), min_per_class: int = 3) -> list[Split]:
    """The probe's splits: one train/val/test split, or F rotating test folds (cross-fitting).

    Parameters
    ----------
    y : int array [n]
        Class id of each image.
    seed : int
        Seeds every shuffle; the same labels, groups and seed give the same splits.
    groups : sequence [n] of str or None, optional
        The group of each image (a person, a video sequence); no group has images on two sides of
        any split. None entries are groups of one image. Without any group, images are split one
        by one, class by class (``stratified_split``'s per-class seeding).
    n_folds : int, optional
        F. 1: the single split with ``fractions``. F > 1: the test folds partition the kept images
        (each fold's test share ~1/F); each fold's validation share (``fractions[1]`` of the class)
        comes from the other folds and the rest is its training split. Default
        ``default_n_folds(number of kept images)``: ``DEFAULT_N_FOLDS`` up to ``FOLDS_MAX_IMAGES``.
    fractions : (train, val, test)
        Target shares of the single split; with folds only the validation share is used.
    min_per_class : int
        Classes with fewer images are excluded. Classes that cannot give every split (every fold's
        train and val, and a test) an image, by image or by group, are excluded too; each Split
        lists them with a reason.

    Returns a list of ``Split`` (one per fold; folds left with no test image are omitted), all with
    the same kept and excluded classes.
    """
    y = _check_labels(y)
    fr = _check_fractions(fractions)
    seed = _check_seed_and_min(seed, min_per_class)
    gid = _group_ids(groups, y.size)
    if n_folds is None:
        counts = np.bincount(y) if y.size else np.zeros(0, np.int64)
        n_folds = default_n_folds(int(counts[counts >= min_per_class].sum()))
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 1:
        raise ValueError(f"n_folds must be a positive integer (1 = a single split), got {n_folds!r}")
    n_folds = int(n_folds)
    if n_folds > 1 and 1.0 / n_folds + fr[1] >= 1.0 - 1e-9:
        raise ValueError(f"n_folds={n_folds} with a validation share of {fr[1]} leaves no training share; "
                         "use more folds or a smaller validation fraction")
    if gid is None:
        if n_folds == 1:
            return [stratified_split(y, seed, fr, min_per_class)]
        return _image_folds(y, seed, n_folds, fr, min_per_class)
    return _group_splits(y, gid, seed, n_folds, fr, min_per_class)


def _image_folds(y, seed, n_folds, fr, min_per_class) -> list[Split]:
    """F rotating folds without groups: each class's shuffled images are cut into F test chunks;
    fold f's validation images are the first ones after chunk f (rotating), the rest train."""
    train: list[list] = [[] for _ in range(n_folds)]
    val: list[list] = [[] for _ in range(n_folds)]
    test: list[list] = [[] for _ in range(n_folds)]
    excluded, reasons = [], []
    for c, members in _class_members(y):
        n = members.size
        if n < min_per_class:
            excluded.append(c)
            reasons.append(_too_few_reason(n, min_per_class))
            continue
        rest_min = n - math.ceil(n / n_folds)  # images outside the largest test chunk
        if rest_min < 2:
            excluded.append(c)
            reasons.append(f"{n} images cannot give each of {n_folds} folds a train and a validation image")
            continue
        n_val = min(max(1, int(np.floor(n * fr[1] + 0.5))), rest_min - 1)
        chunks = np.array_split(np.random.default_rng([seed, c]).permutation(members), n_folds)
        for f in range(n_folds):
            rest = np.concatenate(chunks[f + 1:] + chunks[:f])
            test[f].append(chunks[f])
            val[f].append(rest[:n_val])
            train[f].append(rest[n_val:])
    splits = [Split(_sorted(train[f]), _sorted(val[f]), _sorted(test[f]), tuple(excluded), tuple(reasons))
              for f in range(n_folds)]
    return [s for s in splits if s.test.size]


# ---------------------------------------------------------------------------------------------
# Group-aware assignment
# ---------------------------------------------------------------------------------------------

def _assign(counts: np.ndarray, shares: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Greedy placement of whole groups into bins with target shares, per class.

    counts : [G, K] images of each class in each group; shares : [B] summing to 1; order : the
    groups in placement order. Each group goes to the bin where it adds least to the squared
    deviation of the per-class fills from their targets, each class's deviation measured as a share
    of the class (classes weigh equally, as in balanced accuracy). Ties go to the bin furthest below
    its overall target, then the lowest index. Returns the bin of each group, int [G].
    """
    totals = counts.sum(axis=0).astype(np.float64)
    weight = np.divide(1.0, totals ** 2, out=np.zeros_like(totals), where=totals > 0)
    target = shares[:, None] * totals[None, :]
    fill = np.zeros_like(target)
    size_target = np.maximum(target.sum(axis=1), 1e-12)
    out = np.full(counts.shape[0], -1, np.int64)
    for g in order:
        v = counts[g].astype(np.float64)
        cost = ((2.0 * (fill - target) + v) * v * weight).sum(axis=1)
        best = np.flatnonzero(cost <= cost.min() + 1e-12)
        if best.size > 1:
            best = best[np.argsort(fill[best].sum(axis=1) / size_target[best], kind="stable")]
        out[g] = best[0]
        fill[best[0]] += v
    return out


def _repair(counts: np.ndarray, bins: np.ndarray, n_bins: int, required: Sequence[int], order: np.ndarray) -> None:
    """Give every class an image in each required bin where the groups allow, in place.

    A class missing from a required bin takes one of its groups from a bin where it has two or
    more, preferring a move that leaves every other class's presence in required bins intact, then
    the smallest group. Classes still missing after this are excluded by the caller."""
    has = counts > 0
    groups_per_bin = np.stack([has[bins == b].sum(axis=0) for b in range(n_bins)])  # [n_bins, K]
    rank = np.full(counts.shape[0], counts.shape[0], np.int64)
    rank[order] = np.arange(order.size)
    for c in np.argsort(has.sum(axis=0), kind="stable"):  # classes with the fewest groups first
        for b in required:
            if groups_per_bin[b, c] > 0 or not has[:, c].any():
                continue
            # only required bins trade groups: a fold's test groups never move
            donors = [b2 for b2 in required if b2 != b and groups_per_bin[b2, c] >= 2]
            candidates = [g for g in np.flatnonzero(has[:, c]) if bins[g] in donors]
            if not candidates:
                continue

            def harm(g):
                # how many classes of g would lose their last group in its bin, then its size
                lost = int(np.count_nonzero(groups_per_bin[bins[g], has[g]] == 1))
                return lost, int(counts[g].sum()), int(rank[g])

            g = min(candidates, key=harm)
            groups_per_bin[bins[g]] -= has[g]
            groups_per_bin[b] += has[g]
            bins[g] = b


def _group_splits(y, gid, seed, n_folds, fr, min_per_class) -> list[Split]:
    n = y.size
    excluded: dict[int, str] = {}
    present_classes = np.unique(y)
    for c, members in _class_members(y):
        if members.size < min_per_class:
            excluded[c] = _too_few_reason(members.size, min_per_class)
    keep = ~np.isin(y, list(excluded))
    # Groups as units: the class counts of each group over the images still in play.
    uniq, g_of = np.unique(gid[keep], return_inverse=True)
    K = int(y.max()) + 1 if n else 0
    counts = np.zeros((uniq.size, K), np.int64)
    np.add.at(counts, (g_of, y[keep]), 1)
    for c in present_classes.tolist():
        if c in excluded:
            continue
        n_g = int(np.count_nonzero(counts[:, c]))
        if n_g < 3:
            excluded[c] = f"only {n_g} group(s): a class needs >= 3 groups to have train, validation and test images"
            counts[:, c] = 0
    live = counts.sum(axis=1) > 0
    rng = np.random.default_rng([seed, 0x67726F7570])  # "group": its own stream, apart from the class shuffles
    shuffled = rng.permutation(uniq.size)
    sizes = counts.sum(axis=1)
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]  # large groups first, ties seeded
    order = order[live[order]]

    if n_folds == 1:
        bins = np.full(uniq.size, -1, np.int64)
        bins[order] = _assign(counts[order], np.asarray([fr[0], fr[1], fr[2]]), np.arange(order.size))
        _repair(counts, bins, 3, (0, 1, 2), order)
        fold_bins = [bins]  # 0 train, 1 val, 2 test
    else:
        test_fold = np.full(uniq.size, -1, np.int64)
        test_fold[order] = _assign(counts[order], np.full(n_folds, 1.0 / n_folds), np.arange(order.size))
        share_val = fr[1] / (1.0 - 1.0 / n_folds)
        fold_bins = []
        for f in range(n_folds):
            rest = order[test_fold[order] != f]
            bins = np.full(uniq.size, -1, np.int64)
            bins[test_fold == f] = 2
            bins[rest] = _assign(counts[rest], np.asarray([1.0 - share_val, share_val]), np.arange(rest.size))
            _repair(counts, bins, 3, (0, 1), order)
            fold_bins.append(bins)

    # Classes the groups could not serve: missing from a required bin (of some fold).
    for f, bins in enumerate(fold_bins):
        required = (0, 1, 2) if n_folds == 1 else (0, 1)
        for c in range(K):
            if c in excluded or not counts[:, c].any():
                continue
            missing = [name for b, name in zip((0, 1, 2), ("train", "validation", "test"))
                       if b in required and not counts[bins == b, c].any()]
            if missing:
                where = "" if n_folds == 1 else f" in fold {f}"
                excluded[c] = (f"its {int(np.count_nonzero(counts[:, c]))} groups cannot be split so that it has "
                               f"{' and '.join(missing)} images{where}")
    ex = tuple(sorted(excluded))
    reasons = tuple(excluded[c] for c in ex)
    img_rows = np.flatnonzero(~np.isin(y, list(ex)))
    pos = np.searchsorted(uniq, gid[img_rows])
    splits = []
    for bins in fold_bins:
        b_img = bins[pos]
        splits.append(Split(_sorted([img_rows[b_img == 0]]), _sorted([img_rows[b_img == 1]]),
                            _sorted([img_rows[b_img == 2]]), ex, reasons))
    return [s for s in splits if s.test.size]


# ---------------------------------------------------------------------------------------------
# Near-duplicates, the scored images, the report block
# ---------------------------------------------------------------------------------------------

def _check_splits(splits) -> list[Split]:
    if isinstance(splits, Split):
        return [splits]
    splits = list(splits)
    if not splits or not all(isinstance(s, Split) for s in splits):
        raise ValueError("splits must be a Split or a non-empty list of Split (from make_splits)")
    return splits


def scored_images(splits) -> np.ndarray:
    """The scored test images of all folds, ascending (int64 [n_test]): the fixed order of every
    per-image array that ``evaluate`` merges across folds. Raises if two folds share a test image."""
    splits = _check_splits(splits)
    union = np.sort(np.concatenate([s.test for s in splits])).astype(np.int64)
    if union.size and np.any(np.diff(union) == 0):
        raise ValueError("the test folds overlap: every image may be a test image at most once (use make_splits)")
    return union


def drop_near_duplicates(splits, X_ref=None, hashes=None, threshold: float = NEAR_DUPLICATE_COSINE
                         ) -> tuple[list[Split], int]:
    """Drop from each split's test images those that duplicate one of its train or val images.

    A test image is dropped (never scored, listed in ``Split.dropped_test``) when its content hash
    equals that of a train/val image of the same split, or when the cosine similarity of its
    reference embedding with one of theirs is >= ``threshold``.

    X_ref : float [n, d], optional
        Reference embeddings of all n images (the pipeline passes the floor's). They are centred on
        the mean of the images in the splits first: a random-weights encoder maps all images into
        a narrow cone (raw cosines above 0.99 between unrelated images of a random-init ViT-B-32,
        measured here), which would make every image a "duplicate"; centring measures what is
        specific to each image.
    hashes : sequence [n] of str or None, optional
        Content hash of each image (e.g. sha256 of the file); None entries are never matched.
    threshold : float in (0, 1]

    Returns ``(splits, n_dropped)``: new splits (train and val unchanged) and the number of test
    images dropped over all splits.
    """
    splits = _check_splits(splits)
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a cosine in (0, 1], got {threshold}")
    used = np.unique(np.concatenate([np.concatenate([s.train, s.val, s.test]) for s in splits]))
    n_needed = int(used.max()) + 1 if used.size else 0
    Xn = None
    if X_ref is not None:
        X = np.asarray(X_ref, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] < n_needed:
            raise ValueError(f"X_ref must be [n_images, dim] covering every split index (< {n_needed}), "
                             f"got shape {X.shape}")
        if not np.isfinite(X[used]).all():
            raise ValueError("X_ref has NaN or inf rows among the split images; fix the reference encoder's features")
        Xn = X - X[used].mean(axis=0, dtype=np.float64).astype(np.float32)
        Xn /= np.maximum(np.linalg.norm(Xn, axis=1, keepdims=True), 1e-12)
    codes = None
    if hashes is not None:
        hashes = list(hashes)
        if len(hashes) < n_needed:
            raise ValueError(f"hashes must give one entry per image (>= {n_needed}), got {len(hashes)}")
        # hashes as integers (-1: unknown), so matching is a set lookup on arrays
        known = sorted({h for h in hashes if h is not None})
        code_of = {h: i for i, h in enumerate(known)}
        codes = np.asarray([code_of[h] if h is not None else -1 for h in hashes], np.int64)
    out, total = [], 0
    for s in splits:
        fit = np.concatenate([s.train, s.val])
        dup = np.zeros(s.test.size, bool)
        if codes is not None:
            fit_codes = codes[fit]
            dup |= np.isin(codes[s.test], fit_codes[fit_codes >= 0]) & (codes[s.test] >= 0)
        if Xn is not None and fit.size:
            F = Xn[fit]
            for b0 in range(0, s.test.size, _SIM_BLOCK_ROWS):
                rows = s.test[b0:b0 + _SIM_BLOCK_ROWS]
                dup[b0:b0 + rows.size] |= (Xn[rows] @ F.T).max(axis=1) >= float(threshold) - 1e-6
        total += int(dup.sum())
        out.append(Split(s.train, s.val, s.test[~dup], s.excluded_classes, s.excluded_reasons,
                         _sorted([s.dropped_test, s.test[dup]])))
    return out, total


def split_info(splits, groups=None, n_dropped: int = 0, *, warn_ungrouped: bool = False) -> dict:
    """The report's ``split`` block.

    ``{"folds": F, "grouped": bool, "n_groups": named groups among the split images or None,
    "near_duplicates_dropped": int, "train"/"val": fold 0's sizes, "test": test images scored over
    all folds, "excluded": [{"class", "reason"}], "warning": str or None}``. The warning says when
    some images have no group, how many near-duplicates were dropped, and, with ``warn_ungrouped``
    (for attribute probes: the caller knows the probe), that the images carry no group at all
    (photos of one person may then sit on both sides, so the attacks can look stronger).
    """
    splits = _check_splits(splits)
    used = np.unique(np.concatenate([np.concatenate([s.train, s.val, s.test, s.dropped_test]) for s in splits]))
    n_groups = None
    warnings = []
    grouped = False
    if groups is not None:
        groups = list(groups)
        in_play = [groups[i] for i in used.tolist()] if used.size and len(groups) > used.max() else []
        named = [g for g in in_play if g is not None and str(g) != ""]
        grouped = bool(named)
        if grouped:
            n_groups = len({str(g) for g in named})
            if len(named) < len(in_play):
                warnings.append(f"{len(in_play) - len(named)} images have no group and were split one by one")
    if not grouped and warn_ungrouped:
        warnings.append("images carry no group (person, session): photos of one person or sequence may sit on both "
                        "sides of the split and make the attacks look stronger; give a manifest column 'group' or "
                        "a probe rule group_by")
    n_dropped = int(n_dropped)
    if n_dropped:
        n_test = sum(int(s.test.size) for s in splits)
        share = n_dropped / max(1, n_test + n_dropped)
        warnings.append(f"{n_dropped} near-duplicate test images dropped ({share:.0%})")
    first = splits[0]
    return {
        "folds": len(splits), "grouped": grouped, "n_groups": n_groups, "near_duplicates_dropped": n_dropped,
        "train": int(first.train.size), "val": int(first.val.size),
        "test": int(sum(s.test.size for s in splits)),
        "excluded": [{"class": int(c), "reason": r} for c, r in zip(first.excluded_classes, first.excluded_reasons)],
        "warning": "; ".join(warnings) or None,
    }
