"""Linear probe: L2-regularised multinomial logistic regression on frozen embeddings.

The model is scikit-learn's ``LogisticRegression(C=C)`` (multinomial, lbfgs): it minimises
``C * sum_i CE_i + 0.5 * ||W||^2`` with an unpenalised intercept. We minimise the same objective in
its mean form, ``mean_i CE_i + ||W||^2 / (2 C n)``, with our own batched L-BFGS written in torch so
that it runs on the CPU or a GPU, fits many few-shot episodes as one tensor program, and avoids
torch.optim's import and dispatch overhead.

For conditioning, features are centred and divided by one global scale (both computed on the
training split only): an exact reparameterisation, because the intercept absorbs the centring and
the penalty is rescaled to match, so the optimum and the predictions are those of the raw problem.

C is chosen on the validation split by the CLIP paper's protocol (coarse grid 1e-6..1e6 in x100
steps, then halving steps in log space around the best down to 1/8 decade: the resolution of the
paper's 96 log-spaced values), warm-starting every fit from the nearest C already fitted; the probe
is then refit on train+val at the chosen C and scored on the test split.

Fits run in float32 except under strong regularisation (``FLOAT64_ABOVE_LAM``): there the weights,
and with them the logit margins, shrink like 1/lambda (~1e-7 at C = 1e-6), while float32 rounding
in the intercepts' gradient (a sum of n softmax terms) leaves the intercepts wandering by ~1e-7.
Predictions, and the C chosen on them, then follow rounding noise (85% agreement with the float64
optimum at C = 1e-6 on a 10-class test). Those fits run in float64; they take 1-3 iterations.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import result as R
from ..seeds import Stream, stream
from . import preprocess as _pre
from .splits import Split
from .stats import POSTERIOR_DRAWS, balanced_accuracy, bootstrap_ci
from .stats import round6 as _r
from .stats import skill as _skill

__all__ = ["LinearProbeResult", "linear_probe", "linear_probes", "fit_logistic", "Standardizer", "COARSE_LOG10_C",
           "solver_dtype"]

COARSE_LOG10_C = (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0)
N_HALVINGS = 4          # steps of 1, 1/2, 1/4, 1/8 decades around the coarse best
# Mean-form penalty weight (standardised features) above which fits run in float64. float32 went
# wrong at lambda ~1e4 and held at ~1e3 in tests/test_linear_probe.py's case: 100 leaves a margin.
FLOAT64_ABOVE_LAM = 100.0
GTOL = 1e-4             # search fits: stop when max|grad| <= GTOL * max|grad at W=0|
REFIT_GTOL = 1e-6       # the final train+val fit, the one that is scored, is solved tighter
FTOL = 0.0              # optional: also stop when the relative decrease of f falls below this
MAX_ITER = 300          # per fit (warm starts usually need 5-20)
# Iteration caps for weakly regularised fits during the search (they converge slowly, and their
# validation accuracy has long stopped changing); the scored refit gets REFIT_MAX_ITER_LARGE_C.
SEARCH_MAX_ITER = ((2.0, 300), (4.0, 40), (math.inf, 25))  # (log10 C below, cap)
REFIT_MAX_ITER_LARGE_C = 100
HISTORY = 10
BATCH_FLOATS = 1 << 25  # design floats (~128 MiB in float32) per batched call of several searches' fits


def _rc(c: float) -> float:
    return float(f"{float(c):.6g}")


@dataclass
class LinearProbeResult:
    """Test-split result of the probe at the C chosen on validation.

    ``test_correct``/``test_pred``/``test_labels`` are in ``split.test`` order (kept for paired
    tests); ``to_json()`` is the report's ``linear_probe`` block (no arrays)."""

    accuracy: float
    ci95: tuple[float, float]
    C: float
    skill: float
    val_accuracy: float
    c_search: list[list[float]]
    n_train: int
    n_val: int
    n_test: int
    chance: float
    test_correct: np.ndarray = field(repr=False)
    test_pred: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    # the label-free transform chosen on validation (``preprocess.CANDIDATES``), and every candidate's
    # best validation accuracy on the coarse C grid when there were several
    preprocess: str = "none"
    preprocess_search: list = field(default_factory=list)

    def to_result(self) -> R.LinearProbe:
        """The report's ``linear_probe`` block (``result.LinearProbe``)."""
        return R.LinearProbe(
            accuracy=_r(self.accuracy), ci95=[_r(self.ci95[0]), _r(self.ci95[1])], C=_rc(self.C),
            skill=_r(self.skill), val_accuracy=_r(self.val_accuracy), n_train=int(self.n_train),
            n_val=int(self.n_val), n_test=int(self.n_test), c_search=[[_rc(c), _r(a)] for c, a in self.c_search],
            preprocess=self.preprocess,
            preprocess_search=([[name, _r(a)] for name, a in self.preprocess_search]
                               if self.preprocess_search else None))

    def to_json(self) -> dict:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())


