"""report.md: the same result as ``report.json``, for people and for pull-request comments.

Every string that comes from the data (labels, paths, reasons, specs, titles) goes through
``md()``: HTML-escaped (a Markdown viewer renders raw HTML) and with Markdown's active characters
backslash-escaped, pipes included, so a label can neither break a table nor inject markup.
"""

from __future__ import annotations

import re
from typing import Any

from . import _fmt as F

MAX_LIST = 20          # skipped images / excluded classes listed before "and N more"
MAX_LABELS = 40

_MD_ACTIVE = re.compile(r"([\\`*\[\]|#~])")
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")        # what could start a tag, comment or autolink
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")       # what could form a character reference


def md(v: Any) -> str:
    """A data string made safe for Markdown: one line, inert, table-safe, still readable.

    ``<`` that could open a tag/comment/autolink and ``&`` that could form an entity become
    ``&lt;``/``&amp;`` (every Markdown flavour honours those, unlike ``\\<``); "a <= b" and
    "Tom & Jerry" stay as they are. Markdown's active characters, pipes included, are
    backslash-escaped; an underscore inside a word (person_00) is inert and left alone.
    """
    s = _ENTITY.sub("&amp;", F.text(v))
    s = _TAG_OPEN.sub("&lt;", s)
    s = _MD_ACTIVE.sub(r"\\\1", s)
    s = _UNDERSCORE.sub(r"\\_", s)
    return "\\" + s if s.startswith((">", "+", "-", "=")) else s


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c if c else F.NA for c in cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), "|" + "|".join(" --- " for _ in header) + "|"] + [_row(r) for r in rows]


def _capped(items: list, fmt, cap: int = MAX_LIST) -> list[str]:
    out = [f"- {fmt(it)}" for it in items[:cap]]
    if len(items) > cap:
        out.append(f"- and {len(items) - cap} more")
    return out


def _level(v: Any) -> str:
    name = F.level_name(v)
    return f"**{name.upper()}**" if F.level_rank(name) >= 3 else name


# --- shared pieces -----------------------------------------------------------------------

def _model_lines(model: Any, label: str = "Model") -> list[str]:
    m = F.as_dict(model)
    name = m.get("name")
    spec = md(m.get("spec") or name)
    extra = f" ({md(name)})" if name and name != m.get("spec") else ""
    return [f"- **{label}:** {spec}{extra}", f"- **{label} fingerprint:** {md(m.get('fingerprint'))}"]


def _tool_line(result: dict) -> str:
    tool = F.as_dict(result.get("tool"))
    return (f"- **Tool:** {md(tool.get('name') or 'creepscan')} {md(tool.get('version'))}"
            f" (report schema {md(result.get('schema_version'))})")


def _data_section(p: dict, heading: str = "#### Data") -> list[str]:
    out = [heading, ""]
    data = F.as_dict(p.get("data"))
    split = F.as_dict(p.get("split"))
    out.append(f"- Source: {md(data.get('source'))}")
    if data.get("fingerprint"):
        out.append(f"- Data fingerprint: {md(data.get('fingerprint'))}")
    out.append(f"- Images: {F.num(p.get('n_images'))} in {F.num(p.get('n_classes'))} classes"
               f" (chance {F.pct(p.get('chance'))}); at most "
               f"{F.num(data.get('max_per_class'))} images per class")
    out.append(f"- Split: train {F.num(split.get('train'))}, val {F.num(split.get('val'))}, "
               f"test {F.num(split.get('test'))} images")
    labels = [x for x in F.as_list(p.get("labels")) if isinstance(x, dict)]
    if labels:
        shown = ", ".join(
            f"{md(x.get('name') or x.get('label'))} ({F.num(x.get('n_images'))})"
            for x in labels[:MAX_LABELS])
        more = f", and {len(labels) - MAX_LABELS} more" if len(labels) > MAX_LABELS else ""
        out.append(f"- Labels ({len(labels)}): {shown}{more}")
    excluded = [x for x in F.as_list(p.get("excluded_classes")) if isinstance(x, dict)]
    if excluded:
        out += ["", f"Excluded classes ({len(excluded)}):", ""]
        out += _capped(excluded, lambda x: f"{md(x.get('label'))} ({F.num(x.get('n_images'))} images):"
                                            f" {md(x.get('reason'))}")
    skipped = [x for x in F.as_list(p.get("skipped_images")) if isinstance(x, dict)]
    out += ["", f"Skipped images ({len(skipped)}):" if skipped else "Skipped images: none"]
    if skipped:
        out.append("")
        out += _capped(skipped, lambda x: f"{md(x.get('path'))}: {md(x.get('reason'))}")
    return out + [""]


