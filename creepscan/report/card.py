"""Model card export: a use-spec verdict block and its report, as the text model users read.

Three files, all rendered from ``report.json`` alone (the report plus the ``"spec"`` block that
``creepscan.spec.evaluate_spec`` or ``compare_spec`` returned), so ``creepscan card REPORT_DIR``
rewrites them byte for byte:

- ``model-card.md``: "Intended uses", "Out-of-scope and prohibited uses", "Repurposing evidence"
  sections to paste into a Hugging Face README. Every string from the report or the spec goes
  through ``md()`` (HTML-escaped, Markdown-escaped), so a label such as ``<script>`` stays text.
- ``model-card.yaml``: the same facts as Hugging Face front-matter fields under the ``creepscan:``
  key (written here, deterministically: every string double-quoted, floats always with a dot).
- ``model-card.cdx.json``: a CycloneDX 1.6 ``modelCard`` fragment: ``considerations.useCases``
  (allowed uses), ``considerations.ethicalConsiderations`` (prohibited uses) and name/value
  ``properties`` (CycloneDX allows ``properties`` on ``modelCard``, not inside ``considerations``).

For a compare report the card describes MODEL_B, with MODEL_A's verdicts beside it as the baseline.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from . import jsonio
from ._fmt import NA, as_dict, as_list
from .markdown import md

__all__ = ["CARD_FILES", "write_card", "regenerate_card", "render_card_markdown", "render_card_yaml",
           "render_card_cyclonedx", "report_sha256"]

CARD_FILES = ("model-card.md", "model-card.yaml", "model-card.cdx.json")
PROPERTY_PREFIX = "creepscan"


def report_sha256(report_bytes: bytes) -> str:
    """``sha256:<hex>`` of the bytes of report.json."""
    return "sha256:" + hashlib.sha256(report_bytes).hexdigest()


# ---------------------------------------------------------------------------------------------------
# The one view the three renderers read


def _view(report: dict, spec_block: dict, sha: str) -> dict:
    if not isinstance(report, dict):
        raise ValueError(f"report must be the report.json dict, got {type(report).__name__}")
    if not isinstance(spec_block, dict):
        raise ValueError("spec_block must be the dict evaluate_spec (or compare_spec) returned, "
                         f"got {type(spec_block).__name__}")
    compare = isinstance(spec_block.get("b"), dict) and isinstance(spec_block.get("a"), dict)
    block = spec_block["b"] if compare else spec_block
    if not isinstance(block.get("clauses"), list):
        raise ValueError("spec_block has no 'clauses' list: pass what creepscan.spec.evaluate_spec returned")
    model = as_dict(report.get("model_b" if compare else "model"))
    baseline = {}
    if compare:
        baseline = {f"{c.get('kind')} {c.get('probe')}": c for c in as_list(spec_block["a"].get("clauses"))}
    return {
        "block": block,
        "baseline": baseline,
        "baseline_model": as_dict(report.get("model_a")) if compare else {},
        "model_name": block.get("model") or model.get("spec") or model.get("name") or NA,
        "model_spec": model.get("spec"),
        "model_fingerprint": model.get("fingerprint"),
        "tool_version": as_dict(report.get("tool")).get("version"),
        "seed": report.get("seed"),
        "report_sha256": sha,
        "allowed": [c for c in block["clauses"] if isinstance(c, dict) and c.get("kind") == "allowed"],
        "prohibited": [c for c in block["clauses"] if isinstance(c, dict) and c.get("kind") == "prohibited"],
    }


def _f2(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else NA


def _with_ci(v: Any, ci: Any) -> str:
    s = _f2(v)
    if s != NA and isinstance(ci, list) and len(ci) == 2:
        s += f" [{_f2(ci[0])}, {_f2(ci[1])}]"
    return s


def _limit(c: dict) -> str:
    limit = c.get("limit")
    return md(limit) if isinstance(limit, str) else _f2(limit)


def _ev(c: dict) -> dict:
    return as_dict(c.get("evidence"))


def _title(c: dict) -> str:
    title = _ev(c).get("title")
    probe = c.get("probe")
    return f"{title} ({probe})" if title and title != probe else str(probe)


def _list_text(items: Any) -> str:
    return "; ".join(str(x) for x in as_list(items)) or NA


# ---------------------------------------------------------------------------------------------------
# model-card.md


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c or NA for c in cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), "|" + "|".join(" --- " for _ in header) + "|"] + [_row(r) for r in rows]


def adaptation_lines(report: dict, probe_id: Any) -> list[str]:
    """For an adapted model (a PEFT adapter, or audited with --base): whether the adaptation raised,
    kept or lowered this probe's level, against the base's level, with the paired test's verdict."""
    for p in as_list(report.get("probes")):
        a = as_dict(as_dict(p).get("adaptation"))
        if as_dict(p).get("id") == probe_id and a:
            base = as_dict(a.get("base"))
            sig = "a significant change" if a.get("significant") else "no significant change"
            p_adj = a.get("p_adjusted")
            p_text = f"{p_adj:.3g}" if isinstance(p_adj, (int, float)) else NA
            name = md(base.get("spec") or base.get("name"))
            return [f"- The adaptation {md(a.get('change'))} this risk: base {name} "
                    f"rates {md(a.get('base_level'))}, the adapted model {md(a.get('level'))} ({sig} in the paired "
                    f"test, p = {p_text} after Holm across probes)"]
    return []


