"""Few-shot adaptation: how well an adversary does with k labelled images per class.

For each k (1, 2, 4, 8, ... as far as every kept class has k training images) we draw many
episodes; an episode's support set is exactly k training images per class, drawn from
``split.train`` only with a generator seeded from ``(seed, k, episode)``. Supports therefore depend
only on the labels, the split and the seed: two encoders audited on the same data see identical
episodes, which is what makes their per-episode accuracies pairable.

Two adversaries per episode by default, both scored on the validation and the test split:
  * prototype: nearest class mean of L2-normalised features, by cosine similarity;
  * logistic: an L2 logistic-regression head (the linear probe's objective, same C), with all the
    episodes of a batch fitted jointly as one batched L-BFGS program.
``heads=`` adds the heads of ``heads.py`` (``prototype_cl2n``, ``knn``, ``mlp``, ``gd_budget``), each
fitted on the episode's support set only (prototype_cl2n centres with the support set's mean: the
episode's adversary has those k images per class and nothing else) and making its own choices (k,
weight decay, stopping point, step size) on the validation split, per episode, batched over the
episodes of a batch.
The winner for a k is the adversary with the higher mean *validation* accuracy (for a head of
``heads.py``, its cross-fitted estimate ``HeadFit.val_unbiased``, so that a head with more choices
is not favoured for having them; ties go to the earlier head in ``FEW_SHOT_HEADS``, simplest
first); the reported accuracy is the winner's mean *test* accuracy. The test split is never used to choose anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from .. import result as R
from ..seeds import Stream
from . import preprocess as _pre
from .heads import HEADS as _EXTRA_HEADS
from .heads import fit_heads, head_seed
from .linear_probe import BATCH_FLOATS, Standardizer, check_inputs, finite_rows, fit_logistic, predict
from .splits import Split
from .stats import balanced_accuracy_rows, few_shot_variance, paired_episodes, proportion_ci
from .stats import round6 as _r
from .stats import skill as _skill

__all__ = ["FewShotEntry", "FewShotResult", "few_shot_curve", "draw_supports", "samples_to_threshold",
           "paired_few_shot"]

Z95 = 1.959963984540054
FS_MAX_ITER = 100
FS_GTOL = 1e-4  # episode heads are averaged over many episodes: a looser stop is enough
# every head a few-shot curve can use, simplest first: validation ties go to the earlier one
FEW_SHOT_HEADS = ("prototype", "logistic", "prototype_cl2n", "knn", "gd_budget", "mlp")
DEFAULT_HEADS = ("prototype", "logistic")
# Stop adding episodes once they could narrow the interval by at most 5%: the test set and the
# training pool then set its width (small probes: their half-width is ~0.1, and the absolute Monte
# Carlo target of 0.01 ran 100 episodes per k; on 600 images, 6 classes, k=4 and k=8 now stop at 73
# and 44 episodes, k=1 and k=2 still run ~100 (Gaussian classes in 64-d, 360 training images).
MC_SHARE = 1.05
MEMORY_FLOATS = 1 << 25  # ~128 MiB of float32 for one batch's gathered support features


@dataclass
class FewShotEntry:
    """One point of the learning curve. Accuracies are balanced test accuracies, means over episodes."""

    k: int
    accuracy: float
    ci95: tuple[float, float]
    episodes: int
    winner: str
    skill: float
    prototype_accuracy: float
    logistic_accuracy: float
    prototype_val_accuracy: float
    logistic_val_accuracy: float
    episode_accuracy: np.ndarray = field(repr=False)            # the winner's, per episode (test)
    prototype_episode_accuracy: np.ndarray = field(repr=False)
    logistic_episode_accuracy: np.ndarray = field(repr=False)
    test_correct_rate: np.ndarray = field(repr=False)           # the winner's, per test image
    test_labels: np.ndarray = field(repr=False)                 # y[split.test]
    # the winner's correctness per episode and test image, bool [E, n_test]: lets folds be pooled
    episode_correct: np.ndarray | None = field(repr=False, default=None)
    pool_size: int = 0  # the fewest training images of any class: the pool the supports came from
    # test folds merged into this entry (attacks._merge_few_shot); 1: one split, whose test images are
    # in no pool, the case the per-image interval (stats.few_shot_variance(per_image=...)) is checked for
    folds: int = 1
    # every head that ran (the default two included) -> its mean test / validation accuracy, and
    # its per-episode test accuracies; filled when few_shot_curve ran heads beyond the default two
    head_accuracy: dict = field(default_factory=dict)
    head_val_accuracy: dict = field(default_factory=dict)
    head_episode_accuracy: dict = field(repr=False, default_factory=dict)
    # the label-free transform chosen on validation for this k (first batch of episodes), and every
    # candidate's best head validation accuracy on that batch when there were several
    preprocess: str = "none"
    preprocess_val_accuracy: dict = field(default_factory=dict)

    def to_result(self) -> R.FewShot:
        """One entry of the report's ``few_shot`` list (``result.FewShot``)."""
        return R.FewShot(
            k=int(self.k), accuracy=_r(self.accuracy), ci95=[_r(self.ci95[0]), _r(self.ci95[1])],
            episodes=int(self.episodes), winner=self.winner, skill=_r(self.skill),
            prototype_accuracy=_r(self.prototype_accuracy), logistic_accuracy=_r(self.logistic_accuracy),
            preprocess=self.preprocess,
            heads={name: _r(acc) for name, acc in self.head_accuracy.items()} if self.head_accuracy else None)

    def to_json(self) -> dict:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())


