"""Open-set (1:N) identification: what a face-search system built on the raw embeddings gets.

The protocol of a face-recognition evaluation such as NIST FRVT 1:N, with nothing fitted:

* identities are split, from the labels and seed alone, into a **gallery** (enrolled) and a
  **non-mated** set (never enrolled, so a search for one of them should return nobody); a gallery
  identity is never non-mated;
* each gallery identity enrols ``n_enrol`` images, its template being the mean of their
  L2-normalised embeddings (renormalised); its other images are **mated searches**; every image of a
  non-mated identity is a **non-mated search**;
* a search scores every template by cosine. **Rank-1 identification rate** (closed set): the share
  of mated searches whose true template scores strictly above every other template. **FPIR(T)**:
  the share of non-mated searches whose top score is above T. **FNIR(T)**: the share of mated
  searches that miss, i.e. whose true template is not the top candidate or scores <= T. T is set on
  the non-mated top scores, as in ``verification.tar_at_far``: the lowest threshold whose FPIR is
  still <= the target (1e-1 and 1e-2), a score equal to T rejected.

Weighting and uncertainty follow ``verification``: every gallery identity's mated searches weigh
the same in total, and every non-mated identity's searches too; FPIR level L is measurable with >=
MIN_TAIL / L non-mated searches (Kish's effective count under those weights). CIs come from a
bootstrap that resamples gallery identities (with their mated searches) and non-mated identities
(with their searches) separately, re-estimating T in every draw; the gallery itself stays fixed,
because a 1:N rate is always quoted for a gallery of a given size. ``paired_open_set_test`` applies
the same draws to a model and its floor.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import result as R
from .stats import round6 as _r
from .verification import (
    MIN_TAIL,
    N_BOOT,
    identity_bootstrap_interval,
    identity_multipliers,
    paired_summary,
    seed_entropy,
)

__all__ = ["OpenSetResult", "open_set_identification", "paired_open_set_test", "FPIR_LEVELS",
           "MIN_IDENTITIES"]

FPIR_LEVELS = {"1e-1": 1e-1, "1e-2": 1e-2}
MIN_IDENTITIES = 4          # two enrolled and two never enrolled, at the least
DET_POINTS = 50
_DESIGN_TAG, _GALLERY_TAG, _NONMATED_TAG = 23, 29, 31
_REL_TOL = 1e-9
_CHUNK = 1 << 22


class _SearchStats:
    """Search outcomes grouped by identity; every statistic is a function of the gallery and
    non-mated identity multiplicities (the point estimate is all ones)."""

    def __init__(self, hit, rank1, mated_id, n_gallery, top, nonmated_id, n_nonmated):
        self.n_gallery, self.n_nonmated = int(n_gallery), int(n_nonmated)
        counts = np.bincount(mated_id, minlength=self.n_gallery)
        order = np.lexsort((hit, mated_id))
        self.hit_sorted = hit[order]                                  # by identity, then score
        starts = np.concatenate([[0], np.cumsum(counts)])
        self.bounds = [(int(starts[a]), int(starts[a + 1])) for a in range(self.n_gallery)]
        self.rank1_rate = np.bincount(mated_id, weights=rank1.astype(np.float64),
                                      minlength=self.n_gallery) / counts
        nm_counts = np.bincount(nonmated_id, minlength=self.n_nonmated)
        desc = np.argsort(-top, kind="stable")
        self.top_desc = top[desc]
        self.desc_id = nonmated_id[desc]
        self.desc_share = 1.0 / nm_counts[self.desc_id]                # a search's share of its identity
        self.cum_desc = np.cumsum(self.desc_share)                     # total: n_nonmated
        w = 1.0 / (self.n_nonmated * nm_counts[nonmated_id])
        self.n_eff_nonmated = float(w.sum() ** 2 / np.sum(w ** 2))

    def rank1(self, mg: np.ndarray) -> np.ndarray:
        return (mg @ self.rank1_rate) / mg.sum(axis=1)

    def thresholds(self, mn: np.ndarray, fpir: float) -> np.ndarray:
        """Per draw: the non-mated top score at the first position (descending) where the drawn
        non-mated mass passes fpir * total; -inf when none does."""
        n = self.top_desc.size
        target = fpir * mn.sum(axis=1) * (1.0 + _REL_TOL)
        k = np.empty(mn.shape[0], dtype=np.int64)
        step = max(1, _CHUNK // n)
        for s in range(0, mn.shape[0], step):
            cs = np.cumsum(mn[s:s + step][:, self.desc_id] * self.desc_share, axis=1)
            over = cs > target[s:s + step, None]
            k[s:s + step] = np.where(over[:, -1], np.argmax(over, axis=1), n)
        t = np.full(mn.shape[0], -np.inf)
        t[k < n] = self.top_desc[k[k < n]]
        return t

    def fnir(self, mg: np.ndarray, t: np.ndarray) -> np.ndarray:
        """1 - the drawn share of mated searches that are rank 1 with a score above t[b]."""
        found = np.empty((t.size, self.n_gallery))
        for col, (s, e) in enumerate(self.bounds):
            found[:, col] = (e - s - np.searchsorted(self.hit_sorted[s:e], t, side="right")) / (e - s)
        return 1.0 - (mg * found).sum(axis=1) / mg.sum(axis=1)

    def det(self, n_points: int = DET_POINTS) -> list:
        """[[fpir, fnir], ...] at achieved FPIRs on a log grid from 1/n_searches to 1."""
        n = self.top_desc.size
        targets = np.logspace(math.log10(1.0 / n), 0.0, n_points) * self.cum_desc[-1] * (1 + _REL_TOL)
        k = np.searchsorted(self.cum_desc, targets, side="right")
        t = np.where(k < n, self.top_desc[np.minimum(k, n - 1)], -np.inf)
        above = np.searchsorted(-self.top_desc, -t, side="left")        # searches strictly above t
        fpir = np.where(above > 0, self.cum_desc[np.maximum(above - 1, 0)], 0.0) / self.cum_desc[-1]
        fnir = self.fnir(np.ones((1, self.n_gallery)), t)
        out, seen = [], set()
        for point in zip(fpir.tolist(), fnir.tolist()):
            if point not in seen:
                seen.add(point)
                out.append([float(point[0]), float(point[1])])
        return out


@dataclass(eq=False)
class OpenSetResult:
    """Open-set identification on one encoder's features. When ``measurable`` is False only
    ``reason`` and the counts are set. Rates are in [0, 1]; thresholds are cosines."""

    measurable: bool
    reason: str | None
    n_identities: int
    n_enrol: int
    rank1: float | None = None
    rank1_ci95: list | None = None
    fnir_at_fpir: dict = field(default_factory=dict)
    fnir_ci95: dict = field(default_factory=dict)
    threshold_at_fpir: dict = field(default_factory=dict)
    not_measurable: list = field(default_factory=list)
    n_gallery_identities: int = 0
    n_nonmated_identities: int = 0
    n_mated_searches: int = 0
    n_nonmated_searches: int = 0
    n_eff_nonmated: float = 0.0
    det: list = field(default_factory=list)
    gallery_labels: np.ndarray = field(default=None, repr=False)    # labels enrolled
    nonmated_labels: np.ndarray = field(default=None, repr=False)   # labels never enrolled
    design_digest: str = ""
    seed: list = field(default_factory=list)
    n_boot: int = N_BOOT
    _stats: _SearchStats | None = field(default=None, repr=False)
    _draws: dict = field(default_factory=dict, repr=False)
    metric: str = "cosine"   # raw cosine, or the learned metric (metric.LEARNED_METRIC)

    def bootstrap_draws(self, seed, n_boot: int = N_BOOT) -> dict:
        """{"rank1": [n_boot], "fnir": {level: [n_boot]}} under the identity multiplicities of
        (gallery size, non-mated size, seed, n_boot); cached."""
        key = (tuple(seed_entropy(seed)), int(n_boot))
        if key not in self._draws:
            st = self._stats
            mg = identity_multipliers(st.n_gallery, seed, n_boot, _GALLERY_TAG)
            mn = identity_multipliers(st.n_nonmated, seed, n_boot, _NONMATED_TAG)
            fnir = {name: st.fnir(mg, st.thresholds(mn, level)) for name, level in FPIR_LEVELS.items()
                    if self.fnir_at_fpir.get(name) is not None}
            self._draws[key] = {"rank1": st.rank1(mg), "fnir": fnir}
        return self._draws[key]

    def to_result(self) -> R.OpenSet:
        """The report's ``open_set`` block (``result.OpenSet``; the measured fields only when measurable)."""
        out = R.OpenSet(measurable=bool(self.measurable), reason=self.reason,
                        n_identities=int(self.n_identities), n_enrol=int(self.n_enrol))
        if not self.measurable:
            return out
        return R.OpenSet(
            measurable=out.measurable, reason=out.reason, n_identities=out.n_identities, n_enrol=out.n_enrol,
            rank1=_r(self.rank1),
            rank1_ci95=[_r(v) for v in self.rank1_ci95],
            fnir_at_fpir={k: _r(v) for k, v in self.fnir_at_fpir.items()},
            fnir_ci95={k: None if v is None else [_r(v[0]), _r(v[1])] for k, v in self.fnir_ci95.items()},
            threshold_at_fpir={k: _r(v) for k, v in self.threshold_at_fpir.items()},
            not_measurable=list(self.not_measurable),
            n_gallery_identities=int(self.n_gallery_identities),
            n_nonmated_identities=int(self.n_nonmated_identities),
            n_mated_searches=int(self.n_mated_searches),
            n_nonmated_searches=int(self.n_nonmated_searches),
            metric=self.metric,
            det=[[float(f"{f:.6g}"), _r(v)] for f, v in self.det],
            protocol=(f"1:N open set: {self.n_gallery_identities} enrolled identities ({self.n_enrol} image(s) "
                      f"each, mean template), {self.n_nonmated_identities} never enrolled; rank-1 hit "
                      f"above the threshold set on non-mated searches"),
            ci_method=(f"identity-level bootstrap, {self.n_boot} draws (gallery and non-mated identities "
                       f"resampled separately, gallery fixed)"),
        )

    def to_json(self) -> dict:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())


