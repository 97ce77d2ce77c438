"""The one-screen plain-text summary printed to stdout after an audit, compare or sweep.

ASCII only, no colour codes, every line at most ``width`` columns, so it survives any terminal, CI
log or e-mail. Table cells that do not fit are cut; sentences (why a level, why inconclusive, what
was skipped) are never cut: they wrap onto indented lines. Where the report files went is printed by
the caller.
"""

from __future__ import annotations

import textwrap
from typing import Any, Optional, Union

from ..result import (
    AuditReport,
    CompareReport,
    ModelInfo,
    Probe,
    Report,
    SpecVerdicts,
    SweepProbe,
    SweepReport,
    to_json_dict,
)
from . import _fmt as F

ID_WIDTH = 26          # probe ids longer than this are cut in tables and before reasons (at a terminal)
WHOLE = 10 ** 6        # the width when output is piped: nothing is cut or wrapped
MAX_REASONS = 3        # distinct skip reasons / excluded classes named per probe before "..."


def _ascii(s: Any) -> str:
    return str(s).encode("ascii", "replace").decode("ascii")


def _cut(s: str, width: int) -> str:
    s = _ascii(s)
    return s if len(s) <= width else s[: max(width - 3, 0)].rstrip() + "..."


def _table(header: list[str], rows: list[list[str]], width: int, gap: int = 2) -> list[str]:
    """Left-aligned columns; the first column is cut to ID_WIDTH, every line to ``width``."""
    rows = [[_cut(r[0], ID_WIDTH if width < WHOLE else WHOLE)] + [_ascii(c) for c in r[1:]] for r in rows]
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for r in [header] + rows:
        cells = [str(c).ljust(w) for c, w in zip(r, widths)]
        lines.append(_cut((" " * gap).join(cells).rstrip(), width))
    return lines


def _fitted(header: list[str], rows: list[list[str]], width: int, optional: list[str]) -> list[str]:
    """The table with the ``optional`` columns dropped (first named, first dropped) until it fits
    ``width``: a missing column is better than cut cells."""
    header, rows = list(header), [list(r) for r in rows]
    for name in optional:
        if max(len(line) for line in _table(header, rows, 10 ** 6)) <= width:
            break
        if name not in header:
            continue
        i = header.index(name)
        header.pop(i)
        for r in rows:
            r.pop(i)
    return _table(header, rows, width)


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    """``text`` wrapped to ``width`` columns, whole: ``first`` starts the first line, ``rest`` the others."""
    wrapper = textwrap.TextWrapper(width=width, initial_indent=_ascii(first), subsequent_indent=rest,
                                   break_on_hyphens=False)
    return wrapper.wrap(_ascii(" ".join(str(text).split()))) or [_ascii(first).rstrip()]


def _labelled(items: list[tuple[str, str]], width: int) -> list[str]:
    """Each (probe id, sentence) as an indented paragraph wrapped under the id column."""
    if not items:
        return []
    id_w = min(max(len(_ascii(i)) for i, _ in items), ID_WIDTH if width < WHOLE else WHOLE)
    # keep at least 30 columns for the sentence on narrow terminals
    id_w = min(id_w, max(width - 4 - 30, 8))
    out = []
    pad = " " * (id_w + 4)
    for ident, sentence in items:
        ident = _ascii(ident)
        if len(ident) <= id_w:
            out += _wrap(sentence, width, f"  {ident.ljust(id_w)}  ", pad)
        else:           # a long id gets a line of its own, so neither it nor the sentence is cut
            out += _wrap(ident, width, "  ", "  ") + _wrap(sentence, width, pad, pad)
    return out


def _why(p: Probe) -> str:
    """The whole story of one probe's level: reason, inconclusive code and detail, level range,
    deciding axis, strongest adversary."""
    reason = F.text(p.risk_reason)
    parts = [reason if reason.endswith((".", "!", "?")) else reason + "."]
    info = F.inconclusive_info(p)
    if info:
        code, _, detail = info
        parts.append(f"INCONCLUSIVE ({code})" + (f": {detail}" if detail else "") + ".")
        mde = p.power.mde if p.power else None
        need = p.power.images_needed_per_class if p.power else None
        if code == "underpowered" and (F.is_num(mde) or F.is_num(need)):
            parts.append(f"Minimum detectable effect {F.num(mde)}; {F.count(need)} test images per class needed.")
    if F.level_range(p):
        parts.append(f"Levels the CIs allow: {F.level_range_text(p)}.")
    if p.risk_axis is not None:
        parts.append(f"Decided by: {F.axis_text(p)}.")
    adv = F.strongest_adversary(p)
    if adv:
        parts.append(f"Strongest adversary: {F.text(adv)}.")
    return " ".join(parts)