@dataclass
class FewShotResult:
    """The learning curve. ``result[k]`` is the entry for k (KeyError if k was not run)."""

    entries: list[FewShotEntry]
    unavailable: list[dict]
    chance: float
    C: float

    def __getitem__(self, k: int) -> FewShotEntry:
        for e in self.entries:
            if e.k == k:
                return e
        raise KeyError(f"no few-shot entry for k={k}; available: {[e.k for e in self.entries]}")

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def ks(self) -> list[int]:
        return [e.k for e in self.entries]

    def to_result(self) -> list[R.FewShot]:
        """The report's ``few_shot`` list, one entry per k."""
        return [e.to_result() for e in self.entries]

    def to_json(self) -> list[dict]:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())

    def unavailable_result(self) -> list[R.FewShotUnavailable]:
        """The report's ``few_shot_unavailable`` list: the ks the data could not give, and why."""
        return [R.FewShotUnavailable(k=int(u["k"]), reason=str(u["reason"])) for u in self.unavailable]


def draw_supports(train_labels: np.ndarray, classes: np.ndarray, k: int, seed: int,
                  episodes: Iterable[int]) -> np.ndarray:
    """Support sets as positions into the training split: int64 [n_episodes, len(classes) * k].

    Row e holds k positions of each class in ``classes`` order (class-major). Episode e uses its own
    generator seeded from (seed, k, e): the same labels give the same supports whatever the
    features, and episode e does not depend on how many episodes are drawn or in what batches.
    """
    train_labels = np.asarray(train_labels)
    order0 = np.argsort(train_labels, kind="stable")
    sorted_labels = train_labels[order0]
    starts = np.searchsorted(sorted_labels, classes)
    counts = np.searchsorted(sorted_labels, classes, side="right") - starts
    if np.any(counts < k):
        raise ValueError(f"k={k} exceeds the training images of some class (smallest has {counts.min()})")
    take = (starts[:, None] + np.arange(k)[None, :]).ravel()
    rows = []
    for e in episodes:
        keys = np.random.default_rng([int(seed), int(k), int(e)]).random(train_labels.size)
        # within each class block (labels sorted), order by the random keys; take the first k
        within = np.lexsort((keys[order0], sorted_labels))
        rows.append(order0[within[take]])
    return np.asarray(rows, dtype=np.int64).reshape(-1, classes.size * k)


def _candidate_ks(counts: np.ndarray, ks: Sequence[int] | None) -> list[int]:
    if ks is None:
        out, k = [], 1
        while k <= counts.max():
            out.append(k)
            k *= 2
        return out
    out = sorted({int(k) for k in ks})
    if not out or out[0] < 1:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    return out


