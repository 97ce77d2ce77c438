"""The adaptation attacks: arrays in, metrics out (no I/O).

``evaluate`` runs the attacks a probe asks for on one encoder's features and returns ``Metrics``;
``Metrics.to_result()`` is the report's ``metrics`` block (``result.Metrics``; ``to_json()``: the same as
report.json writes it) and the object keeps the arrays that paired
tests need (``linear_probe.test_correct``, ``zero_shot.test_correct``,
``few_shot[k].episode_accuracy``), all over the same test images in the same order
(``Metrics.test_index``), whether from one split or merged over rotating test folds.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .. import result as R
from ..constants import ATTACKS, DEFAULT_ATTACKS
from ..seeds import Stream, stream
from .few_shot import FewShotEntry, FewShotResult, draw_supports, few_shot_curve, paired_few_shot, samples_to_threshold
from .linear_probe import LinearProbeResult, check_inputs, linear_probe, linear_probes
from .metric import CrossFitMetric, within_identity_white
from .preprocess import CANDIDATES, INVARIANT, Transform, fit_candidates
from .splits import Split, drop_near_duplicates, make_splits, scored_images, split_info, stratified_split
from .stats import (
    MergedFold,
    balanced_accuracy,
    balanced_accuracy_rows,
    bootstrap_ci,
    cluster_df,
    clustered_ci,
    clustered_variance,
    few_shot_variance,
    merged_folds_variance,
    proportion_ci,
)
from .stats import skill as _skill
from .verification import VerificationResult, seed_entropy, verification
from .zero_shot import ZeroShotResult, class_text_embeddings, zero_shot

__all__ = [
    "ATTACKS", "Metrics", "evaluate", "Split", "stratified_split", "make_splits", "drop_near_duplicates",
    "split_info", "scored_images", "linear_probe", "few_shot_curve", "CrossFitLinearProbeResult",
    "CrossFitFewShotEntry", "verification", "zero_shot", "class_text_embeddings", "samples_to_threshold",
    "paired_few_shot", "LinearProbeResult", "FewShotResult", "VerificationResult", "ZeroShotResult", "OpenSetResult",
    "open_set_identification", "paired_open_set_test", "paired_verification_test",
    "HEADS", "HeadResult", "run_head",
]

from .heads import HEADS, HeadResult, run_head
from .open_set import OpenSetResult, open_set_identification, paired_open_set_test
from .verification import paired_verification_test

FEW_SHOT_HEADS = ("prototype_cl2n", "knn")



@dataclass
class Metrics:
    """All attack results for one encoder on one probe.

    ``chance`` is 1 / the number of kept classes (classes with enough images to be split).
    ``test_index`` (int [n_test], ascending) lists the scored test images: every per-image array
    (``linear_probe.test_correct``/``test_pred``/``test_labels``, ``zero_shot.test_correct``,
    ``few_shot[k].test_correct_rate``/``test_labels``) is in this order. ``n_folds`` is the number
    of test folds merged (1: a single split)."""

    linear_probe: LinearProbeResult
    few_shot: FewShotResult | None
    verification: VerificationResult | None
    zero_shot: ZeroShotResult | None
    samples_to_threshold: int | None
    skill_threshold: float
    chance: float
    n_classes_kept: int
    test_index: np.ndarray | None = field(default=None, repr=False)
    n_folds: int = 1
    heads: dict = field(default_factory=dict)   # name -> HeadResult, full training split, same test images
    open_set: object = None                     # attacks.open_set.OpenSetResult (identity probes)
    finetune: object = None                     # attacks.finetune.FinetuneResult (fold 0), set by the pipeline
    test_clusters: np.ndarray | None = field(default=None, repr=False)  # [n_test] group ids, None: no groups
    # verification and open-set identification with the learned metric (attacks.metric), same pairs
    verification_learned: VerificationResult | None = None
    open_set_learned: object = None

    def verification_candidates(self) -> list[tuple[str, object, str]]:
        """(result attribute, verification result, metric label) for each metric that ran."""
        return [(a, r, lab) for a, lab in (("verification", ""), ("verification_learned", " (learned metric)"))
                if (r := getattr(self, a, None)) is not None]

    def open_set_candidates(self) -> list[tuple[str, object, str]]:
        """(result attribute, open-set result, metric label) for each metric that ran."""
        return [(a, r, lab) for a, lab in (("open_set", ""), ("open_set_learned", " (learned metric)"))
                if (r := getattr(self, a, None)) is not None]

    def to_result(self) -> R.Metrics:
        """The report's ``metrics`` block (``result.Metrics``); the blocks of attacks that did not run are
        left out."""
        zs, fs = self.zero_shot, self.few_shot

        def opt(r):
            return r.to_result() if r is not None else None

        return R.Metrics(
            zero_shot=_flag_below_chance(zs.to_result(), zs.chance) if zs is not None else None,
            linear_probe=_flag_below_chance(self.linear_probe.to_result(), self.chance),
            few_shot=[_flag_below_chance(e, self.chance) for e in fs.to_result()] if fs is not None else [],
            few_shot_unavailable=fs.unavailable_result() if fs is not None else [],
            verification=opt(self.verification),
            samples_to_threshold=self.samples_to_threshold,
            heads=({name: _flag_below_chance(h.to_result(), self.chance) for name, h in self.heads.items()}
                   if self.heads else None),
            verification_learned=opt(self.verification_learned),
            open_set=opt(self.open_set),
            open_set_learned=opt(self.open_set_learned),
            finetune=opt(self.finetune),
        )

    def to_json(self) -> dict:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())


def _flag_below_chance(block, chance: float):
    """An attack whose 95% CI lies wholly below chance found structure and failed to use it: its
    block (a ``result`` dataclass with ``ci95``) says so (``below_chance``, ``note``), and the risk
    rules never read it as absence."""
    ci = block.ci95
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and ci[1] is not None and ci[1] < chance:
        block.below_chance = True
        block.note = (f"failed: significantly below chance (95% CI upper bound {ci[1]:.3f} < chance "
                      f"{chance:.3f}); not evidence that the capability is absent")
    return block


@dataclass
class CrossFitLinearProbeResult(LinearProbeResult):
    """The linear probe merged over rotating test folds: ``accuracy``/``ci95`` and the per-image
    arrays cover the union of the test folds; ``C`` is the median (in log space) of the per-fold
    choices ``fold_C``; ``val_accuracy`` is the mean over folds; ``c_search`` lists the C values every
    fold tried with their mean validation accuracy; ``n_train``/``n_val`` are fold 0's."""

    fold_C: list = field(default_factory=list)
    fold_val_accuracy: list = field(default_factory=list)
    fold_preprocess: list = field(default_factory=list)

    def to_result(self) -> R.LinearProbe:
        out = super().to_result()
        out.folds = len(self.fold_C)
        out.C_per_fold = [float(f"{float(c):.6g}") for c in self.fold_C]
        if self.fold_preprocess:
            out.preprocess_per_fold = list(self.fold_preprocess)
        return out


