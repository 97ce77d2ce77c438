"""Verification: what a face-matching system built on the raw embeddings gets with no training.

Cosine similarity of L2-normalised features for genuine (same label) and impostor (different
label) pairs; ROC AUC and TAR at fixed FAR. Nothing is fitted, so every image may be used.

When all pairs fit in ``max_pairs`` every pair is scored. Otherwise pairs are sampled with a
seeded design that keeps the work in matrix products: genuine pairs are all pairs within each class
when they fit in half the budget, and impostor pairs come from shuffling the images into blocks
and comparing each block with a partner block (every image takes part in about the same number of
impostor pairs). Sampled pairs are reported as such: ``n_genuine``/``n_impostor`` count the pairs
actually scored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["VerificationResult", "verification", "tar_at_far", "roc_auc", "roc_curve_points", "FAR_LEVELS"]

FAR_LEVELS = {"1e-2": 1e-2, "1e-3": 1e-3}
ROC_POINTS = 200
_BLOCK_ROWS = 2048


def _r(x, nd: int = 6):
    return None if x is None else float(round(float(x), nd))


@dataclass
class VerificationResult:
    tar_at_far: dict
    auc: float
    n_genuine: int
    n_impostor: int
    not_measurable: list
    roc: list
    sampled: bool
    genuine_scores: np.ndarray = field(repr=False)   # sorted ascending
    impostor_scores: np.ndarray = field(repr=False)  # sorted ascending

    def to_json(self) -> dict:
        return {
            "tar_at_far": {k: _r(v) for k, v in self.tar_at_far.items()},
            "auc": _r(self.auc),
            "n_genuine": int(self.n_genuine),
            "n_impostor": int(self.n_impostor),
            "not_measurable": list(self.not_measurable),
            "roc": [[float(f"{f:.6g}"), _r(t)] for f, t in self.roc],
        }


# ---------------------------------------------------------------------------------------------
# Exact statistics of two score samples
# ---------------------------------------------------------------------------------------------

def _threshold(imp_desc: np.ndarray, far: float) -> float:
    """The impostor score that must be rejected so that at most floor(far * n) impostors pass:
    the (floor(far * n) + 1)-th largest, or -inf when far admits them all."""
    n = imp_desc.size
    m = int(math.floor(far * n + 1e-9))
    return -math.inf if m >= n else float(imp_desc[m])


def _above(sorted_asc: np.ndarray, t: float) -> int:
    return int(sorted_asc.size - np.searchsorted(sorted_asc, t, side="right"))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """True-accept rate at the strictest threshold whose false-accept rate is <= ``far``.

    Threshold t = the (floor(far * n_imp) + 1)-th largest impostor score; a pair is accepted when
    its score is strictly above t, so ties at t are rejected: with tied scores the achieved FAR never
    exceeds ``far`` and TAR is never over-stated."""
    imp_asc = np.sort(np.asarray(impostor, dtype=np.float64))
    t = _threshold(imp_asc[::-1], far)
    return float(np.count_nonzero(np.asarray(genuine, dtype=np.float64) > t) / len(genuine))


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """P(genuine score > impostor score) + 0.5 P(equal): the Mann-Whitney form of ROC AUC."""
    return _auc_sorted(np.sort(np.asarray(genuine, dtype=np.float64)),
                       np.sort(np.asarray(impostor, dtype=np.float64)))


def _auc_sorted(gen_asc: np.ndarray, imp_asc: np.ndarray) -> float:
    below = np.searchsorted(imp_asc, gen_asc, side="left")
    upto = np.searchsorted(imp_asc, gen_asc, side="right")
    return float((below.sum(dtype=np.float64) + 0.5 * (upto - below).sum(dtype=np.float64))
                 / (gen_asc.size * imp_asc.size))


def roc_curve_points(genuine: np.ndarray, impostor: np.ndarray, n_points: int = ROC_POINTS) -> list:
    """[[far, tar], ...] on a log-spaced FAR grid from 1/n_impostor to 1: achieved (not nominal)
    FARs with the tie rule of ``tar_at_far``; repeated points dropped, at most ``n_points``."""
    return _roc_sorted(np.sort(np.asarray(genuine, dtype=np.float64)),
                       np.sort(np.asarray(impostor, dtype=np.float64)), n_points)


def _roc_sorted(gen_asc: np.ndarray, imp_asc: np.ndarray, n_points: int = ROC_POINTS) -> list:
    n_i, n_g = imp_asc.size, gen_asc.size
    imp_desc = imp_asc[::-1]
    out, seen = [], set()
    for far in np.logspace(math.log10(1.0 / n_i), 0.0, n_points):
        t = _threshold(imp_desc, far)
        point = (_above(imp_asc, t) / n_i, _above(gen_asc, t) / n_g)
        if point not in seen:
            seen.add(point)
            out.append([float(point[0]), float(point[1])])
    return out


# ---------------------------------------------------------------------------------------------
# Pair scores
# ---------------------------------------------------------------------------------------------

def _all_pairs(Xn: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered pair i < j, split into genuine and impostor scores."""
    n = Xn.shape[0]
    gen, imp = [], []
    for s in range(0, n, _BLOCK_ROWS):
        rows = torch.arange(s, min(n, s + _BLOCK_ROWS), device=Xn.device)
        S = Xn[rows] @ Xn[s:].T                         # columns j >= s
        cols = torch.arange(s, n, device=Xn.device)
        upper = cols[None, :] > rows[:, None]
        same = y[rows][:, None] == y[s:][None, :]
        gen.append(S[upper & same].cpu().numpy())
        imp.append(S[upper & ~same].cpu().numpy())
    return np.concatenate(gen), np.concatenate(imp)