def _design(y: np.ndarray, seed, n_enrol: int, nonmated_fraction: float):
    """The split, from the labels and seed alone: (gallery labels, non-mated labels, enrol
    indices [n_gallery, n_enrol], mated search indices, their gallery positions, non-mated search
    indices, their non-mated positions), or a reason string when it cannot be built."""
    classes, counts = np.unique(y, return_counts=True)
    K = classes.size
    if K < MIN_IDENTITIES:
        return (f"open-set identification needs >= {MIN_IDENTITIES} identities (at least 2 enrolled and 2 "
                f"never enrolled), got {K}")
    rng = np.random.default_rng(seed_entropy(seed) + [_DESIGN_TAG])
    perm = rng.permutation(K)
    n_nonmated = int(min(K - 2, max(2, round(K * nonmated_fraction))))
    eligible = counts >= n_enrol + 1          # an enrolled identity needs a mated search left over
    gallery = np.sort(np.array([c for c in perm if eligible[c]][: K - n_nonmated], dtype=np.int64))
    if gallery.size < 2:
        return (f"open-set identification needs >= 2 identities with >= {n_enrol + 1} images (n_enrol={n_enrol} "
                f"to enrol, one to search), got {int(eligible.sum())}; lower n_enrol or add images")
    nonmated = np.setdiff1d(np.arange(K), gallery)
    enrol, mated, mated_pos = [], [], []
    for pos, c in enumerate(gallery):
        members = np.flatnonzero(y == classes[c])
        chosen = np.sort(rng.choice(members, size=n_enrol, replace=False))
        rest = np.setdiff1d(members, chosen)
        enrol.append(chosen)
        mated.append(rest)
        mated_pos.append(np.full(rest.size, pos))
    nm_lookup = np.full(K, -1)
    nm_lookup[nonmated] = np.arange(nonmated.size)
    _, label_pos = np.unique(y, return_inverse=True)
    label_pos = label_pos.ravel()
    nm_search = np.flatnonzero(np.isin(label_pos, nonmated))
    return (classes[gallery], classes[nonmated], np.stack(enrol), np.concatenate(mated),
            np.concatenate(mated_pos), nm_search, nm_lookup[label_pos[nm_search]])