def _fs_cell(row: Any) -> str:
    if not isinstance(row, dict):
        return F.NA
    s = F.acc_ci(row)
    bits = []
    if row.get("winner"):
        bits.append(md(row["winner"]))
    if F.is_num(row.get("episodes")):
        bits.append(f"{F.num(row['episodes'])} episodes")
    return f"{s} ({', '.join(bits)})" if bits and s != F.NA else s


def _metrics_rows(mm: dict, fm: dict) -> list[list[str]]:
    rows = []
    zs_m, zs_f = mm.get("zero_shot"), fm.get("zero_shot")
    rows.append(["Zero-shot", F.acc_ci(zs_m) if zs_m else "n/a (no text tower)",
                 F.acc_ci(zs_f) if zs_f else F.NA])

    def lp(block: Any) -> str:
        s = F.acc_ci(block)
        c = F.get(block, "C")
        return f"{s}, C={F.num(c, 3)}" if s != F.NA and F.is_num(c) else s

    rows.append(["Linear probe (full train split)", lp(mm.get("linear_probe")),
                 lp(fm.get("linear_probe"))])
    fs_m, fs_f = F.few_shot_by_k(mm), F.few_shot_by_k(fm)
    for k in sorted(set(fs_m) | set(fs_f)):
        rows.append([f"Few-shot k={k}", _fs_cell(fs_m.get(k)), _fs_cell(fs_f.get(k))])
    for u in F.as_list(mm.get("few_shot_unavailable")):
        if isinstance(u, dict):
            rows.append([f"Few-shot k={md(u.get('k'))}", f"not run: {md(u.get('reason'))}", F.NA])
    vm, vf = mm.get("verification"), fm.get("verification")
    if isinstance(vm, dict) or isinstance(vf, dict):
        fars = [far for far, _ in F.far_items(F.get(vm, "tar_at_far") or F.get(vf, "tar_at_far"))]
        for far in fars:
            rows.append([f"Verification TAR at FAR {md(far)}", F.tar_text(vm, far), F.tar_text(vf, far)])
        rows.append(["Verification ROC AUC", F.num(F.get(vm, "auc")), F.num(F.get(vf, "auc"))])
        rows.append(["Verification pairs (genuine / impostor)",
                     f"{F.num(F.get(vm, 'n_genuine'))} / {F.num(F.get(vm, 'n_impostor'))}",
                     f"{F.num(F.get(vf, 'n_genuine'))} / {F.num(F.get(vf, 'n_impostor'))}"])
    rows.append(["Samples per class to threshold", F.samples_text(mm), F.samples_text(fm)])
    return rows


def _threshold_line(p: dict) -> str:
    thr = F.as_dict(p.get("threshold"))
    return (f"Threshold: skill {F.num(thr.get('skill'), 2)} "
            f"(= balanced accuracy {F.pct(F.threshold_accuracy(p))}).")


def _uplift_line(p: dict) -> str:
    u = F.as_dict(p.get("uplift"))
    if not u:
        return "Uplift over floor: n/a"
    ci = u.get("ci95")
    ci_s = (f" [{F.num(ci[0])}, {F.num(ci[1])}]" if isinstance(ci, list) and len(ci) == 2
            and F.is_num(ci[0]) and F.is_num(ci[1]) else "")
    return (f"Uplift over floor: skill {F.num(u.get('skill_model'))} (model) vs "
            f"{F.num(u.get('skill_floor'))} (floor), gain {F.signed(u.get('skill_gain'))}{ci_s}, "
            f"p = {F.p_value(u.get('p_value'))}, significant: {F.yes_no(u.get('significant'))}.")


