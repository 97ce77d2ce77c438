"""The one-screen plain-text summary printed to stdout after an audit or compare.

ASCII only, no colour codes, every line at most ``width`` columns (long user strings are cut with
"..."), so it survives any terminal, CI log or e-mail. Where the report files went is printed by the
caller.
"""

from __future__ import annotations

from typing import Any

from . import _fmt as F


def _cut(s: str, width: int) -> str:
    s = s.encode("ascii", "replace").decode("ascii")
    return s if len(s) <= width else s[: max(width - 3, 0)].rstrip() + "..."


def _table(header: list[str], rows: list[list[str]], width: int, max_first: int = 26,
           gap: int = 2) -> list[str]:
    """Left-aligned columns; the first column is cut to ``max_first``, every line to ``width``."""
    rows = [[_cut(r[0], max_first)] + r[1:] for r in rows]
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for r in [header] + rows:
        cells = [str(c).ljust(w) for c, w in zip(r, widths)]
        lines.append(_cut((" " * gap).join(cells).rstrip(), width))
    return lines


def _reasons(items: list[tuple[str, str]], width: int) -> list[str]:
    if not items:
        return []
    id_w = min(max(len(i) for i, _ in items), 26)
    return [_cut(f"  {_cut(i, id_w).ljust(id_w)}  {F.text(r)}", width) for i, r in items]


def _header_model(label: str, model: Any, width: int) -> str:
    m = F.as_dict(model)
    spec = F.text(m.get("spec") or m.get("name"))
    fp = F.short_fp(m.get("fingerprint"))
    tail = f"  [{fp}]"
    room = max(width - len(label) - len(tail), 12)
    return _cut(f"{label}{_cut(spec, room)}{tail}", width)


def _tool(result: dict) -> str:
    tool = F.as_dict(result.get("tool"))
    return f"{F.text(tool.get('name') or 'creepscan')} {F.text(tool.get('version'))}"


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
    header = ["probe", "level", "linear probe model/floor", "few-shot k->thr"]
    header += ["zero-shot"] * with_zs + ["TAR@1e-3"] * with_ver
    rows = []
    for p in probes:
        mm, fm = F.model_metrics(p), F.floor_metrics(p)
        lp = (f"{F.pct(F.get(mm, 'linear_probe', 'accuracy'))} / "
              f"{F.pct(F.get(fm, 'linear_probe', 'accuracy'))}")
        row = [F.text(p.get("id")), F.level_name(p.get("risk_level")).upper(), lp, F.samples_text(mm)]
        if with_zs:
            row.append(F.pct(F.get(mm, "zero_shot", "accuracy")))
        if with_ver:
            row.append(F.tar_text(F.get(mm, "verification"), "1e-3").replace("not measurable",
                                                                              "not meas."))
        rows.append(row)
    out += _table(header, rows, width)
    out += ["", "why:"]
    out += _reasons([(F.text(p.get("id")), F.text(p.get("risk_reason"))) for p in probes], width)
    return out


def _compare(result: dict, width: int) -> list[str]:
    probes = F.compare_order(F.probe_list(result))
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
        rows.append([F.text(cp.get("id")), f"{la} -> {lb}",
                     F.pp(F.get(cp, "delta", "linear_probe")), F.headline_text(cp), F.p_value(cp.get("p_adjusted")),
                     " ".join(flags)])
    out += _table(header, rows, width)
    out += ["", "why (B):"]
    out += _reasons([(F.text(cp.get("id")), F.text(F.get(cp, "b", "risk_reason"))) for cp in probes],
                    width)
    return out


def summary_text(result: dict, width: int = 100) -> str:
    """The one-screen summary of an audit or compare result; every line fits ``width`` columns."""
    width = max(int(width), 40)
    lines = _compare(result, width) if F.is_compare(result) else _audit(result, width)
    for m in result.get("not_run") or []:
        lines.append(_cut(f"NOT RUN {F.text(m.get('id'))}: {F.text(m.get('reason'))}", width))
    return "\n".join(lines) + "\n"
