"""The report's figures: learning curves and ROC curves as inline SVG strings.

Learning curve: balanced accuracy against labelled images per class (k, log2 axis), the model and
its floor each with a 95% CI band, the linear probe (full training split) as a marked point with an
error bar in the "all" column, the probe's threshold and chance as horizontal lines.
ROC: TAR against FAR (log axis) for the raw-embedding verifier, model against floor.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from ..result import CompareProbe, LinearProbe, Metrics, Probe, SweepProbe, Verification
from . import _fmt as F
from .svg import Chart

MODEL = "#1f5fbf"
FLOOR = "#7a7a7a"
A_COL = "#1f5fbf"
B_COL = "#d9480f"
A_FLOOR = "#8fb1e3"
B_FLOOR = "#f2a77e"
THRESH = "#c62828"
CHANCE = "#555555"

LC_XLABEL = "k labelled images per class (log2); all = linear probe on full train split"
Y_TICKS = [(i / 5, f"{20 * i}%") for i in range(6)]


def _curve(metrics: Metrics) -> tuple[list, list]:
    """(points [(u, acc)], band [(u, lo, hi)]) of the few-shot curve, u = log2(k)."""
    pts, band = [], []
    for k, row in F.few_shot_by_k(metrics).items():
        if k <= 0:
            continue
        u = math.log2(k)
        pts.append((u, row.accuracy if F.is_num(row.accuracy) else None))
        if row.ci95 is not None and len(row.ci95) == 2:
            band.append((u, row.ci95[0], row.ci95[1]))
        else:
            band.append((u, None, None))
    return pts, band


def _ks(*metrics: Metrics) -> list[int]:
    ks = sorted({k for m in metrics for k in F.few_shot_by_k(m) if k > 0})
    return ks or [1, 2, 4, 8, 16]


class _LCAxes:
    def __init__(self, ks: list[int]):
        self.ks = ks
        self.umin, self.umax = math.log2(ks[0]), math.log2(ks[-1])
        self.u_sep = self.umax + 0.7
        self.u_all = self.umax + 1.4
        self.x_range = (self.umin - 0.4, self.u_all + 0.5)
        self.x_ticks = [(math.log2(k), str(k)) for k in ks] + [(self.u_all, "all")]


def _has_lp(*metrics: Metrics) -> bool:
    return any(m.linear_probe is not None and F.is_num(m.linear_probe.accuracy) for m in metrics)


def _lp_point(chart: Chart, curve_pts: list, lp: Optional[LinearProbe], u: float, color: str, opacity: float = 1.0,
              connect: bool = True, dash: str = "5 4") -> None:
    if lp is None or not F.is_num(lp.accuracy):
        return
    acc, ci = lp.accuracy, lp.ci95
    if ci is not None and len(ci) == 2:
        chart.errorbar(u, ci[0], ci[1], color, opacity=opacity)
    last = next((p for p in reversed(curve_pts) if F.is_num(p[1])), None)
    if connect and last is not None:
        chart.line([last, (u, acc)], color, width=1.4, dash=dash, opacity=opacity, css="lp-link")
    chart.markers([(u, acc)], color, shape="diamond", opacity=opacity)


def _reference_lines(chart: Chart, probe: Probe) -> None:
    thr = F.threshold_accuracy(probe)
    chance = probe.chance
    chart.hline(thr, THRESH, dash="6 4", width=1.4, css="threshold")
    chart.hline(chance, CHANCE, dash="2 3", width=1.2, css="chance")
    if F.is_num(thr):
        chart.legend(f"threshold {F.pct(thr)}", THRESH, dash="6 4", width=1.4)
    if F.is_num(chance):
        chart.legend(f"chance {F.pct(chance)}", CHANCE, dash="2 3", width=1.2)


def _lc_chart(ax: _LCAxes, title: str, what: str, compared: str) -> Chart:
    """An empty learning-curve chart: balanced accuracy against k, the "all" column set apart."""
    chart = Chart(title=f"{title}: {what}", x_range=ax.x_range, y_range=(0.0, 1.0),
                  x_ticks=ax.x_ticks, y_ticks=Y_TICKS, x_label=LC_XLABEL,
                  y_label="balanced accuracy", css_class="plot learning-curve",
                  aria=f"{title}: balanced accuracy vs labelled images per class, {compared}")
    chart.vseparator(ax.u_sep)
    return chart


def learning_curve_svg(probe: Probe) -> str:
    """The audit learning curve of one probe result."""
    mm, fm = probe.metrics, probe.control.metrics
    ax = _LCAxes(_ks(mm, fm))
    chart = _lc_chart(ax, F.text(probe.title or probe.id), "learning curve", "model vs floor")
    chart.legend("model, 95% CI", MODEL, band=True, marker="circle", width=2.4)
    if fm:
        chart.legend("floor, 95% CI", FLOOR, band=True, marker="circle", width=2.0)
    if _has_lp(mm, fm):
        chart.legend("linear probe", "#333333", marker="diamond", dash="5 4", width=1.4)
    _reference_lines(chart, probe)
    m_pts, m_band = _curve(mm)
    f_pts, f_band = _curve(fm)
    chart.band(f_band, FLOOR)
    chart.band(m_band, MODEL)
    chart.line(f_pts, FLOOR, width=2.0, marker="circle", css="series floor")
    chart.line(m_pts, MODEL, width=2.4, marker="circle", css="series model")
    _lp_point(chart, f_pts, fm.linear_probe, ax.u_all + 0.12, FLOOR)
    _lp_point(chart, m_pts, mm.linear_probe, ax.u_all - 0.12, MODEL)
    return chart.render()


def compare_learning_curve_svg(cp: CompareProbe) -> str:
    """Both models' learning curves on one plot (floors drawn lightly)."""
    a, b = cp.a, cp.b
    ma, mb = a.metrics, b.metrics
    fa, fb = a.control.metrics, b.control.metrics
    ax = _LCAxes(_ks(ma, mb, fa, fb))
    chart = _lc_chart(ax, F.text(cp.title or cp.id), "learning curve, A vs B",
                      "model A vs model B")
    chart.legend("A, 95% CI", A_COL, band=True, marker="circle", width=2.4)
    chart.legend("B, 95% CI", B_COL, band=True, marker="circle", width=2.4)
    if fa:
        chart.legend("floor A", A_FLOOR, dash="4 3", width=1.4)
    if fb:
        chart.legend("floor B", B_FLOOR, dash="4 3", width=1.4)
    if _has_lp(ma, mb, fa, fb):
        chart.legend("linear probe", "#333333", marker="diamond", dash="5 4", width=1.4)
    _reference_lines(chart, b)
    fa_pts, _ = _curve(fa)
    fb_pts, _ = _curve(fb)
    a_pts, a_band = _curve(ma)
    b_pts, b_band = _curve(mb)
    chart.line(fa_pts, A_FLOOR, width=1.4, dash="4 3", css="series floor-a")
    chart.line(fb_pts, B_FLOOR, width=1.4, dash="4 3", css="series floor-b")
    chart.band(a_band, A_COL, opacity=0.15)
    chart.band(b_band, B_COL, opacity=0.15)
    chart.line(a_pts, A_COL, width=2.4, marker="circle", css="series model-a")
    chart.line(b_pts, B_COL, width=2.4, marker="circle", css="series model-b")
    _lp_point(chart, fa_pts, fa.linear_probe, ax.u_all + 0.1, A_FLOOR, connect=False)
    _lp_point(chart, fb_pts, fb.linear_probe, ax.u_all + 0.3, B_FLOOR, connect=False)
    _lp_point(chart, a_pts, ma.linear_probe, ax.u_all - 0.3, A_COL)
    _lp_point(chart, b_pts, mb.linear_probe, ax.u_all - 0.1, B_COL)
    return chart.render()


