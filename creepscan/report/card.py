"""Model card export: what the audit found, in the forms the ecosystem reads.

Two files, both rendered from ``report.json`` alone (the report plus the ``"spec"`` block that
``creepscan.spec.evaluate_spec`` or ``compare_spec`` returned), so ``creepscan card REPORT_DIR``
rewrites them byte for byte:

- ``model-card.md``: a Hugging Face model card. Its YAML front matter is written by
  ``huggingface_hub`` (``ModelCardData`` with ``EvalResult``s: one ``model-index`` result per probe,
  with the best adaptation skill and its 95% CI, the skill gained over the floor, and the risk
  level); its body has a title, what the model is, the audit's date, version, seed and suite, the
  use specification's verdicts, the evidence per prohibited use, the limitations of the audit and
  a link to the report. Every string from the report goes through ``md()`` (inert Markdown).
- ``model-card.cdx.json``: a complete CycloneDX 1.6 BOM, built and serialised by
  ``cyclonedx-python-lib``: the model as a ``machine-learning-model`` component with its hash,
  the probe data sets as ``data`` components with theirs, creepscan as the tool. The library has
  no model-card classes, so the component's ``modelCard`` (performance metrics with confidence
  intervals, findings as ethical considerations, limitations) is added to the serialised JSON,
  which the tests validate with the library's strict 1.6 validator.

Nothing machine-specific is shown: a model given by path is named by its file name, and the data
by its fingerprint. For a compare report the card describes MODEL_B, with MODEL_A as the baseline.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from ..result import (
    AuditReport,
    CompareReport,
    CompareSpec,
    ModelInfo,
    Probe,
    Report,
    SpecClause,
    SpecEvidence,
    SpecSource,
    SpecVerdicts,
    load_report,
    to_json_dict,
)
from . import jsonio
from ._fmt import NA
from .markdown import md

__all__ = ["CARD_FILES", "write_card", "regenerate_card", "render_card_markdown", "render_card_cyclonedx",
           "report_sha256", "public_name", "LIMITATIONS"]

CARD_FILES = ("model-card.md", "model-card.cdx.json")
PROPERTY_PREFIX = "creepscan"
CARD_TAGS = ["creepscan", "function-creep-audit", "model-audit"]
# report.json's model block names its loader (open_clip, transformers, peft, timm, plug-in); the
# Hub's library_name for each (a plug-in has none the Hub knows)
HUB_LIBRARIES = {"open_clip": "open_clip", "transformers": "transformers", "peft": "peft", "timm": "timm"}
# attack ids as words: a card is read by people, not by the code that chose the ids
ATTACK_WORDS = {"linear_probe": "linear probe", "few_shot": "few-shot", "zero_shot": "zero-shot",
                "prototype_cl2n": "prototype classifier", "gd_budget": "budgeted gradient descent",
                "knn": "k-nearest neighbours", "mlp": "small MLP head", "finetune": "fine-tuning",
                "open_set": "open-set identification"}

LIMITATIONS = [
    "Levels are lower bounds on what a misuser can do: the audit tries linear probes, few-shot classifiers, "
    "zero-shot text prompts, embedding matching and small heads{finetune} on the probe images. An adversary with "
    "more labelled data, full fine-tuning, other modalities or better attacks may do more.",
    "Each probe stands for one prohibited capability on its own images; the results hold for images like these. "
    "Other populations, image conditions and capabilities that no probe covers were not measured.",
    "An inconclusive probe means the data cannot tell (the untrained floor already solves it, or there are too "
    "few test images to rule out a gain); it is not evidence that the capability is absent.",
    "The verdicts compare the model with the same architecture untrained (the floor): they measure what the "
    "model's training added, not what any model of this size could learn.",
]


def report_sha256(report_bytes: bytes) -> str:
    """``sha256:<hex>`` of the bytes of report.json."""
    return "sha256:" + hashlib.sha256(report_bytes).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Names without the machine in them

_PATHLIKE = re.compile(r"^(?:/|\./|\.\./|~|[A-Za-z]:[\\/])")
_SCHEME = re.compile(r"^[A-Za-z][\w.+-]*:")  # hf-hub:, hf:, timm:, py:, ARCH:TAG


def _strip_path(token: str) -> str:
    if token.startswith("py:"):  # py:MODULE:CALLABLE where MODULE may be a .py path
        parts = token.split(":")
        return ":".join(["py"] + [_strip_path(p) for p in parts[1:]])
    if _PATHLIKE.match(token) or (("/" in token or "\\" in token) and not _SCHEME.match(token)):
        return re.split(r"[\\/]", token.rstrip("/\\"))[-1] or token
    return token


def public_name(text: Any) -> str | None:
    """A model spec without folders: every path-like word becomes its last part
    (``ViT-B-32 --weights /data/run/ckpt.pt`` -> ``ViT-B-32 --weights ckpt.pt``); hub names
    (``hf-hub:org/name``, ``hf:org/name``) stay whole."""
    if not isinstance(text, str):
        return None
    return " ".join(_strip_path(t) for t in text.split())


def _attack_words(text: Any) -> str:
    s = str(text)
    for key, words in ATTACK_WORDS.items():
        s = re.sub(rf"\b{key}\b", words, s)
    return s.replace("few-shot_k", "few-shot k=")


# ---------------------------------------------------------------------------------------------------
# The one view the two renderers read


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _model_facts(model: ModelInfo) -> dict:
    """What the card says about one model (a block of the typed report)."""
    base = model.base
    base_name = public_name(base.get("spec") or base.get("name")) if isinstance(base, dict) else public_name(base)
    base_fp = base.get("fingerprint") if isinstance(base, dict) else None
    library = model.library or getattr(model, "loader", None)  # loader: reports older than `library`
    licence = getattr(model, "license", None)  # a property the schema does not describe
    return {"name": public_name(model.spec) or model.name or NA, "arch": model.name,
            "fingerprint": model.fingerprint, "library": library if isinstance(library, str) else None,
            "license": licence if isinstance(licence, str) else None,
            "base": base_name, "base_fingerprint": base_fp}


def _typed_with_spec(report: Any, spec_block: Any) -> tuple[Report, Any]:
    """(the typed report, its use spec's verdicts: a ``SpecVerdicts`` or a ``CompareSpec``).

    ``report`` is the typed report (``result.load_report``) or report.json's dict; ``spec_block`` what
    ``spec.evaluate_spec`` or ``compare_spec`` returned (typed, or as report.json holds it), or None for the
    report's own ``spec``. A dict report is read once with ``spec_block`` as its ``spec`` block; a report or
    block that breaks the schema, or a block of the other kind of report, raises ``ValueError``."""
    if isinstance(spec_block, (SpecVerdicts, CompareSpec)) and isinstance(report, dict):
        spec_block = to_json_dict(spec_block)
    if isinstance(report, dict):
        if spec_block is None:
            spec_block = report.get("spec")
        if not isinstance(spec_block, dict):
            raise ValueError("spec_block must be what evaluate_spec (or compare_spec) returned, "
                             f"got {type(spec_block).__name__}")
        compare = isinstance(spec_block.get("b"), dict) and isinstance(spec_block.get("a"), dict)
        block = spec_block["b"] if compare else spec_block
        if not isinstance(block.get("clauses"), list):
            raise ValueError("spec_block has no 'clauses' list: pass what creepscan.spec.evaluate_spec returned")
        if report.get("kind") != ("compare" if compare else "audit"):
            raise ValueError(f"spec_block is {'compare' if compare else 'audit'}'s but the report is a "
                             f"{report.get('kind')}")
        typed = load_report({**report, "spec": spec_block})
        return typed, typed.spec
    if not isinstance(report, (AuditReport, CompareReport)):
        raise ValueError(f"report must be an audit or compare report (typed, or report.json's dict), "
                         f"got {type(report).__name__}")
    spec = report.spec if spec_block is None else spec_block
    want = CompareSpec if isinstance(report, CompareReport) else SpecVerdicts
    if not isinstance(spec, want):
        raise ValueError(f"spec_block must be a {want.__name__} for a {report.kind} report "
                         f"(what {'compare_spec' if want is CompareSpec else 'evaluate_spec'} returned), "
                         f"got {type(spec).__name__}")
    return report, spec


def _view(report: Any, spec_block: Any, sha: str) -> dict:
    """The card's facts, from the typed report and its use spec's verdicts (``_typed_with_spec``: a dict
    report is read once by ``result.load_report``). Each probe's headline evidence is
    ``spec.probe_evidence`` of its typed probe, as the spec's clauses carry it."""
    from ..spec import probe_evidence

    typed, spec = _typed_with_spec(report, spec_block)
    compare = isinstance(spec, CompareSpec)
    verdicts: SpecVerdicts = spec.b if compare else spec
    baseline = {f"{c.kind} {c.probe}": c for c in spec.a.clauses} if compare else {}
    probes = [p.b if compare else p for p in typed.probes]
    date = (typed.timings or {}).get("date")  # an open block: machine-dependent
    return {
        "block": verdicts,
        "baseline": baseline,
        "baseline_model": _model_facts(typed.model_a) if compare else {},
        "model": _model_facts(typed.model_b if compare else typed.model),
        "tool_version": typed.tool.version,
        "seed": typed.seed,
        "suite": getattr(typed, "suite", None),
        "date": date if isinstance(date, str) else None,
        "report_sha256": sha,
        "probes": [p for p in probes if p.id],
        "evidence": {p.id: probe_evidence(p) for p in probes if p.id},
        "not_run": list(typed.not_run or []),
        "finetune": any(p.metrics.finetune for p in probes),
        "allowed": [c for c in verdicts.clauses if c.kind == "allowed"],
        "prohibited": [c for c in verdicts.clauses if c.kind == "prohibited"],
    }


def _f2(v: Any) -> str:
    return f"{v:.2f}" if _num(v) is not None else NA


def _signed(v: Any) -> str:
    return f"{v:+.2f}" if _num(v) is not None else NA


def _with_ci(v: Any, ci: Any, fmt=_f2) -> str:
    s = fmt(v)
    if s != NA and isinstance(ci, (list, tuple)) and len(ci) == 2:
        s += f" [{_f2(ci[0])}, {_f2(ci[1])}]"
    return s


def _limit(c: SpecClause) -> str:
    return md(c.limit) if isinstance(c.limit, str) else _f2(c.limit)


def _ev(c: SpecClause) -> SpecEvidence:
    """The clause's evidence; an empty one when the probe was not run."""
    return c.evidence or SpecEvidence()


def _title(c: SpecClause) -> str:
    title = _ev(c).title
    return f"{title} ({c.probe})" if title and title != c.probe else str(c.probe)


def _list_text(items: Optional[list]) -> str:
    return "; ".join(str(x) for x in items or []) or NA


def _date_text(date: str | None) -> str:
    return date[:10] if date else "not recorded in the report"


# ---------------------------------------------------------------------------------------------------
# model-card.md: front matter (huggingface_hub) and body


def _eval_results(v: dict) -> list:
    """One model-index result per probe: skill with its CI, the cited skill gain, the level."""
    from huggingface_hub import EvalResult

    out = []
    for p in v["probes"]:
        ev = v["evidence"][p.id]
        common = dict(task_type="image-classification", task_name=f"{ev.title} (creepscan probe)",
                      dataset_type=str(p.id), dataset_name=f"creepscan probe {p.id}",
                      dataset_revision=p.data.fingerprint if p.data else None)
        if ev.best_skill is not None:
            args = {"attack": _attack_words(ev.attack)} if ev.attack else {}
            if ev.skill_ci95:
                args.update(ci95_lower=ev.skill_ci95[0], ci95_upper=ev.skill_ci95[1])
            out.append(EvalResult(**common, metric_type="skill", metric_name="best adaptation skill",
                                  metric_value=ev.best_skill, metric_args=args or None))
        if ev.skill_gain is not None:
            args = {"attack": _attack_words(ev.gain_attack)} if ev.gain_attack else {}
            if ev.skill_gain_ci95:
                args.update(ci95_lower=ev.skill_gain_ci95[0], ci95_upper=ev.skill_gain_ci95[1])
            out.append(EvalResult(**common, metric_type="skill_gain", metric_name="skill gained over the floor",
                                  metric_value=ev.skill_gain, metric_args=args or None))
        out.append(EvalResult(**common, metric_type="risk_level", metric_name="function-creep risk level",
                              metric_value=str(p.risk_level)))
    return out


def hub_id(name: Any) -> str | None:
    """``ORG/NAME`` when ``name`` is a Hugging Face Hub model (``hf:ORG/NAME[@REV]``, ``hf-hub:ORG/NAME``
    or ``ORG/NAME``), else None: the front matter's ``base_model`` must be a Hub id."""
    if not isinstance(name, str):
        return None
    bare = re.sub(r"^(hf-hub|hf):", "", name.strip()).split("@")[0]
    return bare if re.fullmatch(r"[\w.-]+/[\w.-]+", bare) else None


def _front_matter(v: dict) -> str:
    from huggingface_hub import ModelCardData

    m = v["model"]
    data = ModelCardData(model_name=m["name"], license=m["license"], tags=list(CARD_TAGS),
                         library_name=HUB_LIBRARIES.get(m["library"] or ""), base_model=hub_id(m["base"]),
                         eval_results=_eval_results(v) or None)
    return data.to_yaml()


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c or NA for c in cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), "|" + "|".join(" --- " for _ in header) + "|"] + [_row(r) for r in rows]