@dataclass
class CrossFitFewShotEntry(FewShotEntry):
    """A few-shot k merged over rotating test folds: episode e of every fold pooled into one
    episode over the union of the test folds (the first min-over-folds episodes of each). The
    winner is chosen per fold on that fold's validation images (``fold_winners``); ``winner`` is
    the majority (ties: prototype). ``prototype_*``/``logistic_*`` are means over folds weighted by
    test-fold size (a summary: only the winner's per-image results are pooled exactly)."""

    fold_winners: list = field(default_factory=list)
    fold_preprocess: list = field(default_factory=list)

    def to_result(self) -> R.FewShot:
        out = super().to_result()
        out.winner_per_fold = list(self.fold_winners)
        if self.fold_preprocess:
            out.preprocess_per_fold = list(self.fold_preprocess)
        return out




def preprocess_candidates(X, train_rows, preprocess="auto") -> list:
    """The candidate transforms of one fold, fitted on ``X[train_rows]`` (labels unused)."""
    if preprocess is None:
        return [Transform("none")]
    names = CANDIDATES if preprocess == "auto" else ([preprocess] if isinstance(preprocess, str) else list(preprocess))
    return fit_candidates(X, train_rows, names)


def _few_shot_transforms(transforms: list, lp_choice: str) -> list:
    """Few-shot's candidates: the identity, the unshrunk whitening (the one every invertible linear
    map leaves unchanged) and the linear probe's choice, those of ``transforms``, in their order."""
    keep = {"none", INVARIANT, lp_choice}
    return [t for t in transforms if t.name in keep] or transforms[:1]