def _data_issue(p: Probe, where: str) -> str | None:
    """Counts of skipped images (by reason) and excluded classes, and where their full lists are."""
    skipped, excluded = p.skipped_images, p.excluded_classes or []
    if not skipped and not excluded:
        return None
    bits = []
    if skipped:
        reasons = F.reason_counts(skipped)
        named = ", ".join(f"{n} {r}" for r, n in reasons[:MAX_REASONS])
        more = f", {len(reasons) - MAX_REASONS} other reasons" if len(reasons) > MAX_REASONS else ""
        bits.append(f"{len(skipped)} image(s) skipped ({named}{more}) [{where}.skipped_images]")
    if excluded:
        named = "; ".join(f"{F.text(x.label)} ({F.num(x.n_images)} images): {F.text(x.reason)}"
                          for x in excluded[:MAX_REASONS])
        more = f"; and {len(excluded) - MAX_REASONS} more" if len(excluded) > MAX_REASONS else ""
        bits.append(f"{len(excluded)} class(es) excluded ({named}{more}) [{where}.excluded_classes]")
    return "; ".join(bits) + "."


def _data_section(entries: list[tuple[str, Probe, str]], width: int) -> list[str]:
    """entries: (probe id, probe, its path in report.json)."""
    issues = [(ident, s) for ident, p, where in entries if (s := _data_issue(p, where))]
    if not issues:
        return ["", "data: no image skipped, no class excluded"]
    return ["", *_wrap("data (full lists in report.json at the [path] given):", width, "", "  ")] + \
        _labelled(issues, width)


def _header_model(label: str, m: ModelInfo, width: int) -> str:
    spec = F.text(m.spec or m.name)
    tail = f"  [{F.short_fp(m.fingerprint)}]"
    room = max(width - len(label) - len(tail), 12)
    return _cut(f"{label}{_cut(spec, room)}{tail}", width)


def _tool(report: Report) -> str:
    return f"{F.text(report.tool.name or 'creepscan')} {F.text(report.tool.version)}"


def _level_cell(p: Probe) -> str:
    name = F.level_name(p.risk_level).upper()
    info = F.inconclusive_info(p)
    return f"{name} ({info[0]})" if info and info[0] != "unspecified" else name


def _spec_lines(spec: Optional[SpecVerdicts], width: int) -> list[str]:
    if spec is None:
        return []
    clauses = spec.clauses
    verdict = {True: "PASSED", False: "FAILED"}.get(spec.passed, "n/a")
    bad = [c for c in clauses if str(c.verdict).lower() in ("fail", "inconclusive")]
    out = ["", *_wrap(f"use spec: {verdict} ({len(clauses)} clause(s), {len(bad)} failed or inconclusive)",
                      width, "", "  ")]
    out += _labelled([(F.text(c.probe),
                       f"{str(c.verdict).upper()}: {F.text(c.kind)} clause, measured "
                       f"{F.level_name(c.measured_level)}, limit {F.text(c.limit)}"
                       + (f" ({F.text(c.rule)})" if c.rule else ""))
                      for c in bad], width)
    return out


def _audit_row(p: Probe, with_range: bool, with_zs: bool, with_ver: bool) -> list[str]:
    mm, fm = p.metrics, p.control.metrics
    row = [F.text(p.id), _level_cell(p)] + [F.level_range_text(p)] * with_range + \
          [F.num(F.headline_skill(p).skill, 2),
           f"{F.pct(mm.linear_probe and mm.linear_probe.accuracy)} / "
           f"{F.pct(fm.linear_probe and fm.linear_probe.accuracy)}",
           F.samples_text(mm)]
    if with_zs:
        row.append(F.pct(mm.zero_shot and mm.zero_shot.accuracy))
    if with_ver:
        row.append(F.tar_text(mm.verification, "1e-3", with_interval=False).replace("not measurable", "not meas."))
    return row