def adaptation_lines(probes: list[Probe], probe_id: Any) -> list[str]:
    """For an adapted model (a PEFT adapter, or audited with --base): whether the adaptation raised,
    kept or lowered this probe's level, against the base's level, with the paired test's verdict."""
    for p in probes:
        a = p.adaptation
        if p.id == probe_id and a is not None:
            sig = "a significant change" if a.significant else "no significant change"
            p_text = f"{a.p_adjusted:.3g}" if a.p_adjusted is not None else NA
            return [f"- The adaptation {md(a.change)} this risk: base {md(a.base.spec or a.base.name)} "
                    f"rates {md(a.base_level)}, the adapted model {md(a.level)} ({sig} in the paired "
                    f"test, p = {p_text} after Holm across probes)"]
    return []


def _result_line(b: SpecVerdicts) -> str:
    n = len(b.clauses)
    if b.passed:
        result = f"**Use specification: passed** ({n} clause{'s' * (n != 1)}"
        return result + (", inconclusive ones allowed)." if b.inconclusive else ").")
    bad = (b.failed or []) + ([] if b.allow_inconclusive else b.inconclusive or [])
    return f"**Use specification: failed** ({len(bad)} of {n} clauses: {md(', '.join(map(str, bad)))})."


def _intro(v: dict) -> list[str]:
    m = v["model"]
    what = f"{md(m['name'])}"
    if m["library"]:
        what += f", loaded with {md(m['library'])}"
    if m["base"]:
        what += f", an adapter on {md(m['base'])}"
    return [
        f"# {md(m['name'])}: function-creep audit",
        "",
        f"This card reports how cheaply a holder of the frozen model {what} can adapt it to prohibited "
        "capabilities (identifying people, inferring sensitive attributes, reading emotions), measured by "
        f"creepscan {md(v['tool_version'])}" + (f" on {md(v['date'][:10])}" if v["date"] else "")
        + f" (seed {md(v['seed'])}"
        + (f", probe suite {md(v['suite'])}" if v["suite"] else "") + ").",
        "",
        "The full audit, with every attack's numbers and learning curves, is in the report: "
        "[report.html](report.html) ([report.json](report.json)).",
        "",
        _result_line(v["block"]),
        "",
    ]


