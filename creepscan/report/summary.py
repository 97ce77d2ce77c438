"""The one-screen plain-text summary printed to stdout after an audit, compare or sweep.

ASCII only, no colour codes, every line at most ``width`` columns, so it survives any terminal, CI
log or e-mail. Table cells that do not fit are cut; sentences (why a level, why inconclusive, what
was skipped) are never cut: they wrap onto indented lines. Where the report files went is printed by
the caller.
"""

from __future__ import annotations

import textwrap
from typing import Any

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


def _why(p: dict) -> str:
    """The whole story of one probe's level: reason, inconclusive code and detail, level range,
    deciding axis, strongest adversary."""
    reason = F.text(p.get("risk_reason"))
    parts = [reason if reason.endswith((".", "!", "?")) else reason + "."]
    info = F.inconclusive_info(p)
    if info:
        code, _, detail = info
        parts.append(f"INCONCLUSIVE ({code})" + (f": {detail}" if detail else "") + ".")
        mde = F.get(p, "power", "mde")
        need = F.get(p, "power", "images_needed_per_class")
        if code == "underpowered" and (F.is_num(mde) or F.is_num(need)):
            parts.append(f"Minimum detectable effect {F.num(mde)}; {F.count(need)} test images per class needed.")
    if F.level_range(p):
        parts.append(f"Levels the CIs allow: {F.level_range_text(p)}.")
    if p.get("risk_axis") is not None:
        parts.append(f"Decided by: {F.axis_text(p)}.")
    adv = F.strongest_adversary(p)
    if adv:
        parts.append(f"Strongest adversary: {F.text(adv)}.")
    return " ".join(parts)


def _data_issue(p: dict, where: str) -> str | None:
    """Counts of skipped images (by reason) and excluded classes, and where their full lists are."""
    skipped, excluded = F.skipped(p), F.excluded(p)
    if not skipped and not excluded:
        return None
    bits = []
    if skipped:
        reasons = F.reason_counts(skipped)
        named = ", ".join(f"{n} {r}" for r, n in reasons[:MAX_REASONS])
        more = f", {len(reasons) - MAX_REASONS} other reasons" if len(reasons) > MAX_REASONS else ""
        bits.append(f"{len(skipped)} image(s) skipped ({named}{more}) [{where}.skipped_images]")
    if excluded:
        named = "; ".join(f"{F.text(x.get('label'))} ({F.num(x.get('n_images'))} images): "
                          f"{F.text(x.get('reason'))}" for x in excluded[:MAX_REASONS])
        more = f"; and {len(excluded) - MAX_REASONS} more" if len(excluded) > MAX_REASONS else ""
        bits.append(f"{len(excluded)} class(es) excluded ({named}{more}) [{where}.excluded_classes]")
    return "; ".join(bits) + "."


def _data_section(entries: list[tuple[str, dict, str]], width: int) -> list[str]:
    """entries: (probe id, probe dict, its path in report.json)."""
    issues = [(ident, s) for ident, p, where in entries if (s := _data_issue(p, where))]
    if not issues:
        return ["", "data: no image skipped, no class excluded"]
    return ["", *_wrap("data (full lists in report.json at the [path] given):", width, "", "  ")] + \
        _labelled(issues, width)


def _header_model(label: str, model: Any, width: int) -> str:
    m = F.as_dict(model)
    spec = F.text(m.get("spec") or m.get("name"))
    tail = f"  [{F.short_fp(m.get('fingerprint'))}]"
    room = max(width - len(label) - len(tail), 12)
    return _cut(f"{label}{_cut(spec, room)}{tail}", width)


def _tool(result: dict) -> str:
    tool = F.as_dict(result.get("tool"))
    return f"{F.text(tool.get('name') or 'creepscan')} {F.text(tool.get('version'))}"


def _level_cell(p: dict) -> str:
    name = F.level_name(p.get("risk_level")).upper()
    info = F.inconclusive_info(p)
    return f"{name} ({info[0]})" if info and info[0] != "unspecified" else name


def _spec_lines(result: dict, width: int) -> list[str]:
    spec = result.get("spec")
    if not isinstance(spec, dict):
        return []
    clauses = F.dicts(spec.get("clauses"))
    verdict = {True: "PASSED", False: "FAILED"}.get(spec.get("passed"), "n/a")
    bad = [c for c in clauses if str(c.get("verdict")).lower() in ("fail", "inconclusive")]
    out = ["", *_wrap(f"use spec: {verdict} ({len(clauses)} clause(s), {len(bad)} failed or inconclusive)",
                      width, "", "  ")]
    out += _labelled([(F.text(c.get("probe")),
                       f"{str(c.get('verdict')).upper()}: {F.text(c.get('kind'))} clause, measured "
                       f"{F.level_name(c.get('measured_level'))}, limit {F.text(c.get('limit'))}"
                       + (f" ({F.text(c.get('rule'))})" if c.get("rule") else ""))
                      for c in bad], width)
    return out