# --------------------------------------------------------------------------------------------
# The solver
# --------------------------------------------------------------------------------------------

class Standardizer:
    """Centre and globally rescale features with statistics of the fitting rows only.

    ``design(X)`` returns float32 ``[n, D+1]`` on ``device``: (X - mean) / scale with a trailing
    column of ones for the intercept. ``scale`` is the root mean squared centred coordinate, so
    the L2 penalty on the raw weights is ``||W_z||^2 / scale^2``."""

    def __init__(self, X_fit: np.ndarray, device):
        X_fit = np.asarray(X_fit, dtype=np.float64)
        self.mean = X_fit.mean(axis=0)
        rms = float(np.sqrt(np.mean((X_fit - self.mean) ** 2))) if X_fit.size else 0.0
        self.scale = rms if rms > 0 and np.isfinite(rms) else 1.0
        self.device = torch.device(device)

    def design(self, X: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        Z = np.empty((X.shape[0], X.shape[1] + 1), dtype=np_dtype)
        np.subtract(X, self.mean, out=Z[:, :-1], casting="unsafe")
        Z[:, :-1] /= np_dtype(self.scale)
        Z[:, -1] = 1.0
        return torch.from_numpy(Z).to(self.device)

    def lam(self, C: float, n: int) -> float:
        """Penalty weight of the mean-form objective in standardised coordinates."""
        return 1.0 / (float(C) * n * self.scale ** 2)


def solver_dtype(lam: float) -> torch.dtype:
    """float64 for fits regularised so strongly that float32 margins drown (``FLOAT64_ABOVE_LAM``)."""
    return torch.float64 if lam > FLOAT64_ABOVE_LAM else torch.float32


def _penalties(lam, E: int) -> list[tuple[int, int, float]]:
    """``lam`` (one float, or one per episode) as runs of equal values: [(start, stop, lam)]."""
    if isinstance(lam, (int, float)):
        return [(0, E, float(lam))]
    lams = [float(v) for v in lam]
    if len(lams) != E:
        raise ValueError(f"lam has {len(lams)} values for {E} episodes")
    runs: list[tuple[int, int, float]] = []
    for e, v in enumerate(lams):
        if runs and runs[-1][2] == v:
            runs[-1] = (runs[-1][0], e + 1, v)
        else:
            runs.append((e, e + 1, v))
    return runs


def _loss_grad(Z, y, P, lam, n: int):
    """Objective per episode and its gradient. Z [E,n,D+1], y [E,n,1] long, P [E,D+1,K]; ``lam``:
    ``_penalties`` runs (one scalar per run, so a batch of searches computes what each would alone)."""
    logits = torch.bmm(Z, P)
    ll = logits.gather(-1, y)
    m = logits.amax(-1, keepdim=True)
    # exp(-80) is still a normal float32: clamping keeps denormals (very slow on CPUs) out
    G = logits.sub_(m).clamp_(min=-80.0).exp_()
    tot = G.sum(-1, keepdim=True)
    lse = m + torch.log(tot)
    W = P[:, :-1]
    pen = (W * W).sum((1, 2))
    for a, b, lam_ in lam:
        pen[a:b].mul_(0.5 * lam_)
    f = (lse - ll).sum((1, 2)) / n + pen
    G.div_(tot)
    G.scatter_add_(-1, y, torch.full_like(ll, -1.0))
    g = torch.bmm(Z.transpose(1, 2), G).div_(n)
    for a, b, lam_ in lam:
        g[a:b, :-1].add_(W[a:b], alpha=lam_)
    return f, g


def _bdot(a, b):
    return (a * b).sum((1, 2))


def initial_params(y: torch.Tensor, n_classes: int, n_features: int, dtype=torch.float32) -> torch.Tensor:
    """W = 0 and the intercept at the log class frequencies: the optimum as C -> 0. y [E, n]."""
    E = y.shape[0]
    counts = torch.zeros(E, n_classes, dtype=dtype, device=y.device)
    counts.scatter_add_(1, y, torch.ones_like(y, dtype=dtype))
    b = torch.log(counts.clamp_min(0.5))
    P = torch.zeros(E, n_features + 1, n_classes, dtype=dtype, device=y.device)
    P[:, -1] = b - b.mean(1, keepdim=True)
    return P


@torch.inference_mode()  # no autograd bookkeeping: a fit is hundreds of small ops, where it cost 20-35% of the CPU
def fit_logistic(Z: torch.Tensor, y: torch.Tensor, n_classes: int, lam: float | Sequence[float], *,
                 P0: torch.Tensor | None = None, g_ref: torch.Tensor | None = None,
                 max_iter: int = MAX_ITER, gtol: float = GTOL, ftol: float = FTOL,
                 history: int = HISTORY) -> tuple[torch.Tensor, int]:
    """Fit E independent L2 logistic regressions at once with a batched L-BFGS.

    Z : [E, n, D+1] float32 design (last column ones), y : [E, n] long labels in 0..K-1,
    lam : mean-form penalty weight on the first D rows of the parameters: one for every episode, or
    one per episode (independent searches fitted together; each episode gets what it would alone).
    Returns parameters ``P`` [E, D+1, K] (last row: intercepts) and the iterations used.
    Each episode has its own curvature pairs, step sizes and stopping test (max|grad| below
    ``gtol`` times its gradient at the start ``g_ref``, a stalled objective, or a failed line
    search), so an episode's answer doesn't depend on the others in its batch beyond float noise.
    """
    E, n, D1 = Z.shape
    y = y.reshape(E, n, 1)
    lam = _penalties(lam, E)
    P = initial_params(y.reshape(E, n), n_classes, D1 - 1, Z.dtype) if P0 is None else P0.clone()
    f, g = _loss_grad(Z, y, P, lam, n)
    if g_ref is None:
        P_start = initial_params(y.reshape(E, n), n_classes, D1 - 1, Z.dtype)
        g_ref = g if P0 is None else _loss_grad(Z, y, P_start, lam, n)[1]
        g_ref = g_ref.abs().amax((1, 2))
    tol = gtol * g_ref.clamp_min(1e-30)
    S: list[torch.Tensor] = []
    Yk: list[torch.Tensor] = []
    Rho: list[torch.Tensor] = []
    active = torch.ones(E, dtype=torch.bool, device=Z.device)
    it = 0
    for it in range(1, max_iter + 1):
        active &= g.abs().amax((1, 2)) > tol
        if not bool(active.any()):
            it -= 1
            break
        # Two-loop recursion, with separate initial scalings for the weights and the intercepts:
        # at small C their curvatures differ by orders of magnitude (penalty vs data).
        q = g.clone()
        alphas = []
        for s_, y_, r_ in zip(reversed(S), reversed(Yk), reversed(Rho)):
            a = r_ * _bdot(s_, q)
            alphas.append(a)
            q.sub_(y_ * a[:, None, None])
        if S:
            s_, y_ = S[-1], Yk[-1]
            gw = (s_[:, :-1] * y_[:, :-1]).sum((1, 2)) / (y_[:, :-1] * y_[:, :-1]).sum((1, 2)).clamp_min(1e-30)
            gb = (s_[:, -1] * y_[:, -1]).sum(1) / (y_[:, -1] * y_[:, -1]).sum(1).clamp_min(1e-30)
            gw = torch.where(gw > 0, gw, torch.ones_like(gw))
            gb = torch.where(gb > 0, gb, gw)
            q[:, :-1].mul_(gw[:, None, None])
            q[:, -1].mul_(gb[:, None])
        else:
            # First step: inverse of a diagonal curvature guess. With standardised features (unit
            # mean variance) and K balanced classes the softmax curvature is about 1/K per entry;
            # the weights add the penalty. The line search corrects a bad guess.
            for a, b, lam_ in lam:
                q[a:b, :-1].mul_(1.0 / (lam_ + 1.0 / n_classes))
            q[:, -1].mul_(float(n_classes))
        for s_, y_, r_, a in zip(S, Yk, Rho, reversed(alphas)):
            q.add_(s_ * (a - r_ * _bdot(y_, q))[:, None, None])
        # Selections by torch.where, not boolean-mask assignment: the same values, without the
        # nonzero/index_put round trips that dominated small fits.
        d = torch.where(active[:, None, None], q.neg_(), 0.0)
        gd = _bdot(g, d)
        uphill = active & (gd >= 0)
        if bool(uphill.any()):  # lost positive definiteness: restart those episodes downhill
            d = torch.where(uphill[:, None, None], -g, d)
            gd = _bdot(g, d)
        # Backtracking (Armijo) line search, per episode; convex objective so curvature holds.
        t = torch.ones(E, dtype=Z.dtype, device=Z.device)
        todo = active.clone()
        P_new, f_new, g_new = P, f, g
        for _ in range(12):
            P_try = torch.addcmul(P, t[:, None, None], d)
            f_try, g_try = _loss_grad(Z, y, P_try, lam, n)
            # Armijo, or (noise-free, since the objective is convex along d) a directional
            # derivative that is still <= 0: at tiny C the penalty-dominated part of the objective
            # is below float32 resolution of f, while the gradient stays accurate.
            ok = todo & ((f_try <= f + 1e-4 * t * gd) | (_bdot(g_try, d) <= 0))
            ok3 = ok[:, None, None]
            P_new, f_new, g_new = torch.where(ok3, P_try, P_new), torch.where(ok, f_try, f_new), \
                torch.where(ok3, g_try, g_new)
            todo &= ~ok
            if not bool(todo.any()):
                break
            t = torch.where(todo, t * 0.3, t)
        s_new, y_new = P_new - P, g_new - g
        sy = _bdot(s_new, y_new)
        good = sy > 1e-20
        S.append(s_new * good[:, None, None])
        Yk.append(y_new * good[:, None, None])
        Rho.append(torch.where(good, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy)))
        if len(S) > history:
            S.pop(0), Yk.pop(0), Rho.pop(0)
        active &= ~todo
        if ftol > 0:
            active &= (f - f_new) > ftol * torch.maximum(f.abs(), f_new.abs()).clamp_min(1.0)
        P, f, g = P_new, f_new, g_new
    return P, it