def _allowed_section(v: dict) -> list[str]:
    b, base = v["block"], v["baseline"]
    lines = ["## Intended uses", ""]
    if b.note:
        lines += [md(b.note), ""]
    if not v["allowed"]:
        return lines + ["The use specification names no allowed uses to check.", ""]
    lines += ["The model must still do these jobs. Skill is the best adaptation attack's "
              "(balanced accuracy - chance) / (1 - chance) on held-out images (0 = chance, 1 = perfect), "
              "with its 95% CI; a use passes when the CI's lower bound reaches the required skill.", ""]
    header = ["Use (probe)", "Required skill", "Measured skill [95% CI]", "Verdict", "Context"]
    if base:
        header.insert(4, "Baseline (model A)")
    rows = []
    for c in v["allowed"]:
        ev = _ev(c)
        row = [md(_title(c)), _limit(c), _with_ci(ev.best_skill, ev.skill_ci95), md(c.verdict),
               md(_list_text(c.context))]
        if base:
            row.insert(4, md(_baseline_verdict(base, c)))
        rows.append(row)
    lines += _table(header, rows) + [""]
    lines += [f"- {md(_attack_words(c.rule))}" for c in v["allowed"]] + [""]
    notes = [f"- {md(c.probe)}: {md(c.note)}" for c in v["allowed"] if c.note]
    return lines + notes + ([""] if notes else [])