# --- audit -------------------------------------------------------------------------------

def _summary_row(p: dict) -> list[str]:
    mm, fm = F.model_metrics(p), F.floor_metrics(p)
    lp = f"{F.pct(F.get(mm, 'linear_probe', 'accuracy'))} vs {F.pct(F.get(fm, 'linear_probe', 'accuracy'))}"
    zs = F.get(mm, "zero_shot")
    ver = F.get(mm, "verification")
    return [md(p.get("id")), _level(p.get("risk_level")), md(p.get("risk_reason")), lp,
            F.samples_text(mm), F.acc_ci(zs) if zs else F.NA,
            F.tar_text(ver, "1e-3") if isinstance(ver, dict) else F.NA]


def _probe_section(p: dict) -> list[str]:
    out = [f"### {md(p.get('id'))}: {md(p.get('title') or p.get('id'))} ({F.level_name(p.get('risk_level'))})", ""]
    out.append(f"**Risk: {F.level_name(p.get('risk_level')).upper()}.** {md(p.get('risk_reason'))}")
    out.append("")
    out.append(f"- Capability: {md(p.get('capability'))}")
    pol = [md(x) for x in F.as_list(p.get("policy"))]
    out.append(f"- Policy: {'; '.join(pol) if pol else F.NA}")
    out.append(f"- Rule that fired: {md(p.get('risk_rule'))}")
    out.append("")
    out += _data_section(p)
    ctrl = F.as_dict(p.get("control"))
    out += ["#### Metrics (balanced accuracy on held-out test images, 95% CI)", ""]
    out.append(f"Floor: {md(ctrl.get('spec'))} ({md(F.short_fp(ctrl.get('fingerprint')))})")
    out.append("")
    out += _table(["Attack", "Model", "Floor"], _metrics_rows(F.model_metrics(p), F.floor_metrics(p)))
    out += ["", _threshold_line(p), "", _uplift_line(p), ""]
    return out


def _audit(result: dict) -> list[str]:
    probes = F.probe_list(result)
    out = ["# creepscan audit report", ""]
    out += _model_lines(result.get("model"))
    out.append(f"- **Seed:** {md(result.get('seed'))}")
    out.append(f"- **Suite:** {md(result.get('suite'))}")
    out.append(f"- **Settings:** {md(F.settings_text(result.get('settings')))}")
    out.append(_tool_line(result))
    out += ["", "## Summary", ""]
    out += _table(["Probe", "Level", "Reason", "Linear probe (model vs floor)",
                   "Few-shot k to threshold", "Zero-shot", "Verification TAR@1e-3"],
                  [_summary_row(p) for p in probes])
    out += _not_run(result)
    out += ["", "Accuracies are balanced accuracy on held-out test images. The floor is the control "
            "encoder (by default the same architecture with random weights): what an adversary gets "
            "without this model's training.", "", "## Probes", ""]
    for p in probes:
        out += _probe_section(p)
    return out


# --- compare -----------------------------------------------------------------------------

def _cmp_summary_row(cp: dict, alpha: Any) -> list[str]:
    la, lb = F.compare_levels(cp)
    d = F.as_dict(cp.get("delta"))
    sig = F.compare_significant(cp, alpha)
    change = "ROSE" if F.compare_rose(cp) else ("fell" if F.level_rank(lb) < F.level_rank(la) else "same")
    return [md(cp.get("id")), _level(la), _level(lb), f"**{change}**" if change == "ROSE" else change,
            F.pp(d.get("linear_probe")), md(F.headline_text(cp)), F.p_value(cp.get("p_value")),
            F.p_value(cp.get("p_adjusted")), F.yes_no(sig)]