def _normalise(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.inference_mode()  # no head here learns by autograd (mlp and gd_budget run on the full split only)
def few_shot_curve(X, y, n_classes: int, split: Split, *, seed: int, ks: Sequence[int] | None = None,
                   C: float = 1.0, min_episodes: int = 10, max_episodes: int = 100,
                   target_halfwidth: float = 0.02, device="cpu", heads: Sequence[str] = DEFAULT_HEADS,
                   head_settings: dict | None = None, preprocess=None) -> FewShotResult:
    """Few-shot learning curve: for each k, the best of a prototype and a logistic head, and of the
    other ``heads`` asked for (any of ``FEW_SHOT_HEADS``; prototype and logistic always run).
    ``head_settings`` maps a head of ``heads.py`` to its settings (see ``heads.run_head``).

    X : float [n, d], y : int [n] in 0..n_classes-1. Supports come from ``split.train`` only; the
    winner per k is chosen on ``split.val``; accuracies are on ``split.test``.

    Episodes are added in batches until the 95% CI half-width is below ``target_halfwidth``, or the
    Monte-Carlo part of it (episode-to-episode spread) is below half of it, or more episodes could
    narrow the interval by at most ``MC_SHARE`` (5%: the test set's size and the training pool set
    the rest), or ``max_episodes`` is reached. The CI is
    about the accuracy an adversary with fresh k-shot data would get: ``stats.few_shot_variance``
    (episodes, test images, and the finite training pool the supports come from) turned into an
    interval by ``stats.proportion_ci``; ``target_halfwidth`` uses its normal half-width.

    preprocess : label-free transforms fitted on ``split.train`` (see ``linear_probe.linear_probe``).
        With several, each runs the first ``min_episodes`` episodes of a k; the one whose best head
        has the highest mean validation accuracy (ties: the earlier) runs the rest of that k.
    """
    X, y = check_inputs(X, y, n_classes, split)
    if not (C > 0 and math.isfinite(C)):
        raise ValueError(f"C must be a positive number, got {C}")
    if not 1 <= int(min_episodes) <= int(max_episodes):
        raise ValueError(f"need 1 <= min_episodes <= max_episodes, got {min_episodes}, {max_episodes}")
    if not target_halfwidth > 0:
        raise ValueError(f"target_halfwidth must be > 0, got {target_halfwidth}")
    heads = tuple(heads)
    bad = [h for h in heads if h not in FEW_SHOT_HEADS]
    if bad or "prototype" not in heads or "logistic" not in heads:
        raise ValueError(f"heads must include 'prototype' and 'logistic' and may add {list(_EXTRA_HEADS)}; "
                         f"got {list(heads)}")
    extra = [h for h in FEW_SHOT_HEADS if h in heads and h in _EXTRA_HEADS]
    head_settings = dict(head_settings or {})
    stray = sorted(set(head_settings) - set(extra))
    if stray:
        raise ValueError(f"head_settings given for {stray}, which are not among the extra heads {extra}")
    ran = [h for h in FEW_SHOT_HEADS if h in heads]
    finite_rows(X, np.concatenate([split.train, split.val]), "train/val")
    dev = torch.device(device)
    y_tr = y[split.train]
    classes = np.unique(y_tr)
    K = classes.size
    counts = np.array([np.count_nonzero(y_tr == c) for c in classes])
    chance = 1.0 / K

    vt = np.concatenate([split.val, split.test])
    n_val = split.val.size
    y_val, y_te = y[split.val], y[split.test]
    classes_t = torch.from_numpy(classes).to(dev)
    y_vt_t = torch.from_numpy(y[vt]).to(dev)
    y_val_pos = torch.from_numpy(np.searchsorted(classes, y_val)).to(dev)
    transforms = _pre.resolve(preprocess, X, split.train)
    views: dict[int, _View] = {}

    def view(i: int) -> "_View":
        if i not in views:
            views[i] = _View(transforms[i].apply(X), split, vt, dev, bool(extra))
        return views[i]

    entries: list[FewShotEntry] = []
    unavailable: list[dict] = []
    for k in _candidate_ks(counts, ks):
        short = int(np.count_nonzero(counts < k))
        if short:
            unavailable.append({"k": k, "reason": f"{short} of {K} classes have fewer than {k} training images"})
            continue
        if k >= counts.min():  # every episode holds that class's whole pool: its luck is not measured
            unavailable.append({"k": k, "reason": f"k={k} is every training image of the smallest class: "
                                                  "all episodes share its support, so no interval can say "
                                                  "what fresh data would give"})
            continue
        ys = torch.arange(K, device=dev).repeat_interleave(k)

        def run(members: list[tuple["_View", dict]], first: int, count: int) -> None:
            """Episodes first..first+count-1 on each (view, state). Views of one design width share
            the episodes' supports, and their logistic heads one batched fit (each with its own
            penalty: the same fits as one call per view) while that stays within ``BATCH_FLOATS``."""
            widths: dict[int, list] = {}
            for v, st in members:
                widths.setdefault(v.Z_tr.shape[1], []).append((v, st))
            for D1, group in widths.items():
                per_batch = max(1, MEMORY_FLOATS // (K * k * D1))
                for b0 in range(first, first + count, per_batch):
                    eps = range(b0, min(first + count, b0 + per_batch))
                    sup = torch.from_numpy(draw_supports(y_tr, classes, k, seed, eps)).to(dev)
                    E = sup.shape[0]
                    if len(group) > 1 and len(group) * E * K * k * D1 <= BATCH_FLOATS:
                        lams = [v.std.lam(C, K * k) for v, _ in group for _ in range(E)]
                        P, _ = fit_logistic(torch.cat([v.Z_tr[sup] for v, _ in group]),
                                            ys.expand(len(group) * E, -1), K, lams,
                                            max_iter=FS_MAX_ITER, gtol=FS_GTOL)
                        fits = P.split(E)
                    else:
                        fits = [fit_logistic(v.Z_tr[sup], ys.expand(E, -1), K, v.std.lam(C, K * k),
                                             max_iter=FS_MAX_ITER, gtol=FS_GTOL)[0] for v, _ in group]
                    for (v, st), P in zip(group, fits):
                        protos = _normalise(v.Xn_tr[sup].view(E, K, k, -1).mean(2))          # [E, K, D]
                        pred_p = (v.Xn_vt @ protos.reshape(E * K, -1).T).view(-1, E, K).argmax(-1).T  # [E, n_vt]
                        preds = [("prototype", pred_p), ("logistic", predict(v.Z_vt, P))]
                        for name in extra:
                            fit = fit_heads(name, v.X_tr[sup], ys.expand(E, -1), v.X_vt, K, y_val_pos,
                                            [head_seed(seed, k, e, name) for e in eps], **head_settings.get(name, {}))
                            preds.append((name, fit.pred))
                            st["val_est"][name].append(fit.val_unbiased)
                        for name, pred in preds:
                            ok = (classes_t[pred] == y_vt_t).cpu().numpy()
                            st["val_ok"][name].append(ok[:, :n_val])
                            st["test_ok"][name].append(ok[:, n_val:])

        def fresh() -> dict:
            # a head of heads.py picks its own candidate per episode on validation, so its plain
            # validation accuracy is a best-of-many; the winner is chosen with its cross-fitted estimate
            return {"val_ok": {name: [] for name in ran}, "test_ok": {name: [] for name in ran},
                    "val_est": {name: [] for name in extra}}

        def summary(st: dict, name: str):
            v = np.concatenate(st["val_ok"][name])
            t = np.concatenate(st["test_ok"][name])
            va = (np.concatenate(st["val_est"][name]) if name in st["val_est"]
                  else balanced_accuracy_rows(y_val, v, n_classes))
            ta = balanced_accuracy_rows(y_te, t, n_classes)
            return va, ta, t

        def top_val(st: dict) -> float:
            return max(summary(st, name)[0].mean() for name in ran)

        # the transform: every candidate runs the first batch; the best validation accuracy of any
        # head decides (ties: the earlier candidate), and only that one continues
        batch = int(min_episodes)
        states = [fresh() for _ in transforms]
        run([(view(i), states[i]) for i in range(len(transforms))], 0, batch)
        tried = [(top_val(st_i) if len(transforms) > 1 else 0.0, i, st_i) for i, st_i in enumerate(states)]
        _, chosen, st = max(tried, key=lambda t: (t[0], -t[1]))
        done = batch
        while True:
            summaries = {name: summary(st, name) for name in ran}
            pv, pt, pc = summaries["prototype"]
            lv, lt, lc = summaries["logistic"]
            # ties (to rounding: means of the same accuracies in another order) go to the simpler
            # head, the earlier in FEW_SHOT_HEADS (so the prototype beats the logistic head)
            top = max(v.mean() for v, _, _ in summaries.values())
            winner = next(name for name in ran if summaries[name][0].mean() > top - 1e-9)
            _, acc_e, corr = summaries[winner]
            # episodes, test images and the training pool: stats.few_shot_variance
            var = few_shot_variance(acc_e, y_te, corr.mean(axis=0), n_classes, k=k, pool_size=int(counts.min()),
                                    per_image=corr)
            mc_var = var.monte_carlo
            var_ep = mc_var * done
            floor_var = var.total - mc_var  # test set and pool: the variance left with endless episodes
            half = Z95 * math.sqrt(var.total)
            if (done >= max_episodes or half < target_halfwidth or Z95 * math.sqrt(mc_var) < target_halfwidth / 2
                    or var.total <= MC_SHARE ** 2 * floor_var):
                break
            needed = 0
            if math.isfinite(var_ep):  # the fewer episodes of the two Monte Carlo stopping rules above
                needed = math.ceil(var_ep * (2 * Z95 / target_halfwidth) ** 2)
                if floor_var > 0:
                    needed = min(needed, math.ceil(var_ep / ((MC_SHARE ** 2 - 1) * floor_var)))
            batch = int(min(max_episodes - done, max(min_episodes, needed - done)))
            run([(view(chosen), st)], done, batch)
            done += batch
        acc = float(acc_e.mean())
        entries.append(FewShotEntry(
            k=k, accuracy=acc,
            ci95=proportion_ci(acc, var.total, var.n_max, seed=[int(seed), int(k), int(Stream.FEW_SHOT_CI)]),
            episodes=done,
            winner=winner, skill=_skill(acc, chance),
            prototype_accuracy=float(pt.mean()), logistic_accuracy=float(lt.mean()),
            prototype_val_accuracy=float(pv.mean()), logistic_val_accuracy=float(lv.mean()),
            episode_accuracy=acc_e, prototype_episode_accuracy=pt, logistic_episode_accuracy=lt,
            test_correct_rate=corr.mean(axis=0), test_labels=y_te, episode_correct=corr.astype(bool),
            pool_size=int(counts.min()),
            head_accuracy={n: float(summaries[n][1].mean()) for n in ran} if extra else {},
            head_val_accuracy={n: float(summaries[n][0].mean()) for n in ran} if extra else {},
            head_episode_accuracy={n: summaries[n][1] for n in ran} if extra else {},
            preprocess=transforms[chosen].name,
            preprocess_val_accuracy=({transforms[i].name: float(a) for a, i, _ in tried} if len(tried) > 1 else {}),
        ))
    return FewShotResult(entries=entries, unavailable=unavailable, chance=chance, C=float(C))


class _View:
    """One transformed feature matrix as the few-shot heads use it (torch, on the device):
    standardised designs for the logistic head (``Z_tr``, ``Z_vt``; ``std``), L2-normalised rows for
    the prototype (``Xn_tr``, ``Xn_vt``) and, for the heads of heads.py, the rows as they are."""

    def __init__(self, Xt: np.ndarray, split: Split, vt: np.ndarray, dev, raw: bool):
        self.std = Standardizer(Xt[split.train], dev)
        self.Z_tr = self.std.design(Xt[split.train])
        self.Z_vt = self.std.design(Xt[vt])
        X_tr = torch.from_numpy(np.ascontiguousarray(Xt[split.train], dtype=np.float32)).to(dev)
        X_vt = torch.from_numpy(np.ascontiguousarray(Xt[vt], dtype=np.float32)).to(dev)
        self.Xn_tr, self.Xn_vt = _normalise(X_tr), _normalise(X_vt)
        self.X_tr, self.X_vt = (X_tr, X_vt) if raw else (None, None)


def paired_few_shot(a: FewShotEntry, b: FewShotEntry, n_classes: int, seed, clusters=None) -> dict:
    """Paired test of b minus a at the same k (same labels, split and seed, hence the same episodes),
    covering episode-to-episode, test-set and training-pool noise; see ``stats.paired_episodes``
    (its dict: delta, ci95, p_value, se, upper95, method, ci_method). ``clusters``: the test
    images' groups (``Metrics.test_clusters``), which the test-set part then respects. The pool
    term uses the per-image values (``per_image_a/b``) on one split only: merged test folds keep the
    episodes' whole variance (see ``attacks._merge_few_shot``)."""
    if a.k != b.k or not np.array_equal(a.test_labels, b.test_labels):
        raise ValueError("paired few-shot entries need the same k and the same test images")
    if a.pool_size != b.pool_size or a.pool_size < a.k:
        raise ValueError(f"paired few-shot entries need the same training pool (pool_size {a.pool_size} vs "
                         f"{b.pool_size}, k={a.k}): build both with few_shot_curve on the same split")
    return paired_episodes(a.episode_accuracy, b.episode_accuracy, seed, y_test=a.test_labels,
                           rate_a=a.test_correct_rate, rate_b=b.test_correct_rate, n_classes=n_classes,
                           k=a.k, pool_size=a.pool_size, clusters=clusters,
                           **({"per_image_a": a.episode_correct, "per_image_b": b.episode_correct}
                              if a.folds == 1 and b.folds == 1 else {}))


def samples_to_threshold(entries, chance: float, skill_threshold: float) -> int | None:
    """Smallest k whose skill ((accuracy - chance) / (1 - chance)) reaches the threshold, else None.

    ``entries`` are FewShotEntry objects or their JSON dicts (with "k" and "accuracy")."""
    best = None
    for e in entries:
        k, acc = (e["k"], e["accuracy"]) if isinstance(e, dict) else (e.k, e.accuracy)
        if acc is None:
            continue
        if _skill(acc, chance) >= skill_threshold - 1e-12 and (best is None or k < best):
            best = int(k)
    return best