def _prohibited_section(v: dict) -> list[str]:
    base = v["baseline"]
    lines = ["## Out-of-scope and prohibited uses", ""]
    if not v["prohibited"]:
        return lines + ["The use specification names no prohibited uses.", ""]
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
        row = [md(_title(c)), md(c.limit), md(c.measured_level), md(c.verdict), md(_list_text(c.legal_basis)),
               md(_list_text(c.context))]
        if base:
            bc = base.get(f"prohibited {c.probe}")
            row.insert(4, md(f"{bc.verdict if bc else NA} ({(bc.measured_level if bc else None) or NA})"))
        rows.append(row)
    lines += _table(header, rows) + [""]
    notes = [f"- {md(c.probe)}: {md(c.note)}" for c in v["prohibited"] if c.note]
    return lines + notes + ([""] if notes else [])


def _baseline_verdict(base: dict, c: SpecClause) -> Any:
    """Model A's verdict on the same clause (a compare card), or None."""
    bc = base.get(f"allowed {c.probe}")
    return bc.verdict if bc else None


def _evidence_lines(c: SpecClause, ev: SpecEvidence) -> list[str]:
    """A prohibited use's measured level and headline numbers."""
    why = ev.risk_reason
    stt = ev.samples_to_threshold
    return [
        f"- Measured level: {md(c.measured_level)}" + (f": {md(_attack_words(why))}" if why else "")
        + (f"; levels the CIs allow: {md(ev.level_range[0])} to {md(ev.level_range[1])}" if ev.level_range else ""),
        f"- Best adaptation skill [95% CI]: {_with_ci(ev.best_skill, ev.skill_ci95)}"
        + (f" ({md(_attack_words(ev.attack))})" if ev.attack else ""),
        f"- Skill gained over the floor [95% CI]: {_with_ci(ev.skill_gain, ev.skill_gain_ci95, _signed)}"
        + (f" ({md(_attack_words(ev.gain_attack))})" if ev.gain_attack else ""),
        f"- Labelled images per class to reach the skill threshold: {md(stt) if stt is not None else 'not reached'}",
        f"- Probe data fingerprint: {md(ev.data_fingerprint)}",
    ]


