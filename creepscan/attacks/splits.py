"""Seeded, class-stratified train / validation / test splits.

A class's images are assigned with a generator seeded from ``(seed, class)``, so the assignment of
one class never depends on which other classes are present: two probes that share a class (or the
same probe re-run after a class was added) put that class's images in the same splits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Split", "stratified_split", "class_counts"]


@dataclass(frozen=True, eq=False)
class Split:
    """Indices into ``X``/``y`` (sorted, int64) and the classes left out for having too few images.

    A class in ``excluded_classes`` has no image in any of the three index arrays.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    excluded_classes: tuple[int, ...] = ()

    def __eq__(self, other) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return (self.excluded_classes == other.excluded_classes
                and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in ("train", "val", "test")))

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


def stratified_split(y, seed: int, fractions=(0.6, 0.2, 0.2), min_per_class: int = 3) -> Split:
    """Split image indices into train / val / test, class by class.

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
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(not np.isfinite(f) or f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three positive shares summing to 1 (train, val, test), got {fractions!r}")
    if int(min_per_class) < 3:
        raise ValueError(f"min_per_class must be >= 3 (one image per split), got {min_per_class}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    parts: tuple[list, list, list] = ([], [], [])
    excluded = []
    order = np.argsort(y, kind="stable")
    classes, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    for c, s, n in zip(classes.tolist(), starts.tolist(), counts.tolist()):
        if n < min_per_class:
            excluded.append(int(c))
            continue
        members = order[s:s + n]  # ascending indices, so the shuffle below sees a canonical order
        perm = np.random.default_rng([seed, int(c)]).permutation(members)
        n_tr, n_va, _ = _counts(n, fr)
        parts[0].append(perm[:n_tr])
        parts[1].append(perm[n_tr:n_tr + n_va])
        parts[2].append(perm[n_tr + n_va:])

    def _join(p):
        return np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)

    return Split(_join(parts[0]), _join(parts[1]), _join(parts[2]), tuple(excluded))
