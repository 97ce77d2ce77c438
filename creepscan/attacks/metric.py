"""A learned verification metric, cross-fitted over identities: every identity is scored, and no
score comes from a metric fitted on either of its two images' identities.

Raw cosine is what a face-matching system gets with no training; an adversary with labelled
photos of *other* people does better, and is not fooled by an invertible linear map of the
embeddings: it whitens the within-identity covariance (within-class covariance normalisation,
WCCN, the usual first step of LDA/PLDA back-ends) and matches by cosine in that space. The
within-class covariance of X A is A^T S_w A, so the whitened features of X A are those of X up to a
rotation, and their cosines are equal: the metric is invariant to any invertible A.

Cross-fitting. The identities are dealt, from the labels and the seed alone, into ``N_FOLDS``
folds. A pair of images from folds a and b (a = b for a pair within one fold, every genuine pair) is
scored with the metric fitted on the identities of every *other* fold, so the two identities of a
scored pair never took part in fitting the metric that scores it, and every pair of the design
(``verification``'s, unchanged) is scored. The metric is fitted in float64 (from the within-class
scatter, or from the centred rows when that is ill-conditioned; directions with no within-class
variance in the fitting rows are dropped) and applied in float64 unless well conditioned.
"""
from __future__ import annotations

import numpy as np
import torch

from .preprocess import GRAM_MAX_COND, accurate_factor, eig_sym, white_noise_spread

__all__ = ["N_FOLDS", "LEARNED_METRIC", "identity_folds", "CrossFitMetric", "within_identity_white"]

N_FOLDS = 4
RANK_RTOL = 1e-12
_TAG = 37
LEARNED_METRIC = (f"cosine after within-identity whitening (WCCN) fitted on other identities: {N_FOLDS}-fold "
                  f"identity cross-fit, a pair scored by the metric of the folds holding neither of its identities")


def identity_folds(n_identities: int, seed_entropy: list[int]) -> np.ndarray:
    """Fold of each identity position (int [n_identities]): a seeded deal into ``N_FOLDS`` folds of
    near-equal size (fewer folds when there are fewer than ``N_FOLDS`` identities)."""
    K = int(n_identities)
    n_folds = min(N_FOLDS, K)
    perm = np.random.default_rng(list(seed_entropy) + [_TAG]).permutation(K)
    folds = np.empty(K, np.int64)
    folds[perm] = np.arange(K) % n_folds
    return folds