def _audit(result: dict, width: int) -> list[str]:
    probes = F.probe_list(result)
    out = [_cut(f"{_tool(result)} audit", width),
           _header_model("model: ", result.get("model"), width),
           _cut(f"seed {F.text(result.get('seed'))}  suite {F.text(result.get('suite'))}  "
                f"{len(probes)} probe(s)", width), ""]
    if not probes:
        return out + ["no probes were run"]
    with_zs = any(F.get(p, "metrics", "zero_shot") for p in probes)
    with_ver = any(isinstance(F.get(p, "metrics", "verification"), dict) for p in probes)
    with_range = any(F.level_range(p) for p in probes)
    header = ["probe", "level"] + ["CIs allow"] * with_range + \
        ["best skill", "linear probe model/floor", "few-shot k->thr"]
    header += ["zero-shot"] * with_zs + ["TAR@1e-3"] * with_ver
    rows = []
    for p in probes:
        mm, fm = F.model_metrics(p), F.floor_metrics(p)
        row = [F.text(p.get("id")), _level_cell(p)] + [F.level_range_text(p)] * with_range + \
              [F.num(F.headline_skill(p).skill, 2),
               f"{F.pct(F.get(mm, 'linear_probe', 'accuracy'))} / {F.pct(F.get(fm, 'linear_probe', 'accuracy'))}",
               F.samples_text(mm)]
        if with_zs:
            row.append(F.pct(F.get(mm, "zero_shot", "accuracy")))
        if with_ver:
            row.append(F.tar_text(F.get(mm, "verification"), "1e-3", with_interval=False)
                       .replace("not measurable", "not meas."))
        rows.append(row)
    # the why lines below repeat the range and the reasons; the table keeps the headline numbers
    out += _fitted(header, rows, width, ["zero-shot", "CIs allow", "best skill", "TAR@1e-3",
                                         "few-shot k->thr"])
    out += ["", "why:"]
    out += _labelled([(F.text(p.get("id")), _why(p)) for p in probes], width)
    out += _data_section([(F.text(p.get("id")), p, f"probes[{i}]") for i, p in enumerate(probes)], width)
    out += _spec_lines(result, width)
    return out


def _compare(result: dict, width: int) -> list[str]:
    given = F.probe_list(result)
    probes = F.compare_order(given)
    alpha = result.get("alpha")
    n_rose = sum(F.compare_rose(cp) for cp in probes)
    n_sig = sum(F.compare_significant(cp, alpha) is True for cp in probes)
    out = [_cut(f"{_tool(result)} compare", width),
           _header_model("A: ", result.get("model_a"), width),
           _header_model("B: ", result.get("model_b"), width),
           _cut(f"seed {F.text(result.get('seed'))}  alpha {F.compact(alpha)}  correction "
                f"{F.text(result.get('correction'))}  risk rose in {n_rose} of {len(probes)} probe(s), "
                f"{n_sig} significant", width), ""]
    if not probes:
        return out + ["no probes were compared"]
    header = ["probe", "level A -> B", "d linear probe", "headline change (B - A)", "p adj", "flag"]
    rows = []
    for cp in probes:
        la, lb = F.compare_levels(cp)
        flags = (["ROSE"] if F.compare_rose(cp) else []) + \
                (["significant"] if F.compare_significant(cp, alpha) is True else [])
        rows.append([F.text(cp.get("id")), f"{la} -> {lb}", F.pp(F.get(cp, "delta", "linear_probe")),
                     F.compare_headline_text(cp), F.p_value(cp.get("p_adjusted")), " ".join(flags)])
    out += _table(header, rows, width)
    out += ["", "why (B):"]
    out += _labelled([(F.text(cp.get("id")), _why(F.as_dict(cp.get("b")))) for cp in probes], width)
    entries = []
    for i, cp in enumerate(given):
        a, b = F.as_dict(cp.get("a")), F.as_dict(cp.get("b"))
        entries.append((F.text(cp.get("id")), b, f"probes[{i}].b"))
        if not F.same_data(a, b):
            entries.append((F.text(cp.get("id")) + " (A)", a, f"probes[{i}].a"))
    out += _data_section(entries, width)
    return out