# --- ROC ---------------------------------------------------------------------------------

def _roc_points(verification: Optional[Verification]) -> list[tuple[float, float]]:
    """[(log10 FAR, TAR)] sorted by FAR, from ``roc`` or, failing that, the TAR@FAR table."""
    pts = []
    for row in (verification.roc if verification is not None else None) or []:
        if len(row) >= 2 and F.is_num(row[0]) and F.is_num(row[1]) \
                and row[0] > 0:
            pts.append((math.log10(row[0]), float(row[1])))
    if not pts:
        pts = _tar_points(verification)
    return sorted(set(pts))


def _tar_points(verification: Optional[Verification]) -> list[tuple[float, float]]:
    pts = []
    for far, tar in F.far_items(verification.tar_at_far if verification is not None else None):
        try:
            f = float(far)
        except (TypeError, ValueError):
            continue
        if f > 0 and F.is_num(tar):
            pts.append((math.log10(f), float(tar)))
    return sorted(pts)


def has_verification(probe: Probe) -> bool:
    return probe.metrics.verification is not None


def _roc_chart(title: str, aria: str, curves: list[tuple[Any, str]]) -> Chart:
    lows = [p[0] for v, _ in curves for p in _roc_points(v) + _tar_points(v)]
    lo = max(min([math.floor(x) for x in lows] + [-4]), -6)
    ticks = [(float(e), "1" if e == 0 else f"1e{e}") for e in range(lo, 1)]
    chart = Chart(title=title, x_range=(lo, 0.0), y_range=(0.0, 1.0), x_ticks=ticks, y_ticks=Y_TICKS,
                  x_label="false accept rate (FAR, log10)", y_label="true accept rate (TAR)",
                  css_class="plot roc", aria=aria)
    chart.curve(lambda u: 10 ** u, CHANCE, width=1.0, dash="2 3", css="chance")
    return chart