def _cmp_probe_section(cp: dict, result: dict) -> list[str]:
    a, b = F.as_dict(cp.get("a")), F.as_dict(cp.get("b"))
    la, lb = F.compare_levels(cp)
    marker = " ROSE" if F.compare_rose(cp) else ""
    out = [f"### {md(cp.get('id'))}: {md(cp.get('title') or cp.get('id'))} ({la} -> {lb}){marker}", ""]
    out.append(f"- Capability: {md(cp.get('capability') or a.get('capability'))}")
    pol = [md(x) for x in F.as_list(cp.get("policy") or a.get("policy"))]
    out.append(f"- Policy: {'; '.join(pol) if pol else F.NA}")
    out.append(f"- A: **{la.upper()}**. {md(a.get('risk_reason'))} (rule: {md(a.get('risk_rule'))})")
    out.append(f"- B: **{lb.upper()}**. {md(b.get('risk_reason'))} (rule: {md(b.get('risk_rule'))})")
    sig = F.compare_significant(cp, result.get("alpha"))
    out.append(f"- Paired test: p = {F.p_value(cp.get('p_value'))}, adjusted "
               f"({md(result.get('correction'))}) p = {F.p_value(cp.get('p_adjusted'))}, "
               f"significant at alpha {F.compact(result.get('alpha'))}: {F.yes_no(sig)}")
    out.append("")
    tests = F.as_dict(cp.get("tests"))
    tfs = F.as_dict(tests.get("few_shot"))
    rows = [[md(c) for c in row] for row in F.compare_metric_rows(cp)]
    out += _table(["Metric", "A", "B", "Delta (B - A)", "95% CI of delta", "p (unadjusted)"], rows)
    methods = sorted({md(t.get("method")) for t in [tests.get("linear_probe")] + list(tfs.values())
                      if isinstance(t, dict) and t.get("method")})
    if methods:
        out += ["", f"Tests: {'; '.join(methods)}."]
    out.append("")
    if F.same_data(a, b):
        out += _data_section(a, heading="#### Data (the same for A and B)")
    else:
        for tag, probe in (("A", a), ("B", b)):
            out += _data_section(probe, heading=f"#### Data, model {tag}")
    return out


def _compare(result: dict) -> list[str]:
    probes = F.compare_order(F.probe_list(result))
    alpha = result.get("alpha")
    out = ["# creepscan compare report", ""]
    out += _model_lines(result.get("model_a"), "Model A")
    out += _model_lines(result.get("model_b"), "Model B")
    out.append(f"- **Seed:** {md(result.get('seed'))}")
    out.append(f"- **Significance:** alpha {F.compact(alpha)}, multiple-testing correction "
               f"{md(result.get('correction'))} over {len(probes)} probes")
    out.append(_tool_line(result))
    rose_raw, sig_raw = F.compare_rose_and_significant(result)
    rose, sig = [md(x) for x in rose_raw], [md(x) for x in sig_raw]
    out += ["", "## Summary", "",
            f"Risk rose for {len(rose)} probe(s){': ' + ', '.join(rose) if rose else ''}; "
            f"significant change in {len(sig)}{': ' + ', '.join(sig) if sig else ''}.", ""]
    out += _table(["Probe", "Level A", "Level B", "Change", "Delta linear probe (B - A)", "Headline change", "p",
                   f"p adjusted ({md(result.get('correction'))})", "Significant"],
                  [_cmp_summary_row(cp, alpha) for cp in probes])
    out += _not_run(result)
    out += ["", "Deltas are B minus A in balanced-accuracy percentage points.", "", "## Probes", ""]
    for cp in probes:
        out += _cmp_probe_section(cp, result)
    return out


def _not_run(result: dict) -> list[str]:
    missing = result.get("not_run") or []
    if not missing:
        return []
    return ["", f"**Not run ({len(missing)}):** the audit is incomplete.", ""] + [
        f"- {md(m.get('id'))}: {md(m.get('reason'))}" for m in missing]


def render_markdown(result: dict) -> str:
    """The text of report.md for an audit or compare result (deterministic)."""
    lines = _compare(result) if F.is_compare(result) else _audit(result)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