def _check_disjoint(split: Split) -> None:
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = np.intersect1d(getattr(split, a), getattr(split, b))
        if both.size:
            raise ValueError(f"split.{a} and split.{b} share {both.size} images (e.g. {int(both[0])}): "
                             "a fitted or validation image must never be scored; build splits with make_splits")


def evaluate(X, y, n_classes: int, split_or_splits, *, seed: int, attacks: Sequence[str] = DEFAULT_ATTACKS,
             skill_threshold: float = 0.5, text_embeddings=None, device="cpu", groups=None,
             timer=None, preprocess="auto") -> Metrics:
    """Run the attacks on one encoder's features.

    X : float [n, d] features of every image, y : int [n] labels in 0..n_classes-1,
    split_or_splits : one ``Split`` (e.g. ``stratified_split(y, seed)``) or a list of them from
    ``make_splits`` (rotating test folds; folds without a test image are skipped).

    Per split, the linear probe always runs (first: its chosen C is reused by the few-shot
    logistic heads), then the few-shot curve. With several folds they are merged into one result
    over the union of the test folds, in ascending image order (``Metrics.test_index``):
    balanced accuracies over the union, the linear probe's CI by the same class-stratified
    bootstrap, each few-shot k's episodes pooled across folds (a k counts only if every fold has
    it). Verification scores all images of the kept classes (nothing is fitted); zero-shot runs
    when asked for and ``text_embeddings`` [n_classes, d] is given, scored once on the test images
    (all kept images with folds). ``samples_to_threshold`` is the smallest few-shot k whose skill
    reaches ``skill_threshold``. Splits depend on labels, groups and seed only, so two encoders
    evaluated with the same splits are paired image by image.

    preprocess : "auto" (default: ``preprocess.CANDIDATES``), None (raw features only), or names
        The label-free transforms every attack may apply first (``attacks.preprocess``), fitted per
        fold on its training images only and chosen on validation: the linear probe by its coarse
        C grid, each full-data head by its own validation accuracy, few-shot per k among the
        identity, the unshrunk whitening and the probe's choice. Verification and open-set
        identification add a learned metric (``verification(metric="whitened")``).

    timer : callable(part: str) -> context manager, optional
        Wraps each part ("linear_probe", "few_shot", "heads", "verification", "zero_shot") so a
        benchmark can time it (e.g. with a device sync on entry and exit); the default does nothing.

    groups : sequence [n] of str or None, optional
        The images' groups (as given to ``make_splits``). Photos of one person tend to be all right
        or all wrong together, so a CI that treats them as independent images is too narrow (by up
        to the square root of the photos per person). With groups, the test-set part of every CI
        (linear probe, few-shot, zero-shot) resamples groups within each class instead of images.
    """
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; choose from {list(ATTACKS)}")
    if isinstance(split_or_splits, Split):
        splits = [split_or_splits]
    else:
        splits = list(split_or_splits) if split_or_splits is not None else []
        if not splits or not all(isinstance(s, Split) for s in splits):
            raise ValueError("split_or_splits must be a Split or a non-empty list of Split (make_splits(y, seed))")
        if len(splits) > 1:
            splits = [s for s in splits if s.test.size]
            if not splits:
                raise ValueError("no fold has a test image left (were they all near-duplicates?)")
    for s in splits:
        X, y = check_inputs(X, y, n_classes, s)
        _check_disjoint(s)
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} feature rows contain NaN or inf (e.g. row {int(np.flatnonzero(bad)[0])}); "
                         "drop those images or fix the encoder")
    if not 0.0 < float(skill_threshold) <= 1.0:
        raise ValueError(f"skill_threshold must be in (0, 1], got {skill_threshold}")
    kept = np.unique(y[splits[0].train])
    for f, s in enumerate(splits[1:], 1):
        if not np.array_equal(np.unique(y[s.train]), kept):
            raise ValueError(f"fold {f} trains on other classes than fold 0: folds must keep the same classes "
                             "(build them with one make_splits call)")
    test_index = scored_images(splits)
    chance = 1.0 / kept.size
    cluster = _clusters(groups, y.size, test_index)

    head_names = [h for h in HEADS if h in attacks]
    # the adversary's few-shot heads: prototype and logistic, and the cheap extra heads the probe asks
    # for; mlp and gd_budget run on the full training split only (per episode they cost ~100x more)
    fs_heads = ("prototype", "logistic") + tuple(h for h in head_names if h in FEW_SHOT_HEADS)
    part = timer or (lambda name: contextlib.nullcontext())
    fss, hrs = [], {h: [] for h in head_names}
    with part("linear_probe"):
        # label-free transforms fitted on each fold's training images only, shared by its attacks;
        # the folds' probes together (their fits batched: the same results as one call per fold)
        fold_transforms = [preprocess_candidates(X, s.train, preprocess) for s in splits]
        lps = linear_probes(X, y, n_classes, splits, seed=seed, device=device, preprocess=fold_transforms)
    for s, transforms, lp in zip(splits, fold_transforms, lps):
        if "few_shot" in attacks:
            with part("few_shot"):
                fss.append(few_shot_curve(X, y, n_classes, s, seed=seed, C=lp.C, device=device,
                                          preprocess=_few_shot_transforms(transforms, lp.preprocess),
                                          **({"heads": fs_heads} if head_names else {})))
        for h in head_names:
            with part("heads"):
                hrs[h].append(run_head(h, X, y, n_classes, s, seed=seed, device=device, preprocess=transforms))
    if len(splits) == 1 and cluster is None:
        lp, fs = lps[0], (fss[0] if fss else None)
    else:
        positions = [np.searchsorted(test_index, s.test) for s in splits]
        y_u = y[test_index]
        lp = _merge_linear(lps, positions, y_u, n_classes, seed, chance, cluster)
        fs = _merge_few_shot(fss, positions, y_u, n_classes, chance, lp.C, cluster, seed,
                             splits=splits, y=y) if fss else None
    if len(splits) == 1 and cluster is None:
        heads = {h: r[0] for h, r in hrs.items()}
    else:
        heads = {h: _merge_head(r, positions, y_u, n_classes, seed, chance, cluster) for h, r in hrs.items()}
    ver = open_set = ver_l = open_set_l = None
    if "verification" in attacks:
        rows = np.flatnonzero(np.isin(y, kept))
        with part("verification"):
            ver = verification(X[rows], y[rows], seed=seed, device=device)
            # the 1:N search a face-recognition evaluation runs: gallery and non-mated identities disjoint
            open_set = open_set_identification(X[rows], y[rows], seed=seed, device=device)
            # the learned metric: the same pairs and searches, cross-fitted over identities; left out
            # when the within-identity covariance is white up to sampling (it could only add noise)
            ids = np.unique(y[rows], return_inverse=True)[1].ravel()
            if preprocess is not None and not within_identity_white(X[rows], ids):
                cf = CrossFitMetric(X[rows], ids, int(ids.max()) + 1, seed_entropy(seed), device=device)
                ver_l = verification(X[rows], y[rows], seed=seed, device=device, metric=cf)
                open_set_l = open_set_identification(X[rows], y[rows], seed=seed, device=device, metric=cf)
    zs = None
    if "zero_shot" in attacks and text_embeddings is not None:
        with part("zero_shot"):
            zs = zero_shot(X[test_index], y[test_index], text_embeddings, n_classes, seed=seed, candidates=kept)
        if cluster is not None:
            zs = dataclasses.replace(zs, ci95=clustered_ci(zs.test_labels, zs.test_correct, cluster,
                                                                  n_classes, seed=stream(seed, Stream.ZERO_SHOT_CI)))
    stt = samples_to_threshold(fs.entries, chance, skill_threshold) if fs is not None else None
    return Metrics(linear_probe=lp, few_shot=fs, verification=ver, zero_shot=zs,
                   samples_to_threshold=stt, skill_threshold=float(skill_threshold), chance=chance,
                   n_classes_kept=int(kept.size), test_index=test_index, n_folds=len(splits), heads=heads,
                   open_set=open_set, test_clusters=cluster, verification_learned=ver_l,
                   open_set_learned=open_set_l)