def _sweep(result: dict, width: int) -> list[str]:
    models = F.sweep_models(result)
    probes = F.probe_list(result)
    out = [_cut(f"{_tool(result)} sweep", width),
           _cut(f"seed {F.text(result.get('seed'))}  suite {F.text(result.get('suite'))}  "
                f"{len(models)} model(s)  {len(probes)} probe(s)", width)]
    out += [_header_model(f"  {j}: ", m, width) for j, m in enumerate(models)]
    out.append("")
    if not probes:
        return out + ["no probes were run"]
    out += _wrap("levels in checkpoint order (0 first; * = the level rose over the previous checkpoint):",
                 width, "", "  ")
    trajectories = []
    for p in probes:
        steps = F.sweep_steps(p)
        cells = []
        for j, pm in enumerate(F.as_list(p.get("per_model"))):
            mark = "*" if F.get(steps, j, "level_rose") is True else ""
            cells.append(f"{mark}{_level_cell(F.as_dict(pm))} {F.num(F.headline_skill(pm).skill, 2)}")
        trajectories.append((F.text(p.get("id")), " > ".join(cells)))
    out += _labelled(trajectories, width)
    rises = []
    for p in probes:
        for to, st in F.sweep_steps(p).items():
            if st.get("level_rose") is True:
                rises.append((F.text(p.get("id")),
                              f"rose from {to - 1} ({F.model_label(F.get(models, to - 1), to - 1)}) to {to} "
                              f"({F.model_label(F.get(models, to), to)}), p = {F.p_value(st.get('p_value'))}"))
    out += ["", f"level rises: {len(rises)}"] + _labelled(rises, width)
    last = len(models) - 1
    out += ["", f"why (last model, {last}):"]
    out += _labelled([(F.text(p.get("id")), _why(F.as_dict(F.get(p, "per_model", last)))) for p in probes], width)
    out += _data_section([(F.text(p.get("id")), F.as_dict(F.get(p, "per_model", 0)), f"probes[{i}].per_model[0]")
                          for i, p in enumerate(probes)], width)
    return out


def summary_text(result: dict, width: int | None = 100) -> str:
    """The one-screen summary of an audit, compare or sweep result; every line fits ``width``.
    ``width=None``: output that is piped or logged, where nothing is cut and no sentence wraps."""
    width = WHOLE if width is None else max(int(width), 40)
    kind = F.result_kind(result)
    lines = {"compare": _compare, "sweep": _sweep}.get(kind, _audit)(result, width)
    missing = F.dicts(result.get("not_run"))
    if missing:
        lines += ["", f"NOT RUN ({len(missing)}):"]
        lines += _labelled([(F.text(m.get("id")), F.text(m.get("reason"))) for m in missing], width)
    return "\n".join(lines) + "\n"


def summary_json(result: dict, files: list[str] | None = None) -> dict:
    """The summary as data (``--json``): per probe its level, reason and headline skill with its CI,
    the spec's verdict, what did not run, and where the report files are. Probes of a compare are B's
    (with A's level beside); of a sweep, each model's level in checkpoint order."""
    kind = F.result_kind(result)

    def one(p: Any) -> dict:
        p = F.as_dict(p)
        head = F.headline_skill(p)
        return {"id": p.get("id"), "risk_level": p.get("risk_level"), "risk_reason": p.get("risk_reason"),
                "level_range": p.get("level_range"), "best_skill": head.skill,
                "ci95": list(head.ci95) if head.ci95 else None, "reference": bool(p.get("reference"))}

    probes = []
    for p in F.probe_list(result):
        if kind == "compare":
            probes.append({**one(p.get("b")), "level_a": F.get(p, "a", "risk_level"),
                           "risk_rose": bool(F.compare_rose(p)), "p_adjusted": p.get("p_adjusted")})
        elif kind == "sweep":
            probes.append({"id": p.get("id"), "per_model": [one(pm) for pm in F.as_list(p.get("per_model"))]})
        else:
            probes.append(one(p))
    spec = F.as_dict(result.get("spec"))
    block = F.as_dict(spec.get("b")) if kind == "compare" and "b" in spec else spec
    out = {"kind": kind, "tool": result.get("tool"), "seed": result.get("seed"), "suite": result.get("suite"),
           "probes": probes, "not_run": F.dicts(result.get("not_run"))}
    for key in ("model", "model_a", "model_b", "models"):
        if key in result:
            out[key] = result[key]
    if block:
        out["spec"] = {"passed": block.get("passed"), "failed": block.get("failed"),
                       "inconclusive": block.get("inconclusive"),
                       "clauses": [{k: c.get(k) for k in ("kind", "probe", "verdict", "measured_level", "limit")}
                                   for c in F.dicts(block.get("clauses"))]}
    if files is not None:
        out["files"] = files
    return out
