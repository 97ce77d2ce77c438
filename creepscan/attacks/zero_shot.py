"""Zero-shot classification with a text tower: no labelled image is used at all.

Class embeddings are built CLIP-style from prompt templates: encode every "template.format(name)",
L2-normalise, average over templates, L2-normalise again. An image is assigned the class whose text
embedding has the highest cosine similarity with its (L2-normalised) image embedding.

Zero-shot evidence is tested against a label-name null: if the text tower knew nothing of the
names, which name goes with which cluster of images would be arbitrary. The permutation test scores
every assignment of the label names to the classes (the text embeddings' rows permuted; exactly
when there are at most 5040 of them, else 9999 seeded random ones) and reports the share that do at
least as well as the real names. With two names the smallest possible p is 1/2: two labels can never
show on their own that a text tower knows them.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .. import result as R
from ..seeds import Stream, stream
from .stats import balanced_accuracy, bootstrap_ci
from .stats import round6 as _r
from .stats import skill as _skill

__all__ = ["ZeroShotResult", "class_text_embeddings", "zero_shot", "label_permutation_test"]

_CHUNK = 256
EXACT_PERMUTATIONS_MAX = 5040   # 7 label names: every assignment is scored
PERMUTATION_DRAWS = 9999        # beyond that, seeded random assignments (p >= 1 / 10000)


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor, possibly on a GPU or in half precision
        a = a.detach().to("cpu").float().numpy()
    return np.asarray(a, dtype=np.float64)


def _l2(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


@dataclass
class ZeroShotResult:
    accuracy: float
    ci95: tuple[float, float]
    skill: float
    chance: float
    n_test: int
    test_correct: np.ndarray = field(repr=False)
    test_pred: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    # the label-name permutation test: {"p_value", "min_p", "method", "assignments"}
    label_permutation: dict = field(default_factory=dict)

    def to_result(self) -> R.ZeroShot:
        """The report's ``zero_shot`` block (``result.ZeroShot``)."""
        lp = self.label_permutation
        return R.ZeroShot(accuracy=_r(self.accuracy), ci95=[_r(self.ci95[0]), _r(self.ci95[1])],
                          skill=_r(self.skill), n_test=int(self.n_test),
                          label_permutation=(R.LabelPermutation(p_value=_r(lp["p_value"]), min_p=_r(lp["min_p"], 10),
                                                                method=lp["method"]) if lp else None))

    def to_json(self) -> dict:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())


def label_permutation_test(y, pred, candidates, seed) -> dict:
    """The label-name null of a zero-shot result: is the balanced accuracy of ``pred`` (int [n]) on
    ``y`` (int [n]) higher than what arbitrary assignments of the label names to the classes give?

    Permuting the text embeddings' rows by pi turns each prediction j into pi^-1(j), so every
    assignment's accuracy comes from one recall table R [classes present, candidates]:
    acc(pi) = mean_c R[c, pi(c)]. Returns ``{"p_value", "min_p", "method", "assignments"}``: exact
    over all m! assignments of the m candidate names when m! <= 5040 (p = share with acc >= the real
    names', identity included; min_p = 1 / m!), else Monte Carlo over 9999 assignments seeded by
    ``seed`` with the +1 correction (min_p = 1 / 10000)."""
    cand = np.asarray(candidates, dtype=np.int64)
    m = cand.size
    pos = {int(c): i for i, c in enumerate(cand)}
    present = np.unique(y)
    rows = np.array([pos[int(c)] for c in present])
    R = np.zeros((present.size, m))
    for r, c in enumerate(present):
        pc = pred[y == c]
        R[r] = np.bincount(np.searchsorted(cand, pc), minlength=m) / pc.size
    observed = float(R[np.arange(present.size), rows].mean()) - 1e-12
    if math.factorial(m) <= EXACT_PERMUTATIONS_MAX:
        perms = np.array(list(itertools.permutations(range(m))), dtype=np.int64)      # [m!, m]
        accs = R[np.arange(present.size), perms[:, rows]].mean(axis=1)
        n_at_least = int(np.count_nonzero(accs >= observed))
        return {"p_value": n_at_least / perms.shape[0], "min_p": 1.0 / perms.shape[0],
                "method": f"exact: all {perms.shape[0]} assignments of the {m} label names",
                "assignments": int(perms.shape[0])}
    rng = np.random.default_rng(seed)
    accs = np.empty(PERMUTATION_DRAWS)
    for b0 in range(0, PERMUTATION_DRAWS, 1000):  # in blocks: m may be in the hundreds
        b = min(1000, PERMUTATION_DRAWS - b0)
        perms = np.argsort(rng.random((b, m)), axis=1)
        accs[b0:b0 + b] = R[np.arange(present.size), perms[:, rows]].mean(axis=1)
    n_at_least = int(np.count_nonzero(accs >= observed))
    return {"p_value": (1 + n_at_least) / (1 + PERMUTATION_DRAWS), "min_p": 1.0 / (1 + PERMUTATION_DRAWS),
            "method": f"Monte Carlo: {PERMUTATION_DRAWS} random assignments of the {m} label names",
            "assignments": PERMUTATION_DRAWS}


