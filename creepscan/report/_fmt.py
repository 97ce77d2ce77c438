"""Small, deterministic formatting helpers shared by the Markdown, HTML and summary renderers.

Every accessor tolerates missing keys and nulls: real results are partial (no text tower, no
verification, a probe that could not run), and a report must still render, showing "n/a".
"""

from __future__ import annotations

import math
from typing import Any, Iterable

LEVELS = ("none", "low", "medium", "high", "critical")
NA = "n/a"


def level_rank(level: Any) -> int:
    """0..4 for none..critical, -1 for anything unknown."""
    try:
        return LEVELS.index(str(level).lower())
    except ValueError:
        return -1


def level_name(level: Any) -> str:
    return str(level).lower() if level_rank(level) >= 0 else NA


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


def text(v: Any) -> str:
    """A user string on one line (None -> n/a)."""
    if v is None:
        return NA
    if isinstance(v, float):
        return num(v)
    return " ".join(str(v).split())


def pct(v: Any, digits: int = 1) -> str:
    return f"{100.0 * v:.{digits}f}%" if is_num(v) else NA


def ci_pct(ci: Any, digits: int = 1) -> str:
    """``[85.0, 95.0]`` (percent) or empty when the interval is missing."""
    if isinstance(ci, list) and len(ci) == 2 and is_num(ci[0]) and is_num(ci[1]):
        return f"[{100.0 * ci[0]:.{digits}f}, {100.0 * ci[1]:.{digits}f}]"
    return ""


def acc_ci(block: Any) -> str:
    """``90.0% [85.0, 95.0]`` from a metric block with accuracy and ci95."""
    acc = get(block, "accuracy")
    if not is_num(acc):
        return NA
    ci = ci_pct(get(block, "ci95"))
    return f"{pct(acc)} {ci}" if ci else pct(acc)


def pp(v: Any, digits: int = 1) -> str:
    """A difference of two accuracies in percentage points, signed."""
    return f"{100.0 * v:+.{digits}f} pp" if is_num(v) else NA


def ci_pp(ci: Any, digits: int = 1) -> str:
    if isinstance(ci, list) and len(ci) == 2 and is_num(ci[0]) and is_num(ci[1]):
        return f"[{100.0 * ci[0]:+.{digits}f}, {100.0 * ci[1]:+.{digits}f}]"
    return ""


