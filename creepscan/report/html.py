"""report.html: one self-contained page (inline CSS and SVG, no scripts, no external resources).

Everything from the data goes through ``esc`` (``html.escape(..., quote=True)``), in text, in
attributes and inside the SVG. Numbers are printed with fixed precision, so the same result gives
the same bytes. No image of a person is embedded: the page shows numbers and curves only.
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

from . import _fmt as F
from . import plots

MAX_LIST = 20
MAX_LABELS = 60

LEVEL_COLOURS = {
    "none": ("#e7f4ea", "#1b5e20"),
    "low": ("#f1f5d8", "#4b5a00"),
    "medium": ("#fff3cd", "#7a4f00"),
    "high": ("#ffe0cc", "#a33b00"),
    "critical": ("#b71c1c", "#ffffff"),
    "n/a": ("#eeeeee", "#444444"),
}

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: #1d1f23;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 12px; }
h2 { font-size: 19px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
a { color: #1f5fbf; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
.meta dt { font-weight: 600; color: #444; }
.meta dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; background: #fff; margin: 6px 0 10px; }
table.metrics { width: auto; min-width: 70%; }
th, td { border: 1px solid #d9dce1; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #eef0f3; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
th.num { text-align: right; }
table.summary td:nth-child(3) { min-width: 280px; }
tr.rose td { background: #fff4ef; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px;
  font-weight: 700; letter-spacing: 0.04em; text-transform: uppercase; border: 1px solid rgba(0,0,0,0.15);
  white-space: nowrap; }
.probe { background: #fff; border: 1px solid #d9dce1; border-radius: 8px; padding: 4px 20px 14px;
  margin: 18px 0; }
.probe h2 { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
.probe h2 .pid { color: #666; font-weight: 400; font-size: 14px; }
.reason { font-size: 15px; margin: 6px 0; }
.rule, .note { color: #555; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; margin: 10px 0; }
figure { margin: 0; flex: 1 1 520px; max-width: 580px; }
figure svg { width: 100%; height: auto; border: 1px solid #e3e5e8; border-radius: 4px; }
figcaption { font-size: 12px; color: #555; margin-top: 4px; }
ul.list { margin: 4px 0 8px; padding-left: 20px; }
ul.list li { overflow-wrap: anywhere; }
.flag { font-weight: 700; color: #a33b00; }
.muted { color: #777; }
footer { margin-top: 30px; color: #777; font-size: 12px; }
"""


def esc(v: Any) -> str:
    return _html.escape(F.text(v), quote=True)


def _slug(i: int, pid: Any) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", str(pid).lower()).strip("-") or "probe"
    return f"probe-{i}-{s}"


def badge(level: Any) -> str:
    name = F.level_name(level)
    bg, fg = LEVEL_COLOURS.get(name, LEVEL_COLOURS["n/a"])
    return (f'<span class="badge level-{esc(name).replace(" ", "-").replace("/", "")}" '
            f'style="background:{bg};color:{fg}">{esc(name)}</span>')