def _evidence_section(v: dict) -> list[str]:
    base = v["baseline"]
    lines = ["## Repurposing evidence", ""]
    if v["prohibited"]:
        lines += ["Numbers are the audit's, on held-out images never used for fitting; the floor is the same "
                  "architecture with random weights (what an adversary gets without this model's training).", ""]
    for c in v["prohibited"]:
        ev = _ev(c)
        lines += [f"### {md(_title(c))}", ""]
        if ev.capability:
            lines.append(f"- What a misuser would do: {md(ev.capability)}")
        lines.append(f"- Verdict: **{md(c.verdict)}** (highest level tolerated: {md(c.limit)})")
        if c.evidence is None:
            lines += ["- Not measured: the probe was not in the report.", ""]
            continue
        lines += _evidence_lines(c, ev)
        if base:
            bc = base.get(f"prohibited {c.probe}")
            lines.append(f"- Baseline (model A): {md(bc.measured_level if bc else None)}, "
                         f"{md(bc.verdict if bc else None)}")
        lines += adaptation_lines(v["probes"], c.probe)
        lines.append("")
    return lines


def _limitation_items(v: dict) -> list[str]:
    """The audit's limits in words: what the probes and the adversary do not cover."""
    items = [LIMITATIONS[0].format(finetune=", and budgeted fine-tuning of the last blocks" if v["finetune"] else
                                   " (the image tower stays frozen: no fine-tuning adversary ran)")]
    items += LIMITATIONS[1:]
    unsure = [p for p in v["probes"] if p.risk_level == "inconclusive"]
    if unsure:
        items.append("Inconclusive here: " + ", ".join(str(p.id) for p in unsure) + ".")
    if v["not_run"]:
        items.append("Not run (no data): " + ", ".join(str(n.id) for n in v["not_run"]) + ".")
    return items