def _audit(report: AuditReport, width: int) -> list[str]:
    probes = report.probes
    out = [_cut(f"{_tool(report)} audit", width),
           _header_model("model: ", report.model, width),
           _cut(f"seed {F.text(report.seed)}  suite {F.text(report.suite)}  "
                f"{len(probes)} probe(s)", width), ""]
    if not probes:
        return out + ["no probes were run"]
    with_zs = any(p.metrics.zero_shot for p in probes)
    with_ver = any(p.metrics.verification is not None for p in probes)
    with_range = any(F.level_range(p) for p in probes)
    header = ["probe", "level"] + ["CIs allow"] * with_range + \
        ["best skill", "linear probe model/floor", "few-shot k->thr"]
    header += ["zero-shot"] * with_zs + ["TAR@1e-3"] * with_ver
    rows = [_audit_row(p, with_range, with_zs, with_ver) for p in probes]
    # the why lines below repeat the range and the reasons; the table keeps the headline numbers
    out += _fitted(header, rows, width, ["zero-shot", "CIs allow", "best skill", "TAR@1e-3",
                                         "few-shot k->thr"])
    out += ["", "why:"]
    out += _labelled([(F.text(p.id), _why(p)) for p in probes], width)
    out += _data_section([(F.text(p.id), p, f"probes[{i}]") for i, p in enumerate(probes)], width)
    out += _spec_lines(report.spec, width)
    return out


def _compare(report: CompareReport, width: int) -> list[str]:
    given = report.probes
    probes = F.compare_order(given)
    alpha = report.alpha
    n_rose = sum(F.compare_rose(cp) for cp in probes)
    n_sig = sum(F.compare_significant(cp, alpha) is True for cp in probes)
    out = [_cut(f"{_tool(report)} compare", width),
           _header_model("A: ", report.model_a, width),
           _header_model("B: ", report.model_b, width),
           _cut(f"seed {F.text(report.seed)}  alpha {F.compact(alpha)}  correction "
                f"{F.text(report.correction)}  risk rose in {n_rose} of {len(probes)} probe(s), "
                f"{n_sig} significant", width), ""]
    if not probes:
        return out + ["no probes were compared"]
    header = ["probe", "level A -> B", "d linear probe", "headline change (B - A)", "p adj", "flag"]
    rows = []
    for cp in probes:
        la, lb = F.compare_levels(cp)
        flags = (["ROSE"] if F.compare_rose(cp) else []) + \
                (["significant"] if F.compare_significant(cp, alpha) is True else [])
        rows.append([F.text(cp.id), f"{la} -> {lb}", F.pp(cp.delta.linear_probe),
                     F.compare_headline_text(cp.headline), F.p_value(cp.p_adjusted), " ".join(flags)])
    out += _table(header, rows, width)
    out += ["", "why (B):"]
    out += _labelled([(F.text(cp.id), _why(cp.b)) for cp in probes], width)
    entries = []
    for i, cp in enumerate(given):
        entries.append((F.text(cp.id), cp.b, f"probes[{i}].b"))
        if not F.same_data(cp.a, cp.b):
            entries.append((F.text(cp.id) + " (A)", cp.a, f"probes[{i}].a"))
    out += _data_section(entries, width)
    return out


def _trajectory(p: SweepProbe) -> str:
    """A probe's level and best skill at each checkpoint, ``*`` where the level rose."""
    steps = F.sweep_steps(p)
    cells = []
    for j, pm in enumerate(p.per_model):
        mark = "*" if j in steps and steps[j].level_rose is True else ""
        cells.append(f"{mark}{_level_cell(pm)} {F.num(F.headline_skill(pm).skill, 2)}")
    return " > ".join(cells)


