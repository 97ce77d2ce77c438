"""Label-free, invertible preprocessing an attacker fits on unlabelled training images.

The audited party can multiply its embeddings by any invertible matrix A: the capability is all
still there, but a head that works on the raw coordinates (an L2 linear probe, a cosine prototype,
raw cosine verification) may no longer find it. Shrinking the class-mean directions by 1e4 makes an
L2 probe score below chance; a random A of condition number 1e8 halves raw-cosine verification. An
attacker undoes such a map with statistics of unlabelled images, and so do we: every attack chooses,
on its validation images like any other setting, one of ``CANDIDATES``, fitted on the fold's
*training* images only (never validation or test rows):

* ``none``: the features as they are;
* ``standardise``: each coordinate centred and divided by its standard deviation;
* ``whiten(shrinkage=s)``: PCA whitening, (x - mean) V diag(lambda_s)^(-1/2), with the covariance's
  eigenvalues shrunk towards their mean, lambda_s = (1 - s) lambda + s mean(lambda) (Ledoit-Wolf's
  target). With s = 0 the whitened features of X A are those of X up to a rotation, for any
  invertible A, and an L2 logistic regression, a cosine and a Euclidean distance are all invariant
  to rotations: that candidate makes the attacks' verdict invariant to linear reparametrisations.

Features that are already white up to sampling noise (their variances within
``white_noise_spread`` of each other) skip the candidates that could only add estimation noise.

Numerics. The eigen-decomposition is computed in float64; when the covariance's condition number
exceeds ``GRAM_MAX_COND`` (or it is singular) it is recomputed from the centred data itself (a QR
factorisation, then the SVD of its R factor), whose singular values are accurate to float64
precision relative to the largest one, so features with a condition number of 1e8 (1e16 in the
covariance) are handled. Directions with no variance in the
fitting rows (fewer rows than dimensions, constant or collinear features: singular value below
``RANK_RTOL`` of the largest) are dropped by the unshrunk whitening (it cannot scale what it has not
seen) and kept at the shrinkage target's scale by the shrunk ones. Transforms are applied in float64
and returned as float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import linalg

__all__ = ["Transform", "CANDIDATES", "INVARIANT", "fit_transform", "fit_candidates", "whiten", "resolve"]

# the candidates an attack chooses among on validation, simplest first (validation ties go to the earlier)
CANDIDATES = ("none", "standardise", "whiten(shrinkage=0)", "whiten(shrinkage=0.1)")
INVARIANT = "whiten(shrinkage=0)"   # the candidate every invertible linear map leaves unchanged
WHITE_MARGIN = 1.5      # white_noise_spread: the sampling spread of white data, times this
RANK_RTOL = 1e-12       # singular values below this share of the largest count as zero
_APPLY_ROWS = 1 << 14   # rows per float64 block when applying


@dataclass(eq=False)
class Transform:
    """A fitted map x -> (x - mean) @ matrix (float64), or the identity (``matrix`` None and
    ``mean`` None). ``name`` is what reports record (e.g. ``whiten(shrinkage=0)``); ``dim_out`` the
    output dimension (the unshrunk whitening drops directions the fitting rows did not span)."""

    name: str
    mean: np.ndarray | None = None
    matrix: np.ndarray | None = None
    scale: np.ndarray | None = None   # per-coordinate divisor (standardise), instead of a matrix
    cond: float = math.inf            # the map's condition number: below 1e3 it is applied in float32

    @property
    def identity(self) -> bool:
        return self.mean is None

    def apply(self, X) -> np.ndarray:
        """X float [n, d] -> float32 [n, dim_out] (the identity returns X as float32, no copy when it is)."""
        X = np.asarray(X)
        if self.identity:
            return np.ascontiguousarray(X, dtype=np.float32)
        m = self.matrix.shape[1] if self.matrix is not None else X.shape[1]
        # float32 rounding of a product grows like cond * 6e-8: a well-conditioned map can afford it
        dt = np.float32 if self.cond < 1e3 else np.float64
        mean = self.mean.astype(dt)
        op = self.matrix.astype(dt) if self.matrix is not None else self.scale.astype(dt)
        out = np.empty((X.shape[0], m), dtype=np.float32)
        for s in range(0, X.shape[0], _APPLY_ROWS):
            block = np.asarray(X[s:s + _APPLY_ROWS], dtype=dt) - mean
            out[s:s + _APPLY_ROWS] = block @ op if self.matrix is not None else block / op
        return out


def _parse(name: str) -> tuple[str, float | None]:
    if name in ("none", "standardise"):
        return name, None
    if name.startswith("whiten(shrinkage=") and name.endswith(")"):
        try:
            s = float(name[len("whiten(shrinkage="):-1])
        except ValueError:
            s = math.nan
        if 0.0 <= s <= 1.0:
            return "whiten", s
    raise ValueError(f"unknown preprocessing {name!r}; use 'none', 'standardise' or 'whiten(shrinkage=S)' "
                     f"with S in [0, 1], e.g. {list(CANDIDATES)}")


GRAM_MAX_COND = 1e10   # covariance condition number up to which its eigen-decomposition is accurate enough


def eig_sym(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors of a symmetric matrix (LAPACK's MRRR driver: the
    fastest here)."""
    w, V = linalg.eigh(G, driver="evr", check_finite=False)
    return w[::-1], V[:, ::-1]


