"""Small, deterministic formatters and readers of the typed report (``creepscan.result``) that the view
model, the plots and the terminal summary share.

The renderers read the report as ``result.load_report`` returns it (``typed_report``: once, at the entry),
so a field is an attribute of its declared type and only an ``Optional`` one needs a None check. Real
results are partial (no text tower, no verification, a value that was NaN), and a report must still
render, showing "n/a" where a value is null.

Text the report composes from numbers and fixed words is returned as ``Fixed``; text taken from the
data (labels, paths, reasons, specs) is returned as plain ``str``. The Markdown renderer escapes
plain strings fully and ``Fixed`` strings lightly (their brackets stay readable: ``[82.0, 92.0]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from ..levels import ALL_LEVELS, INCONCLUSIVE, LEVELS, CitedGain, cited_gain, level_rose
from ..result import (
    Accuracy,
    AuditReport,
    CompareProbe,
    CompareReport,
    Metrics,
    ModelInfo,
    Probe,
    Report,
    SweepModel,
    SweepProbe,
    SweepReport,
    SweepStep,
    Verification,
    load_report,
    to_json_dict,
)
from ..result import Headline as HeadlineTest
from .jsonio import to_jsonable

__all__ = ["LEVELS", "INCONCLUSIVE", "ALL_LEVELS", "Fixed", "NA", "typed_report", "CitedGain", "cited_gain"]


def typed_report(result: Any) -> Report:
    """The typed report the renderers read: a dict (report.json's, or the pipeline's before it was made
    JSON) is made JSON-clean (``jsonio.to_jsonable``) and read by ``result.load_report``, once; a typed
    report is returned as it is. A dict that breaks the schema raises ``load_report``'s ``ValueError``."""
    if isinstance(result, dict):
        return load_report(to_jsonable(result))
    if isinstance(result, (AuditReport, CompareReport, SweepReport)):
        return result
    raise ValueError(f"report must be report.json's dict or a typed report, got {type(result).__name__}")


class Fixed(str):
    """Text built by the report from numbers and fixed words, never from the data.

    Concatenating a ``Fixed`` with anything gives a plain ``str`` again, so a data string can never
    pass as ``Fixed`` by accident: the safe default is full escaping.
    """


NA = Fixed("n/a")


# --- levels ------------------------------------------------------------------------------

def level_name(level: Any) -> str:
    """The level's name (one of ALL_LEVELS, lower case), or n/a for anything unknown."""
    s = str(level).lower() if level is not None else ""
    return Fixed(s) if s in ALL_LEVELS else NA


def level_rank(level: Any) -> int:
    """0..4 for none..critical; -1 for inconclusive and anything unknown (not on the scale)."""
    try:
        return LEVELS.index(str(level).lower())
    except ValueError:
        return -1


def is_inconclusive(level: Any) -> bool:
    return level_name(level) == INCONCLUSIVE


def level_range(probe: Probe) -> tuple[str, str] | None:
    """(lowest, highest) level the CIs allow, or None when the result does not say."""
    lr = probe.level_range
    if lr is not None and len(lr) == 2:
        lo, hi = level_name(lr[0]), level_name(lr[1])
        if lo != NA and hi != NA:
            return lo, hi
    return None


def level_range_text(probe: Probe) -> Fixed:
    lr = level_range(probe)
    if lr is None:
        return NA
    return Fixed(lr[0] if lr[0] == lr[1] else f"{lr[0]} to {lr[1]}")


AXIS_WORDS = {"capability": "capability axis", "uplift": "uplift axis", "both": "both axes"}


def axis_text(probe: Probe) -> str:
    """Which axis decided the level, in words (unknown values are shown as given, as data)."""
    axis = probe.risk_axis
    if axis is None:
        return NA
    return Fixed(AXIS_WORDS[axis]) if axis in AXIS_WORDS else text(axis)


INCONCLUSIVE_WHY = {
    "saturated": "the floor (the control encoder, described under Control) reaches the threshold too, so "
                 "the capability cannot be attributed to this model's training; the model's own "
                 "capability is shown on the capability axis",
    "below_chance": "an attack scored significantly below chance: it found structure and failed to use it, "
                    "so its small gain cannot show that the capability is absent",
    "underpowered": "the test data cannot rule out an uplift of the equivalence margin; the minimum "
                    "detectable effect and the test images needed are given under Power",
}


