"""Small, deterministic accessors and formatters that the view model, the plots and the terminal
summary share.

Every accessor tolerates missing keys and nulls: real results are partial (no text tower, no
verification, a probe that could not run), and a report must still render, showing "n/a".

Text the report composes from numbers and fixed words is returned as ``Fixed``; text taken from the
data (labels, paths, reasons, specs) is returned as plain ``str``. The Markdown renderer escapes
plain strings fully and ``Fixed`` strings lightly (their brackets stay readable: ``[82.0, 92.0]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from ..levels import ALL_LEVELS, INCONCLUSIVE, LEVELS, level_rose

__all__ = ["LEVELS", "INCONCLUSIVE", "ALL_LEVELS", "Fixed", "NA"]


class Fixed(str):
    """Text built by the report from numbers and fixed words, never from the data.

    Concatenating a ``Fixed`` with anything gives a plain ``str`` again, so a data string can never
    pass as ``Fixed`` by accident: the safe default is full escaping.
    """


NA = Fixed("n/a")


def fixed(s: str) -> Fixed:
    return Fixed(s)


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


def level_range(probe: Any) -> tuple[str, str] | None:
    """(lowest, highest) level the CIs allow, or None when the result does not say."""
    lr = get(probe, "level_range")
    if isinstance(lr, list) and len(lr) == 2:
        lo, hi = level_name(lr[0]), level_name(lr[1])
        if lo != NA and hi != NA:
            return lo, hi
    return None


def level_range_text(probe: Any) -> Fixed:
    lr = level_range(probe)
    if lr is None:
        return NA
    return Fixed(lr[0] if lr[0] == lr[1] else f"{lr[0]} to {lr[1]}")


AXIS_WORDS = {"capability": "capability axis", "uplift": "uplift axis", "both": "both axes"}


def axis_text(probe: Any) -> str:
    """Which axis decided the level, in words (unknown values are shown as given, as data)."""
    axis = get(probe, "risk_axis")
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


def inconclusive_info(probe: Any) -> tuple[str, str, str] | None:
    """(reason code, what the code means, the result's detail) when the probe is inconclusive."""
    block = get(probe, "inconclusive")
    if not isinstance(block, dict) and not is_inconclusive(get(probe, "risk_level")):
        return None
    block = as_dict(block)
    code = block.get("reason")
    why = Fixed(INCONCLUSIVE_WHY[code]) if code in INCONCLUSIVE_WHY else NA
    code_s = Fixed(code) if code in INCONCLUSIVE_WHY else (text(code) if code else Fixed("unspecified"))
    detail = block.get("detail")
    return code_s, why, text(detail) if detail else ""


# --- values ------------------------------------------------------------------------------

def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def get(obj: Any, *path: Any, default: Any = None) -> Any:
    """``obj[p0][p1]...`` where each step may be a dict key or list index; ``default`` on any miss."""
    cur = obj
    for step in path:
        if isinstance(cur, dict):
            if step not in cur:
                return default
            cur = cur[step]
        elif isinstance(cur, list) and isinstance(step, int):
            if not -len(cur) <= step < len(cur):
                return default
            cur = cur[step]
        else:
            return default
    return default if cur is None else cur


def as_list(v: Any) -> list:
    return v if isinstance(v, list) else []


def as_dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def dicts(v: Any) -> list[dict]:
    return [x for x in as_list(v) if isinstance(x, dict)]


def text(v: Any) -> str:
    """A data string on one line (None -> n/a)."""
    if v is None:
        return NA
    if isinstance(v, float):
        return num(v)
    return " ".join(str(v).split())


def is_ci(ci: Any) -> bool:
    return isinstance(ci, list) and len(ci) == 2 and is_num(ci[0]) and is_num(ci[1])


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


def acc_ci(block: Any) -> Fixed:
    """``90.0% [85.0, 95.0]`` from a metric block with accuracy and ci95."""
    return with_ci(pct(get(block, "accuracy")), ci_pct(get(block, "ci95")))


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


def cited_uplift_test(uplift: Any) -> dict:
    """The uplift test a level's reason cites: with a significant uplift the strongest test
    (``uplift.strongest``), else the one with the largest upper 95% bound (the one that decides
    equivalence or its absence); the linear probe's summary when the result has no tests. The
    skill gain shown beside a level is this test's, so the figure and the reason agree."""
    u = as_dict(uplift)
    tests = [t for t in dicts(u.get("tests")) if is_num(t.get("skill_gain"))]
    if u.get("significant"):
        lead = [t for t in tests if t.get("attack") == u.get("strongest")]
        ranked = [t for t in tests if is_num(t.get("p_adjusted"))]
        if lead or ranked:  # as risk.assess chooses it: the smallest adjusted p, then the largest gain
            return lead[0] if lead else min(ranked, key=lambda t: (t["p_adjusted"], -t["skill_gain"]))
    elif tests and all(is_num(t.get("upper95")) for t in tests):
        return max(tests, key=lambda t: t["upper95"])
    return {"attack": "linear_probe" if is_num(u.get("skill_gain")) else None, **u}


# Severity order of a report: what an auditor must see first. Inconclusive sits just below high:
# it is not a point on the scale, and it may hide anything up to critical.
SEVERITY = ("critical", "high", "inconclusive", "medium", "low", "none")


def severity_rank(probe: Any, level_key: str = "risk_level") -> tuple[int, int]:
    """Sort key, most severe first; reference probes (not a prohibited capability) last."""
    name = level_name(get(probe, level_key))
    rank = SEVERITY.index(name) if name in SEVERITY else len(SEVERITY)
    return (1 if get(probe, "reference") is True else 0, rank)


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

def far_items(tar_at_far: Any) -> list[tuple[str, Any]]:
    """``tar_at_far`` items ordered by FAR, largest first (1e-2 before 1e-3)."""
    items = list(as_dict(tar_at_far).items())

    def far(kv):
        try:
            return -float(kv[0])
        except (TypeError, ValueError):
            return math.inf

    return sorted(items, key=lambda kv: (far(kv), str(kv[0])))


def tar_text(verification: Any, far: str, with_interval: bool = True) -> Fixed:
    """TAR at ``far`` as a percent with its CI, "not measurable" when the data is too small."""
    if not isinstance(verification, dict):
        return NA
    v = get(verification, "tar_at_far", far)
    if is_num(v):
        ci = ci_pct(get(verification, "tar_ci95", far)) if with_interval else Fixed("")
        return with_ci(pct(v), ci)
    if far in as_list(verification.get("not_measurable")):
        return Fixed("not measurable")
    return NA


def few_shot_by_k(metrics: Any) -> dict[int, dict]:
    """{k: few-shot block} for the measured k, ascending."""
    out: dict[int, dict] = {}
    for row in dicts(get(metrics, "few_shot")):
        k = as_k(row.get("k"))
        if k is not None:
            out[k] = row
    return dict(sorted(out.items()))


def as_k(k: Any) -> int | None:
    if isinstance(k, int) and not isinstance(k, bool):
        return k
    if is_num(k) and float(k).is_integer():
        return int(k)
    return None


def samples_text(metrics: Any) -> Fixed:
    """samples_to_threshold as text: "k=4", "not reached" (measured, never reached), or n/a."""
    stt = get(metrics, "samples_to_threshold")
    if is_num(stt):
        return Fixed(f"k={int(stt)}") if float(stt).is_integer() else Fixed(f"k={num(stt)}")
    if few_shot_by_k(metrics):
        return Fixed("not reached")
    return NA


def threshold_accuracy(probe: Any) -> Any:
    """The accuracy the risk threshold corresponds to (given, or chance + skill * (1 - chance))."""
    acc = get(probe, "threshold", "accuracy")
    if is_num(acc):
        return acc
    skill, chance = get(probe, "threshold", "skill"), get(probe, "chance")
    if is_num(skill) and is_num(chance):
        return chance + skill * (1.0 - chance)
    return None


def floor_metrics(probe: Any) -> dict:
    return as_dict(get(probe, "control", "metrics"))


def model_metrics(probe: Any) -> dict:
    return as_dict(get(probe, "metrics"))


def strongest_adversary(probe: Any) -> Any:
    return get(probe, "strongest_adversary") or get(probe, "metrics", "strongest_adversary")


@dataclass(frozen=True)
class Headline:
    """A probe's headline skill (capability axis) with its interval and where it came from."""
    skill: Any
    ci95: Any
    source: str


def headline_skill(probe: Any) -> Headline:
    """The capability axis's best skill and CI; failing that, the linear probe's skill (its CI
    mapped from accuracy through chance); failing that, the uplift block's model skill."""
    cap = as_dict(get(probe, "capability_axis"))
    if is_num(cap.get("best_skill")):
        attack = cap.get("attack")
        return Headline(cap["best_skill"], cap.get("ci95") if is_ci(cap.get("ci95")) else None,
                        text(attack) if attack else Fixed("best attack"))
    lp = get(probe, "metrics", "linear_probe")
    chance = get(probe, "chance")
    s = get(lp, "skill")
    if not is_num(s):
        s = skill_of(get(lp, "accuracy"), chance)
    if is_num(s):
        return Headline(s, skill_ci_of(get(lp, "ci95"), chance), Fixed("linear probe"))
    s = get(probe, "uplift", "skill_model")
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


def cost_points(probe: Any) -> list[CostPoint]:
    """Every measured (adversary, k) point of a probe: few-shot heads per k, full-split heads
    (gd_budget per step budget), the linear probe, and fine-tuning budget points."""
    mm = model_metrics(probe)
    pts: list[CostPoint] = []
    for k, row in few_shot_by_k(mm).items():
        for name, acc in as_dict(row.get("heads")).items():
            ci = row.get("ci95") if name == row.get("winner") else None
            pts.append(CostPoint(text(name), k, acc if is_num(acc) else None, ci))
    for name, head in as_dict(mm.get("heads")).items():
        head = as_dict(head)
        budgets = dicts(head.get("budgets"))
        if budgets:
            for b in budgets:
                pts.append(CostPoint(f"{text(name)}, {num(b.get('steps'))} steps", ALL_TRAIN,
                                     b.get("accuracy"), b.get("ci95")))
        else:
            pts.append(CostPoint(text(name), ALL_TRAIN, head.get("accuracy"), head.get("ci95")))
    for p in dicts(get(mm, "finetune", "points")):
        pts.append(CostPoint(f"finetune, {num(p.get('steps'))} steps", as_k(p.get("k")),
                             p.get("accuracy"), p.get("ci95"), p.get("seconds"), p.get("flops")))
    if pts and is_num(get(mm, "linear_probe", "accuracy")):
        lp = mm["linear_probe"]
        pts.append(CostPoint(Fixed("linear probe"), ALL_TRAIN, lp.get("accuracy"), lp.get("ci95")))
    return pts


def has_cost(probe: Any) -> bool:
    return bool(cost_points(probe))


def ordered_unique(items: Iterable[Any]) -> list:
    seen: list = []
    for x in items:
        if x not in seen:
            seen.append(x)
    return seen


# --- data issues -------------------------------------------------------------------------

def skipped(probe: Any) -> list[dict]:
    return dicts(get(probe, "skipped_images"))


def excluded(probe: Any) -> list[dict]:
    return dicts(get(probe, "excluded_classes"))


def reason_counts(items: list[dict]) -> list[tuple[str, int]]:
    """[(reason, how many)] most common first, ties in first-seen order."""
    counts: dict[str, int] = {}
    for it in items:
        r = text(it.get("reason"))
        counts[r] = counts.get(r, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


# --- compare -----------------------------------------------------------------------------

def compare_levels(cp: dict) -> tuple[str, str]:
    la = cp.get("level_a") or get(cp, "a", "risk_level")
    lb = cp.get("level_b") or get(cp, "b", "risk_level")
    return level_name(la), level_name(lb)


def compare_rose(cp: dict) -> bool:
    """The compare report's ``risk_rose``; for an older report without it, ``levels.level_rose`` of the two
    levels (never a rise when either level is missing or unknown: there is nothing to compare)."""
    if isinstance(cp.get("risk_rose"), bool):
        return cp["risk_rose"]
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


def compare_significant(cp: dict, alpha: Any) -> Any:
    """True/False, or None when there is no test to judge by."""
    if isinstance(cp.get("significant"), bool):
        return cp["significant"]
    p = cp.get("p_adjusted", cp.get("p_value"))
    if is_num(p) and is_num(alpha):
        return p < alpha
    return None


def compare_order(probes: Iterable[Any]) -> list[dict]:
    """Probes whose risk rose first (stable), then the rest in their given order."""
    ps = [p for p in probes if isinstance(p, dict)]
    return [p for p in ps if compare_rose(p)] + [p for p in ps if not compare_rose(p)]


def compare_rose_and_significant(result: dict) -> tuple[list[str], list[str]]:
    """Ids whose risk rose and ids with a significant change: the result's ``summary`` when it has
    one, else derived from the probes."""
    summ = as_dict(result.get("summary"))
    probes = probe_list(result)
    rose = summ.get("rose")
    sig = summ.get("significant")
    if not isinstance(rose, list):
        rose = [p.get("id") for p in probes if compare_rose(p)]
    if not isinstance(sig, list):
        sig = [p.get("id") for p in probes if compare_significant(p, result.get("alpha")) is True]
    return [text(x) for x in rose], [text(x) for x in sig]


def compare_headline_text(cp: Any) -> str:
    """The compare headline: the metric with the smallest within-probe adjusted p, and its change."""
    h = as_dict(as_dict(cp).get("headline"))
    if not h:
        return NA
    return f"{text(h.get('metric'))} {pp(h.get('change'))}"


def same_data(a: dict, b: dict) -> bool:
    """Whether two probe results describe the same images (then the report shows them once)."""
    keys = ("data", "labels", "skipped_images", "excluded_classes", "split", "n_images", "n_classes")
    return all(a.get(k) == b.get(k) for k in keys)


# --- sweep -------------------------------------------------------------------------------

def sweep_models(result: Any) -> list[dict]:
    """The swept models in checkpoint order (the ``order`` key, else as listed)."""
    ms = dicts(get(result, "models"))
    return sorted(ms, key=lambda m: (0, m["order"]) if is_num(m.get("order")) else (1, 0))


def model_label(model: Any, i: int) -> str:
    m = as_dict(model)
    return text(m.get("name") or m.get("spec") or f"model {i}")


def sweep_steps(sp: Any) -> dict[int, dict]:
    """{index of the later model: step block} for the consecutive-checkpoint tests."""
    out = {}
    for st in dicts(get(sp, "steps")):
        to = as_k(st.get("to"))
        if to is not None:
            out[to] = st
    return out


# --- result kinds ------------------------------------------------------------------------

def probe_list(result: Any) -> list[dict]:
    return dicts(get(result, "probes"))


def result_kind(result: Any) -> str:
    """audit, compare or sweep (from ``kind``, else guessed from the keys)."""
    kind = get(result, "kind")
    if kind in ("audit", "compare", "sweep"):
        return kind
    r = as_dict(result)
    if "models" in r:
        return "sweep"
    if "model_a" in r or "model_b" in r:
        return "compare"
    return "audit"


def is_compare(result: Any) -> bool:
    return result_kind(result) == "compare"


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
    # an unset setting (None) means each probe's own default, not a missing value
    items = [f"{k}={'default' if v is None else compact(v)}" for k, v in as_dict(settings).items()]
    return ", ".join(items) if items else NA
