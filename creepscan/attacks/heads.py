"""Stronger heads on frozen features: what an adversary gets beyond a linear probe.

A linear probe and a prototype classifier are a lower bound. A defence can make features slow to
probe (ill-conditioned) while the capability stays one small non-linear head away; these heads
widen the adversary:

* ``knn``: cosine k-nearest neighbours (majority vote, ties broken by the summed similarity), k
  chosen on validation from ``KNN_GRID``.
* ``prototype_cl2n``: SimpleShot (Wang et al., 2019): features centred with the mean of the
  fitting rows, L2-normalised, then the nearest class mean by Euclidean distance (what
  scikit-learn's ``NearestCentroid`` does on those features).
* ``mlp``: one hidden ReLU layer trained with Adam on features standardised per coordinate
  (fitting rows' mean and standard deviation, as a practitioner's ``StandardScaler`` would); L2
  weight decay (scikit-learn's ``alpha`` convention: ``0.5 * alpha * ||W||^2 / batch`` added to the
  batch's mean cross-entropy) and the stopping epoch are chosen on validation.
* ``gd_budget``: multinomial logistic regression by plain minibatch gradient descent from zero with
  a fixed budget of steps (``GD_BUDGETS``), features only centred and divided by one scalar (what
  any attacker does), one scalar step size per run (a multiple of 1 / lambda_max of the features'
  second-moment matrix, the textbook safe step, chosen on validation). No per-coordinate scaling
  and no preconditioning, on purpose: the accuracy it reaches within the budget exposes features
  made slow to probe, where a tuned L-BFGS fit or an MLP would not show it.

Every head fits on ``split.train`` only; ``split.val`` chooses its hyper-parameters and stopping
point; ``split.test`` is only scored. The same code fits a batch of few-shot episodes at once
(``fit_heads``, used by ``few_shot.few_shot_curve``): each episode has its own fitting rows, its own
random stream (seeded per episode) and its own choices on validation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .. import result as R
from ..constants import HEADS
from ..seeds import Stream, stream
from . import preprocess as _pre
from .linear_probe import check_inputs, finite_rows, remap_labels
from .splits import Split
from .stats import balanced_accuracy, bootstrap_ci
from .stats import round6 as _r
from .stats import skill as _skill

__all__ = ["HEADS", "HeadResult", "HeadFit", "run_head", "fit_heads", "head_seed", "KNN_GRID", "MLP_HIDDEN",
           "MLP_ALPHAS", "MLP_LR", "MLP_BATCH", "MLP_MAX_EPOCHS", "MLP_PATIENCE", "GD_BUDGETS", "GD_BATCH",
           "GD_STEP_SCALES"]


KNN_GRID = (1, 3, 5, 10, 20, 50)
MLP_HIDDEN = 128
MLP_ALPHAS = (1.0, 10.0)
MLP_LR = 5e-3
MLP_BATCH = 256
MLP_MAX_EPOCHS = 15
MLP_PATIENCE = 3          # epochs without a better validation accuracy (for any alpha) before stopping
MLP_MIN_STEPS_PER_EPOCH = 5  # few-shot supports can be smaller than one batch: an epoch is then 5 steps
GD_BUDGETS = (100, 1000)
GD_BATCH = 128
GD_STEP_SCALES = (1.0, 4.0, 16.0)  # step = scale / lambda_max; the safe full-batch step is 4 / lambda_max
GD_CHECKPOINTS = 10       # validation checkpoints between consecutive budgets
EVAL_FLOATS = 1 << 24     # cap on the floats of one evaluation block (rows x outputs)


def head_seed(*parts) -> int:
    """A 63-bit seed from integers and strings (a head's name, an episode, ...)."""
    ints = [int(p) if not isinstance(p, str) else int.from_bytes(p.encode(), "little") % (1 << 63) for p in parts]
    return int(np.random.SeedSequence(ints).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------------------------------------
# Selection on validation
# ---------------------------------------------------------------------------------------------

@dataclass
class HeadFit:
    """The chosen candidate of each episode: ``pred`` long [E, n_q] class positions for every query
    (validation rows first), ``val_accuracy`` float [E] (balanced, on the validation rows), ``params``
    one dict per episode. ``budgets`` (gd_budget only): step budget -> the same for that budget.

    ``val_accuracy`` is the best of many candidates on the same rows, so it flatters a head with
    many choices. ``val_unbiased`` [E] is a cross-fitted estimate of the tuned head's validation
    accuracy: choose on one half of the validation rows (split class by class), score on the other,
    and the reverse, averaged. Comparing heads with it (as ``few_shot_curve`` does) does not favour
    the head with the larger grid."""

    pred: torch.Tensor
    val_accuracy: np.ndarray
    params: list[dict]
    budgets: dict[int, "HeadFit"] | None = None
    val_unbiased: np.ndarray | None = None


class _Best:
    """Keeps, per episode, the candidate with the highest validation accuracy seen so far; a later
    candidate must be strictly better, so ties go to the one offered first (the earlier stop, the
    smaller k, the stronger regularisation: candidates are offered in that order). Also keeps the
    best on each half of the validation rows, scored on the other half (``HeadFit.val_unbiased``)."""

    def __init__(self, E: int):
        self.val = np.full(E, -np.inf)
        self.pred: torch.Tensor | None = None
        self.params: list[dict] = [{} for _ in range(E)]
        self.half = np.full((2, E), -np.inf)     # best score on half h ...
        self.other = np.zeros((2, E))            # ... and that candidate's score on the other half

    def offer(self, scores: np.ndarray, pred: torch.Tensor, params) -> None:
        """scores float [E, 3]: balanced validation accuracy on all rows, on half A, on half B."""
        for h in (0, 1):
            up = scores[:, 1 + h] > self.half[h] + 1e-12
            self.half[h] = np.where(up, scores[:, 1 + h], self.half[h])
            self.other[h] = np.where(up, scores[:, 2 - h], self.other[h])
        val_acc = scores[:, 0]
        better = val_acc > self.val + 1e-12
        if self.pred is None:
            self.pred = pred.clone()
        elif better.any():
            self.pred[torch.from_numpy(better).to(pred.device)] = pred[torch.from_numpy(better).to(pred.device)]
        for e in np.flatnonzero(better):
            self.params[e] = dict(params[e] if isinstance(params, list) else params)
        self.val = np.where(better, val_acc, self.val)

    def result(self, halves: bool = True) -> HeadFit:
        unbiased = self.other.mean(0) if halves else self.val.copy()
        return HeadFit(pred=self.pred, val_accuracy=self.val.copy(), params=self.params, val_unbiased=unbiased)


class _ValScorer:
    """Balanced accuracy of predicted class positions on the first ``n_val`` query rows, on the
    device (sum_i correct_i / (n_classes_present * n_class(i))): on all of them and on each half,
    the halves alternating within each class in row order. ``halves`` is False when a half is empty
    (every class has one validation image): the cross-fitted estimate then falls back to the
    plain one."""

    def __init__(self, y_val_pos: torch.Tensor):
        self.y = y_val_pos
        self.n_val = y_val_pos.numel()
        y = y_val_pos.cpu().numpy()
        rank = np.zeros(y.size, np.int64)
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            rank[rows] = np.arange(rows.size)
        cols = []
        for member in (np.ones(y.size, bool), rank % 2 == 0, rank % 2 == 1):
            counts = np.bincount(y[member], minlength=int(y.max()) + 1 if y.size else 0)
            present = int((counts > 0).sum())
            w = np.zeros(y.size)
            if present:
                w[member] = 1.0 / (present * counts[y[member]])
            cols.append(w)
        self.halves = bool(np.any(rank % 2 == 1))
        self.w = torch.from_numpy(np.stack(cols, 1)).to(y_val_pos.device)  # [n_val, 3]

    def __call__(self, pred: torch.Tensor) -> np.ndarray:
        """pred long [..., n_q] -> balanced validation accuracy float64 [..., 3] (all, half A, half B)."""
        ok = (pred[..., : self.n_val] == self.y).double()
        return (ok @ self.w).cpu().numpy()


def _unit(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _row_chunks(n_rows: int, floats_per_row: int):
    step = max(1, EVAL_FLOATS // max(1, floats_per_row))
    for r0 in range(0, n_rows, step):
        yield slice(r0, min(n_rows, r0 + step))


def seeded_generator(seed: int) -> torch.Generator:
    """A torch CPU generator seeded with ``seed`` (on every device: the same seed draws the same numbers
    on a CPU and a GPU)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


# ---------------------------------------------------------------------------------------------
# The heads, batched over episodes. F: float32 [E, m, D] fitting rows, yF: long [E, m] class
# positions 0..K-1, Q: float32 [n_q, D] queries (validation rows first), scorer: _ValScorer.
# ---------------------------------------------------------------------------------------------

def _fit_knn(F, yF, Q, K, scorer, seeds, *, ks: Sequence[int] = KNN_GRID) -> HeadFit:
    E, m, _ = F.shape
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= m}) or [1]
    kmax = ks[-1]
    Fn = _unit(F)
    Qn = _unit(Q)
    preds = torch.empty(len(ks), E, Q.shape[0], dtype=torch.long, device=Q.device)
    for rows in _row_chunks(Q.shape[0], E * max(m, K * len(ks))):
        sims = torch.einsum("qd,emd->eqm", Qn[rows], Fn)                  # [E, c, m]
        top_sim, top_idx = sims.topk(kmax, dim=-1)                        # sorted, nearest first
        top_lab = yF.gather(1, top_idx.reshape(E, -1)).view_as(top_idx)
        votes = torch.zeros(E, top_idx.shape[1], K, dtype=torch.float64, device=Q.device)
        sim_sum = torch.zeros_like(votes)
        done = 0
        for i, k in enumerate(ks):
            lab, sim = top_lab[..., done:k], top_sim[..., done:k].double()
            votes.scatter_add_(-1, lab, torch.ones_like(sim))
            sim_sum.scatter_add_(-1, lab, sim)
            done = k
            # the summed similarity (|sum| <= k) over 2k+1 is below half a vote: it only breaks ties
            preds[i, :, rows] = (votes + sim_sum / (2 * k + 1)).argmax(-1)
    best = _Best(E)
    for i, k in enumerate(ks):  # smaller k first: ties go to the smaller neighbourhood
        best.offer(scorer(preds[i]), preds[i], {"k": int(k)})
    return best.result(scorer.halves)


def _fit_prototype_cl2n(F, yF, Q, K, scorer, seeds) -> HeadFit:
    E, m, D = F.shape
    mean = F.mean(1)                                                       # [E, D]
    Fc = _unit(F - mean[:, None])
    onehot = torch.zeros(E, m, K, dtype=F.dtype, device=F.device).scatter_(-1, yF[..., None], 1.0)
    counts = onehot.sum(1).clamp_min(1.0)                                  # [E, K]
    cent = onehot.transpose(1, 2).bmm(Fc) / counts[..., None]              # [E, K, D]
    # ||q~ - c||^2 = 1 - 2 q~.c + ||c||^2 with q~ = (q - mean) / ||q - mean||: from q.c, q.mean, ||q||
    basis = torch.cat([cent, mean[:, None]], 1).reshape(E * (K + 1), D)   # [E*(K+1), D]
    c_dot_mean = (cent * mean[:, None]).sum(-1)                           # [E, K]
    mean_sq = (mean * mean).sum(-1)                                       # [E]
    c_sq = (cent * cent).sum(-1)                                          # [E, K]
    pred = torch.empty(E, Q.shape[0], dtype=torch.long, device=Q.device)
    for rows in _row_chunks(Q.shape[0], E * (K + 1)):
        q = Q[rows]
        prods = (q @ basis.T).view(-1, E, K + 1).transpose(0, 1)          # [E, c, K+1]
        q_norm = ((q * q).sum(-1)[None] - 2 * prods[..., K] + mean_sq[:, None]).clamp_min(1e-24).sqrt()
        cos = (prods[..., :K] - c_dot_mean[:, None]) / q_norm[..., None]
        pred[:, rows] = (2 * cos - c_sq[:, None]).argmax(-1)
    val = scorer(pred)[:, 0]  # nothing is chosen: the plain estimate is unbiased
    return HeadFit(pred=pred, val_accuracy=val, params=[{} for _ in range(E)], val_unbiased=val.copy())


def _epoch_orders(seeds, m: int, batch: int, n_steps: int, device) -> torch.Tensor:
    """Row positions of each step's minibatch, per episode: long [E, n_steps, batch]; each episode
    walks through its own seeded permutations of its m rows (an epoch per permutation)."""
    per_epoch = max(1, m // batch) if batch < m else 1
    n_epochs = math.ceil(n_steps / per_epoch)
    out = []
    for s in seeds:
        g = seeded_generator(s)
        if batch >= m:
            out.append(torch.arange(m).expand(n_steps, m))
            continue
        perms = torch.stack([torch.randperm(m, generator=g)[: per_epoch * batch] for _ in range(n_epochs)])
        out.append(perms.view(-1, batch)[:n_steps])
    return torch.stack(out).to(device)


class Adam:
    """Adam (Kingma & Ba, 2015; scikit-learn's MLP defaults beta1 0.9, beta2 0.999, eps 1e-8), written
    out: importing torch.optim costs seconds, a large share of a small probe's whole run.
    ``step(grads)`` updates the parameters in place."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, float(lr), betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads) -> None:
        self.t += 1
        b1, b2 = self.betas
        step = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, v.sqrt().add_(self.eps), value=-step)


def _fit_mlp(F, yF, Q, K, scorer, seeds, *, hidden: int = MLP_HIDDEN, alphas: Sequence[float] = MLP_ALPHAS,
             lr: float = MLP_LR, batch: int = MLP_BATCH, max_epochs: int = MLP_MAX_EPOCHS,
             patience: int = MLP_PATIENCE) -> HeadFit:
    E, m, D = F.shape
    dev = F.device
    A, H = len(alphas), int(hidden)
    B = min(int(batch), m)
    steps_per_epoch = max(math.ceil(m / B), MLP_MIN_STEPS_PER_EPOCH)
    mu = F.mean(1, keepdim=True)
    sd = F.std(1, keepdim=True, unbiased=False)
    sd = torch.where(sd > 1e-6 * sd.amax(-1, keepdim=True).clamp_min(1e-30), sd, torch.ones_like(sd))
    Z = (F - mu) / sd                                                      # [E, m, D]

    # Glorot-uniform weights (scikit-learn's MLP initialisation), drawn per episode from its seed
    W1 = torch.empty(E, D, A * H)
    W2 = torch.empty(E * A, H, K)
    b1 = torch.empty(E, 1, A * H)
    b2 = torch.empty(E * A, 1, K)
    lim1, lim2 = math.sqrt(6.0 / (D + H)), math.sqrt(6.0 / (H + K))
    for e, s in enumerate(seeds):
        g = seeded_generator(head_seed(s, "init"))
        W1[e].uniform_(-lim1, lim1, generator=g)
        b1[e].uniform_(-lim1, lim1, generator=g)
        W2[e * A:(e + 1) * A].uniform_(-lim2, lim2, generator=g)
        b2[e * A:(e + 1) * A].uniform_(-lim2, lim2, generator=g)
    params = [p.to(dev) for p in (W1, b1, W2, b2)]
    W1, b1, W2, b2 = params
    adam = Adam(params, lr)
    alpha_t = torch.tensor([float(a) for a in alphas], dtype=F.dtype, device=dev) / B
    decay1 = alpha_t.repeat_interleave(H)[None, None, :]                   # [1, 1, A*H]
    decay2 = alpha_t.repeat(E)[:, None, None]                              # [E*A, 1, 1]
    orders = _epoch_orders([head_seed(s, "order") for s in seeds], m, B, steps_per_epoch * max_epochs, dev)
    ar = torch.arange(E, device=dev)[:, None]

    def evaluate() -> torch.Tensor:
        """Predictions [E, A, n_q]; the standardisation is folded into the first layer."""
        W1e = W1 / sd.transpose(1, 2)                                  # [E, D, A*H]
        b1e = b1 - (mu / sd).bmm(W1)                                   # [E, 1, A*H]
        Wf = W1e.permute(1, 0, 2).reshape(D, E * A * H)
        out = torch.empty(E, A, Q.shape[0], dtype=torch.long, device=dev)
        for rows in _row_chunks(Q.shape[0], E * A * max(H, K)):
            h = (Q[rows] @ Wf).view(-1, E, A * H).transpose(0, 1).add_(b1e).relu_()  # [E, c, A*H]
            h = h.view(E, -1, A, H).permute(0, 2, 1, 3).reshape(E * A, -1, H)
            out[:, :, rows] = torch.baddbmm(b2, h, W2).argmax(-1).view(E, A, -1)
        return out

    best = _Best(E)
    since_better = 0
    step = 0
    for epoch in range(1, max_epochs + 1):
        for _ in range(steps_per_epoch):
            idx = orders[:, step]
            step += 1
            zb, yb = Z[ar, idx], yF[ar, idx]                                # [E, B, D], [E, B]
            # forward and backward written out (no autograd: its engine's per-operation overhead
            # dominates small probes, badly so on a busy machine)
            pre = torch.baddbmm(b1, zb, W1)                                # [E, B, A*H]
            h = pre.clamp_min(0.0).view(E, B, A, H).permute(0, 2, 1, 3).reshape(E * A, B, H)
            d = torch.baddbmm(b2, h, W2)                                   # logits [E*A, B, K]
            d.sub_(d.amax(-1, keepdim=True))
            # probabilities below exp(-60) become exact zeros (no slow denormals downstream)
            P = d.masked_fill_(d < -60.0, -math.inf).exp_()
            P.div_(P.sum(-1, keepdim=True))
            P.scatter_add_(-1, yb.repeat_interleave(A, 0)[..., None], torch.full((E * A, B, 1), -1.0, device=dev))
            P.div_(B)                                                      # d(mean cross-entropy)/d(logits)
            # the penalty 0.5 * alpha * ||W||^2 / B of each (episode, alpha) block adds alpha / B * W
            gW2 = torch.baddbmm(W2 * decay2, h.transpose(1, 2), P)
            gb2 = P.sum(1, keepdim=True)
            dh = P.bmm(W2.transpose(1, 2)).view(E, A, B, H).permute(0, 2, 1, 3).reshape(E, B, A * H)
            dh.mul_(pre > 0)
            gW1 = torch.baddbmm(W1 * decay1, zb.transpose(1, 2), dh)
            gb1 = dh.sum(1, keepdim=True)
            adam.step((gW1, gb1, gW2, gb2))
        pred = evaluate()
        val = scorer(pred)                                                 # [E, A, 3]
        improved = False
        for a in range(A):  # smaller alpha first within an epoch; earlier epochs before later ones
            before = best.val.copy()
            best.offer(val[:, a], pred[:, a], {"alpha": float(alphas[a]), "epochs": epoch})
            improved |= bool(np.any(best.val > before))
        since_better = 0 if improved else since_better + 1
        if since_better >= patience:
            break
    fit = best.result(scorer.halves)
    for p in fit.params:
        p.update(hidden=H, lr=float(lr), batch=B, epochs_run=epoch)
    return fit


def _checkpoints(budgets: Sequence[int]) -> list[int]:
    """GD_CHECKPOINTS evenly spaced steps between consecutive budgets (each budget included)."""
    out, prev = set(), 0
    for b in sorted(budgets):
        out.update(int(round(prev + (b - prev) * i / GD_CHECKPOINTS)) for i in range(1, GD_CHECKPOINTS + 1))
        prev = b
    return sorted(s for s in out if s > 0)


def _top_eigenvalue(Zc: torch.Tensor, seeds, iters: int = 50) -> torch.Tensor:
    """lambda_max of Zc^T Zc / m per episode (power iteration, float64 accumulation): [E]."""
    E, m, D = Zc.shape
    Z64 = Zc.double()
    v = torch.stack([torch.randn(D, generator=seeded_generator(head_seed(s, "power")), dtype=torch.float64)
                     for s in seeds]).to(Zc.device)[..., None]
    lam = torch.zeros(E, dtype=torch.float64, device=Zc.device)
    for _ in range(iters):
        w = Z64.transpose(1, 2).bmm(Z64.bmm(v)) / m
        lam = w.norm(dim=1).squeeze(-1)
        v = w / lam.clamp_min(1e-300)[:, None, None]
    return lam


def _fit_gd_budget(F, yF, Q, K, scorer, seeds, *, budgets: Sequence[int] = GD_BUDGETS,
                   scales: Sequence[float] = GD_STEP_SCALES, batch: int = GD_BATCH) -> HeadFit:
    E, m, D = F.shape
    dev = F.device
    L = len(scales)
    budgets = sorted({int(b) for b in budgets})
    B = min(int(batch), m)
    mean = F.mean(1, keepdim=True)
    # centred and divided by one scalar (the root mean square coordinate), so that the intercept's
    # column of ones is on the features' scale; neither changes the features' conditioning
    scale = (F - mean).square().mean((1, 2), keepdim=True).sqrt().clamp_min(1e-30)
    Zc = (F - mean) / scale                                                # [E, m, D]
    # the column of ones is orthogonal to centred columns: it adds the eigenvalue 1
    lam = torch.maximum(_top_eigenvalue(Zc, seeds), torch.ones(E, dtype=torch.float64, device=dev))
    lr = (torch.tensor([float(s) for s in scales], dtype=torch.float64, device=dev)[None] / lam[:, None]).float()
    lr_view = lr[:, None, :, None]                                         # [E, 1, L, 1]
    W = torch.zeros(E, D, L * K, dtype=F.dtype, device=dev)
    b = torch.zeros(E, 1, L * K, dtype=F.dtype, device=dev)
    checks = _checkpoints(budgets)
    orders = _epoch_orders([head_seed(s, "order") for s in seeds], m, B, budgets[-1], dev)
    ar = torch.arange(E, device=dev)[:, None]
    bests = {bud: _Best(E) for bud in budgets}

    def evaluate() -> torch.Tensor:
        """Predictions [E, L, n_q]; the centring is folded into the intercept."""
        Ws = W / scale                                                     # raw-feature weights
        bias = b - mean.bmm(Ws)                                            # [E, 1, L*K]
        Wf = Ws.permute(1, 0, 2).reshape(D, E * L * K)
        out = torch.empty(E, L, Q.shape[0], dtype=torch.long, device=dev)
        for rows in _row_chunks(Q.shape[0], E * L * K):
            s = (Q[rows] @ Wf).view(-1, E, L * K).transpose(0, 1).add_(bias)
            out[:, :, rows] = torch.nan_to_num(s.view(E, -1, L, K), nan=-math.inf).argmax(-1).transpose(1, 2)
        return out

    for step in range(1, budgets[-1] + 1):
        idx = orders[:, step - 1]
        zb, yb = Zc[ar, idx], yF[ar, idx]                                   # [E, B, D], [E, B]
        logits = torch.baddbmm(b, zb, W).view(E, B, L, K)
        # probabilities below exp(-60) become exact zeros: tiny ones times the features would be
        # denormal floats, which are very slow on CPUs
        d = logits.sub_(logits.amax(-1, keepdim=True))
        P = d.masked_fill_(d < -60.0, -math.inf).exp_()
        P.div_(P.sum(-1, keepdim=True))
        P.scatter_add_(-1, yb[:, :, None, None].expand(E, B, L, 1), torch.full((E, B, L, 1), -1.0, device=dev))
        P = P.view(E, B, L * K).div_(B)
        gW = zb.transpose(1, 2).bmm(P)                                     # mean cross-entropy gradient
        gb = P.sum(1, keepdim=True)
        W.sub_((gW.view(E, D, L, K) * lr_view).view(E, D, L * K))
        b.sub_((gb.view(E, 1, L, K) * lr_view).view(E, 1, L * K))
        if step in checks:
            pred = evaluate()
            val = scorer(pred)                                             # [E, L, 3]
            for bud in budgets:
                if step <= bud:
                    for li in range(L):
                        best = bests[bud]
                        best.offer(val[:, li], pred[:, li],
                                   [{"steps": step, "lr_scale": float(scales[li]), "lr": float(lr[e, li])}
                                    for e in range(E)])
    fits = {}
    for bud in budgets:
        f = bests[bud].result(scorer.halves)
        for p in f.params:
            p.update(budget=bud, batch=B)
        fits[bud] = f
    top = fits[budgets[-1]]
    return HeadFit(pred=top.pred, val_accuracy=top.val_accuracy, params=top.params, budgets=fits,
                   val_unbiased=top.val_unbiased)


_FITTERS = {"knn": _fit_knn, "prototype_cl2n": _fit_prototype_cl2n, "mlp": _fit_mlp, "gd_budget": _fit_gd_budget}
_SETTINGS = {"knn": {"ks"}, "prototype_cl2n": set(),
             "mlp": {"hidden", "alphas", "lr", "batch", "max_epochs", "patience"},
             "gd_budget": {"budgets", "scales", "batch"}}


def _check_settings(name: str, settings: dict) -> None:
    if name not in _FITTERS:
        raise ValueError(f"unknown head {name!r}; choose from {list(HEADS)}")
    unknown = sorted(set(settings) - _SETTINGS[name])
    if unknown:
        raise ValueError(f"head {name!r} takes no setting(s) {unknown}; it takes {sorted(_SETTINGS[name]) or 'none'}")
    for key in ("ks", "alphas", "budgets", "scales"):
        if key in settings:
            vals = list(settings[key])
            if not vals or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in vals):
                raise ValueError(f"{name} setting {key} must be a non-empty list of positive numbers, got {vals}")
    for key in ("hidden", "batch", "max_epochs", "patience"):
        if key in settings and not (isinstance(settings[key], int) and settings[key] >= 1):
            raise ValueError(f"{name} setting {key} must be an integer >= 1, got {settings[key]!r}")
    if "lr" in settings and not (isinstance(settings["lr"], (int, float)) and settings["lr"] > 0):
        raise ValueError(f"{name} setting lr must be a positive number, got {settings['lr']!r}")


def fit_heads(name: str, F: torch.Tensor, yF: torch.Tensor, Q: torch.Tensor, n_local_classes: int,
              y_val_pos: torch.Tensor, seeds: Sequence[int], **settings) -> HeadFit:
    """Fit head ``name`` on a batch of episodes and choose each episode's candidate on validation.

    F : float32 [E, m, D] fitting rows per episode, yF : long [E, m] their class positions in
    0..n_local_classes-1, Q : float32 [n_q, D] queries whose first ``len(y_val_pos)`` rows are the
    validation rows (labels ``y_val_pos``, class positions) and whose other rows are only predicted,
    seeds : one int per episode (its initialisation and minibatch order). All on one device.
    Returns a ``HeadFit`` with predictions [E, n_q] of the candidate chosen on validation.
    """
    _check_settings(name, settings)
    if F.dim() != 3 or yF.shape != F.shape[:2] or Q.dim() != 2 or Q.shape[1] != F.shape[2]:
        raise ValueError(f"need F [E, m, D], yF [E, m], Q [n, D]; got {tuple(F.shape)}, {tuple(yF.shape)}, "
                         f"{tuple(Q.shape)}")
    if len(seeds) != F.shape[0]:
        raise ValueError(f"need one seed per episode: {len(seeds)} seeds for {F.shape[0]} episodes")
    with torch.no_grad():
        return _FITTERS[name](F, yF, Q, int(n_local_classes), _ValScorer(y_val_pos), list(seeds), **settings)


# ---------------------------------------------------------------------------------------------
# One head on a probe's split
# ---------------------------------------------------------------------------------------------

@dataclass
class HeadResult:
    """Test-split result of one head fitted on ``split.train`` with its choices made on ``split.val``.

    ``test_correct`` (bool), ``test_pred`` and ``test_labels`` (int) are [n_test] in ``split.test``
    order, kept for paired tests; ``params`` holds the choices (k, alpha and epochs, step size and
    steps); ``budgets`` (gd_budget only) one dict per step budget with its own accuracy, CI and
    choices. Accuracies are balanced accuracies in [0, 1]; the head's own accuracy is that of its
    largest budget."""

    name: str
    accuracy: float
    ci95: tuple[float, float]
    skill: float
    val_accuracy: float
    chance: float
    params: dict
    n_train: int
    n_val: int
    n_test: int
    test_correct: np.ndarray = field(repr=False)
    test_pred: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    budgets: list[dict] = field(default_factory=list)

    def to_result(self) -> R.Head:
        """The head's entry in the report's ``heads`` block (``result.Head``)."""
        budgets = None
        if self.budgets:
            budgets = [R.build(R.HeadBudget, {k: (_r(v) if isinstance(v, float) else
                                                  [_r(x) for x in v] if isinstance(v, (list, tuple)) else v)
                                              for k, v in b.items()}) for b in self.budgets]
        return R.Head(
            accuracy=_r(self.accuracy), ci95=[_r(self.ci95[0]), _r(self.ci95[1])], skill=_r(self.skill),
            val_accuracy=_r(self.val_accuracy),
            params={k: (_r(v) if isinstance(v, float) else v) for k, v in self.params.items()},
            n_train=int(self.n_train), n_val=int(self.n_val), n_test=int(self.n_test), budgets=budgets)

    def to_json(self) -> dict:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())


def run_head(name: str, X, y, n_classes: int, split: Split, *, seed: int, device="cpu", n_boot: int = 2000,
             preprocess=None, **settings) -> HeadResult:
    """Fit head ``name`` (one of ``HEADS``) on ``split.train``, choose on ``split.val``, score ``split.test``.

    X : float [n, d] features, y : int [n] labels in 0..n_classes-1. Optional ``settings`` override
    the head's defaults (knn: ``ks``; mlp: ``hidden``, ``alphas``, ``lr``, ``batch``, ``max_epochs``,
    ``patience``; gd_budget: ``budgets``, ``scales``, ``batch``). Same inputs and seed give the same
    result on one device. Test rows are never fitted on nor used for a choice. ``preprocess`` (see
    ``linear_probe.linear_probe``): label-free transforms fitted on ``split.train``; with several the
    head runs on each and keeps the one with the best cross-fitted validation accuracy
    (``HeadFit.val_unbiased``; ties: the earlier), recorded in ``params["preprocess"]``.
    """
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose from {list(HEADS)}")
    _check_settings(name, settings)
    X, y = check_inputs(X, y, n_classes, split)
    finite_rows(X, np.concatenate([split.train, split.val]), "train/val")
    dev = torch.device(device)
    classes = np.unique(y[split.train])
    K = classes.size
    yF = torch.from_numpy(remap_labels(y[split.train], classes)).to(dev)[None]
    vt = np.concatenate([split.val, split.test])
    y_val_pos = torch.from_numpy(remap_labels(y[split.val], classes)).to(dev)
    fit, chosen, tried = None, None, []
    for t in _pre.resolve(preprocess, X, split.train):
        Xt = t.apply(X)
        F = torch.from_numpy(np.ascontiguousarray(Xt[split.train])).to(dev)[None]
        Q = torch.from_numpy(np.ascontiguousarray(Xt[vt])).to(dev)
        f = fit_heads(name, F, yF, Q, K, y_val_pos, [head_seed(seed, name)], **settings)
        score = float(f.val_unbiased[0] if f.val_unbiased is not None else f.val_accuracy[0])
        tried.append([t.name, score])
        if fit is None or score > tried[chosen][1] + 1e-12:
            fit, chosen = f, len(tried) - 1
    fit.params[0]["preprocess"] = tried[chosen][0]
    if len(tried) > 1:
        fit.params[0]["preprocess_search"] = [[n, _r(a)] for n, a in tried]

    n_val = split.val.size
    y_te = y[split.test]
    chance = 1.0 / K

    def scored(f: HeadFit, tag: int):
        pred = classes[f.pred[0, n_val:].cpu().numpy()]
        correct = pred == y_te
        acc = balanced_accuracy(y_te, pred, n_classes)
        ci = bootstrap_ci(y_te, correct, n_classes, seed=stream(seed, Stream.HEAD_CI, HEADS.index(name), tag),
                          n_boot=n_boot)
        return pred, correct, acc, ci

    pred, correct, acc, ci = scored(fit, 0)
    budgets = []
    for i, (bud, f) in enumerate(sorted((fit.budgets or {}).items())):
        _, _, b_acc, b_ci = scored(f, i + 1)
        budgets.append({"steps": int(bud), "accuracy": b_acc, "ci95": [b_ci[0], b_ci[1]],
                        "skill": _skill(b_acc, chance), "val_accuracy": float(f.val_accuracy[0]),
                        "lr_scale": f.params[0]["lr_scale"], "lr": f.params[0]["lr"],
                        "stopped_at": int(f.params[0]["steps"])})
    return HeadResult(
        name=name, accuracy=acc, ci95=ci, skill=_skill(acc, chance), val_accuracy=float(fit.val_accuracy[0]),
        chance=chance, params=dict(fit.params[0]), n_train=int(split.train.size), n_val=int(n_val),
        n_test=int(split.test.size), test_correct=correct, test_pred=pred, test_labels=y_te, budgets=budgets,
    )