def _scores(rows, n_metrics: int, enrol: np.ndarray, search: np.ndarray, dev,
            which: np.ndarray | None = None) -> np.ndarray:
    """Cosine of each search image against each template (float64 [n_search, n_gallery]); a
    template is the renormalised mean of its enrolment rows. ``rows(m, idx)``: metric m's
    L2-normalised features of images ``idx``; ``which`` [n_search, n_gallery] picks the metric of
    each score (None: metric 0)."""
    out = None
    for m in range(n_metrics):
        if which is not None and not (which == m).any():
            continue
        T = rows(m, torch.from_numpy(enrol).to(dev)).mean(dim=1)
        T = T / T.norm(dim=1, keepdim=True).clamp_min(1e-12)           # [n_gallery, d]
        S = (rows(m, torch.from_numpy(search).to(dev)) @ T.T).double().cpu().numpy()
        out = S if out is None else np.where(which == m, S, out)
    return out


def open_set_identification(X, y, *, seed, n_enrol: int = 1, nonmated_fraction: float = 0.5,
                            device="cpu", n_boot: int = N_BOOT, metric="cosine") -> OpenSetResult | None:
    """Open-set 1:N identification with the protocol of the module docstring.

    ``metric``: "cosine" (raw cosine) or "learned" (``metric.CrossFitMetric``, a search scored
    against a template by the metric fitted on neither identity's fold; None when it cannot be fitted),
    or a ``CrossFitMetric`` already fitted on these rows.

    X : float [n, d] features of every image, y : int [n] identity labels. ``n_enrol`` images per
    enrolled identity form its template; ``nonmated_fraction`` of the identities (rounded, at least
    2, leaving at least 2 enrolled) are never enrolled. The split depends on (y, seed, n_enrol,
    nonmated_fraction) only. Fewer than MIN_IDENTITIES identities, or fewer than 2 with n_enrol + 1
    images, give a result with ``measurable`` False and the reason, not an exception.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be [n, d] with one label per row, got X {X.shape}, y {y.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf; drop or fix those images before open-set identification")
    if isinstance(n_enrol, bool) or int(n_enrol) != n_enrol or n_enrol < 1:
        raise ValueError(f"n_enrol must be an integer >= 1, got {n_enrol!r}")
    if not 0.0 < float(nonmated_fraction) < 1.0:
        raise ValueError(f"nonmated_fraction must be in (0, 1), got {nonmated_fraction}")
    if int(n_boot) < 100:
        raise ValueError(f"n_boot must be >= 100 for a 95% interval, got {n_boot}")
    n_enrol = int(n_enrol)
    entropy = seed_entropy(seed)
    y = y.astype(np.int64)
    K = int(np.unique(y).size)
    design = _design(y, entropy, n_enrol, float(nonmated_fraction))
    if isinstance(design, str):
        return OpenSetResult(measurable=False, reason=design, n_identities=K, n_enrol=n_enrol,
                             seed=entropy, n_boot=int(n_boot))
    gallery, nonmated, enrol, mated, mated_pos, nm_search, nm_pos = design

    dev = torch.device(device)
    if not isinstance(metric, str) or metric == "learned":
        from .metric import LEARNED_METRIC, CrossFitMetric

        classes, ids = np.unique(y, return_inverse=True)
        cf = metric if not isinstance(metric, str) else CrossFitMetric(X, ids.ravel(), classes.size, entropy,
                                                                        device=dev)
        if not cf.available:
            return None
        template_fold = cf.fold_of_identity[np.searchsorted(classes, gallery)]
        S = _scores(cf.rows, len(cf.Z), enrol, mated, dev, cf.pair_map[cf.fold[mated]][:, template_fold])
        S_nm = _scores(cf.rows, len(cf.Z), enrol, nm_search, dev, cf.pair_map[cf.fold[nm_search]][:, template_fold])
        metric_name = LEARNED_METRIC
    elif metric == "cosine":
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
        Xn = Xt / Xt.norm(dim=1, keepdim=True).clamp_min(1e-12)
        S = _scores(lambda m, idx: Xn[idx], 1, enrol, mated, dev)
        S_nm = _scores(lambda m, idx: Xn[idx], 1, enrol, nm_search, dev)
        metric_name = "cosine"
    else:
        raise ValueError(f"metric must be 'cosine' or 'learned', got {metric!r}")
    rows = np.arange(mated.size)
    true = S[rows, mated_pos]
    S[rows, mated_pos] = -np.inf
    rank1 = true > S.max(axis=1)
    hit = np.where(rank1, true, -np.inf)                                # -inf: never above a threshold
    top = S_nm.max(axis=1)

    st = _SearchStats(hit, rank1, mated_pos, gallery.size, top, nm_pos, nonmated.size)
    one_g, one_n = np.ones((1, gallery.size)), np.ones((1, nonmated.size))
    fnir, thresholds, not_measurable = {}, {}, []
    for name, level in FPIR_LEVELS.items():
        if st.n_eff_nonmated >= MIN_TAIL / level * (1.0 - _REL_TOL):
            t = st.thresholds(one_n, level)
            thresholds[name] = float(t[0]) if np.isfinite(t[0]) else None
            fnir[name] = float(st.fnir(one_g, t)[0])
        else:
            fnir[name] = thresholds[name] = None
            not_measurable.append(name)
    h = hashlib.sha256()
    for a in (gallery, nonmated, enrol, mated, mated_pos, nm_search, nm_pos):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes() + b"|")
    res = OpenSetResult(
        measurable=True, reason=None, n_identities=K, n_enrol=n_enrol,
        rank1=float(st.rank1(one_g)[0]), fnir_at_fpir=fnir, threshold_at_fpir=thresholds,
        not_measurable=not_measurable, n_gallery_identities=int(gallery.size),
        n_nonmated_identities=int(nonmated.size), n_mated_searches=int(mated.size),
        n_nonmated_searches=int(nm_search.size), n_eff_nonmated=st.n_eff_nonmated, det=st.det(),
        gallery_labels=gallery, nonmated_labels=nonmated, design_digest=h.hexdigest()[:32],
        seed=entropy, n_boot=int(n_boot), _stats=st, metric=metric_name)
    draws = res.bootstrap_draws(entropy, n_boot)
    res.rank1_ci95 = identity_bootstrap_interval(draws["rank1"], res.rank1, gallery.size)
    n_units = min(gallery.size, nonmated.size)
    res.fnir_ci95 = {name: (identity_bootstrap_interval(draws["fnir"][name], fnir[name], n_units)
                            if fnir[name] is not None else None) for name in FPIR_LEVELS}
    return res


def paired_open_set_test(model: OpenSetResult, floor: OpenSetResult, seed=0, *, n_boot: int = N_BOOT) -> dict:
    """Paired identity-level bootstrap of (model - floor) for rank-1 rate and FNIR at each FPIR.

    Both results must come from the same split (same labels, seed, n_enrol and nonmated_fraction:
    equal ``design_digest``). Returns ``rank1_delta``, ``rank1_ci95``, ``rank1_p_value``, ``se_rank1``,
    ``upper95_rank1`` (one-sided upper bound of the model's rank-1 gain) and, per FPIR level,
    ``fnir_delta`` (model - floor: negative when the model misses less), ``fnir_ci95``,
    ``fnir_p_value``, ``se_fnir`` and ``lower95_fnir`` (one-sided lower bound of the change, i.e.
    minus the upper bound of the model's FNIR gain), None where FPIR is not measurable. When either
    result is not measurable, ``measurable`` is False with the reason and no statistics.
    """
    for name, r in (("model", model), ("floor", floor)):
        if not isinstance(r, OpenSetResult):
            raise ValueError(f"{name} must be an OpenSetResult, got {type(r).__name__}")
    out = {"measurable": False, "reason": None, "rank1_delta": None, "rank1_ci95": None, "rank1_p_value": None,
           "se_rank1": None, "upper95_rank1": None, "fnir_delta": {}, "fnir_ci95": {}, "fnir_p_value": {},
           "se_fnir": {}, "lower95_fnir": {}, "n_boot": int(n_boot),
           "method": (f"paired identity-level bootstrap ({int(n_boot)} draws; gallery and non-mated identities "
                      f"resampled with their searches, the same draws for model and floor; two-sided p with the "
                      f"+1 correction)")}
    if not (model.measurable and floor.measurable):
        out["reason"] = model.reason if not model.measurable else floor.reason
        return out
    if model.design_digest != floor.design_digest:
        raise ValueError("model and floor were not evaluated on the same open-set split; run "
                         "open_set_identification on the same labels with the same seed and n_enrol for both")
    dm, df = model.bootstrap_draws(seed, n_boot), floor.bootstrap_draws(seed, n_boot)
    kg, kn = model.n_gallery_identities, model.n_nonmated_identities
    r1 = paired_summary(dm["rank1"], df["rank1"], model.rank1, floor.rank1, kg)
    out.update(measurable=True, rank1_delta=r1["delta"], rank1_ci95=r1["ci95"], rank1_p_value=r1["p_value"],
               se_rank1=r1["se"], upper95_rank1=r1["upper95"], n_gallery_identities=kg,
               n_nonmated_identities=kn)
    for name in FPIR_LEVELS:
        if model.fnir_at_fpir.get(name) is None or floor.fnir_at_fpir.get(name) is None:
            for key in ("fnir_delta", "fnir_ci95", "fnir_p_value", "se_fnir", "lower95_fnir"):
                out[key][name] = None
            continue
        f = paired_summary(dm["fnir"][name], df["fnir"][name], model.fnir_at_fpir[name],
                           floor.fnir_at_fpir[name], min(kg, kn))
        out["fnir_delta"][name] = f["delta"]
        out["fnir_ci95"][name] = f["ci95"]
        out["fnir_p_value"][name] = f["p_value"]
        out["se_fnir"][name] = f["se"]
        out["lower95_fnir"][name] = f["lower95"]
    return out