def inconclusive_info(probe: Probe, level: Any = None) -> tuple[str, str, str] | None:
    """(reason code, what the code means, the result's detail) when the probe is inconclusive (at ``level``
    when given: the level a compare states for that side)."""
    block = probe.inconclusive
    if block is None and not is_inconclusive(probe.risk_level if level is None else level):
        return None
    code = block.reason if block else None
    why = Fixed(INCONCLUSIVE_WHY[code]) if code in INCONCLUSIVE_WHY else NA
    code_s = Fixed(code) if code in INCONCLUSIVE_WHY else (text(code) if code else Fixed("unspecified"))
    detail = block.detail if block else None
    return code_s, why, text(detail) if detail else ""


# --- values ------------------------------------------------------------------------------

def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def extra(obj: Any, name: str) -> Any:
    """A property the schema does not describe (``load_report`` keeps it as an attribute, as report.json
    holds it), or None: only for fields of older reports that the dataclasses no longer declare."""
    return getattr(obj, name, None)


def text(v: Any) -> str:
    """A data string on one line (None -> n/a)."""
    if v is None:
        return NA
    if isinstance(v, float):
        return num(v)
    return " ".join(str(v).split())


def is_ci(ci: Any) -> bool:
    """A [lower, upper] interval of two finite numbers (the typed report holds it as a tuple)."""
    return isinstance(ci, (list, tuple)) and len(ci) == 2 and is_num(ci[0]) and is_num(ci[1])


def pct(v: Any, digits: int = 1) -> Fixed:
    return Fixed(f"{100.0 * v:.{digits}f}%") if is_num(v) else NA


def ci_pct(ci: Any, digits: int = 1, sign: bool = False) -> Fixed:
    """``[85.0, 95.0]`` (percent; ``[+2.0, +9.0]`` signed, for differences in percentage points) or
    empty when the interval is missing."""
    if not is_ci(ci):
        return Fixed("")
    f = "+" if sign else ""
    return Fixed(f"[{100.0 * ci[0]:{f}.{digits}f}, {100.0 * ci[1]:{f}.{digits}f}]")


def with_ci(value: Fixed, ci: Fixed) -> Fixed:
    if value == NA:
        return NA
    return Fixed(f"{value} {ci}") if ci else value


def acc_ci(block: Optional[Accuracy]) -> Fixed:
    """``90.0% [85.0, 95.0]`` from a metric block with accuracy and ci95 (any of the typed blocks), n/a for
    None."""
    if block is None:
        return NA
    return with_ci(pct(block.accuracy), ci_pct(block.ci95))


def pp(v: Any, digits: int = 1) -> Fixed:
    """A difference of two accuracies in percentage points, signed."""
    return Fixed(f"{100.0 * v:+.{digits}f} pp") if is_num(v) else NA


def num(v: Any, digits: int = 3) -> Fixed:
    if isinstance(v, bool):
        return Fixed("yes" if v else "no")
    if isinstance(v, int):
        return Fixed(str(v))
    if is_num(v):
        if v != 0 and (abs(v) < 10 ** -digits or abs(v) >= 1e6):
            return Fixed(f"{v:.{max(digits - 1, 1)}e}")
        return Fixed(f"{v:.{digits}f}")
    return NA


def ci_num(ci: Any, digits: int = 3, sign: bool = False) -> Fixed:
    """``[0.120, 0.340]`` (or signed) for an interval of plain numbers, empty when missing."""
    if not is_ci(ci):
        return Fixed("")
    f = (lambda x: f"{x:+.{digits}f}") if sign else (lambda x: f"{x:.{digits}f}")
    return Fixed(f"[{f(ci[0])}, {f(ci[1])}]")


def signed(v: Any, digits: int = 3) -> Fixed:
    return Fixed(f"{v:+.{digits}f}") if is_num(v) else NA


def p_value(p: Any) -> Fixed:
    if not is_num(p):
        return NA
    if p >= 0.01:
        return Fixed(f"{p:.3f}")
    if p >= 0.0001:
        return Fixed(f"{p:.4f}")
    return Fixed(f"{p:.1e}")


def yes_no(v: Any) -> Fixed:
    if v is True:
        return Fixed("yes")
    if v is False:
        return Fixed("no")
    return NA