def _block_pairs(Xn: torch.Tensor, members: np.ndarray, b: int, rng: np.random.Generator):
    """Shuffle ``members`` into blocks of b; score every pair between block 2t and block 2t+1.
    Returns (scores [m, b, b], i [m, b], j [m, b]) as tensors/arrays."""
    perm = rng.permutation(members)
    m = perm.size // (2 * b)
    idx = perm[: m * 2 * b].reshape(m, 2, b)
    I = torch.from_numpy(idx[:, 0]).to(Xn.device)
    J = torch.from_numpy(idx[:, 1]).to(Xn.device)
    S = torch.bmm(Xn[I], Xn[J].transpose(1, 2))
    return S, idx[:, 0], idx[:, 1]


def _sampled_pairs(Xn: torch.Tensor, y: np.ndarray, max_pairs: int, rng: np.random.Generator):
    classes, counts = np.unique(y, return_counts=True)
    pairs_per_class = counts * (counts - 1) // 2
    gen_budget = max_pairs // 2
    gen = []
    order = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    if pairs_per_class.sum() <= gen_budget:
        for c in range(classes.size):
            mem = torch.from_numpy(order[starts[c]:starts[c + 1]]).to(Xn.device)
            S = Xn[mem] @ Xn[mem].T
            iu = torch.triu_indices(mem.numel(), mem.numel(), offset=1, device=Xn.device)
            gen.append(S[iu[0], iu[1]].cpu().numpy())
    else:
        share = gen_budget / pairs_per_class.sum()
        for c in range(classes.size):
            mem = order[starts[c]:starts[c + 1]]
            want = max(1, int(pairs_per_class[c] * share))
            b = max(1, min(mem.size // 2, int(round(want / max(1, mem.size // 2)))))
            if mem.size < 2:
                continue
            S, _, _ = _block_pairs(Xn, mem, b, rng)
            gen.append(S.reshape(-1).cpu().numpy())
    gen = np.concatenate(gen)
    imp_budget = max_pairs - gen.size
    n = y.size
    p_diff = 1.0 - float(np.sum((counts / n) ** 2))
    b = int(max(1, min(n // 2, round(imp_budget / max(1e-9, p_diff) / (n / 2)))))
    while True:  # shrink b until the impostor pairs fit the budget
        S, I, J = _block_pairs(Xn, np.arange(n), b, rng)
        diff = torch.from_numpy(y[I][:, :, None] != y[J][:, None, :]).to(Xn.device)
        if int(diff.sum()) <= imp_budget or b == 1:
            break
        b = max(1, int(b * 0.9))
    imp = S[diff].cpu().numpy()
    return gen, imp


def verification(X, y, *, seed: int, max_pairs: int = 2_000_000, device="cpu") -> VerificationResult:
    """Cosine-similarity verification of same-label vs different-label pairs.

    X : float [n, d] (all images of the kept classes), y : int [n]. Returns TAR at FAR 1e-2 and
    1e-3 (a level is measurable only with >= 10 / FAR impostor pairs, else None and listed in
    ``not_measurable``), ROC AUC and a <= 200-point ROC for plotting.
    """
    X = np.asarray(X)
    y = np.asarray(y).astype(np.int64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be [n, d] with one label per row, got X {X.shape}, y {y.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf; drop or fix those images before verification")
    if int(max_pairs) < 2:
        raise ValueError(f"max_pairs must be >= 2, got {max_pairs}")
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2 or counts.max() < 2:
        raise ValueError("verification needs >= 2 classes and a class with >= 2 images")
    dev = torch.device(device)
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
    Xn = Xt / Xt.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = y.size
    sampled = n * (n - 1) // 2 > max_pairs
    if sampled:
        gen, imp = _sampled_pairs(Xn, y, int(max_pairs), np.random.default_rng([int(seed), 7]))
    else:
        gen, imp = _all_pairs(Xn, torch.from_numpy(y).to(dev))
    gen = np.sort(gen.astype(np.float64))
    imp = np.sort(imp.astype(np.float64))
    tars, not_measurable = {}, []
    for name, far in FAR_LEVELS.items():
        if imp.size >= 10.0 / far:
            tars[name] = _above(gen, _threshold(imp[::-1], far)) / gen.size
        else:
            tars[name] = None
            not_measurable.append(name)
    return VerificationResult(
        tar_at_far=tars, auc=_auc_sorted(gen, imp), n_genuine=int(gen.size), n_impostor=int(imp.size),
        not_measurable=not_measurable, roc=_roc_sorted(gen, imp), sampled=sampled,
        genuine_scores=gen, impostor_scores=imp,
    )