def _table(header: list[str], rows: list[list[str]], num_cols: tuple[int, ...] = (),
           row_classes: list[str] | None = None, css: str = "") -> str:
    """Cells are already-escaped HTML."""
    num = ' class="num"'
    cls = f' class="{css}"' if css else ""
    out = [f"<table{cls}>", "<thead><tr>"]
    out += [f"<th{num if i in num_cols else ''}>{h}</th>" for i, h in enumerate(header)]
    out.append("</tr></thead>")
    out.append("<tbody>")
    for j, r in enumerate(rows):
        rc = row_classes[j] if row_classes and row_classes[j] else ""
        tr = f'<tr class="{rc}">' if rc else "<tr>"
        out.append(tr + "".join(f"<td{num if i in num_cols else ''}>{c if c else F.NA}</td>"
                                for i, c in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _capped_list(items: list, fmt, cap: int = MAX_LIST) -> str:
    lis = [f"<li>{fmt(x)}</li>" for x in items[:cap]]
    if len(items) > cap:
        lis.append(f'<li class="muted">and {len(items) - cap} more (see report.json)</li>')
    return '<ul class="list">' + "".join(lis) + "</ul>"


def _dl(pairs: list[tuple[str, str]]) -> str:
    return '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _model_pairs(model: Any, label: str = "Model") -> list[tuple[str, str]]:
    m = F.as_dict(model)
    spec = esc(m.get("spec") or m.get("name"))
    name = m.get("name")
    if name and name != m.get("spec"):
        spec += f' <span class="muted">({esc(name)})</span>'
    return [(label, spec), (f"{label} fingerprint", esc(m.get("fingerprint")))]


def _tool_text(result: dict) -> str:
    tool = F.as_dict(result.get("tool"))
    return (f"{esc(tool.get('name') or 'creepscan')} {esc(tool.get('version'))} "
            f"(report schema {esc(result.get('schema_version'))})")


def _page(title: str, body: list[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # forbid every fetch and script: the page must be inert and work offline
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'; img-src data:">',
        f"<title>{title}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        *body,
        "</main>",
        "</body>",
        "</html>",
    ]) + "\n"


# --- probe pieces ------------------------------------------------------------------------

def _data_block(p: dict, heading: str = "Data") -> list[str]:
    data, split = F.as_dict(p.get("data")), F.as_dict(p.get("split"))
    out = [f"<h3>{heading}</h3>"]
    pairs = [("Source", esc(data.get("source")))]
    if data.get("fingerprint"):
        pairs.append(("Data fingerprint", esc(data.get("fingerprint"))))
    pairs += [
        ("Images", f"{F.num(p.get('n_images'))} in {F.num(p.get('n_classes'))} classes "
                   f"(chance {F.pct(p.get('chance'))}); at most {F.num(data.get('max_per_class'))} "
                   f"per class"),
        ("Split", f"train {F.num(split.get('train'))}, val {F.num(split.get('val'))}, "
                  f"test {F.num(split.get('test'))} images"),
    ]
    out.append(_dl(pairs))
    labels = [x for x in F.as_list(p.get("labels")) if isinstance(x, dict)]
    if labels:
        shown = ", ".join(f'<span class="label">{esc(x.get("name") or x.get("label"))}</span> '
                          f'({F.num(x.get("n_images"))})' for x in labels[:MAX_LABELS])
        more = f", and {len(labels) - MAX_LABELS} more" if len(labels) > MAX_LABELS else ""
        out.append(f"<p><b>Labels ({len(labels)}):</b> {shown}{more}</p>")
    excluded = [x for x in F.as_list(p.get("excluded_classes")) if isinstance(x, dict)]
    if excluded:
        out.append(f"<p><b>Excluded classes ({len(excluded)}):</b></p>")
        out.append(_capped_list(excluded, lambda x: f"{esc(x.get('label'))} "
                                                    f"({F.num(x.get('n_images'))} images): "
                                                    f"{esc(x.get('reason'))}"))
    skipped = [x for x in F.as_list(p.get("skipped_images")) if isinstance(x, dict)]
    if skipped:
        out.append(f"<p><b>Skipped images ({len(skipped)}):</b></p>")
        out.append(_capped_list(skipped, lambda x: f"<code>{esc(x.get('path'))}</code>: "
                                                   f"{esc(x.get('reason'))}"))
    else:
        out.append("<p><b>Skipped images:</b> none</p>")
    return out


def _fs_cell(row: Any) -> str:
    if not isinstance(row, dict):
        return F.NA
    s = F.acc_ci(row)
    bits = []
    if row.get("winner"):
        bits.append(esc(row["winner"]))
    if F.is_num(row.get("episodes")):
        bits.append(f"{F.num(row['episodes'])} ep.")
    return f'{s} <span class="muted">({", ".join(bits)})</span>' if bits and s != F.NA else s


def _lp_cell(block: Any) -> str:
    s = F.acc_ci(block)
    c = F.get(block, "C")
    return f'{s} <span class="muted">C={F.num(c, 3)}</span>' if s != F.NA and F.is_num(c) else s


def _metrics_table(p: dict) -> str:
    mm, fm = F.model_metrics(p), F.floor_metrics(p)
    rows = []
    zm, zf = mm.get("zero_shot"), fm.get("zero_shot")
    rows.append(["Zero-shot", F.acc_ci(zm) if zm else "n/a (no text tower)",
                 F.acc_ci(zf) if zf else F.NA])
    rows.append(["Linear probe (full train split)", _lp_cell(mm.get("linear_probe")),
                 _lp_cell(fm.get("linear_probe"))])
    fsm, fsf = F.few_shot_by_k(mm), F.few_shot_by_k(fm)
    for k in sorted(set(fsm) | set(fsf)):
        rows.append([f"Few-shot k={k}", _fs_cell(fsm.get(k)), _fs_cell(fsf.get(k))])
    for u in F.as_list(mm.get("few_shot_unavailable")):
        if isinstance(u, dict):
            rows.append([f"Few-shot k={esc(u.get('k'))}",
                         f'<span class="muted">not run: {esc(u.get("reason"))}</span>', F.NA])
    vm, vf = mm.get("verification"), fm.get("verification")
    if isinstance(vm, dict) or isinstance(vf, dict):
        for far, _ in F.far_items(F.get(vm, "tar_at_far") or F.get(vf, "tar_at_far")):
            rows.append([f"Verification TAR at FAR {esc(far)}", F.tar_text(vm, far), F.tar_text(vf, far)])
        rows.append(["Verification ROC AUC", F.num(F.get(vm, "auc")), F.num(F.get(vf, "auc"))])
        rows.append(["Verification pairs (genuine / impostor)",
                     f"{F.num(F.get(vm, 'n_genuine'))} / {F.num(F.get(vm, 'n_impostor'))}",
                     f"{F.num(F.get(vf, 'n_genuine'))} / {F.num(F.get(vf, 'n_impostor'))}"])
    rows.append(["Samples per class to threshold", F.samples_text(mm), F.samples_text(fm)])
    return _table(["Attack", "Model", "Floor"], rows, num_cols=(1, 2), css="metrics")


def _uplift_html(p: dict) -> str:
    u = F.as_dict(p.get("uplift"))
    if not u:
        return "<p><b>Uplift over floor:</b> n/a</p>"
    ci = u.get("ci95")
    ci_s = (f" [{F.num(ci[0])}, {F.num(ci[1])}]" if isinstance(ci, list) and len(ci) == 2
            and F.is_num(ci[0]) and F.is_num(ci[1]) else "")
    return (f"<p><b>Uplift over floor:</b> skill {F.num(u.get('skill_model'))} (model) vs "
            f"{F.num(u.get('skill_floor'))} (floor), gain {F.signed(u.get('skill_gain'))}{ci_s}, "
            f"p = {F.p_value(u.get('p_value'))}, significant: {F.yes_no(u.get('significant'))}.</p>")


def _threshold_html(p: dict) -> str:
    thr = F.as_dict(p.get("threshold"))
    return (f'<p class="rule">Threshold: skill {F.num(thr.get("skill"), 2)} '
            f'(= balanced accuracy {F.pct(F.threshold_accuracy(p))}). '
            f'Rule that fired: <b>{esc(p.get("risk_rule"))}</b></p>')


def _figure(svg: str, caption: str) -> str:
    return f'<figure class="plot">\n{svg}\n<figcaption>{caption}</figcaption>\n</figure>'


def _policy(p: dict) -> str:
    pol = [esc(x) for x in F.as_list(p.get("policy"))]
    return "; ".join(pol) if pol else F.NA


# --- audit -------------------------------------------------------------------------------

def _audit_probe(i: int, p: dict) -> list[str]:
    ctrl = F.as_dict(p.get("control"))
    out = [f'<section class="probe" id="{_slug(i, p.get("id"))}">',
           f'<h2>{badge(p.get("risk_level"))} {esc(p.get("title") or p.get("id"))} '
           f'<span class="pid">{esc(p.get("id"))}</span></h2>',
           f'<p class="reason">{esc(p.get("risk_reason"))}</p>',
           _threshold_html(p),
           _dl([("Capability", esc(p.get("capability"))), ("Policy", _policy(p)),
                ("Floor (control)", f"{esc(ctrl.get('spec'))} "
                                    f'<span class="muted">{esc(F.short_fp(ctrl.get("fingerprint")))}</span>')]),
           '<div class="figs">',
           _figure(plots.learning_curve_svg(p),
                   "Balanced accuracy on held-out test images vs labelled images per class (few-shot, "
                   "best of prototype and logistic head, mean and 95% CI over episodes); right: linear "
                   "probe on the full training split. Floor: " + esc(ctrl.get("spec")) + ".")]
    if plots.has_verification(p):
        out.append(_figure(plots.roc_svg(p),
                           "Face-matching with the raw embeddings (cosine similarity of image pairs, no "
                           "training): true accept rate vs false accept rate."))
    out.append("</div>")
    out.append("<h3>Metrics (balanced accuracy on held-out test images, 95% CI)</h3>")
    out.append(_metrics_table(p))
    out.append(_uplift_html(p))
    out += _data_block(p)
    out.append("</section>")
    return out


def _audit_summary(probes: list[dict]) -> str:
    rows = []
    for i, p in enumerate(probes):
        mm, fm = F.model_metrics(p), F.floor_metrics(p)
        ver = mm.get("verification")
        rows.append([
            f'<a href="#{_slug(i, p.get("id"))}">{esc(p.get("id"))}</a>',
            badge(p.get("risk_level")),
            esc(p.get("risk_reason")),
            f"{F.pct(F.get(mm, 'linear_probe', 'accuracy'))} vs "
            f"{F.pct(F.get(fm, 'linear_probe', 'accuracy'))}",
            F.samples_text(mm),
            F.acc_ci(mm.get("zero_shot")) if mm.get("zero_shot") else F.NA,
            F.tar_text(ver, "1e-3") if isinstance(ver, dict) else F.NA,
        ])
    return _table(["Probe", "Level", "Reason", "Linear probe (model vs floor)",
                   "Few-shot k to threshold", "Zero-shot", "Verification TAR@1e-3"],
                  rows, num_cols=(3, 4, 5, 6), css="summary")


def _audit(result: dict) -> str:
    probes = F.probe_list(result)
    model = F.as_dict(result.get("model"))
    body = ["<header>", "<h1>creepscan audit report</h1>",
            _dl(_model_pairs(model) + [
                ("Seed", esc(result.get("seed"))), ("Suite", esc(result.get("suite"))),
                ("Settings", esc(F.settings_text(result.get("settings")))),
                ("Tool", _tool_text(result))]),
            "</header>",
            '<section id="summary"><h2>Summary</h2>',
            _audit_summary(probes),
            _not_run(result),
            '<p class="note">Accuracies are balanced accuracy (mean per-class recall) on held-out test '
            "images. The floor is the control encoder (by default the same architecture with random "
            "weights): what an adversary gets without this model's training.</p>",
            "</section>"]
    for i, p in enumerate(probes):
        body += _audit_probe(i, p)
    return _page(f"creepscan audit: {esc(model.get('spec') or model.get('name'))}", body)


# --- compare -----------------------------------------------------------------------------

def _compare_table(cp: dict) -> str:
    rows = [[esc(c) for c in row] for row in F.compare_metric_rows(cp)]
    return _table(["Metric", "A", "B", "Delta (B &minus; A)", "95% CI of delta", "p (unadjusted)"], rows,
                  num_cols=(1, 2, 3, 4, 5), css="metrics")


def _compare_probe(i: int, cp: dict, result: dict) -> list[str]:
    a, b = F.as_dict(cp.get("a")), F.as_dict(cp.get("b"))
    la, lb = F.compare_levels(cp)
    sig = F.compare_significant(cp, result.get("alpha"))
    flags = []
    if F.compare_rose(cp):
        flags.append('<span class="flag">RISK ROSE</span>')
    if sig is True:
        flags.append('<span class="flag">significant</span>')
    tests = F.as_dict(cp.get("tests"))
    methods = sorted({esc(t.get("method")) for t in
                      [tests.get("linear_probe")] + list(F.as_dict(tests.get("few_shot")).values())
                      if isinstance(t, dict) and t.get("method")})
    out = [f'<section class="probe" id="{_slug(i, cp.get("id"))}">',
           f'<h2>{badge(la)} &rarr; {badge(lb)} {esc(cp.get("title") or cp.get("id"))} '
           f'<span class="pid">{esc(cp.get("id"))}</span> {" ".join(flags)}</h2>',
           _dl([("A", f"{badge(la)} {esc(a.get('risk_reason'))} "
                      f'<span class="muted">(rule: {esc(a.get("risk_rule"))})</span>'),
                ("B", f"{badge(lb)} {esc(b.get('risk_reason'))} "
                      f'<span class="muted">(rule: {esc(b.get("risk_rule"))})</span>'),
                ("Paired test", f"p = {F.p_value(cp.get('p_value'))}, adjusted "
                                f"({esc(result.get('correction'))}) p = {F.p_value(cp.get('p_adjusted'))}, "
                                f"significant at alpha {esc(F.compact(result.get('alpha')))}: "
                                f"{F.yes_no(sig)}"
                                + (f' <span class="muted">({"; ".join(methods)})</span>' if methods else "")),
                ("Capability", esc(cp.get("capability") or a.get("capability"))),
                ("Policy", _policy(cp) if cp.get("policy") else _policy(a))]),
           '<div class="figs">',
           _figure(plots.compare_learning_curve_svg(cp),
                   "Balanced accuracy vs labelled images per class for model A and model B (floors "
                   "dashed); right: linear probe on the full training split.")]
    if plots.compare_has_verification(cp):
        out.append(_figure(plots.compare_roc_svg(cp),
                           "Raw-embedding verification: true accept rate vs false accept rate, "
                           "A vs B (floors dashed)."))
    out.append("</div>")
    out.append("<h3>A vs B (balanced accuracy on held-out test images; delta is B minus A)</h3>")
    out.append(_compare_table(cp))
    if F.same_data(a, b):
        out += _data_block(a, heading="Data (the same for A and B)")
    else:
        for tag, probe in (("A", a), ("B", b)):
            out += _data_block(probe, heading=f"Data, model {tag}")
    out.append("</section>")
    return out


def _compare(result: dict) -> str:
    probes = F.compare_order(F.probe_list(result))
    alpha = result.get("alpha")
    ma, mb = F.as_dict(result.get("model_a")), F.as_dict(result.get("model_b"))
    rows, classes = [], []
    for i, cp in enumerate(probes):
        la, lb = F.compare_levels(cp)
        rose = F.compare_rose(cp)
        change = ('<span class="flag">ROSE</span>' if rose else
                  ("fell" if F.level_rank(lb) < F.level_rank(la) else "same"))
        rows.append([f'<a href="#{_slug(i, cp.get("id"))}">{esc(cp.get("id"))}</a>', badge(la), badge(lb),
                     change, F.pp(F.get(cp, "delta", "linear_probe")), esc(F.headline_text(cp)),
                     F.p_value(cp.get("p_value")),
                     F.p_value(cp.get("p_adjusted")), F.yes_no(F.compare_significant(cp, alpha))])
        classes.append("rose" if rose else "")
    rose_raw, sig_raw = F.compare_rose_and_significant(result)
    rose_ids, sig_ids = [esc(x) for x in rose_raw], [esc(x) for x in sig_raw]
    body = ["<header>", "<h1>creepscan compare report</h1>",
            _dl(_model_pairs(ma, "Model A") + _model_pairs(mb, "Model B") + [
                ("Seed", esc(result.get("seed"))),
                ("Significance", f"alpha {esc(F.compact(alpha))}, multiple-testing correction "
                                 f"{esc(result.get('correction'))} over {len(probes)} probes"),
                ("Tool", _tool_text(result))]),
            "</header>",
            '<section id="summary"><h2>Summary</h2>',
            f"<p>Risk rose for {len(rose_ids)} probe(s){': ' + ', '.join(rose_ids) if rose_ids else ''}; "
            f"significant change in {len(sig_ids)}{': ' + ', '.join(sig_ids) if sig_ids else ''}.</p>",
            _table(["Probe", "Level A", "Level B", "Change", "Delta linear probe (B &minus; A)", "Headline change", "p",
                    f"p adjusted ({esc(result.get('correction'))})", "Significant"],
                   rows, num_cols=(4, 6, 7), row_classes=classes, css="summary"),
            _not_run(result),
            '<p class="note">Deltas are B minus A in balanced-accuracy percentage points (pp), from '
            "paired tests on the same test images and episodes.</p>",
            "</section>"]
    for i, cp in enumerate(probes):
        body += _compare_probe(i, cp, result)
    title = f"creepscan compare: {esc(ma.get('spec') or ma.get('name'))} vs {esc(mb.get('spec') or mb.get('name'))}"
    return _page(title, body)


def _not_run(result: dict) -> str:
    missing = result.get("not_run") or []
    if not missing:
        return ""
    items = "".join(f"<li>{esc(m.get('id'))}: {esc(m.get('reason'))}</li>" for m in missing)
    return f'<p class="flag-text"><strong>Not run ({len(missing)}): the audit is incomplete.</strong></p><ul>{items}</ul>'


def render_html(result: dict) -> str:
    """The text of report.html for an audit or compare result (deterministic)."""
    return _compare(result) if F.is_compare(result) else _audit(result)