def _scatter(results, positions, y_u, n_classes: int, cluster, seed):
    """The folds' test predictions placed over the union of the test folds (``positions``: where
    each fold's test images sit in it): (correct, pred, balanced accuracy, its CI), the CI
    cluster-robust when the test images come in groups."""
    correct = np.zeros(y_u.size, bool)
    pred = np.empty(y_u.size, np.int64)
    for r, pos in zip(results, positions):
        correct[pos] = r.test_correct
        pred[pos] = r.test_pred
    ci = (bootstrap_ci(y_u, correct, n_classes, seed=seed) if cluster is None
          else clustered_ci(y_u, correct, cluster, n_classes, seed=seed))
    return correct, pred, balanced_accuracy(y_u, pred, n_classes), ci


def _merge_head(results: list[HeadResult], positions, y_u, n_classes: int, seed: int, chance: float,
                cluster) -> HeadResult:
    """One head's folds as one result over the union of the test folds (as ``_merge_linear``). A
    gd_budget head's per-budget accuracies become fold-size-weighted means, without a CI (its
    per-image predictions at the smaller budgets are not kept)."""
    correct, pred, acc, ci = _scatter(results, positions, y_u, n_classes, cluster,
                                      seed=stream(seed, Stream.HEAD_CI, HEADS.index(results[0].name)))
    w = np.array([pos.size for pos in positions], np.float64) / y_u.size
    budgets = []
    for i, b in enumerate(results[0].budgets):
        b_acc = float(sum(wi * r.budgets[i]["accuracy"] for wi, r in zip(w, results)))
        budgets.append({"steps": b["steps"], "accuracy": b_acc, "ci95": None, "skill": _skill(b_acc, chance),
                        "folds": "fold-size-weighted mean"})
    params = dict(results[0].params)
    if len(results) > 1:
        params["per_fold"] = [dict(r.params) for r in results]
    return dataclasses.replace(results[0], accuracy=acc, ci95=ci, skill=_skill(acc, chance),
                               val_accuracy=float(np.mean([r.val_accuracy for r in results])), params=params,
                               n_test=int(y_u.size), test_correct=correct, test_pred=pred, test_labels=y_u,
                               budgets=budgets or results[0].budgets)


