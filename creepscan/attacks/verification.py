"""Verification: what a face-matching system built on the raw embeddings gets with no training.

Cosine similarity of L2-normalised features for genuine (same label) and impostor (different
label) pairs; ROC AUC and TAR at fixed FAR. Nothing is fitted, so every image may be used.

Pairs. When all pairs fit in ``max_pairs`` every pair is scored. Otherwise pairs are sampled with a
seeded design that keeps the work in matrix products: genuine pairs are all pairs within each class
when they fit in half the budget, and impostor pairs come from shuffling the images into blocks
and comparing each block with a partner block (every image takes part in about the same number of
impostor pairs). The design is a function of the labels, ``seed`` and ``max_pairs`` only, never of
the features, so a model and its floor are scored on the very same pairs (``pair_digest`` says so,
and ``paired_verification_test`` refuses results whose digests differ). ``n_genuine`` /
``n_impostor`` count the pairs actually scored.

Weighting. A label is an identity, and identities, not pairs, are the units a face-matching figure
generalises over. Each identity's genuine pairs share an equal mass (1 / the number of identities
with a genuine pair), so a person with 100 photos (4950 pairs) weighs as much as one with 2 photos
(1 pair); each identity *pair* (a, b) that has impostor pairs shares an equal mass in the same way,
so every identity enters the impostor distribution through the same number of identity pairs. TAR
at FAR, AUC and the ROC are these weighted statistics; ``unweighted`` keeps the per-pair figures.
With equal class sizes and every pair scored the two coincide.

Uncertainty. Confidence intervals come from an identity-level bootstrap: a draw resamples the
identities with replacement (multiplicities m_a), each drawn identity bringing all its pairs: its
genuine mass is multiplied by m_a and an impostor identity pair's by m_a * m_b (the bootstrap of a
two-sample U-statistic, Owen's "pigeonhole" bootstrap); the FAR threshold is re-estimated in every
draw. A CI is a logit-scale Wald interval with the draws' standard error and small-sample
allowances (``identity_bootstrap_interval``); a statistic at exactly 1 (or 0) gets the Clopper-Pearson
bound of K identities all at 1 (or 0), so a CI never collapses to a point. TAR is bootstrapped exactly; AUC
exactly when the per-identity, per-identity-pair table is small and otherwise through its
first-order (influence-function) expansion in the multiplicities (``auc_ci_method``).
``paired_verification_test`` applies the same draws to a model and its floor: a paired
identity-level bootstrap of their difference.

Calibration (synthetic identities with a known truth, the model of tests/test_verification.py;
40 identities): AUC CIs covered 94.6% of 5,000 replicates (the percentile interval: 93.5%), and
the paired AUC test rejected 4.5% of 400 equal pairs at alpha 0.05. TAR@1e-2 CIs covered ~97%
and the paired TAR test rejected 1.8% of equal pairs at alpha 0.05: the
pigeonhole bootstrap counts the impostor pairs' own noise (not shared through an identity) about
three times over, and that noise sets the FAR threshold's spread. TAR verdicts therefore err on
the side of "not shown" (fewer significant gains, wider bounds).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from scipy.stats import t as student_t

from .. import result as R
from ..constants import FAR_LEVELS
from .stats import round6 as _r

__all__ = ["VerificationResult", "verification", "verification_from_pairs", "paired_verification_test",
           "tar_at_far", "roc_auc", "roc_curve_points", "FAR_LEVELS", "N_BOOT", "MIN_TAIL"]

ROC_POINTS = 200
N_BOOT = 1000
# A FAR level is measurable with >= MIN_TAIL / far impostor pairs (Kish's effective count under the
# identity weights): about MIN_TAIL impostor pairs then lie above the threshold.
MIN_TAIL = 10
_BLOCK_ROWS = 2048
# The exact AUC bootstrap tabulates P(genuine of identity a > impostor of cell c) for every a and
# cell: built in K_g * n_impostor steps, then K_g * n_cells per draw. Above these sizes the
# linearised bootstrap (same draws, O(K) per draw) is used; its error is second order in 1/K.
_EXACT_AUC_BUILD = 3e7
_EXACT_AUC_PER_DRAW = 3e5
_CHUNK = 1 << 22          # float64 entries per temporary (32 MiB)
_RUN = 128                # pairs per run in the two-level threshold scan
_REL_TOL = 1e-9           # mass comparisons: far * W computed in floating point
Z975 = 1.959963984540054
_DESIGN_TAG, _BOOT_TAG = 7, 11


def seed_entropy(seed) -> list[int]:
    """``seed`` (an int or a sequence of ints >= 0) as a list of ints for ``np.random.SeedSequence``."""
    arr = np.atleast_1d(np.asarray(seed))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any():
        raise ValueError(f"seed must be an int >= 0 or a sequence of them, got {seed!r}")
    return [int(v) for v in arr]


def identity_multipliers(n_identities: int, seed, n_boot: int, tag: int) -> np.ndarray:
    """Bootstrap multiplicities [n_boot, n_identities] (float64): each row draws n_identities
    identities with replacement; deterministic given (n_identities, seed, n_boot, tag)."""
    rng = np.random.default_rng(seed_entropy(seed) + [int(tag)])
    k = int(n_identities)
    return rng.multinomial(k, np.full(k, 1.0 / k), size=int(n_boot)).astype(np.float64)


def _t_factor(n_units: int) -> float:
    """sqrt(K / (K - 1)) * t_{K-1} / z at 97.5% for K = ``n_units`` resampled units: the bootstrap
    variance of a mean over K units is (K - 1) / K times the unbiased one, and it is itself estimated
    from K units (the t interval's allowance; it matters below ~30 identities)."""
    if n_units <= 1:
        return 1.0
    return math.sqrt(n_units / (n_units - 1)) * float(student_t.ppf(0.975, n_units - 1) / Z975)


def _spread(draws: np.ndarray, estimate: float, n_units: int) -> np.ndarray:
    """Draws spread about the estimate by ``_t_factor``."""
    return estimate + _t_factor(n_units) * (np.asarray(draws, dtype=np.float64) - estimate)


def identity_bootstrap_interval(draws: np.ndarray, estimate: float, n_units: int) -> list[float]:
    """95% CI of a rate in [0, 1] from bootstrap draws (non-finite draws dropped).

    Inside (0, 1): a Wald interval on the logit scale, logit(est) +- t_{K-1} * se / (est (1 - est)),
    with se the draws' standard deviation times sqrt(K / (K - 1)). The logit scale lets the
    interval reach further towards the middle than towards the bound (as Wilson's does; the
    module docstring gives its measured coverage). At an estimate of exactly 1 (0) the interval is the
    Clopper-Pearson bound of K units all at 1 (0), so it never collapses to a point."""
    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    est = float(estimate)
    bound = 0.025 ** (1.0 / max(1, n_units))
    if est >= 1.0:
        return [bound, 1.0]
    if est <= 0.0:
        return [0.0, 1.0 - bound]
    if d.size < 2:
        return [0.0, 1.0]
    half = _t_factor(n_units) * Z975 * float(np.std(d)) / (est * (1.0 - est))
    centre = math.log(est / (1.0 - est))
    return [1.0 / (1.0 + math.exp(-(centre - half))), 1.0 / (1.0 + math.exp(-(centre + half)))]


def paired_summary(draws_a: np.ndarray, draws_b: np.ndarray, est_a: float, est_b: float,
                   n_units: int) -> dict:
    """Paired bootstrap of a - b from draws made with the same multiplicities on both sides:
    delta, 95% CI, two-sided p (2 * the smaller tail share of the draws at or beyond 0, with the
    +1 correction, capped at 1), standard error, and one-sided 95% bounds."""
    a = np.asarray(draws_a, dtype=np.float64)
    b = np.asarray(draws_b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    delta = float(est_a - est_b)
    if not ok.any():
        return {"delta": delta, "ci95": [-1.0, 1.0], "p_value": 1.0, "se": float("nan"),
                "upper95": 1.0, "lower95": -1.0}
    d = _spread(a[ok] - b[ok], delta, n_units)
    n = d.size
    le = np.count_nonzero(d <= 0.0) + 1
    ge = np.count_nonzero(d >= 0.0) + 1
    # every statistic compared here is a rate or an AUC in [0, 1], so a difference lies in [-1, 1]
    lo, hi, lower95, upper95 = np.clip(np.quantile(d, [0.025, 0.975, 0.05, 0.95]), -1.0, 1.0)
    return {"delta": delta, "ci95": [float(lo), float(hi)], "p_value": float(min(1.0, 2.0 * min(le, ge) / (n + 1))),
            "se": float(np.std(d, ddof=1)) if n > 1 else 0.0, "upper95": float(upper95), "lower95": float(lower95)}


# ---------------------------------------------------------------------------------------------
# Exact statistics of two score samples (optionally weighted)
# ---------------------------------------------------------------------------------------------

def _first_over(cum: np.ndarray, mass: float) -> int:
    """Index of the first entry of the non-decreasing ``cum`` that exceeds ``mass``."""
    return int(np.searchsorted(cum, mass * (1.0 + _REL_TOL), side="right"))


def _prepare(genuine, impostor, genuine_weight, impostor_weight):
    g = np.asarray(genuine, dtype=np.float64).ravel()
    i = np.asarray(impostor, dtype=np.float64).ravel()
    gw = np.ones_like(g) if genuine_weight is None else np.asarray(genuine_weight, dtype=np.float64).ravel()
    iw = np.ones_like(i) if impostor_weight is None else np.asarray(impostor_weight, dtype=np.float64).ravel()
    if g.size == 0 or i.size == 0:
        raise ValueError(f"need at least one genuine and one impostor score, got {g.size} and {i.size}")
    if gw.shape != g.shape or iw.shape != i.shape:
        raise ValueError(f"weights must match their scores: genuine {gw.shape} vs {g.shape}, "
                         f"impostor {iw.shape} vs {i.shape}")
    if (gw < 0).any() or (iw < 0).any() or gw.sum() <= 0 or iw.sum() <= 0:
        raise ValueError("weights must be >= 0 with a positive total on each side")
    return g, i, gw, iw


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float, *, genuine_weight=None,
               impostor_weight=None) -> float:
    """True-accept rate at the lowest threshold whose false-accept rate is still <= ``far``.

    Threshold t = the highest impostor score whose impostors above it hold at most ``far`` of the
    impostor weight (unweighted: the (floor(far * n_imp) + 1)-th largest); a pair is accepted when
    its score is strictly above t, so ties at t are rejected: with tied scores the achieved FAR never
    exceeds ``far`` and TAR is never over-stated. Weights (>= 0, one per score) default to 1."""
    g, i, gw, iw = _prepare(genuine, impostor, genuine_weight, impostor_weight)
    order = np.argsort(-i, kind="stable")
    cum = np.cumsum(iw[order])
    k = _first_over(cum, far * cum[-1])
    t = -math.inf if k >= i.size else float(i[order][k])
    return float(gw[g > t].sum() / gw.sum())


def roc_auc(genuine: np.ndarray, impostor: np.ndarray, *, genuine_weight=None, impostor_weight=None) -> float:
    """P(genuine score > impostor score) + 0.5 P(equal): the Mann-Whitney form of ROC AUC, each
    score counted with its weight (default 1)."""
    g, i, gw, iw = _prepare(genuine, impostor, genuine_weight, impostor_weight)
    order = np.argsort(i, kind="stable")
    i_asc = i[order]
    cw = np.concatenate([[0.0], np.cumsum(iw[order])])
    below = cw[np.searchsorted(i_asc, g, side="left")]
    upto = cw[np.searchsorted(i_asc, g, side="right")]
    return float(np.sum(gw * (below + 0.5 * (upto - below))) / (gw.sum() * cw[-1]))


def roc_curve_points(genuine: np.ndarray, impostor: np.ndarray, n_points: int = ROC_POINTS) -> list:
    """[[far, tar], ...] of unweighted scores on a log-spaced FAR grid from 1/n_impostor to 1:
    achieved (not nominal) FARs with the tie rule of ``tar_at_far``; repeated points dropped, at
    most ``n_points``."""
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    i = np.asarray(impostor, dtype=np.float64)
    stats = _PairStats(g, np.zeros(g.size, np.int64), i, np.zeros(i.size, np.int64),
                       np.ones(i.size, np.int64), 2)
    return stats.roc(n_points)


# ---------------------------------------------------------------------------------------------
# Identity-level statistics: weights, point estimates and bootstrap draws
# ---------------------------------------------------------------------------------------------

class _PairStats:
    """Pair scores grouped by identity. Genuine pairs carry an identity, impostor pairs an identity
    pair ("cell"); weights are equal per identity / per cell (see the module docstring). Every
    statistic is a function of multiplicities m [B, K] (the point estimate is m = 1)."""

    def __init__(self, gen, gen_id, imp, imp_a, imp_b, n_identities: int):
        K = int(n_identities)
        self.K = K
        gen = np.asarray(gen, dtype=np.float64)
        gen_id = np.asarray(gen_id, dtype=np.int64)
        counts = np.bincount(gen_id, minlength=K)
        self.gen_ids = np.flatnonzero(counts)
        self.gen_per_identity = counts[self.gen_ids]
        # Sorts need not be stable: the order within tied scores changes no statistic here (a
        # threshold is a score value and the mass above it sums every tied pair alike).
        g_order = np.argsort(gen, kind="quicksort")
        self.g_asc = gen[g_order]
        self.g_asc_id = gen_id[g_order]
        by_identity = g_order[np.argsort(self.g_asc_id, kind="stable")]
        self.gen_sorted = gen[by_identity]                              # by identity, then score
        starts = np.concatenate([[0], np.cumsum(counts)])
        self.gen_bounds = [(int(starts[k]), int(starts[k + 1])) for k in self.gen_ids]
        self.gen_weight = 1.0 / (self.gen_ids.size * counts[gen_id])   # pair order

        imp = np.asarray(imp, dtype=np.float64)
        a = np.asarray(imp_a, dtype=np.int64)
        b = np.asarray(imp_b, dtype=np.int64)
        key = a * K + b
        if K * K <= 1 << 25:  # a dense lookup is O(n) where np.unique sorts
            cell_n_all = np.bincount(key, minlength=K * K)
            cells = np.flatnonzero(cell_n_all)
            lookup = np.empty(K * K, dtype=np.int64)
            lookup[cells] = np.arange(cells.size)
            cell_of, cell_n = lookup[key], cell_n_all[cells]
        else:
            cells, cell_of, cell_n = np.unique(key, return_inverse=True, return_counts=True)
            cell_of = cell_of.ravel()
        self.cell_a, self.cell_b, self.cell_n = cells // K, cells % K, cell_n
        self.n_cells = int(cells.size)
        self.imp_weight = 1.0 / (self.n_cells * cell_n[cell_of])       # pair order
        desc = np.argsort(-imp, kind="quicksort")
        self.imp_desc = imp[desc]
        self.desc_cell = cell_of[desc]
        self.desc_inv_n = 1.0 / cell_n[self.desc_cell]                  # a pair's share of its cell
        self.cum_desc = np.cumsum(self.desc_inv_n)                      # total: n_cells
        self.n_eff_impostor = float(self.imp_weight.sum() ** 2 / np.sum(self.imp_weight ** 2))

    def unweighted_tar(self, far: float) -> float:
        n = self.imp_desc.size
        k = int(math.floor(far * n + 1e-9))
        t = -math.inf if k >= n else float(self.imp_desc[k])
        return float((self.g_asc.size - np.searchsorted(self.g_asc, t, side="right")) / self.g_asc.size)

    def unweighted_auc(self) -> float:
        imp_asc = self.imp_desc[::-1]
        below = np.searchsorted(imp_asc, self.g_asc, side="left").sum(dtype=np.float64)
        upto = np.searchsorted(imp_asc, self.g_asc, side="right").sum(dtype=np.float64)
        return float((below + 0.5 * (upto - below)) / (self.g_asc.size * imp_asc.size))

    # -- TAR --------------------------------------------------------------------------------
    def _impostor_mass(self, m: np.ndarray) -> np.ndarray:
        """sum over cells (a, b) of m_a * m_b: each draw's impostor mass, in cell units. When most
        identity pairs have impostor pairs, all pairs minus the missing ones is the cheaper sum."""
        K = self.K
        all_cells = K * (K - 1) // 2
        if 2 * self.n_cells >= all_cells:
            total = 0.5 * (m.sum(axis=1) ** 2 - (m * m).sum(axis=1))
            present = np.zeros((K, K), dtype=bool)
            present[self.cell_a, self.cell_b] = True
            miss_a, miss_b = np.nonzero(np.triu(~present, k=1))
            sign = -1.0
        else:
            total, miss_a, miss_b, sign = np.zeros(m.shape[0]), self.cell_a, self.cell_b, 1.0
        step = max(1, _CHUNK // max(1, m.shape[0]))
        for s in range(0, miss_a.size, step):
            total = total + sign * (m[:, miss_a[s:s + step]] * m[:, miss_b[s:s + step]]).sum(axis=1)
        return total

    def thresholds(self, m: np.ndarray, far: float) -> np.ndarray:
        """The FAR threshold of each draw: the impostor score at the first position (scores
        descending) where the drawn impostor mass passes far * total; -inf when none does.

        The scan runs in two levels: the drawn mass of each run of _RUN consecutive pairs (a sparse
        product over the cells present), its running sum to find the run where the mass passes the
        target, then the pairs of that run one by one."""
        n = self.imp_desc.size
        target = far * self._impostor_mass(m) * (1.0 + _REL_TOL)
        k = np.full(m.shape[0], n, dtype=np.int64)
        # A draw's threshold sits near the point estimate's: scan a little deeper than that first
        # and twice as deep again for the draws it does not resolve.
        L = min(n, int(1.25 * _first_over(self.cum_desc, far * self.cum_desc[-1])) + 1024)
        todo = np.arange(m.shape[0])
        while todo.size:
            n_runs = -(-L // _RUN)
            used, local = np.unique(self.desc_cell[:L], return_inverse=True)
            local = local.ravel()
            run_mass = sparse.csr_matrix((self.desc_inv_n[:L], (np.arange(L) // _RUN, local)),
                                         shape=(n_runs, used.size))       # per run, per cell
            step = max(1, _CHUNK // max(used.size, n_runs, _RUN))
            left = []
            for s in range(0, todo.size, step):
                rows = todo[s:s + step]
                mr = m[rows]
                M = mr[:, self.cell_a[used]] * mr[:, self.cell_b[used]]  # [rows, cells used]
                cum = np.cumsum(np.asarray(run_mass @ M.T).T, axis=1)   # [rows, runs]
                tgt = target[rows]
                hit = cum[:, -1] > tgt
                j = np.argmax(cum > tgt[:, None], axis=1)
                before = np.where(j > 0, cum[np.arange(rows.size), np.maximum(j - 1, 0)], 0.0)
                pos = j[:, None] * _RUN + np.arange(_RUN)[None, :]
                valid = pos < L
                pos = np.minimum(pos, L - 1)
                w = np.take_along_axis(M, local[pos], axis=1) * self.desc_inv_n[pos] * valid
                inner = np.argmax(before[:, None] + np.cumsum(w, axis=1) > tgt[:, None], axis=1)
                k[rows[hit]] = (j * _RUN + inner)[hit]
                left.append(rows[~hit])
            todo = np.concatenate(left)
            if L == n:
                break
            L = min(n, 2 * L)
        t = np.full(m.shape[0], -np.inf)
        inside = k < n
        t[inside] = self.imp_desc[k[inside]]
        return t

    def identity_accept(self, t: np.ndarray) -> np.ndarray:
        """[B, K_g]: each identity's share of genuine pairs scoring strictly above t[b]."""
        out = np.empty((t.size, self.gen_ids.size))
        for col, (s, e) in enumerate(self.gen_bounds):
            out[:, col] = (e - s - np.searchsorted(self.gen_sorted[s:e], t, side="right")) / (e - s)
        return out

    def tar(self, m: np.ndarray, far: float) -> np.ndarray:
        mg = m[:, self.gen_ids]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (mg * self.identity_accept(self.thresholds(m, far))).sum(axis=1) / mg.sum(axis=1)

    # -- AUC --------------------------------------------------------------------------------
    def _auc_parts(self):
        """Point AUC, each genuine identity's mean impostor CDF r_a and each cell's mean genuine
        survival q_c (ties count half): AUC = mean_a r_a = mean_c q_c."""
        if not hasattr(self, "_auc_cache"):
            imp_asc = self.imp_desc[::-1]
            cw = np.concatenate([[0.0], np.cumsum(self.desc_inv_n[::-1])])
            lo = cw[np.searchsorted(imp_asc, self.g_asc, side="left")]
            hi = cw[np.searchsorted(imp_asc, self.g_asc, side="right")]
            F = (lo + 0.5 * (hi - lo)) / cw[-1]                 # cell-weighted impostor CDF
            r = np.bincount(self.g_asc_id, weights=F, minlength=self.K)[self.gen_ids] / self.gen_per_identity
            counts = np.zeros(self.K)
            counts[self.gen_ids] = self.gen_per_identity
            gw = np.concatenate([[0.0], np.cumsum(1.0 / counts[self.g_asc_id])])
            lo = gw[np.searchsorted(self.g_asc, imp_asc, side="left")]
            hi = gw[np.searchsorted(self.g_asc, imp_asc, side="right")]
            surv = (gw[-1] - hi + 0.5 * (hi - lo)) / gw[-1]    # identity-weighted genuine survival
            q = np.bincount(self.desc_cell[::-1], weights=surv, minlength=self.n_cells) / self.cell_n
            self._auc_cache = (float(r.mean()), r, q)
        return self._auc_cache

    @property
    def auc(self) -> float:
        return self._auc_parts()[0]

    def auc_exact_feasible(self, n_boot: int) -> bool:
        kg = self.gen_ids.size
        return (kg * self.imp_desc.size <= _EXACT_AUC_BUILD
                and kg * self.n_cells <= _EXACT_AUC_PER_DRAW * N_BOOT / n_boot)

    def auc_exact(self, m: np.ndarray) -> np.ndarray:
        """AUC of each draw from the table A[a, c] = P(genuine of a > impostor of cell c)."""
        if not hasattr(self, "_auc_table"):
            imp_asc, cell_asc = self.imp_desc[::-1], self.desc_cell[::-1]
            A = np.empty((self.gen_ids.size, self.n_cells))
            for row, (s, e) in enumerate(self.gen_bounds):
                g = self.gen_sorted[s:e]
                below = np.searchsorted(g, imp_asc, side="left")
                upto = np.searchsorted(g, imp_asc, side="right")
                beats = (e - s - upto + 0.5 * (upto - below)) / (e - s)
                A[row] = np.bincount(cell_asc, weights=beats, minlength=self.n_cells) / self.cell_n
            self._auc_table = A
        A = self._auc_table
        out = np.empty(m.shape[0])
        step = max(1, _CHUNK // max(1, self.n_cells))
        for s in range(0, m.shape[0], step):
            mb = m[s:s + step]
            mg = mb[:, self.gen_ids]
            M = mb[:, self.cell_a] * mb[:, self.cell_b]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[s:s + step] = ((mg @ A) * M).sum(axis=1) / (mg.sum(axis=1) * M.sum(axis=1))
        return out

    def auc_gradient(self) -> np.ndarray:
        """d AUC / d m_k at m = 1: (r_k - AUC) / K_g for genuine identities plus the sum over k's
        cells of (q_c - AUC) / n_cells."""
        auc, r, q = self._auc_parts()
        grad = np.zeros(self.K)
        grad[self.gen_ids] += (r - auc) / self.gen_ids.size
        np.add.at(grad, self.cell_a, (q - auc) / self.n_cells)
        np.add.at(grad, self.cell_b, (q - auc) / self.n_cells)
        return grad

    def auc_linearised(self, m: np.ndarray) -> np.ndarray:
        return self.auc + (m - 1.0) @ self.auc_gradient()

    # -- curve ------------------------------------------------------------------------------
    def roc(self, n_points: int = ROC_POINTS) -> list:
        n = self.imp_desc.size
        ks = np.array([_first_over(self.cum_desc, far * self.cum_desc[-1])
                       for far in np.logspace(math.log10(1.0 / n), 0.0, n_points)])
        t = np.where(ks < n, self.imp_desc[np.minimum(ks, n - 1)], -np.inf)
        n_above = np.searchsorted(-self.imp_desc, -t, side="left")  # impostors strictly above t
        fars = np.where(n_above > 0, self.cum_desc[np.maximum(n_above - 1, 0)], 0.0) / self.cum_desc[-1]
        tars = self.identity_accept(t).mean(axis=1)
        out, seen = [], set()
        for point in zip(fars.tolist(), tars.tolist()):
            if point not in seen:
                seen.add(point)
                out.append([float(point[0]), float(point[1])])
        return out


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class VerificationResult:
    """Weighted verification statistics with identity-level CIs.

    Arrays are in pair order (the design's order, the same for every encoder scored on the same
    labels and seed): ``genuine_scores`` [n_genuine] with ``genuine_identity`` [n_genuine] and
    ``genuine_weight``; ``impostor_scores`` [n_impostor] with ``impostor_identities`` [n_impostor, 2]
    (a < b, indices into the sorted distinct labels) and ``impostor_weight``. Scores are cosines."""

    tar_at_far: dict
    auc: float
    n_genuine: int
    n_impostor: int
    not_measurable: list
    roc: list
    sampled: bool
    genuine_scores: np.ndarray = field(repr=False)
    impostor_scores: np.ndarray = field(repr=False)
    tar_ci95: dict
    auc_ci95: list
    n_identities: int
    n_genuine_identities: int
    n_identity_pairs: int
    n_eff_impostor: float
    unweighted: dict
    auc_ci_method: str
    pair_digest: str
    seed: list
    n_boot: int
    genuine_identity: np.ndarray = field(repr=False)
    impostor_identities: np.ndarray = field(repr=False)
    genuine_weight: np.ndarray = field(repr=False)
    impostor_weight: np.ndarray = field(repr=False)
    _stats: _PairStats = field(repr=False)
    _draws: dict = field(default_factory=dict, repr=False)
    metric: str = "cosine"   # how pairs were scored: raw cosine or the learned metric (metric.LEARNED_METRIC)

    def bootstrap_draws(self, seed, n_boot: int = N_BOOT) -> dict:
        """{"tar": {far: [n_boot]}, "auc": [n_boot]}: the statistics under the identity-level
        bootstrap multiplicities of (n_identities, seed, n_boot); cached. Results on the same
        labels get the same multiplicities, which is what makes a paired test paired."""
        key = (tuple(seed_entropy(seed)), int(n_boot))
        if key not in self._draws:
            m = identity_multipliers(self.n_identities, seed, n_boot, _BOOT_TAG)
            st = self._stats
            tar = {name: st.tar(m, far) for name, far in FAR_LEVELS.items() if self.tar_at_far[name] is not None}
            auc = st.auc_exact(m) if self.auc_ci_method == "exact" else st.auc_linearised(m)
            self._draws[key] = {"tar": tar, "auc": auc}
        return self._draws[key]

    def to_result(self) -> R.Verification:
        """The report's ``verification`` block (``result.Verification``)."""
        return R.Verification(
            tar_at_far={k: _r(v) for k, v in self.tar_at_far.items()},
            auc=_r(self.auc),
            n_genuine=int(self.n_genuine),
            n_impostor=int(self.n_impostor),
            not_measurable=list(self.not_measurable),
            roc=[[float(f"{f:.6g}"), _r(t)] for f, t in self.roc],
            tar_ci95={k: None if v is None else [_r(v[0]), _r(v[1])] for k, v in self.tar_ci95.items()},
            auc_ci95=[_r(self.auc_ci95[0]), _r(self.auc_ci95[1])],
            n_identities=int(self.n_identities),
            n_genuine_identities=int(self.n_genuine_identities),
            n_identity_pairs=int(self.n_identity_pairs),
            metric=self.metric,
            weighting=("identity: each identity's genuine pairs, and each identity pair's impostor pairs, "
                       "weigh equally"),
            ci_method=(f"identity-level bootstrap, {self.n_boot} draws (AUC: "
                       f"{'exact' if self.auc_ci_method == 'exact' else 'linearised'})"),
            unweighted=R.VerificationUnweighted(
                tar_at_far={k: _r(v) for k, v in self.unweighted["tar_at_far"].items()},
                auc=_r(self.unweighted["auc"])),
        )

    def to_json(self) -> dict:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())


# ---------------------------------------------------------------------------------------------
# Pair design (labels and seed only) and scoring
# ---------------------------------------------------------------------------------------------

@dataclass
class _Block:
    """All pairs (rows[t, u], cols[t, v]) of a batch of row/column index sets, kept by mask."""
    rows: np.ndarray      # int64 [m, p]
    cols: np.ndarray      # int64 [m, q]
    genuine: np.ndarray   # bool [m, p, q]
    impostor: np.ndarray  # bool [m, p, q]


def _shuffled_blocks(members: np.ndarray, b: int, rng: np.random.Generator):
    """Shuffle ``members`` into blocks of b; block 2t is paired with block 2t+1: ([m, b], [m, b])."""
    perm = rng.permutation(members)
    m = perm.size // (2 * b)
    idx = perm[: m * 2 * b].reshape(m, 2, b)
    return idx[:, 0], idx[:, 1]


def _pair_design(y: np.ndarray, seed, max_pairs: int) -> tuple[list, bool]:
    """The pairs to score, from the labels and seed alone: (blocks, sampled)."""
    n = y.size
    if n * (n - 1) // 2 <= max_pairs:
        blocks = []
        for s in range(0, n, _BLOCK_ROWS):
            rows = np.arange(s, min(n, s + _BLOCK_ROWS))
            cols = np.arange(s, n)
            upper = cols[None, :] > rows[:, None]
            same = y[rows][:, None] == y[cols][None, :]
            blocks.append(_Block(rows[None], cols[None], (upper & same)[None], (upper & ~same)[None]))
        return blocks, False

    rng = np.random.default_rng(seed_entropy(seed) + [_DESIGN_TAG])
    classes, counts = np.unique(y, return_counts=True)
    pairs_per_class = counts * (counts - 1) // 2
    gen_budget = max_pairs // 2
    order = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    blocks, n_gen = [], 0
    if pairs_per_class.sum() <= gen_budget:
        for c in range(classes.size):
            mem = order[starts[c]:starts[c + 1]]
            if mem.size < 2:
                continue
            keep = np.triu(np.ones((mem.size, mem.size), dtype=bool), k=1)[None]
            blocks.append(_Block(mem[None], mem[None], keep, np.zeros_like(keep)))
            n_gen += int(pairs_per_class[c])
    else:
        share = gen_budget / pairs_per_class.sum()
        for c in range(classes.size):
            mem = order[starts[c]:starts[c + 1]]
            want = max(1, int(pairs_per_class[c] * share))
            b = max(1, min(mem.size // 2, int(round(want / max(1, mem.size // 2)))))
            if mem.size < 2:
                continue
            rows, cols = _shuffled_blocks(mem, b, rng)
            keep = np.ones((rows.shape[0], b, b), dtype=bool)
            blocks.append(_Block(rows, cols, keep, np.zeros_like(keep)))
            n_gen += keep.size
    imp_budget = max_pairs - n_gen
    p_diff = 1.0 - float(np.sum((counts / n) ** 2))
    b = int(max(1, min(n // 2, round(imp_budget / max(1e-9, p_diff) / (n / 2)))))
    while True:  # shrink b until the impostor pairs fit the budget
        rows, cols = _shuffled_blocks(np.arange(n), b, rng)
        diff = y[rows][:, :, None] != y[cols][:, None, :]
        if int(diff.sum()) <= imp_budget or b == 1:
            break
        b = max(1, int(b * 0.9))
    blocks.append(_Block(rows, cols, np.zeros_like(diff), diff))
    return blocks, True


def _pair_indices(blocks: list, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) image indices of the kept pairs, in the order a boolean mask selects them."""
    ii, jj = [], []
    for blk in blocks:
        mask = getattr(blk, kind)
        ii.append(np.broadcast_to(blk.rows[:, :, None], mask.shape)[mask])
        jj.append(np.broadcast_to(blk.cols[:, None, :], mask.shape)[mask])
    return np.concatenate(ii), np.concatenate(jj)


def _score_blocks(Xn: torch.Tensor, blocks: list, scorer=None) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of the genuine and impostor pairs of ``blocks`` (in ``_pair_indices`` order), from
    the L2-normalised rows ``Xn``, or from ``scorer(R, C) -> [m, p, q]`` (a learned metric)."""
    gen, imp = [], []
    dev = Xn.device
    for blk in blocks:
        R = torch.from_numpy(blk.rows).to(dev)
        C = torch.from_numpy(blk.cols).to(dev)
        S = torch.bmm(Xn[R], Xn[C].transpose(1, 2)) if scorer is None else scorer(R, C)
        for mask, out in ((blk.genuine, gen), (blk.impostor, imp)):
            if mask.any():
                out.append(S[torch.from_numpy(mask).to(dev)].cpu().numpy())
    empty = np.zeros(0, np.float32)
    return (np.concatenate(gen) if gen else empty), (np.concatenate(imp) if imp else empty)


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.int64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def verification(X, y, *, seed, max_pairs: int = 2_000_000, device="cpu", n_boot: int = N_BOOT,
                 metric="cosine") -> VerificationResult | None:
    """Cosine-similarity verification of same-label vs different-label pairs, labels as identities.

    ``metric``: "cosine" (raw cosine, nothing fitted) or "learned" (``metric.CrossFitMetric``: cosine
    after within-identity whitening fitted on other identities, cross-fitted so that every pair of the
    same design is scored; None when fewer than 3 identities leave nothing disjoint to fit on), or a
    ``CrossFitMetric`` already fitted on these rows.

    X : float [n, d] (all images of the kept classes), y : int [n]. Returns identity-weighted TAR
    at FAR 1e-2 and 1e-3 (a level is measurable only with >= MIN_TAIL / FAR impostor pairs, counted
    as Kish's effective number under the weights, else None and listed in ``not_measurable``), ROC
    AUC, their identity-bootstrap 95% CIs (``n_boot`` draws, seeded by ``seed``) and a <= 200-point
    weighted ROC for plotting. The pairs depend on (y, seed, max_pairs) only.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be [n, d] with one label per row, got X {X.shape}, y {y.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf; drop or fix those images before verification")
    if int(max_pairs) < 2:
        raise ValueError(f"max_pairs must be >= 2, got {max_pairs}")
    y = y.astype(np.int64)
    classes, ids, counts = np.unique(y, return_inverse=True, return_counts=True)
    ids = ids.ravel()
    if classes.size < 2 or counts.max() < 2:
        raise ValueError("verification needs >= 2 classes and a class with >= 2 images")
    seed_entropy(seed)
    blocks, sampled = _pair_design(y, seed, int(max_pairs))
    gi, gj = _pair_indices(blocks, "genuine")
    ii, ij = _pair_indices(blocks, "impostor")
    dev = torch.device(device)
    if not isinstance(metric, str) or metric == "learned":
        from .metric import LEARNED_METRIC, CrossFitMetric

        # a CrossFitMetric built by the caller on these rows (shared with open-set identification)
        cf = metric if not isinstance(metric, str) else CrossFitMetric(X, ids, classes.size, seed_entropy(seed),
                                                                        device=dev)
        if not cf.available:
            return None
        gen, imp = _score_blocks(cf.Z[0], blocks, cf.score)  # Z[0]: only its device is read
        name = LEARNED_METRIC
    elif metric == "cosine":
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
        gen, imp = _score_blocks(Xt / Xt.norm(dim=1, keepdim=True).clamp_min(1e-12), blocks)
        name = "cosine"
    else:
        raise ValueError(f"metric must be 'cosine' or 'learned', got {metric!r}")
    a, b = ids[ii], ids[ij]
    res = verification_from_pairs(
        gen, ids[gi], imp, np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), classes.size,
        seed=seed, n_boot=n_boot, sampled=sampled, pair_digest=_digest(ids, gi, gj, ii, ij))
    res.metric = name
    return res


def verification_from_pairs(genuine_scores, genuine_identity, impostor_scores, impostor_identities,
                            n_identities: int, *, seed, n_boot: int = N_BOOT, sampled: bool = False,
                            pair_digest: str | None = None, auc_ci: str = "auto") -> VerificationResult:
    """Verification statistics of already-scored pairs.

    genuine_scores [n_g] with genuine_identity [n_g] (ints in 0..n_identities-1); impostor_scores
    [n_i] with impostor_identities [n_i, 2] (two different identities). ``pair_digest`` names the
    pair design (default: a digest of the identity arrays) and must match for a paired test.
    ``auc_ci``: "auto", "exact" or "linearised" (see the module docstring).
    """
    K = int(n_identities)
    g = np.asarray(genuine_scores, dtype=np.float64).ravel()
    gid = np.asarray(genuine_identity).astype(np.int64).ravel()
    i = np.asarray(impostor_scores, dtype=np.float64).ravel()
    pairs = (np.asarray(impostor_identities).astype(np.int64).reshape(-1, 2) if np.size(impostor_identities)
             else np.zeros((0, 2), np.int64))
    if g.size == 0 or i.size == 0:
        raise ValueError(f"need at least one genuine and one impostor pair, got {g.size} and {i.size}")
    if gid.shape != g.shape or pairs.shape[0] != i.size:
        raise ValueError(f"one identity per genuine score and an identity pair per impostor score: got "
                         f"{gid.shape} for {g.shape} and {pairs.shape} for {i.shape}")
    if not (np.isfinite(g).all() and np.isfinite(i).all()):
        raise ValueError("scores contain NaN or inf; fix the encoder or drop those images")
    lo_id, hi_id = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    smallest, largest = min(int(gid.min()), int(lo_id.min())), max(int(gid.max()), int(hi_id.max()))
    if K < 2 or smallest < 0 or largest >= K:
        raise ValueError(f"identities must be in 0..n_identities-1 with n_identities >= 2, got n_identities={K} "
                         f"and range {smallest}..{largest}")
    if (lo_id == hi_id).any():
        raise ValueError("an impostor pair joins an identity with itself; such a pair is genuine")
    if auc_ci not in ("auto", "exact", "linearised"):
        raise ValueError(f"auc_ci must be 'auto', 'exact' or 'linearised', got {auc_ci!r}")
    if int(n_boot) < 100:
        raise ValueError(f"n_boot must be >= 100 for a 95% interval, got {n_boot}")
    entropy = seed_entropy(seed)
    st = _PairStats(g, gid, i, lo_id, hi_id, K)
    one = np.ones((1, K))
    tars, not_measurable = {}, []
    for name, far in FAR_LEVELS.items():
        if st.n_eff_impostor >= MIN_TAIL / far * (1.0 - _REL_TOL):
            tars[name] = float(st.tar(one, far)[0])
        else:
            tars[name] = None
            not_measurable.append(name)
    unweighted = {"tar_at_far": {name: (st.unweighted_tar(far) if i.size >= MIN_TAIL / far else None)
                                 for name, far in FAR_LEVELS.items()},
                  "auc": st.unweighted_auc()}
    method = auc_ci if auc_ci != "auto" else ("exact" if st.auc_exact_feasible(int(n_boot)) else "linearised")
    res = VerificationResult(
        tar_at_far=tars, auc=st.auc, n_genuine=int(g.size), n_impostor=int(i.size),
        not_measurable=not_measurable, roc=st.roc(), sampled=bool(sampled),
        genuine_scores=g, impostor_scores=i, tar_ci95={}, auc_ci95=[0.0, 1.0], n_identities=K,
        n_genuine_identities=int(st.gen_ids.size), n_identity_pairs=st.n_cells,
        n_eff_impostor=st.n_eff_impostor, unweighted=unweighted, auc_ci_method=method,
        pair_digest=pair_digest or _digest(gid, lo_id, hi_id), seed=entropy, n_boot=int(n_boot),
        genuine_identity=gid.astype(np.int32), impostor_identities=np.stack([lo_id, hi_id], 1).astype(np.int32),
        genuine_weight=st.gen_weight, impostor_weight=st.imp_weight, _stats=st)
    draws = res.bootstrap_draws(entropy, n_boot)
    res.tar_ci95 = {name: (identity_bootstrap_interval(draws["tar"][name], tars[name], K)
                           if tars[name] is not None else None) for name in FAR_LEVELS}
    res.auc_ci95 = identity_bootstrap_interval(draws["auc"], res.auc, K)
    return res


def paired_verification_test(model: VerificationResult, floor: VerificationResult, far: str = "1e-3",
                             seed=0, *, n_boot: int = N_BOOT) -> dict:
    """Paired identity-level bootstrap of (model - floor) for TAR at ``far`` and for AUC.

    Both results must come from the same pairs (same labels, seed and max_pairs: equal
    ``pair_digest``). Every draw resamples the identities once and applies the same multiplicities
    to both encoders' pairs. Returns ``tar_delta`` (model - floor), ``tar_ci95``, ``tar_p_value``
    (two-sided, +1 correction), ``se_tar``, ``upper95_tar`` (one-sided 95% upper bound of the gain),
    the same for AUC (``auc_*``, ``se_auc``, ``upper95_auc``), ``n_identities``, ``n_boot`` and
    ``method``. TAR fields are None, with ``tar_not_measurable`` set, when FAR ``far`` is not
    measurable on these pairs.
    """
    if far not in FAR_LEVELS:
        raise ValueError(f"far must be one of {list(FAR_LEVELS)}, got {far!r}")
    for name, r in (("model", model), ("floor", floor)):
        if not isinstance(r, VerificationResult):
            raise ValueError(f"{name} must be a VerificationResult, got {type(r).__name__}")
    if model.pair_digest != floor.pair_digest or model.n_identities != floor.n_identities:
        raise ValueError("model and floor were not scored on the same pairs; run verification on the same "
                         "labels with the same seed and max_pairs for both")
    K = model.n_identities
    dm, df = model.bootstrap_draws(seed, n_boot), floor.bootstrap_draws(seed, n_boot)
    method = model.auc_ci_method
    if floor.auc_ci_method == method:
        auc = paired_summary(dm["auc"], df["auc"], model.auc, floor.auc, K)
    else:  # forced to different methods: compare like with like
        method = "linearised"
        m = identity_multipliers(K, seed, n_boot, _BOOT_TAG)
        auc = paired_summary(model._stats.auc_linearised(m), floor._stats.auc_linearised(m), model.auc, floor.auc, K)
    out = {"far": far, "tar_delta": None, "tar_ci95": None, "tar_p_value": None, "se_tar": None,
           "upper95_tar": None, "tar_not_measurable": None,
           "auc_delta": auc["delta"], "auc_ci95": auc["ci95"], "auc_p_value": auc["p_value"],
           "se_auc": auc["se"], "upper95_auc": auc["upper95"], "n_identities": K, "n_boot": int(n_boot),
           "method": (f"paired identity-level bootstrap ({int(n_boot)} draws; identities resampled with all "
                      f"their pairs, the same draws for model and floor; two-sided p with the +1 correction; "
                      f"AUC {method})")}
    if model.tar_at_far[far] is None or floor.tar_at_far[far] is None:
        out["tar_not_measurable"] = (f"TAR at FAR {far} needs >= {MIN_TAIL / FAR_LEVELS[far]:.0f} effective "
                                     f"impostor pairs; these pairs have {model.n_eff_impostor:.0f}")
        return out
    tar = paired_summary(dm["tar"][far], df["tar"][far], model.tar_at_far[far], floor.tar_at_far[far], K)
    out.update(tar_delta=tar["delta"], tar_ci95=tar["ci95"], tar_p_value=tar["p_value"], se_tar=tar["se"],
               upper95_tar=tar["upper95"])
    return out