def render_card_markdown(report: dict, spec_block: dict, report_sha: str) -> str:
    """model-card.md: the spec's clauses and their evidence, Markdown with no raw HTML."""
    v = _view(report, spec_block, report_sha)
    b = v["block"]
    base = v["baseline"]
    n = len(b["clauses"])
    if b.get("passed"):
        result = f"**Use specification: passed** ({n} clause{'s' * (n != 1)}"
        result += ", inconclusive ones allowed)." if b.get("inconclusive") else ")."
    else:
        bad = as_list(b.get("failed")) + ([] if b.get("allow_inconclusive") else as_list(b.get("inconclusive")))
        result = f"**Use specification: failed** ({len(bad)} of {n} clauses: {md(', '.join(map(str, bad)))})."
    lines = [
        f"Use specification of {md(v['model_name'])}, checked by creepscan {md(v['tool_version'])}. {result}",
        "",
        "## Intended uses",
        "",
    ]
    if b.get("note"):
        lines += [md(b["note"]), ""]
    if v["allowed"]:
        lines += ["The model must still do these jobs. Skill is the best adaptation attack's "
                  "(balanced accuracy - chance) / (1 - chance) on held-out images (0 = chance, 1 = perfect), "
                  "with its 95% CI; a use passes when the CI's lower bound reaches the required skill.", ""]
        header = ["Use (probe)", "Required skill", "Measured skill [95% CI]", "Verdict", "Context"]
        if base:
            header.insert(4, "Baseline (model A)")
        rows = []
        for c in v["allowed"]:
            ev = _ev(c)
            row = [md(_title(c)), _limit(c), _with_ci(ev.get("best_skill"), ev.get("skill_ci95")),
                   md(c.get("verdict")), md(_list_text(c.get("context")))]
            if base:
                row.insert(4, md(as_dict(base.get(f"allowed {c.get('probe')}")).get("verdict")))
            rows.append(row)
        lines += _table(header, rows) + [""]
        lines += [f"- {md(c.get('rule'))}" for c in v["allowed"]] + [""]
        lines += [f"- {md(c.get('probe'))}: {md(c['note'])}" for c in v["allowed"] if c.get("note")]
        if any(c.get("note") for c in v["allowed"]):
            lines.append("")
    else:
        lines += ["The use specification names no allowed uses to check.", ""]

    lines += ["## Out-of-scope and prohibited uses", ""]
    if v["prohibited"]:
        lines += ["The model must not be used for these. creepscan measured how cheaply a holder of the "
                  "model can adapt it to each one: none < low < medium < high < critical; inconclusive "
                  "means the data cannot tell. A use fails when its measured level is above the highest "
                  "level tolerated.", ""]
        header = ["Prohibited use (probe)", "Highest level tolerated", "Measured level", "Verdict",
                  "Legal basis", "Context"]
        if base:
            header.insert(4, "Baseline (model A)")
        rows = []
        for c in v["prohibited"]:
            row = [md(_title(c)), md(c.get("limit")), md(c.get("measured_level")), md(c.get("verdict")),
                   md(_list_text(c.get("legal_basis"))), md(_list_text(c.get("context")))]
            if base:
                bc = as_dict(base.get(f"prohibited {c.get('probe')}"))
                row.insert(4, md(f"{bc.get('verdict', NA)} ({bc.get('measured_level') or NA})"))
            rows.append(row)
        lines += _table(header, rows) + [""]
        lines += [f"- {md(c.get('probe'))}: {md(c['note'])}" for c in v["prohibited"] if c.get("note")]
        if any(c.get("note") for c in v["prohibited"]):
            lines.append("")
    else:
        lines += ["The use specification names no prohibited uses.", ""]

    lines += ["## Repurposing evidence", ""]
    if v["prohibited"]:
        lines += ["Numbers are the audit's, on held-out images never used for fitting; the floor is the same "
                  "architecture with random weights (what an adversary gets without this model's training).", ""]
    for c in v["prohibited"]:
        ev = _ev(c)
        lines += [f"### {md(_title(c))}", ""]
        if ev.get("capability"):
            lines.append(f"- What a misuser would do: {md(ev['capability'])}")
        lines.append(f"- Verdict: **{md(c.get('verdict'))}**: {md(c.get('rule'))}")
        if not ev:
            lines += ["- Not measured: the probe was not in the report.", ""]
            continue
        lines += [
            f"- Measured level: {md(c.get('measured_level'))} (rule: {md(ev.get('risk_rule'))})"
            + (f"; levels the CIs allow: {md(ev['level_range'][0])} to {md(ev['level_range'][1])}"
               if ev.get("level_range") else ""),
            f"- Best adaptation skill [95% CI]: {_with_ci(ev.get('best_skill'), ev.get('skill_ci95'))}"
            + (f" ({md(ev['attack'])})" if ev.get("attack") else ""),
            f"- Skill gained over the floor [95% CI]: {_with_ci(ev.get('skill_gain'), ev.get('skill_gain_ci95'))}",
            f"- Labelled images per class to reach the skill threshold: {md(ev.get('samples_to_threshold'))}",
            f"- Probe data: {md(ev.get('data_source'))}, fingerprint {md(ev.get('data_fingerprint'))}",
        ]
        if base:
            bc = as_dict(base.get(f"prohibited {c.get('probe')}"))
            lines.append(f"- Baseline (model A): {md(bc.get('measured_level'))}, {md(bc.get('verdict'))}")
        lines += adaptation_lines(report, c.get("probe"))
        lines.append("")
    src = as_dict(b.get("source"))
    prov = [
        ["Model", md(v["model_spec"])],
        ["Model fingerprint", md(v["model_fingerprint"])],
    ]
    if base:
        prov += [["Baseline model (A)", md(v["baseline_model"].get("spec"))],
                 ["Baseline fingerprint", md(v["baseline_model"].get("fingerprint"))]]
    prov += [
        ["creepscan version", md(v["tool_version"])],
        ["Seed", md(v["seed"])],
        ["Use specification",
         f"{md(src.get('file'))} ({md(src.get('sha256'))}), spec_version {md(b.get('spec_version'))}"],
        ["Inconclusive clauses", "allowed" if b.get("allow_inconclusive") else "fail the specification"],
        ["Report hash (sha256 of report.json)", md(v["report_sha256"])],
    ]
    lines += ["### Provenance", ""] + _table(["Item", "Value"], prov)
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------
# model-card.yaml