def _fold_factor(X: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, int, np.ndarray]:
    """One fold's share of the fit: (its within-identity scatter [d, d], degrees of freedom, the sum
    of its rows [d], its row count, its within-identity-centred rows). Identities with one image add
    nothing to the scatter."""
    X = np.asarray(X, dtype=np.float64)
    _, inv, counts = np.unique(ids, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    sums = np.add.reduceat(X[order], np.concatenate([[0], np.cumsum(counts)[:-1]])) if X.shape[0] else X[:0]
    keep = counts[inv] >= 2
    Xw = (X - sums[inv] / counts[inv][:, None])[keep]
    dof = int(keep.sum()) - int((counts >= 2).sum())
    return Xw.T @ Xw, dof, X.sum(axis=0), X.shape[0], Xw


def _whitener(parts: list) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(mean [d], W [d, r], condition) whitening the pooled within-identity covariance of the folds'
    ``_fold_factor`` parts (directions without within-identity variance dropped); None without
    scatter. From the pooled scatter when it is well conditioned, else from the centred rows
    themselves (``preprocess.accurate_factor``: no squared condition number)."""
    dof = sum(p[1] for p in parts)
    if dof < 1:
        return None
    eig, V = eig_sym(sum(p[0] for p in parts))
    if not eig.size or eig[0] <= 0:
        return None
    if eig[-1] > eig[0] / GRAM_MAX_COND:
        s, V = np.sqrt(eig), V
    else:
        s, V = accurate_factor(np.concatenate([p[4] for p in parts]))
        if not s.size or s[0] <= 0:
            return None
    r = s > s[0] * RANK_RTOL
    mean = sum(p[2] for p in parts) / sum(p[3] for p in parts)
    return mean, V[:, r] * (np.sqrt(dof) / s[r]), float(s[0] / s[r][-1])


def within_identity_white(X, ids) -> bool:
    """Whether the pooled within-identity covariance of X's rows is white up to sampling noise
    (``preprocess.white_noise_spread``): the learned metric could then only add estimation noise."""
    S, dof, _, _, _ = _fold_factor(X, ids)
    if dof <= X.shape[1]:
        return False
    eig = np.linalg.eigvalsh(S)
    return bool(eig[0] > 0 and eig[-1] / eig[0] <= white_noise_spread(dof, X.shape[1]))


def _apply(X: np.ndarray, mean: np.ndarray, W: np.ndarray, cond: float) -> np.ndarray:
    """Rows of (X - mean) W, L2-normalised, float32. float32 products when the whitening is well
    conditioned (their rounding is then ~cond * 6e-8 of a row), float64 otherwise."""
    dt = np.float32 if cond < 1e3 else np.float64
    Z = (np.asarray(X, dtype=dt) - mean.astype(dt)) @ W.astype(dt)
    Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-30)
    return Z.astype(np.float32, copy=False)


class CrossFitMetric:
    """The cross-fitted metrics of one feature matrix: ``score(rows, cols)`` cosines of image pairs,
    each pair by the metric fitted on the folds that hold neither image's identity.

    X : float [n, d], ids : int [n] identity positions in 0..K-1, seed_entropy : the caller's seed."""

    def __init__(self, X, ids, n_identities: int, seed_entropy: list[int], device="cpu"):
        self.fold_of_identity = identity_folds(n_identities, seed_entropy)
        F = int(self.fold_of_identity.max()) + 1
        self.fold = self.fold_of_identity[ids]
        dev = torch.device(device)
        self.pair_map = np.full((F, F), -1, np.int64)
        self.Z: list[torch.Tensor] = []       # per metric: the rows of the two folds it scores
        self.local: list[torch.Tensor] = []   # per metric: image index -> row of Z
        X = np.asarray(X)
        parts = [_fold_factor(X[self.fold == f], ids[self.fold == f]) for f in range(F)]
        for a in range(F):
            for b in range(a, F):
                w = _whitener([parts[f] for f in range(F) if f not in (a, b)])
                if w is None:
                    continue  # no disjoint identity with two images: those pairs cannot be scored
                # only the rows this metric scores (folds a and b) are mapped; the others stay zero
                rows = np.flatnonzero(np.isin(self.fold, (a, b)))
                local = np.zeros(X.shape[0], np.int64)   # other rows read row 0: their scores are never kept
                local[rows] = np.arange(rows.size)
                self.pair_map[a, b] = self.pair_map[b, a] = len(self.Z)
                self.Z.append(torch.from_numpy(_apply(X[rows], *w)).to(dev))
                self.local.append(torch.from_numpy(local).to(dev))
        self.available = bool(self.Z) and bool((self.pair_map >= 0).all())

    def rows(self, m: int, idx: torch.Tensor) -> torch.Tensor:
        """Metric m's normalised features of the images ``idx`` (any shape of image indices)."""
        return self.Z[m][self.local[m][idx]]

    def score(self, R: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        """Cosines [m, p, q] of rows R [m, p] against columns C [m, q] (image indices)."""
        which = torch.from_numpy(self.pair_map[self.fold[R.cpu().numpy()][:, :, None],
                                               self.fold[C.cpu().numpy()][:, None, :]]).to(R.device)
        out = None
        for m in range(len(self.Z)):
            sel = which == m
            if not bool(sel.any()):
                continue
            S = torch.bmm(self.rows(m, R), self.rows(m, C).transpose(1, 2))
            out = S if out is None else torch.where(sel, S, out)
        return out