def predict(Z: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Argmax class of each row of Z [n, D+1] for each parameter set P [E, D+1, K] -> [E, n]."""
    E, D1, K = P.shape
    scores = Z @ P.permute(1, 0, 2).reshape(D1, E * K)  # one GEMM, not E broadcast products
    return scores.view(-1, E, K).argmax(-1).T


def remap_labels(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.searchsorted(classes, y)


# --------------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------------

def check_inputs(X, y, n_classes: int, split: Split) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array [n_images, dim], got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have one label per row of X: y {y.shape} vs X {X.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class ids, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1} (n_classes={n_classes}), "
                         f"got {int(y.min())}..{int(y.max())}")
    for name in ("train", "val", "test"):
        idx = getattr(split, name)
        if idx.size == 0:
            raise ValueError(f"split.{name} is empty: every kept class needs >= 1 {name} image")
        if idx.min() < 0 or idx.max() >= X.shape[0]:
            raise ValueError(f"split.{name} indexes outside X (n={X.shape[0]})")
    train_classes = np.unique(y[split.train])
    if train_classes.size < 2:
        raise ValueError(f"the training split has {train_classes.size} class(es); a probe needs >= 2")
    for name in ("val", "test"):
        extra = np.setdiff1d(np.unique(y[getattr(split, name)]), train_classes)
        if extra.size:
            raise ValueError(f"split.{name} has classes {extra.tolist()[:5]} with no training image")
    return X, y.astype(np.int64)


def finite_rows(X: np.ndarray, idx: np.ndarray, what: str) -> None:
    """Raise ValueError (naming ``what``) unless every row ``idx`` of ``X`` [n, d] is finite (rows a head fits on)."""
    bad = ~np.isfinite(X[idx]).all(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} {what} feature rows contain NaN or inf; drop or fix those images")


@torch.inference_mode()  # nothing here needs gradients (the L-BFGS has its own), and small ops run faster
def linear_probe(X, y, n_classes: int, split: Split, *, seed: int, device="cpu",
                 n_boot: int = POSTERIOR_DRAWS, preprocess=None) -> LinearProbeResult:
    """CLIP-protocol linear probe: C chosen on ``split.val``, refit on train+val, scored on test.

    X : float [n, d] features, y : int [n] labels in 0..n_classes-1. Only ``split.train`` and
    ``split.val`` rows are fitted on or used to choose C; ``split.test`` rows are only scored.
    Balanced accuracy throughout; chance is 1 / (number of classes in the training split).

    preprocess : None (the raw features), "auto" (``preprocess.CANDIDATES``), or names / fitted
        ``preprocess.Transform`` objects: label-free transforms fitted on ``split.train`` only. With
        several, each gets the coarse C grid; the one with the best validation accuracy there (ties:
        the earlier) gets the fine C search, the refit and the test (``LinearProbeResult.preprocess``).
    """
    return linear_probes(X, y, n_classes, [split], seed=seed, device=device, n_boot=n_boot,
                         preprocess=[preprocess])[0]


@torch.inference_mode()
def linear_probes(X, y, n_classes: int, splits: Sequence[Split], *, seed: int, device="cpu",
                  n_boot: int = POSTERIOR_DRAWS, preprocess: Sequence | None = None) -> list[LinearProbeResult]:
    """``linear_probe`` on each of ``splits`` (e.g. rotating folds), ``preprocess[i]`` for
    ``splits[i]`` (None: raw features everywhere). The results are those of one call per split; the
    searches of several splits run their L-BFGS fits batched, as many at a time as ``BATCH_FLOATS``
    of design rows allow (a fit of a probe's size is mostly per-call overhead)."""
    splits = list(splits)
    preprocess = list(preprocess) if preprocess is not None else [None] * len(splits)
    if len(preprocess) != len(splits):
        raise ValueError(f"preprocess has {len(preprocess)} entries for {len(splits)} splits")
    results: list[LinearProbeResult] = []
    chunk: list[list[tuple[_CSearch, _pre.Transform]]] = []
    floats = 0
    for split, pre in zip(splits, preprocess):
        X, y = check_inputs(X, y, n_classes, split)
        finite_rows(X, np.concatenate([split.train, split.val]), "train/val")
        transforms = _pre.resolve(pre, X, split.train)
        size = len(transforms) * (split.train.size + split.val.size) * (X.shape[1] + 1)
        if chunk and floats + size > BATCH_FLOATS:
            results += _probe_together(chunk, seed, n_boot)
            chunk, floats = [], 0
        chunk.append([(_CSearch(t.apply(X) if not t.identity else X, y, n_classes, split, device), t)
                      for t in transforms])
        floats += size
    return results + _probe_together(chunk, seed, n_boot)


def _probe_together(per_split: list[list[tuple[_CSearch, _pre.Transform]]], seed: int,
                    n_boot: int) -> list[LinearProbeResult]:
    """Each split's searches (one per transform): the coarse grids together, then the fine search,
    refit and test of each split's best transform (validation ties: the earlier transform)."""
    coarse_together([search for searches in per_split for search, _ in searches])
    chosen = [max(searches, key=lambda st: st[0].best_coarse_acc()) for searches in per_split]
    out = finish_together([search for search, _ in chosen], seed, n_boot)
    for res, (_, t), searches in zip(out, chosen, per_split):
        res.preprocess = t.name
        if len(searches) > 1:
            res.preprocess_search = [[tr.name, float(s.best_coarse_acc())] for s, tr in searches]
    return out


class _CSearch:
    """The C search of one (transformed) feature matrix: ``coarse_together`` fits its
    ``COARSE_LOG10_C``; ``finish_together`` halves the steps around the best, refits on train+val
    and scores the test split (both for several searches at once)."""

    def __init__(self, X, y, n_classes: int, split: Split, device):
        self.X, self.y, self.n_classes, self.split = X, y, n_classes, split
        self.classes = np.unique(y[split.train])
        self.dev = torch.device(device)
        self.std = Standardizer(X[split.train], self.dev)
        self.designs: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}
        self.y_tr = torch.from_numpy(remap_labels(y[split.train], self.classes)).to(self.dev)[None]
        self.y_va = y[split.val]
        self.n_tr = split.train.size
        K = self.classes.size
        self.P_start = initial_params(self.y_tr, K, X.shape[1])
        self.g_ref = _loss_grad(self.design(torch.float32)[0], self.y_tr[..., None], self.P_start.clone(),
                                _penalties(0.0, 1), self.n_tr)[1].abs().amax((1, 2))
        self.fits: dict[float, tuple[torch.Tensor, float]] = {}
        self.best: float | None = None  # log10 C, once the search chose one

    def design(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(train [1, n, D+1], val [n_val, D+1]) in this precision, built on first use."""
        if dtype not in self.designs:
            X, sp = self.X, self.split
            self.designs[dtype] = (self.std.design(X[sp.train], dtype)[None], self.std.design(X[sp.val], dtype))
        return self.designs[dtype]

    def _start(self, logc: float):
        """(warm start, penalty, precision, iteration cap) of the fit at ``logc``: warm-started from
        the nearest C fitted so far (ties: the smaller)."""
        fits = self.fits
        near = min(fits, key=lambda other: (abs(other - logc), other)) if fits else None
        lam = self.std.lam(10.0 ** logc, self.n_tr)
        dtype = solver_dtype(lam)
        P0 = (fits[near][0] if near is not None else self.P_start).to(dtype)
        return P0, lam, dtype, next(c for below, c in SEARCH_MAX_ITER if logc < below)

    def _record(self, logc: float, P: torch.Tensor, dtype: torch.dtype) -> None:
        pred = self.classes[predict(self.design(dtype)[1], P)[0].cpu().numpy()]
        self.fits[logc] = (P, balanced_accuracy(self.y_va, pred, self.n_classes))

    def run(self, logc: float) -> float:
        if logc not in self.fits:
            P0, lam, dtype, cap = self._start(logc)
            P, _ = fit_logistic(self.design(dtype)[0], self.y_tr, self.classes.size, lam, P0=P0,
                                g_ref=self.g_ref.to(dtype), max_iter=cap)
            self._record(logc, P, dtype)
        return self.fits[logc][1]

    def best_of(self, cands):  # highest val accuracy; ties go to the smaller C (more regularised)
        return max(sorted(cands), key=lambda logc: (self.run(logc), -logc))

    def best_coarse_acc(self) -> float:
        return max(self.fits[logc][1] for logc in COARSE_LOG10_C)

    def _refit_start(self):
        """The train+val refit at the chosen C: (design, labels, penalty, precision, warm start, cap)."""
        C = 10.0 ** self.best
        fit_rows = np.concatenate([self.split.train, self.split.val])
        self.designs.clear()
        lam = self.std.lam(C, fit_rows.size)
        dtype = solver_dtype(lam)
        Z_fit = self.std.design(self.X[fit_rows], dtype)[None]
        y_fit = torch.from_numpy(remap_labels(self.y[fit_rows], self.classes)).to(self.dev)[None]
        cap = MAX_ITER if self.best < 4 else REFIT_MAX_ITER_LARGE_C
        return Z_fit, y_fit, lam, dtype, self.fits[self.best][0].to(dtype), cap

    def _score(self, P: torch.Tensor, dtype: torch.dtype, seed: int, n_boot: int) -> LinearProbeResult:
        X, y, split, fits, classes, best = self.X, self.y, self.split, self.fits, self.classes, self.best
        test_pred = classes[predict(self.std.design(X[split.test], dtype), P)[0].cpu().numpy()]
        y_te = y[split.test]
        correct = test_pred == y_te
        acc = balanced_accuracy(y_te, test_pred, self.n_classes)
        chance = 1.0 / classes.size
        return LinearProbeResult(
            accuracy=acc,
            ci95=bootstrap_ci(y_te, correct, self.n_classes, seed=stream(seed, Stream.LINEAR_PROBE_CI), n_boot=n_boot),
            C=10.0 ** best,
            skill=_skill(acc, chance),
            val_accuracy=fits[best][1],
            c_search=[[10.0 ** logc, fits[logc][1]] for logc in sorted(fits)],
            n_train=int(split.train.size), n_val=int(split.val.size), n_test=int(split.test.size),
            chance=chance, test_correct=correct, test_pred=test_pred, test_labels=y_te,
        )

def _fit_together(jobs: Sequence[tuple[_CSearch, float]]) -> None:
    """Fit each (search, log10 C) not fitted yet, warm-started from that search's fits so far: one
    batched L-BFGS call per precision, design shape and iteration cap (at most ``BATCH_FLOATS`` of
    design per call). Each fit keeps its own penalty, warm start, gradient scale and stopping test,
    so it is the fit ``_CSearch.run`` would make alone (float for float at these sizes)."""
    groups: dict[tuple, list] = {}
    for search, logc in jobs:
        if logc not in search.fits:
            P0, lam, dtype, cap = search._start(logc)
            key = (dtype, tuple(search.design(dtype)[0].shape), search.classes.size, cap)
            groups.setdefault(key, []).append((search, logc, P0, lam))
    for (dtype, shape, n_cls, cap), members in groups.items():
        per_call = max(1, BATCH_FLOATS // math.prod(shape))
        for i in range(0, len(members), per_call):
            part = members[i:i + per_call]
            if len(part) == 1:
                search, logc, P0, lam = part[0]
                P, _ = fit_logistic(search.design(dtype)[0], search.y_tr, n_cls, lam, P0=P0,
                                    g_ref=search.g_ref.to(dtype), max_iter=cap)
                search._record(logc, P, dtype)
                continue
            P, _ = fit_logistic(torch.cat([m[0].design(dtype)[0] for m in part]),
                                torch.cat([m[0].y_tr for m in part]), n_cls, [m[3] for m in part],
                                P0=torch.cat([m[2] for m in part]),
                                g_ref=torch.cat([m[0].g_ref.to(dtype) for m in part]), max_iter=cap)
            for j, (search, logc, _, _) in enumerate(part):
                search._record(logc, P[j:j + 1], dtype)


def coarse_together(searches: Sequence[_CSearch]) -> None:
    """The coarse C grid of every search (the transforms of one split, or of several), batched."""
    for logc in COARSE_LOG10_C:
        _fit_together([(search, logc) for search in searches])


def finish_together(searches: Sequence[_CSearch], seed: int, n_boot: int) -> list[LinearProbeResult]:
    """Finish each search: the fine search (step halved ``N_HALVINGS`` times around
    the best C, inside the coarse range; validation ties go to the smaller C), the refit on
    train+val at the chosen C and the test, with the fits of all searches batched. A round's two new
    candidates of a search are warm-started from the fits before that round: the nearest fit of
    the upper one is the round's centre, never the lower candidate, as in one-at-a-time order."""
    for search in searches:
        search.best = search.best_of(COARSE_LOG10_C)
    step = (COARSE_LOG10_C[1] - COARSE_LOG10_C[0]) / 2.0
    lo, hi = COARSE_LOG10_C[0], COARSE_LOG10_C[-1]
    for _ in range(N_HALVINGS):  # refine inside the searched range only
        cands = {id(s): [logc for logc in (s.best - step, s.best, s.best + step) if lo <= logc <= hi]
                 for s in searches}
        _fit_together([(s, logc) for s in searches for logc in cands[id(s)]])
        for s in searches:
            s.best = s.best_of(cands[id(s)])
        step /= 2.0
    # the refits, warm-started from the train-only fit at the chosen C, batched like the search's
    starts = [s._refit_start() for s in searches]
    fitted: list = [None] * len(searches)
    groups: dict[tuple, list[int]] = {}
    for i, (Z_fit, _, _, dtype, _, cap) in enumerate(starts):
        groups.setdefault((dtype, tuple(Z_fit.shape), searches[i].classes.size, cap), []).append(i)
    for (dtype, shape, n_cls, cap), idx in groups.items():
        per_call = max(1, BATCH_FLOATS // math.prod(shape))
        for c0 in range(0, len(idx), per_call):
            part = idx[c0:c0 + per_call]
            P, _ = fit_logistic(torch.cat([starts[i][0] for i in part]), torch.cat([starts[i][1] for i in part]),
                                n_cls, [starts[i][2] for i in part] if len(part) > 1 else starts[part[0]][2],
                                P0=torch.cat([starts[i][4] for i in part]), gtol=REFIT_GTOL, max_iter=cap)
            for j, i in enumerate(part):
                fitted[i] = P[j:j + 1]
    del starts
    return [s._score(P, P.dtype, seed, n_boot) for s, P in zip(searches, fitted)]