def class_text_embeddings(encode_text: Callable[[list[str]], object], class_names: Sequence[str],
                          templates: Sequence[str]) -> np.ndarray:
    """Text embedding of each class: float32 [n_classes, d], rows L2-normalised.

    ``encode_text(list_of_prompts) -> [n, d]`` (numpy or torch); templates use ``{}`` for the name,
    e.g. "a photo of {}."."""
    names = [str(n) for n in class_names]
    templates = [str(t) for t in templates]
    if not names:
        raise ValueError("class_names is empty")
    if not templates:
        raise ValueError("templates is empty: give at least one prompt template such as 'a photo of {}.'")
    for t in templates:
        try:
            if t.format("\x00") == t:
                raise ValueError(f"prompt template {t!r} has no '{{}}' placeholder for the class name")
        except (IndexError, KeyError) as e:
            raise ValueError(f"prompt template {t!r} must use a single '{{}}' placeholder ({e})") from None
    prompts = [t.format(n) for n in names for t in templates]
    parts = []
    for s in range(0, len(prompts), _CHUNK):
        emb = _as_numpy(encode_text(prompts[s:s + _CHUNK]))
        if emb.ndim != 2 or emb.shape[0] != len(prompts[s:s + _CHUNK]):
            raise ValueError(f"encode_text returned shape {emb.shape} for {len(prompts[s:s + _CHUNK])} prompts")
        parts.append(emb)
    emb = _l2(np.concatenate(parts)).reshape(len(names), len(templates), -1)
    return _l2(emb.mean(axis=1)).astype(np.float32)


def zero_shot(X_test, y_test, text_emb, n_classes: int, seed: int,
              candidates: Sequence[int] | None = None, n_boot: int = 2000) -> ZeroShotResult:
    """Score zero-shot predictions on test images.

    X_test : float [n, d] image embeddings, y_test : int [n], text_emb : [n_classes, d].
    ``candidates`` limits the predicted classes (default: all n_classes); chance is 1 / the number
    of candidate classes. ``label_permutation`` holds the label-name permutation test
    (``label_permutation_test``)."""
    X = _as_numpy(X_test)
    T = _as_numpy(text_emb)
    y = np.asarray(y_test).astype(np.int64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X_test must be [n, d] with one label per row, got {X.shape} and {y.shape}")
    if T.shape != (n_classes, X.shape[1]):
        raise ValueError(f"text_emb must be [n_classes={n_classes}, d={X.shape[1]}], got {T.shape}; "
                         "the image and text towers must share an embedding space")
    cand = np.arange(n_classes) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
    if not np.isin(y, cand).all():
        raise ValueError("some test labels are not among the candidate classes")
    sims = _l2(X) @ _l2(T[cand]).T
    pred = cand[np.argmax(sims, axis=1)]
    correct = pred == y
    acc = balanced_accuracy(y, pred, n_classes)
    chance = 1.0 / cand.size
    return ZeroShotResult(
        accuracy=acc, ci95=bootstrap_ci(y, correct, n_classes, seed=stream(seed, Stream.ZERO_SHOT_CI), n_boot=n_boot),
        skill=_skill(acc, chance), chance=chance, n_test=int(y.size),
        test_correct=correct, test_pred=pred, test_labels=y,
        label_permutation=label_permutation_test(y, pred, cand, stream(seed, Stream.ZERO_SHOT_PERMUTATION)),
    )