def num(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if is_num(v):
        if v != 0 and (abs(v) < 10 ** -digits or abs(v) >= 1e6):
            return f"{v:.{max(digits - 1, 1)}e}"
        return f"{v:.{digits}f}"
    return NA


def signed(v: Any, digits: int = 3) -> str:
    return f"{v:+.{digits}f}" if is_num(v) else NA


def p_value(p: Any) -> str:
    if not is_num(p):
        return NA
    if p >= 0.01:
        return f"{p:.3f}"
    if p >= 0.0001:
        return f"{p:.4f}"
    return f"{p:.1e}"


def yes_no(v: Any) -> str:
    if v is True:
        return "yes"
    if v is False:
        return "no"
    return NA


def short_fp(fp: Any, n: int = 12) -> str:
    """``sha256:ab12cd34ef56`` from a long fingerprint."""
    if not fp:
        return NA
    s = str(fp)
    algo, sep, digest = s.partition(":")
    if sep:
        return f"{algo}:{digest[:n]}"
    return s[:n]


def far_items(tar_at_far: Any) -> list[tuple[str, Any]]:
    """``tar_at_far`` items ordered by FAR, largest first (1e-2 before 1e-3)."""
    items = list(as_dict(tar_at_far).items())

    def far(kv):
        try:
            return -float(kv[0])
        except (TypeError, ValueError):
            return math.inf

    return sorted(items, key=lambda kv: (far(kv), str(kv[0])))


def tar_text(verification: Any, far: str) -> str:
    """TAR at ``far`` as a percent, "not measurable" when the data is too small, else n/a."""
    if not isinstance(verification, dict):
        return NA
    v = get(verification, "tar_at_far", far)
    if is_num(v):
        return pct(v)
    if far in as_list(verification.get("not_measurable")):
        return "not measurable"
    return NA


def few_shot_by_k(metrics: Any) -> dict[int, dict]:
    """{k: few-shot block} for the measured k, ascending."""
    out: dict[int, dict] = {}
    for row in as_list(get(metrics, "few_shot")):
        k = get(row, "k")
        if isinstance(k, int) and not isinstance(k, bool):
            out[k] = row
        elif is_num(k) and float(k).is_integer():
            out[int(k)] = row
    return dict(sorted(out.items()))


def samples_text(metrics: Any) -> str:
    """samples_to_threshold as text: "k=4", "not reached" (measured, never reached), or n/a."""
    stt = get(metrics, "samples_to_threshold")
    if is_num(stt):
        return f"k={int(stt)}" if float(stt).is_integer() else f"k={num(stt)}"
    if few_shot_by_k(metrics):
        return "not reached"
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


# --- compare -------------------------------------------------------------------------------

def compare_levels(cp: dict) -> tuple[str, str]:
    la = cp.get("level_a") or get(cp, "a", "risk_level")
    lb = cp.get("level_b") or get(cp, "b", "risk_level")
    return level_name(la), level_name(lb)


def compare_rose(cp: dict) -> bool:
    if isinstance(cp.get("risk_rose"), bool):
        return cp["risk_rose"]
    la, lb = compare_levels(cp)
    return level_rank(lb) > level_rank(la) >= 0


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


def probe_list(result: Any) -> list[dict]:
    return [p for p in as_list(get(result, "probes")) if isinstance(p, dict)]


def is_compare(result: Any) -> bool:
    if get(result, "kind") == "compare":
        return True
    if get(result, "kind") == "audit":
        return False
    return "model_a" in as_dict(result) or "model_b" in as_dict(result)


def compact(v: Any) -> str:
    """A short, deterministic rendering of a setting value (0.05, 200, cpu, true)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if is_num(v):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(compact(x) for x in v) + "]"
    return text(v)


def settings_text(settings: Any) -> str:
    items = [f"{k}={compact(v)}" for k, v in as_dict(settings).items()]
    return ", ".join(items) if items else NA


def headline_text(cp: Any) -> str:
    """The compare headline: the metric with the smallest within-probe adjusted p, and its change."""
    h = as_dict(as_dict(cp).get("headline"))
    if not h:
        return NA
    return f"{text(h.get('metric'))} {pp(h.get('change'))}"


def _test_cells(test: Any) -> list[str]:
    return [ci_pp(get(test, "ci95")) or NA, p_value(get(test, "p_value"))]


def compare_metric_rows(cp: Any) -> list[list[str]]:
    """The A-vs-B metrics table of one compared probe: [metric, A, B, delta, CI of delta, p].
    Cells are plain text built from numbers and fixed words; renderers escape them as they write."""
    cp = as_dict(cp)
    a, b = as_dict(cp.get("a")), as_dict(cp.get("b"))
    ma, mb = model_metrics(a), model_metrics(b)
    d, tests = as_dict(cp.get("delta")), as_dict(cp.get("tests"))
    rows = [["Linear probe", acc_ci(ma.get("linear_probe")), acc_ci(mb.get("linear_probe")),
             pp(d.get("linear_probe")), *_test_cells(tests.get("linear_probe"))]]
    za, zb = ma.get("zero_shot"), mb.get("zero_shot")
    if za or zb or d.get("zero_shot") is not None:
        rows.append(["Zero-shot", acc_ci(za), acc_ci(zb), pp(d.get("zero_shot")),
                     *_test_cells(tests.get("zero_shot"))])
    fa, fb = few_shot_by_k(ma), few_shot_by_k(mb)
    dfs, tfs = as_dict(d.get("few_shot")), as_dict(tests.get("few_shot"))
    for k in sorted(set(fa) | set(fb)):
        rows.append([f"Few-shot k={k}", acc_ci(fa.get(k)), acc_ci(fb.get(k)),
                     pp(dfs.get(str(k))), *_test_cells(tfs.get(str(k)))])
    va, vb = ma.get("verification"), mb.get("verification")
    if isinstance(va, dict) or isinstance(vb, dict):
        for far, _ in far_items(get(va, "tar_at_far") or get(vb, "tar_at_far")):
            rows.append([f"Verification TAR at FAR {far}", tar_text(va, far), tar_text(vb, far),
                         pp(d.get(f"verification_tar_{far}")),
                         *_test_cells(tests.get(f"verification_tar_{far}"))])
        rows.append(["Verification ROC AUC", num(get(va, "auc")), num(get(vb, "auc")), NA, NA, NA])
    rows.append(["Skill (uplift over floor)", num(get(a, "uplift", "skill_model")),
                 num(get(b, "uplift", "skill_model")), signed(d.get("skill")), NA, NA])
    rows.append(["Samples per class to threshold", samples_text(ma), samples_text(mb), NA, NA, NA])
    return rows


def same_data(a: dict, b: dict) -> bool:
    """Whether two probe results describe the same images (then the report shows them once)."""
    keys = ("data", "labels", "skipped_images", "excluded_classes", "split", "n_images", "n_classes")
    return all(a.get(k) == b.get(k) for k in keys)