def _limitations(v: dict) -> list[str]:
    return ["## Limitations", ""] + [f"- {md(t)}" for t in _limitation_items(v)] + [""]


def _provenance(v: dict) -> list[str]:
    b, m = v["block"], v["model"]
    src = b.source or SpecSource()
    prov = [["Model", md(m["name"])]]
    if m["library"]:
        prov.append(["Loaded with", md(m["library"])])
    if m["base"]:
        prov += [["Base model", md(m["base"])], ["Base fingerprint", md(m["base_fingerprint"])]]
    prov.append(["Model fingerprint", md(m["fingerprint"])])
    if v["baseline"]:
        prov += [["Baseline model (A)", md(v["baseline_model"]["name"])],
                 ["Baseline fingerprint", md(v["baseline_model"]["fingerprint"])]]
    prov += [
        ["Audit date", md(_date_text(v["date"]))],
        ["creepscan version", md(v["tool_version"])],
        ["Seed", md(v["seed"])],
        ["Probe suite", md(v["suite"]) if v["suite"] else "the probes named by the use specification"],
        ["Use specification",
         f"{md(src.file)} ({md(src.sha256)}), format version {md(b.spec_version)}"],
        ["Inconclusive clauses", "allowed" if b.allow_inconclusive else "fail the specification"],
        ["Report hash (sha256 of report.json)", md(v["report_sha256"])],
    ]
    return ["## Provenance", ""] + _table(["Item", "Value"], prov)


def render_card_body(report: Any, spec_block: Any, report_sha: str) -> str:
    """The card's Markdown body (no front matter, no raw HTML)."""
    v = _view(report, spec_block, report_sha)
    lines = (_intro(v) + _allowed_section(v) + _prohibited_section(v) + _evidence_section(v) + _limitations(v)
             + _provenance(v))
    return "\n".join(lines).rstrip("\n") + "\n"


def render_card_markdown(report: Any, spec_block: Any, report_sha: str) -> str:
    """model-card.md: Hugging Face front matter (written by huggingface_hub) and the body."""
    from huggingface_hub import ModelCard

    v = _view(report, spec_block, report_sha)
    card = ModelCard(f"---\n{_front_matter(v)}\n---\n\n{render_card_body(report, spec_block, report_sha)}")
    return card.content


# ---------------------------------------------------------------------------------------------------
# model-card.cdx.json: a CycloneDX 1.6 BOM