def _yaml_str(s: str) -> str:
    # Double-quoted YAML: escape what a YAML reader rejects or would fold, keep other text readable.
    out = []
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\t\n\r":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r"}[ch])
        elif o < 0x20 or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF or o in (0xFEFF, 0xFFFE, 0xFFFF, 0x2028, 0x2029):
            out.append(f"\\u{o:04X}" if o > 0xFF else f"\\x{o:02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "null"
        r = repr(v)
        if "e" in r:  # YAML 1.1 readers (PyYAML) need a dot in the mantissa and a sign on the exponent
            mant, exp = r.split("e")
            mant = mant if "." in mant else mant + ".0"
            r = f"{mant}e{exp if exp[0] in '+-' else '+' + exp}"
        return r
    return _yaml_str(str(v))


def _yaml_lines(obj: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, val in obj.items():
            key = str(k)
            if isinstance(val, dict) and val:
                lines += [f"{pad}{key}:"] + _yaml_lines(val, indent + 1)
            elif isinstance(val, list) and val and any(isinstance(x, (dict, list)) for x in val):
                lines += [f"{pad}{key}:"] + _yaml_lines(val, indent + 1)
            elif isinstance(val, list):
                lines.append(f"{pad}{key}: [{', '.join(_yaml_scalar(x) for x in val)}]")
            elif isinstance(val, dict):
                lines.append(f"{pad}{key}: {{}}")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(val)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                sub = _yaml_lines(item, indent + 1)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {_yaml_scalar(item) if not isinstance(item, (dict, list)) else '[]'}")
    return lines


def _clause_facts(c: dict, baseline: dict) -> dict:
    ev = _ev(c)
    facts = {"probe": c.get("probe"), "title": ev.get("title")}
    if c.get("kind") == "allowed":
        facts["min_skill"] = c.get("limit")
    else:
        facts["max_risk"] = c.get("limit")
    facts.update({
        "verdict": c.get("verdict"),
        "measured_level": c.get("measured_level"),
        "level_range": ev.get("level_range") or [],
        "best_skill": ev.get("best_skill"),
        "best_skill_ci95": ev.get("skill_ci95") or [],
        "attack": ev.get("attack"),
        "skill_gain": ev.get("skill_gain"),
        "skill_gain_ci95": ev.get("skill_gain_ci95") or [],
        "samples_to_threshold": ev.get("samples_to_threshold"),
        "data_source": ev.get("data_source"),
        "data_fingerprint": ev.get("data_fingerprint"),
        "rule": c.get("rule"),
    })
    if c.get("kind") == "prohibited":
        facts["legal_basis"] = [str(x) for x in as_list(c.get("legal_basis"))]
    facts["context"] = [str(x) for x in as_list(c.get("context"))]
    if baseline:
        bc = as_dict(baseline.get(f"{c.get('kind')} {c.get('probe')}"))
        facts["baseline_verdict"] = bc.get("verdict")
        facts["baseline_level"] = bc.get("measured_level")
    return facts


def render_card_yaml(report: dict, spec_block: dict, report_sha: str) -> str:
    """model-card.yaml: Hugging Face front-matter fields, all under ``creepscan:``."""
    v = _view(report, spec_block, report_sha)
    b = v["block"]
    src = as_dict(b.get("source"))
    doc = {
        "tool_version": v["tool_version"],
        "model": v["model_name"],
        "model_spec": v["model_spec"],
        "model_fingerprint": v["model_fingerprint"],
        "seed": v["seed"],
        "report_sha256": v["report_sha256"],
        "spec_version": b.get("spec_version"),
        "spec_file": src.get("file"),
        "spec_sha256": src.get("sha256"),
        "passed": bool(b.get("passed")),
        "allow_inconclusive": bool(b.get("allow_inconclusive")),
        "failed": [str(x) for x in as_list(b.get("failed"))],
        "inconclusive": [str(x) for x in as_list(b.get("inconclusive"))],
        "intended_uses": [_clause_facts(c, v["baseline"]) for c in v["allowed"]],
        "prohibited_uses": [_clause_facts(c, v["baseline"]) for c in v["prohibited"]],
    }
    if v["baseline"]:
        doc["baseline_model_spec"] = v["baseline_model"].get("spec")
        doc["baseline_model_fingerprint"] = v["baseline_model"].get("fingerprint")
    head = ["# creepscan use-specification results: Hugging Face model-card metadata.",
            "# Paste these lines into the README's front matter (between its --- lines)."]
    return "\n".join(head + _yaml_lines({"creepscan": doc}, 0)) + "\n"


# ---------------------------------------------------------------------------------------------------
# model-card.cdx.json


def render_card_cyclonedx(report: dict, spec_block: dict, report_sha: str) -> dict:
    """A CycloneDX 1.6 ``modelCard`` object: ``considerations`` (useCases, ethicalConsiderations)
    and ``properties`` (name/value strings under ``creepscan:``). Embed it as a component's
    ``modelCard``."""
    v = _view(report, spec_block, report_sha)
    b = v["block"]
    use_cases = []
    if b.get("note"):
        use_cases.append(str(b["note"]))
    for c in v["allowed"]:
        ev = _ev(c)
        limit = c.get("limit") if isinstance(c.get("limit"), str) else _f2(c.get("limit"))
        use_cases.append(f"{_title(c)}: required skill {limit}, measured "
                         f"{_with_ci(ev.get('best_skill'), ev.get('skill_ci95'))}: {c.get('verdict')}")
    ethical = []
    for c in v["prohibited"]:
        basis = as_list(c.get("legal_basis"))
        context = as_list(c.get("context"))
        text = (f"Prohibited use. Highest level tolerated: {c.get('limit')}; measured: "
                f"{c.get('measured_level') or NA}; verdict: {c.get('verdict')}. {c.get('rule')}")
        if basis:
            text += f". Legal basis: {'; '.join(map(str, basis))}"
        if context:
            text += f". Context: {'; '.join(map(str, context))}"
        ethical.append({"name": _title(c), "mitigationStrategy": text})
    src = as_dict(b.get("source"))
    props = [
        ("version", v["tool_version"]), ("report:sha256", v["report_sha256"]), ("seed", v["seed"]),
        ("model:fingerprint", v["model_fingerprint"]), ("spec:file", src.get("file")),
        ("spec:sha256", src.get("sha256")), ("spec:passed", bool(b.get("passed"))),
        ("spec:allow_inconclusive", bool(b.get("allow_inconclusive"))),
    ]
    for c in b["clauses"]:
        if not isinstance(c, dict):
            continue
        ev = _ev(c)
        key = f"clause:{c.get('kind')}:{c.get('probe')}"
        props += [(f"{key}:verdict", c.get("verdict")), (f"{key}:limit", c.get("limit")),
                  (f"{key}:measured_level", c.get("measured_level")),
                  (f"{key}:best_skill", ev.get("best_skill")),
                  (f"{key}:best_skill_ci95", ev.get("skill_ci95"))]
    properties = [{"name": f"{PROPERTY_PREFIX}:{k}", "value": _prop_value(val)} for k, val in props if val is not None]
    considerations: dict = {"useCases": use_cases}
    if ethical:
        considerations["ethicalConsiderations"] = ethical
    return {"considerations": considerations, "properties": properties}


def _prop_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


# ---------------------------------------------------------------------------------------------------
# Files


def write_card(report: dict, spec_block: dict, out_dir, report_bytes: bytes | None = None) -> list[Path]:
    """Write model-card.md, model-card.yaml and model-card.cdx.json into ``out_dir``.

    ``report_bytes`` are the bytes of the report.json the card speaks for (hashed into the card);
    when None they are the bytes ``write_reports`` writes for ``report``, so a card written beside
    the report at audit time and one regenerated from the file agree byte for byte.
    Returns the three paths in that order.
    """
    clean = jsonio.to_jsonable(report)
    block = jsonio.to_jsonable(spec_block)
    if report_bytes is None:
        report_bytes = jsonio.dumps(clean).encode("utf-8")
    sha = report_sha256(report_bytes)
    out = Path(out_dir)
    texts = (
        render_card_markdown(clean, block, sha),
        render_card_yaml(clean, block, sha),
        json.dumps(render_card_cyclonedx(clean, block, sha), indent=2, ensure_ascii=False) + "\n",
    )
    return [jsonio.write_atomic(out / name, text) for name, text in zip(CARD_FILES, texts)]


def regenerate_card(report_dir) -> list[Path]:
    """Rewrite the three card files of ``report_dir`` from its report.json (no recomputation).

    Raises ``CreepscanError`` when report.json is missing, unreadable, or has no ``"spec"`` block.
    """
    from ..errors import CreepscanError

    folder = Path(report_dir)
    path = folder / "report.json"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CreepscanError(f"no report.json in {folder}; give the --out folder of a creepscan audit "
                             "run with --spec") from None
    except OSError as exc:
        raise CreepscanError(f"cannot read {path}: {exc.strerror}") from None
    try:
        report = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CreepscanError(f"{path} is not valid JSON ({' '.join(str(exc).split())}); rerun the audit") from None
    spec_block = report.get("spec") if isinstance(report, dict) else None
    if not isinstance(spec_block, dict):
        raise CreepscanError(f"{path} has no \"spec\" block: it was written without --spec; rerun "
                             f"creepscan audit MODEL --spec FILE --out {folder}")
    try:
        return write_card(report, spec_block, folder, report_bytes=data)
    except ValueError as exc:
        raise CreepscanError(f"{path}: the \"spec\" block is malformed ({exc}); rerun the audit with --spec") from None