def _auc_label(name: str, verification: Optional[Verification]) -> str:
    auc = verification.auc if verification is not None else None
    return f"{name} (AUC {F.num(auc, 3)})" if F.is_num(auc) else name


def roc_svg(probe: Probe) -> str:
    mv = probe.metrics.verification
    fv = probe.control.metrics.verification
    title = F.text(probe.title or probe.id)
    chart = _roc_chart(f"{title}: verification ROC", f"{title}: verification ROC, model vs floor",
                       [(mv, MODEL), (fv, FLOOR)])
    chart.legend(_auc_label("model", mv), MODEL, width=2.4)
    if fv is not None:
        chart.legend(_auc_label("floor", fv), FLOOR, width=2.0)
    chart.legend("TAR at listed FAR", "#333333", marker="diamond", line=False)
    chart.legend("chance (TAR = FAR)", CHANCE, dash="2 3", width=1.0)
    chart.line(_roc_points(fv), FLOOR, width=2.0, css="series floor")
    chart.line(_roc_points(mv), MODEL, width=2.4, css="series model")
    chart.markers(_tar_points(fv), FLOOR, shape="diamond")
    chart.markers(_tar_points(mv), MODEL, shape="diamond")
    return chart.render()


def compare_has_verification(cp: CompareProbe) -> bool:
    return has_verification(cp.a) or has_verification(cp.b)


def compare_roc_svg(cp: CompareProbe) -> str:
    va, vb = cp.a.metrics.verification, cp.b.metrics.verification
    fa, fb = cp.a.control.metrics.verification, cp.b.control.metrics.verification
    title = F.text(cp.title or cp.id)
    chart = _roc_chart(f"{title}: verification ROC, A vs B",
                       f"{title}: verification ROC, model A vs model B",
                       [(va, A_COL), (vb, B_COL), (fa, A_FLOOR), (fb, B_FLOOR)])
    chart.legend(_auc_label("A", va), A_COL, width=2.4)
    chart.legend(_auc_label("B", vb), B_COL, width=2.4)
    if fa is not None:
        chart.legend(_auc_label("floor A", fa), A_FLOOR, dash="4 3", width=1.4)
    if fb is not None:
        chart.legend(_auc_label("floor B", fb), B_FLOOR, dash="4 3", width=1.4)
    chart.legend("chance", CHANCE, dash="2 3", width=1.0)
    chart.line(_roc_points(fa), A_FLOOR, width=1.4, dash="4 3", css="series floor-a")
    chart.line(_roc_points(fb), B_FLOOR, width=1.4, dash="4 3", css="series floor-b")
    chart.line(_roc_points(va), A_COL, width=2.4, css="series model-a")
    chart.line(_roc_points(vb), B_COL, width=2.4, css="series model-b")
    chart.markers(_tar_points(va), A_COL, shape="diamond")
    chart.markers(_tar_points(vb), B_COL, shape="diamond")
    return chart.render()


# --- cost to repurpose -------------------------------------------------------------------