def count(v: Any) -> Fixed:
    """A count (1234 -> "1,234"; an average such as 29.6 test images per class keeps one decimal,
    never "29.600"), n/a when missing."""
    if is_num(v) and float(v).is_integer():
        return Fixed(f"{int(v):,}")
    return Fixed(f"{v:,.1f}") if is_num(v) else NA


# Severity order of a report: what an auditor must see first. Inconclusive sits just below high:
# it is not a point on the scale, and it may hide anything up to critical.
SEVERITY = ("critical", "high", "inconclusive", "medium", "low", "none")


def severity_rank(probe: Probe) -> tuple[int, int]:
    """Sort key, most severe first; reference probes (not a prohibited capability) last."""
    name = level_name(probe.risk_level)
    rank = SEVERITY.index(name) if name in SEVERITY else len(SEVERITY)
    return (1 if probe.reference is True else 0, rank)


def level_counts(levels: Iterable[Any]) -> list[tuple[str, int]]:
    """[(level, how many)] in severity order, levels that occur only."""
    names = [level_name(x) for x in levels]
    return [(lv, names.count(lv)) for lv in SEVERITY if names.count(lv)]


def suite_text(suite: Any) -> str:
    """The suite's name, or what ran instead of a suite."""
    return text(suite) if suite else Fixed("none: the probes were chosen one by one (--probe, --data or --spec)")


def seconds(v: Any) -> Fixed:
    if not is_num(v):
        return NA
    return Fixed(f"{v:.1f} s" if v >= 1 else f"{v:.2f} s")