def _sweep(report: SweepReport, width: int) -> list[str]:
    models = F.sweep_models(report)
    probes = report.probes
    out = [_cut(f"{_tool(report)} sweep", width),
           _cut(f"seed {F.text(report.seed)}  suite {F.text(report.suite)}  "
                f"{len(models)} model(s)  {len(probes)} probe(s)", width)]
    out += [_header_model(f"  {j}: ", m, width) for j, m in enumerate(models)]
    out.append("")
    if not probes:
        return out + ["no probes were run"]
    out += _wrap("levels in checkpoint order (0 first; * = the level rose over the previous checkpoint):",
                 width, "", "  ")
    out += _labelled([(F.text(p.id), _trajectory(p)) for p in probes], width)
    rises = []
    for p in probes:
        for to, st in F.sweep_steps(p).items():
            if st.level_rose is True:
                rises.append((F.text(p.id),
                              f"rose from {to - 1} ({F.model_label(F.nth(models, to - 1), to - 1)}) to {to} "
                              f"({F.model_label(F.nth(models, to), to)}), p = {F.p_value(st.p_value)}"))
    out += ["", f"level rises: {len(rises)}"] + _labelled(rises, width)
    last = len(models) - 1
    out += ["", f"why (last model, {last}):"]
    out += _labelled([(F.text(p.id), _why(pm)) for p in probes if (pm := F.nth(p.per_model, last))], width)
    out += _data_section([(F.text(p.id), pm, f"probes[{i}].per_model[0]")
                          for i, p in enumerate(probes) if (pm := F.nth(p.per_model, 0))], width)
    return out


def summary_text(result: Union[Report, dict], width: int | None = 100) -> str:
    """The one-screen summary of an audit, compare or sweep report (typed, or report.json's dict: read with
    ``result.load_report`` first); every line fits ``width``. ``width=None``: output that is piped or
    logged, where nothing is cut and no sentence wraps."""
    report = F.typed_report(result)
    width = WHOLE if width is None else max(int(width), 40)
    lines = {"compare": _compare, "sweep": _sweep}.get(report.kind, _audit)(report, width)
    missing = report.not_run or []
    if missing:
        lines += ["", f"NOT RUN ({len(missing)}):"]
        lines += _labelled([(F.text(m.id), F.text(m.reason)) for m in missing], width)
    return "\n".join(lines) + "\n"


def _probe_json(p: Probe) -> dict:
    head = F.headline_skill(p)
    return {"id": p.id, "risk_level": p.risk_level, "risk_reason": p.risk_reason,
            "level_range": p.level_range, "best_skill": head.skill,
            "ci95": list(head.ci95) if head.ci95 else None, "reference": bool(p.reference)}


def _spec_json(spec: Optional[SpecVerdicts]) -> dict | None:
    if spec is None:
        return None
    return {"passed": spec.passed, "failed": spec.failed, "inconclusive": spec.inconclusive,
            "clauses": [{"kind": c.kind, "probe": c.probe, "verdict": c.verdict, "measured_level": c.measured_level,
                         "limit": c.limit} for c in spec.clauses]}


def summary_json(result: Union[Report, dict], files: list[str] | None = None) -> dict:
    """The summary as data (``--json``): per probe its level, reason and headline skill with its CI,
    the spec's verdict, what did not run, and where the report files are. Probes of a compare are B's
    (with A's level beside); of a sweep, each model's level in checkpoint order."""
    report = F.typed_report(result)
    probes = []
    for p in report.probes:
        if report.kind == "compare":
            probes.append({**_probe_json(p.b), "level_a": p.a.risk_level, "risk_rose": bool(F.compare_rose(p)),
                           "p_adjusted": p.p_adjusted})
        elif report.kind == "sweep":
            probes.append({"id": p.id, "per_model": [_probe_json(pm) for pm in p.per_model]})
        else:
            probes.append(_probe_json(p))
    spec = getattr(report, "spec", None)
    out = {"kind": report.kind, "tool": to_json_dict(report.tool), "seed": report.seed,
           "suite": getattr(report, "suite", None), "probes": probes, "not_run": to_json_dict(report.not_run or [])}
    for key in ("model", "model_a", "model_b", "models"):
        if hasattr(report, key):
            out[key] = to_json_dict(getattr(report, key))
    block = _spec_json(spec.b if report.kind == "compare" and spec is not None else spec)
    if block:
        out["spec"] = block
    if files is not None:
        out["files"] = files
    return out