def _sha256_hex(fingerprint: Any) -> str | None:
    m = re.fullmatch(r"sha256:([0-9a-f]{64})", fingerprint) if isinstance(fingerprint, str) else None
    return m.group(1) if m else None


def _timestamp(date: str | None) -> datetime:
    if date:
        try:
            t = datetime.fromisoformat(date.replace("Z", "+00:00"))
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    # no date recorded (an old report): a fixed time, so the BOM stays reproducible from the report
    return datetime(1970, 1, 1, tzinfo=timezone.utc)


def _metric(kind: str, value: Any, slice_: str, ci: Any = None) -> dict:
    out = {"type": kind, "value": str(value), "slice": slice_}
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        out["confidenceInterval"] = {"lowerBound": str(ci[0]), "upperBound": str(ci[1])}
    return out


def _model_card_json(v: dict) -> dict:
    """The component's ``modelCard``: metrics with CIs per probe, findings, limitations."""
    metrics, findings = [], []
    for p in v["probes"]:
        ev = v["evidence"][p.id]
        pid = str(p.id)
        if ev.best_skill is not None:
            metrics.append(_metric("best adaptation skill", ev.best_skill, pid, ev.skill_ci95))
        if ev.skill_gain is not None:
            metrics.append(_metric("skill gained over the floor", ev.skill_gain, pid, ev.skill_gain_ci95))
        metrics.append(_metric("function-creep risk level", p.risk_level, pid))
        if not p.reference:
            findings.append({"name": f"{ev.title} ({pid}): risk level {p.risk_level}. "
                                     f"{_attack_words(ev.risk_reason or '')}".strip()})
    use_cases = [str(v["block"].note)] if v["block"].note else []
    for c in v["allowed"]:
        ev = _ev(c)
        use_cases.append(f"{_title(c)}: required skill {_f2(c.limit)}, measured "
                         f"{_with_ci(ev.best_skill, ev.skill_ci95)}: {c.verdict}")
    for c in v["prohibited"]:
        basis = "; ".join(map(str, c.legal_basis or []))
        findings.append({"name": f"Prohibited use {_title(c)}: highest level tolerated {c.limit}, measured "
                                 f"{c.measured_level or NA}: {c.verdict}"
                                 + (f" (legal basis: {basis})" if basis else "")})
    considerations: dict = {"technicalLimitations": _limitation_items(v)}
    if use_cases:
        considerations["useCases"] = use_cases
    if findings:
        considerations["ethicalConsiderations"] = findings
    return {"quantitativeAnalysis": {"performanceMetrics": metrics}, "considerations": considerations}


def render_card_cyclonedx(report: Any, spec_block: Any, report_sha: str) -> str:
    """model-card.cdx.json: the text of a CycloneDX 1.6 BOM (JSON), deterministic for a report."""
    from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    v = _view(report, spec_block, report_sha)
    m, b = v["model"], v["block"]
    # the serial number follows the report's bytes: the same report gives the same BOM
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"creepscan:{report_sha}"))
    bom.metadata.timestamp = _timestamp(v["date"])
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="creepscan",
                                                version=str(v["tool_version"])))

    def hashes(fp):
        hex_ = _sha256_hex(fp)
        return [HashType(alg=HashAlgorithm.SHA_256, content=hex_)] if hex_ else []

    props = [("report:sha256", v["report_sha256"]), ("seed", v["seed"]), ("model:fingerprint", m["fingerprint"]),
             ("audit:date", v["date"]), ("suite", v["suite"]), ("spec:file", b.source.file if b.source else None),
             ("spec:sha256", b.source.sha256 if b.source else None), ("spec:passed", bool(b.passed))]
    props += [(f"probe:{p.id}:risk_level", p.risk_level) for p in v["probes"]]
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=str(m["name"]), bom_ref="model",
        hashes=hashes(m["fingerprint"]),
        description=f"{m['name']}, audited by creepscan {v['tool_version']} for function creep",
        properties=[Property(name=f"{PROPERTY_PREFIX}:{k}", value=_prop_value(val)) for k, val in props
                    if val is not None],
        external_references=[ExternalReference(type=ExternalReferenceType.DOCUMENTATION, url=XsUri("report.html"),
                                               comment="the creepscan audit report, beside this file")])
    bom.metadata.component = model
    base = []
    if m["base"]:
        base = [Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=str(m["base"]), bom_ref="base",
                          hashes=hashes(m["base_fingerprint"]), description="the adapter's base model")]
        bom.components.add(base[0])
    bom.register_dependency(model, base)  # an adapter needs its base; other models stand alone
    for p in v["probes"]:
        bom.components.add(Component(type=ComponentType.DATA, name=f"creepscan probe data {p.id}",
                                     bom_ref=f"data-{p.id}", hashes=hashes(p.data.fingerprint if p.data else None),
                                     description=f"images of probe {p.id} ({p.n_images} images, "
                                                 f"{p.n_classes} classes)"))
    with warnings.catch_warnings():
        # the library warns that a root with no dependencies leaves the graph "incomplete": a model
        # that is not an adapter has none
        warnings.simplefilter("ignore", UserWarning)
        doc = json.loads(JsonV1Dot6(bom).output_as_string())
    # cyclonedx-python-lib models no modelCard (11.x): add it to the serialised component
    doc["metadata"]["component"]["modelCard"] = _model_card_json(v)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _prop_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