def _base_fields(obj, cls) -> dict:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)}


def _merge_linear(lps: list[LinearProbeResult], positions, y_u, n_classes: int, seed: int,
                  chance: float, cluster) -> LinearProbeResult:
    correct, pred, acc, ci = _scatter(lps, positions, y_u, n_classes, cluster,
                                      seed=stream(seed, Stream.LINEAR_PROBE_CI))
    if len(lps) == 1:  # one split, only the CI changes
        return dataclasses.replace(lps[0], ci95=ci)
    fold_C = [float(lp.C) for lp in lps]
    searched = set.intersection(*({float(c) for c, _ in lp.c_search} for lp in lps))
    c_search = [[c, float(np.mean([a for lp in lps for c2, a in lp.c_search if c2 == c]))] for c in sorted(searched)]
    merged = dataclasses.replace(
        lps[0], accuracy=acc, ci95=ci,
        C=float(10.0 ** np.median(np.log10(fold_C))), skill=_skill(acc, chance),
        val_accuracy=float(np.mean([lp.val_accuracy for lp in lps])), c_search=c_search,
        n_test=int(y_u.size), chance=chance, test_correct=correct, test_pred=pred, test_labels=y_u)
    fold_pre = [lp.preprocess for lp in lps]
    merged.preprocess = max(sorted(set(fold_pre)), key=fold_pre.count)  # the transform most folds chose
    merged.preprocess_search = []
    return CrossFitLinearProbeResult(**_base_fields(merged, LinearProbeResult), fold_C=fold_C,
                                     fold_val_accuracy=[float(lp.val_accuracy) for lp in lps],
                                     fold_preprocess=fold_pre)