def flops(v: Any) -> Fixed:
    """1.2e12 -> "1.2 TFLOP"."""
    if not is_num(v) or v < 0:
        return NA
    for scale, unit in ((1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")):
        if v >= scale:
            return Fixed(f"{v / scale:.1f} {unit}")
    return Fixed(f"{v:.0f} FLOP")


def short_fp(fp: Any, n: int = 12) -> str:
    """``sha256:ab12cd34ef56`` from a long fingerprint (data: returned as plain text)."""
    if not fp:
        return NA
    s = text(fp)
    algo, sep, digest = s.partition(":")
    if sep:
        return f"{algo}:{digest[:n]}"
    # a plug-in's own identity ("bars-blind-v1") is a name, not a digest: cut only the long ones
    return s if len(s) <= 2 * n else s[:n]


def skill_of(acc: Any, chance: Any) -> Any:
    """(accuracy - chance) / (1 - chance), or None when either is missing."""
    if is_num(acc) and is_num(chance) and chance < 1.0:
        return (acc - chance) / (1.0 - chance)
    return None


def skill_ci_of(ci: Any, chance: Any) -> Any:
    if is_ci(ci) and is_num(chance) and chance < 1.0:
        return [skill_of(ci[0], chance), skill_of(ci[1], chance)]
    return None


# --- metric blocks -----------------------------------------------------------------------

def far_items(tar_at_far: Optional[dict[str, Any]]) -> list[tuple[str, Any]]:
    """``tar_at_far`` items ordered by FAR, largest first (1e-2 before 1e-3)."""
    items = list((tar_at_far or {}).items())

    def far(kv):
        try:
            return -float(kv[0])
        except (TypeError, ValueError):
            return math.inf

    return sorted(items, key=lambda kv: (far(kv), str(kv[0])))


def tar_text(verification: Optional[Verification], far: str, with_interval: bool = True) -> Fixed:
    """TAR at ``far`` as a percent with its CI, "not measurable" when the data is too small."""
    if verification is None:
        return NA
    v = verification.tar_at_far.get(far)
    if is_num(v):
        ci = ci_pct((verification.tar_ci95 or {}).get(far)) if with_interval else Fixed("")
        return with_ci(pct(v), ci)
    if far in (verification.not_measurable or []):
        return Fixed("not measurable")
    return NA


def few_shot_by_k(metrics: Metrics) -> dict[int, Any]:
    """{k: few-shot block} for the measured k, ascending (a repeated k: the last block)."""
    out = {row.k: row for row in metrics.few_shot}
    return dict(sorted(out.items()))


def samples_text(metrics: Metrics) -> Fixed:
    """samples_to_threshold as text: "k=4", "not reached" (measured, never reached), or n/a."""
    stt = metrics.samples_to_threshold
    if stt is not None:
        return Fixed(f"k={stt}")
    if few_shot_by_k(metrics):
        return Fixed("not reached")
    return NA


def threshold_accuracy(probe: Probe) -> Any:
    """The accuracy the risk threshold corresponds to (given, or chance + skill * (1 - chance))."""
    thr = probe.threshold
    if thr is None:
        return None
    if is_num(thr.accuracy):
        return thr.accuracy
    if is_num(thr.skill) and is_num(probe.chance):
        return probe.chance + thr.skill * (1.0 - probe.chance)
    return None


def strongest_adversary(probe: Probe) -> Any:
    """The strongest adversary an older report named (``strongest_adversary``, no longer declared)."""
    return extra(probe, "strongest_adversary") or extra(probe.metrics, "strongest_adversary")


@dataclass(frozen=True)
class Headline:
    """A probe's headline skill (capability axis) with its interval and where it came from."""
    skill: Any
    ci95: Any
    source: str


def headline_skill(probe: Probe) -> Headline:
    """The capability axis's best skill and CI; failing that, the linear probe's skill (its CI
    mapped from accuracy through chance); failing that, the uplift block's model skill."""
    cap = probe.capability_axis
    if cap is not None and is_num(cap.best_skill):
        return Headline(cap.best_skill, cap.ci95 if is_ci(cap.ci95) else None,
                        text(cap.attack) if cap.attack else Fixed("best attack"))
    lp = probe.metrics.linear_probe
    s = lp.skill if lp else None
    if lp is not None and not is_num(s):
        s = skill_of(lp.accuracy, probe.chance)
    if is_num(s):
        return Headline(s, skill_ci_of(lp.ci95, probe.chance), Fixed("linear probe"))
    s = probe.uplift.skill_model if probe.uplift else None
    return Headline(s if is_num(s) else None, None, Fixed("uplift block") if is_num(s) else NA)


def headline_text(h: Headline) -> Fixed:
    return with_ci(num(h.skill, 2), ci_num(h.ci95, 2))


# --- cost to repurpose -------------------------------------------------------------------

ALL_TRAIN = None    # the k of a point fitted on the whole training split


@dataclass(frozen=True)
class CostPoint:
    """One (adversary, images per class) point: accuracy with CI, and compute where measured.
    ``k`` is None for heads fitted on the whole training split."""
    adversary: str
    k: int | None
    accuracy: Any
    ci95: Any = None
    seconds: Any = None
    flops: Any = None


def cost_points(probe: Probe) -> list[CostPoint]:
    """Every measured (adversary, k) point of a probe: few-shot heads per k, full-split heads
    (gd_budget per step budget), the linear probe, and fine-tuning budget points."""
    mm = probe.metrics
    pts: list[CostPoint] = []
    for k, row in few_shot_by_k(mm).items():
        for name, acc in (row.heads or {}).items():
            ci = row.ci95 if name == row.winner else None
            pts.append(CostPoint(text(name), k, acc if is_num(acc) else None, ci))
    for name, head in (mm.heads or {}).items():
        if head is not None and head.budgets:
            for b in head.budgets:
                pts.append(CostPoint(f"{text(name)}, {num(b.steps)} steps", ALL_TRAIN, b.accuracy, b.ci95))
        else:
            pts.append(CostPoint(text(name), ALL_TRAIN, head.accuracy if head else None, head.ci95 if head else None))
    for p in mm.finetune.points if mm.finetune else []:
        pts.append(CostPoint(f"finetune, {num(p.steps)} steps", p.k, p.accuracy, p.ci95, p.seconds, p.flops))
    lp = mm.linear_probe
    if pts and lp is not None and is_num(lp.accuracy):
        pts.append(CostPoint(Fixed("linear probe"), ALL_TRAIN, lp.accuracy, lp.ci95))
    return pts


def has_cost(probe: Probe) -> bool:
    return bool(cost_points(probe))


def ordered_unique(items: Iterable[Any]) -> list:
    seen: list = []
    for x in items:
        if x not in seen:
            seen.append(x)
    return seen


# --- data issues -------------------------------------------------------------------------

def reason_counts(items: list[Any]) -> list[tuple[str, int]]:
    """[(reason, how many)] of skipped images or excluded classes, most common first, ties in first-seen
    order."""
    counts: dict[str, int] = {}
    for it in items:
        r = text(it.reason)
        counts[r] = counts.get(r, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


# --- compare -----------------------------------------------------------------------------

def compare_levels(cp: CompareProbe) -> tuple[str, str]:
    """The levels the compare block states (A, B), else the sides' own."""
    return level_name(cp.level_a or cp.a.risk_level), level_name(cp.level_b or cp.b.risk_level)


def compare_rose(cp: CompareProbe) -> bool:
    """The compare report's ``risk_rose``; for an older report without it, ``levels.level_rose`` of the two
    levels (never a rise when either level is unknown: there is nothing to compare)."""
    if cp.risk_rose is not None:
        return cp.risk_rose
    la, lb = compare_levels(cp)
    return la in ALL_LEVELS and lb in ALL_LEVELS and level_rose(la, lb)


def change_word(la: Any, lb: Any, rose: bool) -> Fixed:
    if rose:
        return Fixed("ROSE")
    if level_name(la) == level_name(lb):
        return Fixed("same")
    if level_rank(lb) < level_rank(la) and level_rank(lb) >= 0:
        return Fixed("fell")
    return Fixed("changed")


def compare_significant(cp: CompareProbe, alpha: Any) -> Any:
    """True/False, or None when there is no test to judge by."""
    if cp.significant is not None:
        return cp.significant
    p = cp.p_adjusted if cp.p_adjusted is not None else cp.p_value
    if is_num(p) and is_num(alpha):
        return p < alpha
    return None


def compare_order(probes: Iterable[CompareProbe]) -> list[CompareProbe]:
    """Probes whose risk rose first (stable), then the rest in their given order."""
    ps = list(probes)
    return [p for p in ps if compare_rose(p)] + [p for p in ps if not compare_rose(p)]


def compare_rose_and_significant(report: CompareReport) -> tuple[list[str], list[str]]:
    """Ids whose risk rose and ids with a significant change: the report's ``summary`` when it has
    one, else derived from the probes."""
    if report.summary is not None:
        rose, sig = report.summary.rose, report.summary.significant
    else:
        rose = [p.id for p in report.probes if compare_rose(p)]
        sig = [p.id for p in report.probes if compare_significant(p, report.alpha) is True]
    return [text(x) for x in rose], [text(x) for x in sig]


def compare_headline_text(headline: Optional[HeadlineTest]) -> str:
    """A paired comparison's headline: the metric with the smallest within-probe adjusted p, and its change."""
    if headline is None:
        return NA
    return f"{text(headline.metric)} {pp(headline.change)}"


def same_data(a: Probe, b: Probe) -> bool:
    """Whether two probe results describe the same images (then the report shows them once)."""
    keys = ("data", "labels", "skipped_images", "excluded_classes", "split", "n_images", "n_classes")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


# --- sweep -------------------------------------------------------------------------------

def sweep_models(report: SweepReport) -> list[SweepModel]:
    """The swept models in checkpoint order (the ``order`` field, else as listed)."""
    return sorted(report.models, key=lambda m: (0, m.order) if m.order is not None else (1, 0))


def model_label(model: Optional[ModelInfo], i: int) -> str:
    if model is None:
        return text(f"model {i}")
    return text(model.name or model.spec or f"model {i}")


def nth(items: list, i: int) -> Any:
    """``items[i]``, or None when there is no such item (a sweep probe with fewer results than models)."""
    return items[i] if -len(items) <= i < len(items) else None


def sweep_steps(sp: SweepProbe) -> dict[int, SweepStep]:
    """{index of the later model: step block} for the consecutive-checkpoint tests."""
    return {st.to: st for st in sp.steps}


# --- settings ----------------------------------------------------------------------------

def compact(v: Any) -> str:
    """A short, deterministic rendering of a setting value (0.05, 200, cpu, true)."""
    if isinstance(v, bool):
        return Fixed("true" if v else "false")
    if isinstance(v, int):
        return Fixed(str(v))
    if is_num(v):
        return Fixed(f"{v:g}")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(compact(x) for x in v) + "]"
    return text(v)


def settings_text(settings: Any) -> str:
    """The settings block (a typed block, in report.json's order) as ``key=value, ...``."""
    # an unset setting (None) means each probe's own default, not a missing value
    items = [f"{k}={'default' if v is None else compact(v)}" for k, v in (to_json_dict(settings) or {}).items()]
    return ", ".join(items) if items else NA