# ---------------------------------------------------------------------------------------------------
# Files


def write_card(report: Any, spec_block: Any, out_dir, report_bytes: bytes | None = None) -> list[Path]:
    """Write model-card.md and model-card.cdx.json into ``out_dir`` (``render_card``'s texts).

    ``report_bytes`` are the bytes of the report.json the card speaks for (hashed into the card);
    when None they are the bytes ``write_reports`` writes for a dict ``report``, so a card written beside
    the report at audit time and one regenerated from the file agree byte for byte.
    Returns the two paths in that order.
    """
    return jsonio.write_all_or_nothing(Path(out_dir), render_card(report, spec_block, report_bytes))


def render_card(report: Any, spec_block: Any = None, report_bytes: bytes | None = None) -> dict[str, str]:
    """The texts of model-card.md and model-card.cdx.json (file name -> text), as ``write_card`` writes them.

    ``report``: the typed report (``result.load_report``) or report.json's dict (made JSON-clean and read
    once); ``spec_block``: what ``spec.evaluate_spec`` (an audit) or ``compare_spec`` (a compare) returned,
    typed or as report.json holds it, or None for the report's own ``spec``. ``report_bytes`` None: the bytes
    of the dict as ``write_reports`` writes it (of ``result.to_json_dict(report)`` for a typed report)."""
    if isinstance(report, dict):
        report = jsonio.to_jsonable(report)
        if report_bytes is None:
            report_bytes = jsonio.dumps(report).encode("utf-8")
        if isinstance(spec_block, dict):
            spec_block = jsonio.to_jsonable(spec_block)
    elif report_bytes is None:
        report_bytes = jsonio.dumps(jsonio.to_jsonable(to_json_dict(report))).encode("utf-8")
    typed, spec = _typed_with_spec(report, spec_block)  # read once; the renderers below take it as it is
    sha = report_sha256(report_bytes)
    texts = (render_card_markdown(typed, spec, sha), render_card_cyclonedx(typed, spec, sha))
    return dict(zip(CARD_FILES, texts))


def regenerate_card(report_dir) -> list[Path]:
    """Rewrite the card files of ``report_dir`` from its report.json (no recomputation).

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
        load_report(report)
    except ValueError as exc:  # told apart from a malformed spec block below
        raise CreepscanError(f"{path}: {exc}; rerun the audit with --spec") from None
    try:
        return write_card(report, spec_block, folder, report_bytes=data)
    except ValueError as exc:
        raise CreepscanError(f"{path}: the \"spec\" block is malformed ({exc}); rerun the audit with --spec") from None