def accurate_factor(Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(singular values descending, right singular vectors [d, r]) of Xc, from a QR factorisation
    and the SVD of its R factor: accurate relative to the largest singular value whatever the
    conditioning (the covariance route squares the condition number)."""
    n, d = Xc.shape
    if n > d:
        Xc = linalg.qr(Xc, mode="r", check_finite=False)[0][:d]
    _, s, Vt = linalg.svd(Xc, full_matrices=False, check_finite=False)
    return s, Vt.T


def _spectrum(X_fit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean [d], eigenvalues [r] descending, eigenvectors [d, r]) of the fitting rows' covariance
    (divided by n), in float64: from the covariance matrix when it is well conditioned (fast), else
    from the centred data (``accurate_factor``; r = min(n, d))."""
    X = np.asarray(X_fit, dtype=np.float64)
    mean = X.mean(axis=0)
    Xc = X - mean
    n = max(Xc.shape[0], 1)
    eig, vecs = eig_sym(Xc.T @ Xc / n)
    top = float(eig[0]) if eig.size else 0.0
    if top > 0 and float(eig[-1]) > top / GRAM_MAX_COND and Xc.shape[0] > Xc.shape[1]:
        return mean, eig, vecs
    s, V = accurate_factor(Xc)
    return mean, s * s / n, V


def whiten(mean: np.ndarray, eig: np.ndarray, vecs: np.ndarray, d: int, shrinkage: float) -> Transform:
    """The whitening of a covariance spectrum (``_spectrum``), eigenvalues shrunk by ``shrinkage``.

    s = 0: (x - mean) V_r diag(lambda_r)^(-1/2) over the r directions above ``RANK_RTOL``.
    s > 0: the symmetric (ZCA) form V diag(lambda_s^(-1/2) - c) V^T + c I with c = target^(-1/2), so
    directions the fitting rows never spanned keep the target's scale; output dimension d."""
    name = f"whiten(shrinkage={shrinkage:g})"
    top = float(eig[0]) if eig.size else 0.0
    if top <= 0 or not math.isfinite(top):   # constant features: nothing to whiten
        return Transform(name, mean=mean, scale=np.ones(d))
    if shrinkage == 0:
        keep = eig > top * RANK_RTOL ** 2
        return Transform(name, mean=mean, matrix=vecs[:, keep] / np.sqrt(eig[keep]),
                         cond=math.sqrt(top / float(eig[keep][-1])))
    target = float(eig.sum()) / d                # mean eigenvalue over all d directions
    lam = (1.0 - shrinkage) * eig + shrinkage * target
    c = 1.0 / math.sqrt(target * shrinkage)      # the scale of the unseen directions
    M = (vecs * (1.0 / np.sqrt(lam) - c)) @ vecs.T
    M[np.diag_indices(d)] += c
    lo = min(float(lam.min()), target * shrinkage)
    return Transform(name, mean=mean, matrix=M, cond=math.sqrt(max(float(lam.max()), target) / lo))


def white_noise_spread(n: int, d: int) -> float:
    """How far apart the largest and smallest variance of white data may be from sampling alone:
    ``WHITE_MARGIN`` times the Marchenko-Pastur ratio ((1 + sqrt(d/n)) / (1 - sqrt(d/n)))^2; 0
    when n <= d (the covariance is singular: nothing counts as white)."""
    if n <= d:
        return 0.0
    g = math.sqrt(d / n)
    return WHITE_MARGIN * ((1 + g) / (1 - g)) ** 2


def fit_candidates(X, rows, names: Sequence[str] = CANDIDATES, *, skip_white: bool = True) -> list[Transform]:
    """Fit each named transform on ``X[rows]`` only (the fold's training images, labels unused):
    one float64 spectrum shared by the whitening candidates.

    skip_white : leave out a candidate that could only add estimation noise: ``standardise`` when
        the coordinates' variances, a whitening when the covariance's eigenvalues, lie within
        ``white_noise_spread`` of each other (white up to sampling; ``none`` then does as well, and
        every attack is spared the cost). An invertible map that matters (a condition number of 1e8,
        or 1e4 on a few directions) is far outside it."""
    X = np.asarray(X)
    rows = np.asarray(rows)
    parsed = [_parse(n) for n in names]
    out, spec = [], None
    X_fit = None
    spread = white_noise_spread(rows.size, X.shape[1]) if skip_white else 0.0
    for name, (kind, s) in zip(names, parsed):
        if kind == "none":
            out.append(Transform("none"))
            continue
        if X_fit is None:
            X_fit = np.asarray(X[rows], dtype=np.float64)
        if kind == "standardise":
            mean = X_fit.mean(axis=0)
            sd = X_fit.std(axis=0)
            top = float(sd.max()) if sd.size else 0.0
            scale = np.where(sd > top * RANK_RTOL, sd, top) if top > 0 else np.ones_like(sd)
            cond = float(scale.max() / scale.min())
            if cond ** 2 > spread:
                out.append(Transform("standardise", mean=mean, scale=scale, cond=cond))
            continue
        if spec is None:
            spec = _spectrum(X_fit)
        eig = spec[1]
        if eig.size and eig[-1] > 0 and eig[0] / eig[-1] <= spread:
            continue
        out.append(whiten(*spec, X.shape[1], s))
    return out


def fit_transform(X, rows, name: str) -> Transform:
    """One named transform fitted on ``X[rows]`` (see ``fit_candidates``)."""
    return fit_candidates(X, rows, [name])[0]


def resolve(preprocess, X, rows) -> list[Transform]:
    """An attack's ``preprocess`` argument as fitted candidates: None -> [identity]; "auto" ->
    ``CANDIDATES``; a name or a list of names -> those, fitted on ``X[rows]`` (``fit_candidates``: a
    transform of features already white is left out); Transform objects as given."""
    if preprocess is None:
        return [Transform("none")]
    if isinstance(preprocess, str):
        preprocess = CANDIDATES if preprocess == "auto" else [preprocess]
    items = list(preprocess)
    if not items:
        raise ValueError("preprocess must name at least one transform")
    names = [p for p in items if isinstance(p, str)]
    # named ones first (those that would only add noise to white features are left out), then the given
    return (fit_candidates(X, rows, names) if names else []) + [p for p in items if not isinstance(p, str)]