def _merged_folds_part(var, correct, per_fold, positions, splits, y, k: int, seed: int):
    """``var`` with its test-set and pool terms replaced by ``stats.merged_folds_variance`` (test
    images and pools together: ``test_set`` then holds both, ``training_pool`` 0), at least the
    per-image terms it replaces; ``var`` unchanged when that variance is not available (< 4 episodes).
    The supports are redrawn as few_shot_curve drew them (``draw_supports``: labels, split, seed)."""
    E = correct.shape[0]
    folds = []
    for e, pos, s in zip(per_fold, positions, splits):
        y_tr = y[s.train]
        folds.append(MergedFold(test=s.test, train=s.train, values=correct[:, pos],
                                supports=draw_supports(y_tr, np.unique(y_tr), k, seed, range(E))))
    merged = merged_folds_variance(y, folds, k)
    if merged is None:
        return var
    if merged < 1e-12:  # rounding where every value is equal (all right): a tiny positive variance at an
        merged = 0.0    # accuracy of 1 would leave an effective size of one image
    return dataclasses.replace(var, test_set=max(merged, var.test_set + var.training_pool), training_pool=0.0)


def _merge_few_shot(fss: list[FewShotResult], positions, y_u, n_classes: int, chance: float,
                    C: float, cluster, seed: int, *, splits=None, y=None) -> FewShotResult:
    """The folds' few-shot curves as one over the union of the test folds (see ``evaluate``).
    ``splits`` and ``y`` (every image's label), with several folds and no groups: the interval's
    test-set and pool terms come from ``stats.merged_folds_variance`` (nominal width); without them,
    from the episodes' whole variance (pool-inclusive, wider)."""
    weights = np.array([pos.size for pos in positions], np.float64) / y_u.size
    common = sorted(set.intersection(*(set(fs.ks) for fs in fss)))
    entries = []
    for k in common:
        per_fold = [fs[k] for fs in fss]
        E = min(e.episodes for e in per_fold)
        correct = np.zeros((E, y_u.size), bool)
        for e, pos in zip(per_fold, positions):
            if e.episode_correct is None:
                raise ValueError("few-shot entries lack per-episode correctness (FewShotEntry.episode_correct)")
            correct[:, pos] = e.episode_correct[:E]
        acc_e = balanced_accuracy_rows(y_u, correct, n_classes)
        rate = correct.mean(axis=0)
        acc = float(acc_e.mean())
        # episodes, test images and the training pool, as few_shot_curve's CI (stats.few_shot_variance);
        # with groups the test-set part is the cluster-robust one, with its degrees of freedom.
        # Merged folds: a fold's test images sit in the other folds' pools, a covariance the per-image
        # terms miss (simulated coverage 0.85-0.93; label-blind features: chance 0.90-0.93), so the
        # test-set and pool terms come from every image's influence in both roles
        # (stats.merged_folds_variance), else (groups, or no splits) from the episodes' whole variance
        pool = min(e.pool_size for e in per_fold)
        influence = len(fss) > 1 and cluster is None and splits is not None and y is not None
        var = few_shot_variance(acc_e, y_u, rate, n_classes, k=k, pool_size=max(pool, k),
                                per_image=correct if len(fss) == 1 or influence else None)
        if influence:
            var = _merged_folds_part(var, correct, per_fold, positions, splits, y, k, seed)
        df = None
        if cluster is not None:
            var = dataclasses.replace(var, test_set=clustered_variance(y_u, rate, cluster))
            df = cluster_df(y_u, cluster)
        ci = proportion_ci(acc, var.total, var.n_max, seed=[int(seed), int(k), int(Stream.FEW_SHOT_CI)], df=df)
        winners = [e.winner for e in per_fold]
        winner = max(sorted(set(winners)), key=winners.count)  # the head most folds chose on val

        def wmean(name, first=None):
            return sum(w * (getattr(e, name)[:first] if first else getattr(e, name)) for w, e in zip(weights, per_fold))

        merged = dataclasses.replace(
            per_fold[0], accuracy=acc, ci95=ci, episodes=E, pool_size=pool, folds=len(fss),
            winner=winner, skill=_skill(acc, chance),
            prototype_accuracy=float(wmean("prototype_accuracy")), logistic_accuracy=float(wmean("logistic_accuracy")),
            prototype_val_accuracy=float(wmean("prototype_val_accuracy")),
            logistic_val_accuracy=float(wmean("logistic_val_accuracy")),
            episode_accuracy=acc_e, prototype_episode_accuracy=wmean("prototype_episode_accuracy", E),
            logistic_episode_accuracy=wmean("logistic_episode_accuracy", E),
            test_correct_rate=rate, test_labels=y_u, episode_correct=correct)
        pre = [e.preprocess for e in per_fold]
        merged.preprocess = max(sorted(set(pre)), key=pre.count)  # the transform most folds chose
        entries.append(merged if len(fss) == 1 else
                       CrossFitFewShotEntry(**_base_fields(merged, FewShotEntry), fold_winners=winners,
                                            fold_preprocess=pre))
    unavailable = []
    every_k = sorted(set().union(*(set(fs.ks) | {int(u["k"]) for u in fs.unavailable} for fs in fss)) - set(common))
    for k in every_k:
        f = next(f for f, fs in enumerate(fss) if k not in fs.ks)  # the first fold that lacks k
        reason = next((u["reason"] for u in fss[f].unavailable if int(u["k"]) == k),
                      f"every class has fewer than {k} training images")
        unavailable.append({"k": k, "reason": f"fold {f}: {reason}"})
    return dataclasses.replace(fss[0], entries=entries, unavailable=unavailable, chance=chance, C=float(C))


# ---------------------------------------------------------------------------------------------
# The test images' groups (the cluster-robust arithmetic is in stats: clustered_variance, clustered_ci)
# ---------------------------------------------------------------------------------------------

def _clusters(groups, n: int, test_index: np.ndarray) -> np.ndarray | None:
    """Cluster id of each test image (int [n_test]; images without a group are their own
    cluster), or None when no test group holds two images (the image-level CIs are then exact)."""
    if groups is None:
        return None
    groups = list(groups)
    if len(groups) != n:
        raise ValueError(f"groups must give one entry per image: {len(groups)} for {n} images")
    keys = [groups[i] if groups[i] is not None and str(groups[i]) != "" else ("\0image", i)
            for i in test_index.tolist()]
    codes: dict = {}
    cluster = np.asarray([codes.setdefault(k if isinstance(k, tuple) else str(k), len(codes)) for k in keys], np.int64)
    return cluster if len(codes) < cluster.size else None