PALETTE = ("#1f5fbf", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#0b7285", "#e67700", "#495057")
SKILL_TICKS = [(i / 4, f"{i / 4:.2f}") for i in range(5)]


def _skill_range(values: list) -> tuple[float, list]:
    """(lowest y, ticks) of a skill axis that reaches 1.0 and shows negative skill when there is any."""
    lows = [v for v in values if F.is_num(v)]
    ymin = min([0.0] + [max(math.floor(v * 4) / 4, -1.0) for v in lows])
    ticks = [(i / 4, f"{i / 4:.2f}") for i in range(int(round(ymin * 4)), 5)]
    return ymin, ticks


def cost_svg(probe: Probe) -> str:
    """Skill of each adversary against labelled images per class (log2 axis; "all" = fitted on the
    whole training split), error bars where the result gives a 95% CI."""
    chance = probe.chance
    pts = [p for p in F.cost_points(probe) if F.is_num(F.skill_of(p.accuracy, chance))]
    ks = sorted({p.k for p in pts if p.k is not None and p.k > 0}) or [1, 2, 4, 8, 16]
    ax = _LCAxes(ks)
    title = F.text(probe.title or probe.id)
    values = [F.skill_of(p.accuracy, chance) for p in pts]
    values += [x for p in pts for x in (F.skill_ci_of(p.ci95, chance) or [])]
    ymin, ticks = _skill_range(values)
    chart = Chart(title=f"{title}: cost to repurpose", x_range=ax.x_range, y_range=(ymin, 1.0),
                  x_ticks=ax.x_ticks, y_ticks=ticks,
                  x_label="k labelled images per class (log2); all = fitted on the full train split",
                  y_label="skill", css_class="plot cost",
                  aria=f"{title}: skill of each adversary vs labelled images per class")
    chart.vseparator(ax.u_sep)
    adversaries = F.ordered_unique(p.adversary for p in pts)
    thr = probe.threshold.skill if probe.threshold else None
    chart.hline(thr, THRESH, dash="6 4", width=1.4, css="threshold")
    if F.is_num(thr):
        chart.legend(f"threshold skill {F.num(thr, 2)}", THRESH, dash="6 4", width=1.4)
    n = max(len(adversaries), 1)
    for i, name in enumerate(adversaries):
        color = PALETTE[i % len(PALETTE)]
        mine = [p for p in pts if p.adversary == name]
        curve = sorted((math.log2(p.k), F.skill_of(p.accuracy, chance)) for p in mine
                       if p.k is not None and p.k > 0)
        chart.line(curve, color, width=2.0, marker="circle", css="series adversary")
        u_all = ax.u_all + 0.5 * (i - (n - 1) / 2) / n     # spread the "all" column's points
        for p in mine:
            u = math.log2(p.k) if p.k is not None and p.k > 0 else u_all
            ci = F.skill_ci_of(p.ci95, chance)
            if ci:
                chart.errorbar(u, ci[0], ci[1], color)
            if p.k is None:
                chart.markers([(u, F.skill_of(p.accuracy, chance))], color, shape="diamond")
        chart.legend(name, color, marker="circle", width=2.0)
    return chart.render()


# --- sweep trajectory --------------------------------------------------------------------

RISE = "#c62828"


def checkpoint_axis(models: list, n: int, order: Any = "given") -> tuple[list, str]:
    """(x ticks, x label) of a sweep plot: with ``--order step`` the training steps, else each
    model's position in the order given (``models``: the sweep's models in checkpoint order)."""
    ms = [F.nth(models, i) for i in range(n)]
    steps = [m.step if m is not None else None for m in ms]
    if order == "step" and all(s is not None for s in steps):
        return [(float(i), F.count(s)) for i, s in enumerate(steps)], "training step (checkpoints in step order)"
    ticks = [(float(i), F.num(m.order) if m is not None and m.order is not None else str(i)) for i, m in enumerate(ms)]
    return ticks, "checkpoint (position in the order given)"


def verification_decides(sweep_probe: SweepProbe) -> bool:
    """Whether verification (TAR at a FAR) decided the level of any checkpoint."""
    return any("verification" in str(p.risk_rule or "").lower() for p in sweep_probe.per_model)


def _tar(verification: Optional[Verification], far: str) -> Any:
    return verification.tar_at_far.get(far) if verification is not None else None


def trajectory_tar_svg(sweep_probe: SweepProbe, models: list, order: Any = "given") -> str:
    """Verification TAR at the rule's FAR (model, 95% CI band, and floor) against checkpoint order."""
    per_model = sweep_probe.per_model
    n = max(len(per_model), 1)
    rules = per_model[0].rules if per_model else None
    far = str((rules.verification_far if rules else None) or "1e-3")
    tar = [_tar(p.metrics.verification, far) for p in per_model]
    ci = [(p.metrics.verification.tar_ci95 or {}).get(far) if p.metrics.verification is not None else None
          for p in per_model]
    floor = [_tar(p.control.metrics.verification, far) for p in per_model]
    x_ticks, x_label = checkpoint_axis(models, n, order)
    title = F.text(sweep_probe.title or sweep_probe.id)
    chart = Chart(title=f"Verification TAR at FAR {far} across checkpoints", x_range=(-0.5, n - 0.5),
                  y_range=(0.0, 1.0), x_ticks=x_ticks, y_ticks=Y_TICKS, x_label=x_label,
                  y_label=f"TAR at FAR {far}", css_class="plot trajectory-tar",
                  aria=f"{title}: verification TAR at FAR {far} against checkpoint order")
    chart.legend("model TAR, 95% CI", MODEL, band=True, marker="circle", width=2.4)
    chart.legend("floor TAR", FLOOR, dash="4 3", width=1.6)
    crit = rules.verification_tar_critical if rules else None
    chart.hline(crit, THRESH, dash="6 4", width=1.4, css="threshold")
    if F.is_num(crit):
        chart.legend(f"critical at TAR {F.num(crit, 2)} (CI lower bound)", THRESH, dash="6 4", width=1.4)
    chart.band([(i, c[0], c[1]) if F.is_ci(c) else (i, None, None) for i, c in enumerate(ci)], MODEL)
    chart.line(list(enumerate(floor)), FLOOR, width=1.6, dash="4 3", css="series floor")
    chart.line(list(enumerate(tar)), MODEL, width=2.4, marker="circle", css="series model")
    return chart.render()


def trajectory_svg(sweep_probe: SweepProbe, models: list, order: Any = "given") -> str:
    """One probe's headline skill (capability axis, 95% CI band) against checkpoint order, the
    floor's skill dashed, the threshold, and a red rule before each checkpoint where the level rose.

    sweep_probe: a sweep report's probe (``per_model`` in the order of ``models``, ``steps``).
    """
    per_model = sweep_probe.per_model
    n = max(len(per_model), 1)
    heads = [F.headline_skill(p) for p in per_model]
    floors = [p.uplift.skill_floor if p.uplift else None for p in per_model]
    values = [h.skill for h in heads] + [x for h in heads for x in (h.ci95 or [])] + floors
    ymin, ticks = _skill_range(values)
    x_ticks, x_label = checkpoint_axis(models, n, order)
    title = F.text(sweep_probe.title or sweep_probe.id)
    chart = Chart(title=f"{title}: skill across checkpoints", x_range=(-0.5, n - 0.5),
                  y_range=(ymin, 1.0), x_ticks=x_ticks, y_ticks=ticks,
                  x_label=x_label, y_label="skill",
                  css_class="plot trajectory",
                  aria=f"{title}: headline skill with 95% CI against checkpoint order")
    chart.legend("model best skill, 95% CI", MODEL, band=True, marker="circle", width=2.4)
    if any(F.is_num(f) for f in floors):
        chart.legend("floor skill", FLOOR, dash="4 3", width=1.6)
    thr = per_model[0].threshold.skill if per_model and per_model[0].threshold else None
    chart.hline(thr, THRESH, dash="6 4", width=1.4, css="threshold")
    if F.is_num(thr):
        chart.legend(f"threshold skill {F.num(thr, 2)}", THRESH, dash="6 4", width=1.4)
    rises = [to for to, st in F.sweep_steps(sweep_probe).items() if st.level_rose is True]
    for to in rises:
        chart.vline(to - 0.5, RISE, dash="3 3", width=1.6, css="level-rise")
    if rises:
        chart.legend("level rose", RISE, dash="3 3", width=1.6)
    chart.band([(i, (h.ci95 or [None, None])[0], (h.ci95 or [None, None])[1])
                for i, h in enumerate(heads)], MODEL)
    chart.line([(i, f) for i, f in enumerate(floors)], FLOOR, width=1.6, dash="4 3", css="series floor")
    chart.line([(i, h.skill) for i, h in enumerate(heads)], MODEL, width=2.4, marker="circle",
               css="series model")
    chart.markers([(to, heads[to].skill) for to in rises if 0 <= to < len(heads)], RISE, shape="square")
    return chart.render()
