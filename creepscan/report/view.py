"""The one report view model: a typed report (audit, compare or sweep; ``result.load_report``) -> plain
display objects.

``build_view(report)`` returns a ``ReportView``: a title, header pairs and a list of ``Section``s,
each a heading and a list of blocks (``Para``, ``Pairs``, ``Items``, ``Table``, ``Figures``,
``Subheading``). Every value in a block is a ``Cell``: a tuple of parts (``Span`` of text with a
style, ``Badge`` of a level or verdict, ``Link`` to a section). The Markdown and HTML templates
only decide how each block and part looks; what the report says, and in which order, is decided
here, once.

Text is never pre-escaped: a ``Span`` holds the raw string, and each template escapes it for its
format (HTML autoescape; the ``md`` filter for Markdown). Strings the view composes from numbers and
fixed words are ``Fixed`` (see ``_fmt``); data strings are plain ``str``. Figures are SVG strings
from ``plots`` (whose text is already escaped); only the HTML shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Optional, Union

from ..result import (
    AuditReport,
    CompareProbe,
    CompareReport,
    FewShot,
    Label,
    LinearProbe,
    MetricDelta,
    Metrics,
    MetricTests,
    ModelInfo,
    OpenSet,
    PairedTest,
    Probe,
    ProbeData,
    Report,
    SpecClause,
    SpecVerdicts,
    Split,
    SweepModel,
    SweepProbe,
    SweepReport,
    SweepStep,
    Uplift,
    Verification,
)
from . import _fmt as F
from . import plots
from ._fmt import NA, Fixed

MAX_LIST = 20          # skipped images / excluded classes / clauses listed before "and N more"
MAX_LABELS = 40

# (background, text) per level and per spec verdict. Inconclusive gets its own purple: it is not a
# point on the none..critical scale, and must never look like the green of "none".
LEVEL_COLOURS = {
    "none": ("#e7f4ea", "#1b5e20"),
    "low": ("#f1f5d8", "#4b5a00"),
    "medium": ("#fff3cd", "#7a4f00"),
    "high": ("#ffe0cc", "#a33b00"),
    "critical": ("#b71c1c", "#ffffff"),
    "inconclusive": ("#ede3fb", "#4a148c"),
    "pass": ("#e7f4ea", "#1b5e20"),
    "fail": ("#b71c1c", "#ffffff"),
    "n/a": ("#eeeeee", "#444444"),
}
# levels a reader must not skim past: bold in Markdown, upper case everywhere
LOUD = frozenset({"high", "critical", "inconclusive", "fail"})


# --- parts -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """Text; style is "" (plain), "muted", "strong", "code" or "flag" (a warning word). A ``tight``
    span follows the previous part without a space (a colon after a path)."""
    text: str
    style: str = ""
    tight: bool = False
    part: ClassVar[str] = "span"


@dataclass(frozen=True)
class Badge:
    """A level or verdict: ``name`` is its key in LEVEL_COLOURS, ``label`` what is shown."""
    name: str
    label: str
    background: str
    foreground: str
    loud: bool
    part: ClassVar[str] = "badge"
    tight: ClassVar[bool] = False


@dataclass(frozen=True)
class Link:
    text: str
    anchor: str
    part: ClassVar[str] = "link"
    tight: ClassVar[bool] = False


Part = Union[Span, Badge, Link]
Cell = tuple


def cell(*parts: Any) -> Cell:
    """A cell from parts; a str becomes a plain Span, None and empty strings are dropped."""
    out = []
    for p in parts:
        if isinstance(p, (Span, Badge, Link)):
            out.append(p)
        elif isinstance(p, tuple):
            out.extend(cell(*p))
        elif p is not None and p != "":
            out.append(Span(p if isinstance(p, str) else F.text(p)))
    return tuple(out)


def tight(s: str) -> Span:
    return Span(s, tight=True)


def muted(s: str) -> Span:
    return Span(s, "muted")


def strong(s: str) -> Span:
    return Span(s, "strong")


def badge(level: Any) -> Badge:
    name = F.level_name(level)
    bg, fg = LEVEL_COLOURS[name]
    return Badge(name, Fixed(name.upper() if name in LOUD else name), bg, fg, name in LOUD)


def verdict_badge(verdict: Any) -> Badge:
    """A spec clause verdict: pass, fail or inconclusive."""
    v = str(verdict).lower() if verdict is not None else ""
    name = v if v in ("pass", "fail", "inconclusive") else "n/a"
    bg, fg = LEVEL_COLOURS[name]
    return Badge(name, Fixed(name.upper() if name in LOUD else name), bg, fg, name in LOUD)


# --- blocks ------------------------------------------------------------------------------

@dataclass
class Subheading:
    text: Cell
    block: ClassVar[str] = "subheading"


@dataclass
class Para:
    parts: Cell
    css: str = ""
    block: ClassVar[str] = "para"


@dataclass
class Pairs:
    """A definition list: [(term, value cell)]."""
    items: list
    block: ClassVar[str] = "pairs"


@dataclass
class Items:
    """A bullet list, capped: ``more`` items were left out (``where`` says where they are)."""
    items: list
    more: int = 0
    where: str = ""
    block: ClassVar[str] = "items"


@dataclass
class Table:
    """header: [cell]; rows: [[cell]]; numeric: indices of right-aligned columns (HTML)."""
    header: list
    rows: list
    numeric: tuple = ()
    css: str = ""
    row_css: list = field(default_factory=list)
    block: ClassVar[str] = "table"


@dataclass
class Figure:
    svg: str
    caption: str


@dataclass
class Figures:
    figures: list
    block: ClassVar[str] = "figures"


@dataclass
class Section:
    """A titled part of the report. ``badges`` lead the heading (two for a compare: A then B),
    ``ident`` is a probe id, ``flags`` are warning words after the title."""
    anchor: str
    title: str
    blocks: list
    badges: list = field(default_factory=list)
    ident: str = ""
    flags: list = field(default_factory=list)
    css: str = ""


@dataclass
class ReportView:
    """``banner``: the verdict first (blocks shown right under the title, before anything else)."""
    kind: str
    title: str
    page_title: str
    meta: Pairs
    sections: list
    banner: list = field(default_factory=list)
    banner_level: str = "n/a"


def table(header: Iterable[Any], rows: Iterable[Iterable[Any]], numeric: tuple = (), css: str = "",
          row_css: list | None = None) -> Table:
    return Table([cell(h) for h in header], [[cell(c) for c in r] for r in rows], numeric, css,
                 list(row_css or []))


def capped(items: list, fmt, where: str = "", cap: int = MAX_LIST) -> Items:
    return Items([cell(fmt(x)) for x in items[:cap]], max(len(items) - cap, 0), where)


def anchor(i: int, pid: Any) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", str(pid).lower()).strip("-") or "probe"
    return f"probe-{i}-{s}"


# --- shared pieces -----------------------------------------------------------------------

def _model_pairs(m: ModelInfo, label: str = "Model") -> list:
    extra = muted(f"({F.text(m.name)})") if m.name and m.name != m.spec else None
    pairs = [(label, cell(F.text(m.spec or m.name), extra)),
             (f"{label} fingerprint", cell(F.text(m.fingerprint)))]
    if m.library:
        pairs.append((f"{label} loaded by", cell(F.text(m.library))))
    base = m.base if isinstance(m.base, dict) else {}  # the schema allows a bare string, which is not shown
    if base:
        pairs.append((f"{label} adapted from", cell(F.text(base.get("spec") or base.get("name")),
                                                    muted(F.short_fp(base.get("fingerprint"))))))
    zero_shot = F.extra(m, "zero_shot")
    if zero_shot:
        pairs.append((f"{label} zero-shot", cell(F.text(zero_shot))))
    return pairs


def _tool_cell(report: Report) -> Cell:
    return cell(F.text(report.tool.name or "creepscan"), F.text(report.tool.version),
                muted(f"(report schema {F.text(report.schema_version)})"))


def _policy_cell(policy: Optional[list[str]]) -> Cell:
    pol = [F.text(x) for x in policy or []]
    return cell("; ".join(pol)) if pol else cell(NA)


def _not_run(report: Report) -> list:
    missing = report.not_run or []
    if not missing:
        return []
    return [Para(cell(Span(f"Not run ({len(missing)}): the report is incomplete.", "flag"))),
            Items([cell(strong(F.text(m.id)), F.text(m.reason)) for m in missing])]


def inconclusive_para(p: Probe) -> Para | None:
    """Why a probe is inconclusive: the reason code, what it means, and the result's detail."""
    info = F.inconclusive_info(p)
    if info is None:
        return None
    code, why, detail = info
    return Para(cell(strong(Fixed("Inconclusive:")), Span(code, "flag"),
                     muted(Fixed(f"({why})")) if why != NA else None, detail), css="inconclusive")


def verdict_cell(p: Probe, level: Any = None) -> Cell:
    """A probe's level (``level`` when given: a compare's stated level of that side) with its inconclusive
    reason code and the range its CIs allow."""
    level = p.risk_level if level is None else level
    info = F.inconclusive_info(p, level)
    rng = F.level_range(p)
    return cell(badge(level),
                muted(f"({info[0]})") if info else None,
                muted(Fixed(f"CIs allow {F.level_range_text(p)}")) if rng and rng[0] != rng[1] else None)


# --- audit: per-probe blocks -------------------------------------------------------------

def _data_pairs(p: Probe) -> list:
    """Where the images came from, how many, and how they were split."""
    data, split = p.data or ProbeData(), p.split or Split()
    pairs = [("Source", cell(F.text(data.source)))]
    if data.fingerprint:
        pairs.append(("Data fingerprint", cell(F.text(data.fingerprint))))
    pairs.append(("Images", cell(Fixed(
        f"{F.count(p.n_images)} in {F.count(p.n_classes)} classes (chance {F.pct(p.chance)}); "
        + (f"at most {F.count(data.max_per_class)} per class" if data.max_per_class is not None
           else "no cap per class")))))
    folds = split.folds
    pairs.append(("Split", cell(Fixed(
        f"train {F.num(split.train)}, val {F.num(split.val)}, test "
        f"{F.num(split.test)} images" + (f"; {F.num(folds)} folds" if folds is not None and folds > 1 else "")))))
    if split.grouped is not None:
        grouped = (Fixed(f"yes, by group ({F.num(split.n_groups)} groups): no group is on both "
                         "sides of a split") if split.grouped
                   else Fixed("no: images are split one by one"))
        pairs.append(("Grouped split", cell(grouped)))
    if split.near_duplicates_dropped is not None:
        pairs.append(("Near-duplicates dropped from test", cell(F.count(split.near_duplicates_dropped))))
    return pairs


def _labels_para(labels: list[Label]) -> Para:
    parts: list = [strong(Fixed(f"Labels ({len(labels)}):"))]
    for i, x in enumerate(labels[:MAX_LABELS]):
        sep = "," if i < min(len(labels), MAX_LABELS) - 1 else ""
        parts += [Span(F.text(x.name or x.label), "code"), Fixed(f"({F.num(x.n_images)}){sep}")]
    if len(labels) > MAX_LABELS:
        parts.append(muted(Fixed(f"and {len(labels) - MAX_LABELS} more")))
    return Para(cell(*parts))


def _data_blocks(p: Probe, heading: str = "Data") -> list:
    out = [Subheading(cell(heading)), Pairs(_data_pairs(p))]
    if p.split is not None and p.split.warning:
        out.append(Para(cell(Span(Fixed("Split warning:"), "flag"), F.text(p.split.warning)), css="warning"))
    if p.labels:
        out.append(_labels_para(p.labels))
    excluded = p.excluded_classes or []
    if excluded:
        out.append(Para(cell(strong(Fixed(f"Excluded classes ({len(excluded)}):")))))
        out.append(capped(excluded, lambda x: (F.text(x.label), Fixed(f"({F.num(x.n_images)} images):"),
                                               F.text(x.reason)),
                          where=Fixed("report.json excluded_classes")))
    skipped = p.skipped_images
    if skipped:
        out.append(Para(cell(strong(Fixed(f"Skipped images ({len(skipped)}):")))))
        out.append(capped(skipped, lambda x: (Span(F.text(x.path), "code"), tight(Fixed(":")), F.text(x.reason)),
                          where=Fixed("report.json skipped_images")))
    else:
        out.append(Para(cell(strong(Fixed("Skipped images:")), Fixed("none"))))
    return out


def _fs_cell(row: Optional[FewShot]) -> Cell:
    if row is None:
        return cell(NA)
    s = F.acc_ci(row)
    bits = []
    if row.winner:
        bits.append(F.text(row.winner))
    if row.episodes is not None:
        bits.append(f"{F.num(row.episodes)} episodes")
    return cell(s, muted(f"({', '.join(bits)})")) if bits and s != NA else cell(s)


def _lp_cell(block: Optional[LinearProbe]) -> Cell:
    s = F.acc_ci(block)
    if block is None:
        return cell(s)
    # the label-free transform chosen on validation, when it is not the raw features
    how = f", {block.preprocess}" if block.preprocess is not None and block.preprocess != "none" else ""
    return cell(s, muted(Fixed(f"C={F.num(block.C, 3)}{how}"))) if s != NA and F.is_num(block.C) else cell(s)


def _head_rows(mm: Metrics, fm: Metrics) -> list:
    """Full-split heads (knn, prototype_cl2n, mlp, gd_budget and its step budgets), model vs floor."""
    hm, hf = mm.heads or {}, fm.heads or {}
    rows = []
    for name in F.ordered_unique(list(hm) + list(hf)):
        a, b = hm.get(name), hf.get(name)
        rows.append([cell(f"Head {F.text(name)} (full train split)"), cell(F.acc_ci(a)), cell(F.acc_ci(b))])
        fb = {x.steps: x for x in (b.budgets if b else None) or []}
        for bud in (a.budgets if a else None) or []:
            rows.append([cell(f"Head {F.text(name)}, {F.num(bud.steps)} steps"), cell(F.acc_ci(bud)),
                         cell(F.acc_ci(fb.get(bud.steps)))])
    return rows


def _tar_fars(*blocks: Any) -> list[str]:
    """The FARs (or FPIRs) of the first block that lists any, largest first."""
    return [far for far, _ in F.far_items(next((b for b in blocks if b), None))]


def _pairs_text(block: Any, first: str, second: str) -> Fixed:
    """``n / m`` of two declared counts of a block (n/a where it is null or absent)."""
    n, m = (getattr(block, first, None), getattr(block, second, None)) if block is not None else (None, None)
    return Fixed(f"{F.count(n)} / {F.count(m)}")


def _auc_text(v: Optional[Verification]) -> Fixed:
    return F.with_ci(F.num(v.auc), F.ci_num(v.auc_ci95)) if v is not None else NA


def _tar_rows(vm: Optional[Verification], vf: Optional[Verification], learned: str = "") -> list:
    return [[cell(f"Verification TAR at FAR {F.text(far)}{learned}"), cell(F.tar_text(vm, far)),
             cell(F.tar_text(vf, far))] for far in _tar_fars(vm and vm.tar_at_far, vf and vf.tar_at_far)]


def _verification_rows(vm: Optional[Verification], vf: Optional[Verification]) -> list:
    return _tar_rows(vm, vf) + [
        [cell(Fixed("Verification ROC AUC")), cell(_auc_text(vm)), cell(_auc_text(vf))],
        [cell(Fixed("Verification pairs (genuine / impostor)")), cell(_pairs_text(vm, "n_genuine", "n_impostor")),
         cell(_pairs_text(vf, "n_genuine", "n_impostor"))]]


def _rank1_text(o: Optional[OpenSet]) -> Fixed:
    return F.with_ci(F.pct(o.rank1), F.ci_pct(o.rank1_ci95)) if o is not None else NA


def _fnir(o: Optional[OpenSet], fpir: str) -> Any:
    return (o.fnir_at_fpir or {}).get(fpir) if o is not None else None


def _open_set_rows(om: Optional[OpenSet], of: Optional[OpenSet]) -> list:
    """The open-set identification protocol: rank-1 and FNIR at each FPIR, on held-out identities."""
    rows = [[cell(Fixed("Open-set rank-1 identification (unseen identities)")), cell(_rank1_text(om)),
             cell(_rank1_text(of))]]
    for fpir in _tar_fars(om and om.fnir_at_fpir, of and of.fnir_at_fpir):
        rows.append([cell(f"Open-set FNIR at FPIR {F.text(fpir)}"), cell(F.pct(_fnir(om, fpir))),
                     cell(F.pct(_fnir(of, fpir)))])
    rows.append([cell(Fixed("Open-set gallery identities / non-mated probes")),
                 cell(_pairs_text(om, "n_gallery_identities", "n_nonmated_searches")),
                 cell(_pairs_text(of, "n_gallery_identities", "n_nonmated_searches"))])
    return rows


def _learned_metric_rows(mm: Metrics, fm: Metrics) -> list:
    """Verification TAR and open-set rank-1 with the learned metric (cosine after within-identity
    whitening fitted on other identities), where it ran."""
    rows = _tar_rows(mm.verification_learned, fm.verification_learned, ", learned metric")
    om, of = mm.open_set_learned, fm.open_set_learned
    if om is not None or of is not None:
        rows.append([cell(Fixed("Open-set rank-1 identification, learned metric")), cell(_rank1_text(om)),
                     cell(_rank1_text(of))])
    return rows


def metrics_table(p: Probe) -> Table:
    """Model vs floor: every attack's balanced accuracy on held-out test images, with its CI."""
    mm, fm = p.metrics, p.control.metrics
    rows = [[cell(Fixed("Zero-shot")), cell(F.acc_ci(mm.zero_shot) if mm.zero_shot else Fixed("n/a (no text tower)")),
             cell(F.acc_ci(fm.zero_shot))],
            [cell(Fixed("Linear probe (full train split)")), _lp_cell(mm.linear_probe), _lp_cell(fm.linear_probe)]]
    rows += _head_rows(mm, fm)
    fsm, fsf = F.few_shot_by_k(mm), F.few_shot_by_k(fm)
    for k in sorted(set(fsm) | set(fsf)):
        rows.append([cell(Fixed(f"Few-shot k={k}")), _fs_cell(fsm.get(k)), _fs_cell(fsf.get(k))])
    for u in mm.few_shot_unavailable or []:
        rows.append([cell(f"Few-shot k={F.text(u.k)}"), cell(muted(f"not run: {F.text(u.reason)}")), cell(NA)])
    if mm.verification is not None or fm.verification is not None:
        rows += _verification_rows(mm.verification, fm.verification)
    if mm.open_set is not None or fm.open_set is not None:
        rows += _open_set_rows(mm.open_set, fm.open_set)
    rows += _learned_metric_rows(mm, fm)
    rows.append([cell(Fixed("Samples per class to threshold")), cell(F.samples_text(mm)), cell(F.samples_text(fm))])
    return Table([cell(Fixed("Attack")), cell(Fixed("Model")), cell(Fixed("Floor"))], rows, (1, 2), "metrics")


def _uplift_detail(u: Uplift) -> list:
    """The uplift axis's detail: the largest upper bound against the margin, model vs floor, the test."""
    upper = [t.upper95 for t in u.tests or [] if F.is_num(t.upper95)]
    out = []
    if upper and F.is_num(u.margin):
        out.append(Fixed(f"largest upper 95% bound {F.num(max(upper))} "
                         f"{'<' if max(upper) < u.margin else '>='} margin {F.num(u.margin)};"))
    elif F.is_num(u.margin):
        out.append(Fixed(f"equivalence margin {F.num(u.margin)};"))
    out.append(Fixed(f"model {F.num(u.skill_model)} vs floor {F.num(u.skill_floor)}, "
                     f"p = {F.p_value(u.p_value)}, significant: {F.yes_no(u.significant)}"))
    return out


def axes_table(p: Probe) -> Table:
    """The two axes of a verdict: capability (what a holder can do) and uplift (what the model's
    training added over the floor), each with its 95% CI."""
    head = F.headline_skill(p)
    stk = p.capability_axis.samples_to_threshold if p.capability_axis else p.metrics.samples_to_threshold
    cap_detail = [Fixed("by"), Span(head.source, "code"),
                  tight(Fixed(f"; k to threshold: {F.num(stk)}" if F.is_num(stk) else
                              "; threshold not reached at any k"))] if head.skill is not None else []
    # the gain the level's reason cites (the strongest significant test, else the one nearest the margin)
    cited = F.cited_gain(p.uplift)
    by = [Fixed("by"), Span(F.text(cited.attack), "code"), tight(Fixed(";"))] if cited.attack else []
    rows = [[cell(Fixed("Capability (best skill)")), cell(F.num(head.skill)),
             cell(F.ci_num(head.ci95) or NA), cell(*cap_detail) or cell(NA)],
            [cell(Fixed("Uplift (skill gain over the floor)")), cell(F.signed(cited.skill_gain)),
             cell(F.ci_num(cited.ci95, sign=True) or NA),
             cell(*by, *_uplift_detail(p.uplift or Uplift(skill_gain=None, ci95=(None, None))))]]
    return Table([cell(Fixed("Axis")), cell(Fixed("Estimate")), cell(Fixed("95% CI")), cell(Fixed("Detail"))],
                 rows, (1, 2), "metrics axes")


def uplift_tests_table(p: Probe) -> Table | None:
    tests = p.uplift.tests if p.uplift else None
    if not tests:
        return None
    rows = [[cell(Span(F.text(t.attack), "code")), cell(F.signed(t.skill_gain)),
             cell(F.ci_num(t.ci95, sign=True) or NA), cell(F.signed(t.upper95)),
             cell(F.num(t.se)), cell(F.p_value(t.p_value)), cell(F.p_value(t.p_adjusted)),
             cell(F.text(t.method) if t.method else NA)] for t in tests]
    corr = p.uplift.correction
    return table([Fixed(h) for h in ("Attack", "Skill gain", "95% CI", "Upper 95% bound", "SE", "p")] +
                 [f"p adjusted ({F.text(corr)})" if corr else Fixed("p adjusted"), Fixed("Method")],
                 rows, (1, 2, 3, 4, 5, 6), "metrics")


def power_para(p: Probe) -> Para | None:
    pw = p.power
    if pw is None:
        return None
    need, have = pw.images_needed_per_class, pw.test_images_per_class
    more = ""
    if F.is_num(need) and F.is_num(have):
        more = (f"; this run has {F.count(have)} test images per class" +
                (f", {F.count(need - have)} short" if need > have else ", enough"))
    limit = pw.limiting_attack
    return Para(cell(strong(Fixed("Power:")), Fixed(
        f"minimum detectable effect {F.num(pw.mde)} (skill gain) at equivalence margin "
        f"{F.num(pw.margin)}"), (tight(Fixed(", set by")), Span(F.text(limit), "code")) if limit else (),
        tight(Fixed(f"; ruling out a gain of the margin needs {F.count(need)} test images per class{more}."))),
        css="power")


def _cost_cell(pt: F.CostPoint, chance: Any, best: Any) -> Cell:
    s = F.skill_of(pt.accuracy, chance)
    val = F.with_ci(F.num(s, 2), F.ci_num(F.skill_ci_of(pt.ci95, chance), 2))
    cost = ", ".join(x for x in (F.seconds(pt.seconds), F.flops(pt.flops)) if x != NA)
    return cell(strong(val) if F.is_num(s) and s == best else val, muted(Fixed(f"({cost})")) if cost else None)


def cost_blocks(p: Probe) -> list:
    """The "cost to repurpose" table: adversary x images per class -> skill with its 95% CI (and the
    seconds and FLOPs where the adversary measured them); the best adversary per column in bold."""
    pts = F.cost_points(p)
    if not pts:
        return []
    chance = p.chance
    advs = F.ordered_unique(pt.adversary for pt in pts)
    ks = sorted({pt.k for pt in pts if pt.k is not None}) + \
        ([F.ALL_TRAIN] if any(pt.k is None for pt in pts) else [])
    grid = {(pt.adversary, pt.k): pt for pt in pts}
    best = {k: max((F.skill_of(pt.accuracy, chance) for (a, kk), pt in grid.items() if kk == k
                    and F.is_num(F.skill_of(pt.accuracy, chance))), default=None) for k in ks}
    rows = [[cell(Span(a, "code"))] + [_cost_cell(grid[(a, k)], chance, best[k]) if (a, k) in grid
                                       else cell(Fixed("-")) for k in ks] for a in advs]
    header = [Fixed("Adversary")] + [Fixed(f"k={k}") if k is not None else Fixed("all (train split)") for k in ks]
    out = [Subheading(cell(Fixed("Cost to repurpose"))),
           table(header, rows, tuple(range(1, len(ks) + 1)), "metrics cost")]
    note = [Fixed("Skill = (balanced accuracy - chance) / (1 - chance) on the held-out test images; "
                  "k = labelled images per class; the best adversary of each column in bold.")]
    ft = p.metrics.finetune
    if ft is not None and ft.device:
        note += [Fixed("Fine-tuning ran on"), Span(F.text(ft.device), "code"),
                 Fixed("(seconds of that device; FLOPs counted from the architecture).")]
    out.append(Para(cell(*note), css="note"))
    return out


def _figures(p: Probe, caption_floor: str) -> Figures:
    figs = [Figure(plots.learning_curve_svg(p),
                   f"Balanced accuracy on held-out test images vs labelled images per class (few-shot, the "
                   f"adversary's best head per k, mean and 95% CI over episodes); right: linear probe on "
                   f"the full training split. Floor: {caption_floor}.")]
    if plots.has_verification(p):
        figs.append(Figure(plots.roc_svg(p), Fixed(
            "Face-matching with the raw embeddings (cosine similarity of image pairs, no training): "
            "true accept rate vs false accept rate.")))
    if F.has_cost(p):
        figs.append(Figure(plots.cost_svg(p), Fixed(
            "Cost to repurpose: skill of each adversary vs labelled images per class; error bars are "
            "95% CIs where measured.")))
    return Figures(figs)


def _test_cells(test: Optional[PairedTest]) -> list:
    if test is None:
        return [cell(NA), cell(NA)]
    return [cell(F.ci_pct(test.ci95, sign=True) or NA), cell(F.p_value(test.p_value))]


def _named_tests(delta: Optional[MetricDelta], tests: Optional[MetricTests]) -> list[tuple[str, Any, Any]]:
    """(metric, B minus A, paired test) of an adaptation: the linear probe, zero-shot, few-shot by k."""
    d = delta or MetricDelta(linear_probe=None)
    named = [("Linear probe", d.linear_probe, tests.linear_probe if tests else None)]
    if tests is not None and tests.zero_shot is not None:
        named.append(("Zero-shot", d.zero_shot, tests.zero_shot))
    for k, t in (tests.few_shot if tests else {}).items():
        named.append((f"Few-shot k={F.text(k)}", d.few_shot.get(k), t))
    return named


def adaptation_blocks(p: Probe) -> list:
    """What the adaptation changed on this probe (an adapted model's ``adaptation`` block): the
    base's level and the adapted model's, whether the adaptation raised, kept or lowered it, and
    adapted minus base per attack with its paired test."""
    a = p.adaptation
    if a is None:
        return []
    head, sig = a.headline, a.significant
    rows = [[cell(Fixed(label)), cell(F.pp(d)), *_test_cells(t)] for label, d, t in _named_tests(a.delta, a.tests)]
    return [
        Subheading(cell(Fixed("What the adaptation changed (against its base)"))),
        Para(cell(strong(Fixed("Adaptation:")), Span(f"{F.text(a.change)} the level", "strong"),
                  Fixed("(base"), badge(a.base_level), Fixed("-> adapted"), badge(a.level), tight(")."),
                  Fixed(f"Headline: {F.text(head.metric if head else None)} {F.pp(head.change if head else None)}, "
                        "p ="),
                  F.p_value(a.p_adjusted), Fixed("after Holm across probes:"),
                  Fixed("a significant change." if sig else "no significant change." if sig is False else ""),
                  muted(f"Base: {F.text(a.base.spec or a.base.name)}"))),
        table([Fixed(h) for h in ("Metric", "Adapted minus base", "95% CI", "p (paired test)")], rows,
              (1, 2, 3)),
    ]


def _audit_probe(i: int, p: Probe) -> Section:
    ctrl = p.control
    level = F.level_name(p.risk_level)
    pairs = [("Capability", cell(F.text(p.capability))), ("Policy", _policy_cell(p.policy))]
    if F.level_range(p):
        pairs.append(("Levels the CIs allow", cell(F.level_range_text(p))))
    if p.risk_axis is not None:
        pairs.append(("Decided by", cell(F.axis_text(p))))
    pairs.append(("Rule that fired", cell(F.text(p.risk_rule))))
    pairs.append(("Threshold", cell(Fixed(f"skill {F.num(p.threshold.skill if p.threshold else None, 2)} "
                                          f"(= balanced accuracy {F.pct(F.threshold_accuracy(p))})"))))
    adv = F.strongest_adversary(p)
    if adv:
        pairs.append(("Strongest adversary", cell(Span(F.text(adv), "code"))))
    pairs.append(("Floor (control)", cell(F.text(ctrl.spec), muted(F.short_fp(ctrl.fingerprint)))))
    blocks: list = [Para(cell(strong(Fixed("Risk:")), badge(level), F.text(p.risk_reason)), css="reason")]
    blocks += [b for b in (inconclusive_para(p),) if b]
    blocks += [Pairs(pairs), _figures(p, F.text(ctrl.spec)),
               Subheading(cell(Fixed("Two axes: capability and uplift (skill, 95% CI)"))), axes_table(p)]
    blocks += [b for b in (uplift_tests_table(p), power_para(p)) if b]
    blocks += [Subheading(cell(Fixed("Metrics (balanced accuracy on held-out test images, 95% CI)"))),
               metrics_table(p)]
    blocks += adaptation_blocks(p)
    blocks += cost_blocks(p)
    blocks += _data_blocks(p)
    return Section(anchor(i, p.id), F.text(p.title or p.id), blocks, badges=[badge(level)], ident=F.text(p.id),
                   css="probe")


def _verdict_counts(clauses: list[SpecClause]) -> tuple[int, int]:
    """(failed, inconclusive) clauses."""
    return (sum(str(c.verdict).lower() == "fail" for c in clauses),
            sum(str(c.verdict).lower() == "inconclusive" for c in clauses))


def _overall_badge(passed: Optional[bool]) -> Badge:
    return verdict_badge("pass" if passed is True else "fail" if passed is False else None)


def _spec_section(spec: Optional[SpecVerdicts]) -> Section | None:
    if spec is None:
        return None
    clauses = spec.clauses
    overall = _overall_badge(spec.passed)
    rows = [[cell(F.text(c.kind)), cell(F.text(c.probe)), cell(verdict_badge(c.verdict)),
             cell(badge(c.measured_level) if c.measured_level is not None else NA),
             cell(F.text(c.limit) if c.limit is not None else NA),
             cell(F.text(c.rule) if c.rule is not None else NA)] for c in clauses]
    n_fail, n_inc = _verdict_counts(clauses)
    blocks = [Para(cell(strong(Fixed("Result:")), overall,
                        Fixed(f"{len(clauses)} clause(s): {n_fail} failed, {n_inc} inconclusive.")))]
    if rows:
        blocks.append(table([Fixed(h) for h in ("Clause", "Probe", "Verdict", "Measured level", "Limit", "Rule")],
                            rows, css="summary spec"))
    return Section("use-spec", Fixed("Use specification"), blocks, badges=[overall])


def _levels_line(label: str, probes: list[tuple[str, Any, Any]]) -> tuple[Cell, str]:
    """"label: HIGHEST on ids; levels: CRITICAL 1, HIGH 2, ..." and the highest level's name, from
    (id, level, reference) of each probe."""
    judged = [(pid, level) for pid, level, reference in probes if reference is not True]
    counts = F.level_counts(level for _, level in judged)
    if not counts:
        return cell(strong(label), NA), "n/a"
    top = counts[0][0]
    ids = [F.text(pid) for pid, level in judged if F.level_name(level) == top]
    parts: list = [strong(label), badge(top), Fixed("on"), ", ".join(ids), tight(Fixed(";")), Fixed("all levels:")]
    for i, (lv, n) in enumerate(counts):
        parts += [badge(lv), Fixed(f"{n}" + ("," if i < len(counts) - 1 else ""))]
    n_ref = len(probes) - len(judged)
    if n_ref:
        parts.append(muted(Fixed(f"(and {n_ref} reference probe{'s' * (n_ref != 1)}, not a prohibited capability)")))
    return cell(*parts), top


def _spec_line(spec: Optional[SpecVerdicts]) -> Cell | None:
    if spec is None:
        return None
    clauses = spec.clauses
    n_fail, n_inc = _verdict_counts(clauses)
    return cell(strong(Fixed("Use specification:")), _overall_badge(spec.passed),
                Fixed(f"{len(clauses)} clause{'s' * (len(clauses) != 1)}: {n_fail} failed, {n_inc} inconclusive"),
                Link(Fixed("(clauses)"), "use-spec"))


def _banner(lines: list, report: Report) -> list:
    out = [Para(c, css="verdict-line") for c in lines if c]
    missing = report.not_run or []
    if missing:
        out.append(Para(cell(Span(Fixed(f"Incomplete: {len(missing)} probe(s) not run:"), "flag"),
                             ", ".join(F.text(m.id) for m in missing)), css="verdict-line"))
    return out


def _audit_row(i: int, p: Probe) -> list:
    mm, fm = p.metrics, p.control.metrics
    return [cell(Link(F.text(p.id), anchor(i, p.id))),
            verdict_cell(p),
            cell(F.headline_text(F.headline_skill(p))),
            cell(Fixed(f"{F.pct(mm.linear_probe and mm.linear_probe.accuracy)} vs "
                       f"{F.pct(fm.linear_probe and fm.linear_probe.accuracy)}")),
            cell(F.samples_text(mm)),
            cell(F.acc_ci(mm.zero_shot) if mm.zero_shot else NA),
            cell(F.tar_text(mm.verification, "1e-3", with_interval=False) if mm.verification is not None else NA)]


AUDIT_NOTE = ("Accuracies are balanced accuracy (mean per-class recall) on held-out test images. The floor is "
              "the control encoder (by default the same architecture with random weights): what an adversary "
              "gets without this model's training. Inconclusive means the evidence cannot place the probe on "
              "the none..critical scale (saturated: the floor solves it too; underpowered: too few test "
              "images); it fails every gate unless allowed.")


def _audit(report: AuditReport) -> ReportView:
    # most severe first (inconclusive just below high): what an auditor must see comes first
    probes = sorted(report.probes, key=F.severity_rank)
    model = report.model
    summary = table([Fixed(h) for h in ("Probe", "Level", "Best skill (95% CI)",
                                        "Linear probe (model vs floor)", "Few-shot k to threshold",
                                        "Zero-shot", "Verification TAR@1e-3")],
                    [_audit_row(i, p) for i, p in enumerate(probes)], (2, 3, 4, 5, 6), "summary")
    # the reasons below the table, each whole: a sentence in a narrow cell would push the table down
    reasons = Items([cell(strong(F.text(p.id)), tight(Fixed(":")), F.text(p.risk_reason)) for p in probes])
    sections = [Section("summary", Fixed("Summary"), [summary, Subheading(cell(Fixed("Why each level"))), reasons]
                        + _not_run(report) + [Para(cell(Fixed(AUDIT_NOTE)), css="note")])]
    spec = _spec_section(report.spec)
    if spec:
        sections.append(spec)
    sections += [_audit_probe(i, p) for i, p in enumerate(probes)]
    meta = Pairs(_model_pairs(model) + [
        ("Seed", cell(F.text(report.seed))), ("Suite", cell(F.suite_text(report.suite))),
        ("Settings", cell(F.settings_text(report.settings))), ("Tool", _tool_cell(report))])
    levels, top = _levels_line(Fixed("Highest level:"), [(p.id, p.risk_level, p.reference) for p in probes])
    banner = _banner([levels, _spec_line(report.spec)], report)
    return ReportView("audit", Fixed("creepscan audit report"), f"creepscan audit: {F.text(model.spec or model.name)}",
                      meta, sections, banner, top)


# --- compare -----------------------------------------------------------------------------

def _compare_rows(cp: CompareProbe) -> list:
    """A vs B rows of the attacks both models may have: linear probe, zero-shot, heads, few-shot by k."""
    ma, mb = cp.a.metrics, cp.b.metrics
    d, tests = cp.delta, cp.tests
    rows = [[cell(Fixed("Linear probe")), cell(F.acc_ci(ma.linear_probe)), cell(F.acc_ci(mb.linear_probe)),
             cell(F.pp(d.linear_probe)), *_test_cells(tests.linear_probe if tests else None)]]
    za, zb = ma.zero_shot, mb.zero_shot
    if za or zb or d.zero_shot is not None:
        rows.append([cell(Fixed("Zero-shot")), cell(F.acc_ci(za)), cell(F.acc_ci(zb)), cell(F.pp(d.zero_shot)),
                     *_test_cells(tests.zero_shot if tests else None)])
    ha, hb = ma.heads or {}, mb.heads or {}
    for name in F.ordered_unique(list(ha) + list(hb)):  # no paired test of the heads: no delta
        rows.append([cell(f"Head {F.text(name)}"), cell(F.acc_ci(ha.get(name))), cell(F.acc_ci(hb.get(name))),
                     cell(NA), *_test_cells(None)])
    fa, fb = F.few_shot_by_k(ma), F.few_shot_by_k(mb)
    tfs = tests.few_shot if tests else {}
    for k in sorted(set(fa) | set(fb)):
        rows.append([cell(Fixed(f"Few-shot k={k}")), cell(F.acc_ci(fa.get(k))), cell(F.acc_ci(fb.get(k))),
                     cell(F.pp(d.few_shot.get(str(k)))), *_test_cells(tfs.get(str(k)))])
    return rows


def _compare_identity_rows(cp: CompareProbe) -> list:
    """A vs B rows of verification and open-set identification, where either model has them."""
    ma, mb = cp.a.metrics, cp.b.metrics
    rows = []
    va, vb = ma.verification, mb.verification
    if va is not None or vb is not None:
        # B minus A is measured at FAR 1e-3 only, and has no paired test
        for far in _tar_fars(va and va.tar_at_far, vb and vb.tar_at_far):
            delta = cp.delta.verification_tar_1e_3 if far == "1e-3" else None
            rows.append([cell(f"Verification TAR at FAR {F.text(far)}"), cell(F.tar_text(va, far)),
                         cell(F.tar_text(vb, far)), cell(F.pp(delta)), *_test_cells(None)])
        rows.append([cell(Fixed("Verification ROC AUC")), cell(F.num(va and va.auc)), cell(F.num(vb and vb.auc)),
                     cell(NA), cell(NA), cell(NA)])
    oa, ob = ma.open_set, mb.open_set
    if oa is not None or ob is not None:
        rows.append([cell(Fixed("Open-set rank-1 identification")), cell(F.pct(oa and oa.rank1)),
                     cell(F.pct(ob and ob.rank1)), cell(NA), *_test_cells(None)])
    return rows


def compare_table(cp: CompareProbe) -> Table:
    """A vs B, metric by metric: [metric, A, B, delta, CI of delta, p]."""
    a, b = cp.a, cp.b
    rows = _compare_rows(cp) + _compare_identity_rows(cp)
    # the skills are each model's own, with no paired test: no delta
    rows.append([cell(Fixed("Best skill (capability axis)")), cell(F.headline_text(F.headline_skill(a))),
                 cell(F.headline_text(F.headline_skill(b))), cell(NA), cell(NA), cell(NA)])
    rows.append([cell(Fixed("Skill (uplift over floor)")), cell(F.num(a.uplift and a.uplift.skill_model)),
                 cell(F.num(b.uplift and b.uplift.skill_model)), cell(NA), cell(NA), cell(NA)])
    rows.append([cell(Fixed("Samples per class to threshold")), cell(F.samples_text(a.metrics)),
                 cell(F.samples_text(b.metrics)), cell(NA), cell(NA), cell(NA)])
    return table([Fixed(h) for h in ("Metric", "A", "B", "Delta (B - A)", "95% CI of delta", "p (unadjusted)")],
                 rows, (1, 2, 3, 4, 5), "metrics")


def _inconclusive_parts(p: Probe, level: Any = None) -> Cell:
    """"Inconclusive: CODE detail" for a cell, or nothing when the probe is not inconclusive."""
    info = F.inconclusive_info(p, level)
    return cell(Span(Fixed("Inconclusive:"), "flag"), strong(info[0]), info[2]) if info else ()


def _side_cell(p: Probe, level: str) -> Cell:
    """One side of a compare (at the level the compare states): level, reason, rule, and what makes it
    inconclusive."""
    return cell(verdict_cell(p, level), F.text(p.risk_reason), muted(f"(rule: {F.text(p.risk_rule)})"),
                _inconclusive_parts(p, level))


def _test_methods(tests: Optional[MetricTests]) -> list[str]:
    """One line per distinct method of a probe's paired tests (the few-shot ks share one; their pair counts
    differ)."""
    if tests is None:
        return []
    named = [("linear probe", tests.linear_probe), ("zero-shot", tests.zero_shot)]
    named += [("few-shot", t) for t in tests.few_shot.values()]
    return F.ordered_unique(f"{what}: {re.sub(r' [(][0-9,]+ nonzero pairs[)]', '', F.text(t.method))}"
                            for what, t in named if t is not None and t.method)


def _compare_probe(i: int, cp: CompareProbe, report: CompareReport) -> Section:
    a, b = cp.a, cp.b
    la, lb = F.compare_levels(cp)
    sig = F.compare_significant(cp, report.alpha)
    flags = ([Fixed("RISK ROSE")] if F.compare_rose(cp) else []) + ([Fixed("significant")] if sig is True else [])
    methods = _test_methods(cp.tests)
    paired = cell(Fixed(f"p = {F.p_value(cp.p_value)}, adjusted"), f"({F.text(report.correction)})",
                  Fixed(f"p = {F.p_value(cp.p_adjusted)}, significant at alpha"),
                  F.compact(report.alpha), tight(Fixed(":")), F.yes_no(sig),
                  muted(f"({'; '.join(methods)})") if methods else None)
    # the levels the compare block states win over the sides' own (older results carry only those)
    blocks: list = [Pairs([("A", _side_cell(a, la)), ("B", _side_cell(b, lb)), ("Paired test", paired),
                           ("Capability", cell(F.text(cp.capability or a.capability))),
                           ("Policy", _policy_cell(cp.policy or a.policy))])]
    figs = [Figure(plots.compare_learning_curve_svg(cp), Fixed(
        "Balanced accuracy vs labelled images per class for model A and model B (floors dashed); right: "
        "linear probe on the full training split."))]
    if plots.compare_has_verification(cp):
        figs.append(Figure(plots.compare_roc_svg(cp), Fixed(
            "Raw-embedding verification: true accept rate vs false accept rate, A vs B (floors dashed).")))
    blocks += [Figures(figs),
               Subheading(cell(Fixed("A vs B (balanced accuracy on held-out test images; delta is B minus A)"))),
               compare_table(cp)]
    if F.same_data(a, b):
        blocks += _data_blocks(a, heading=Fixed("Data (the same for A and B)"))
    else:
        for tag, probe in (("A", a), ("B", b)):
            blocks += _data_blocks(probe, heading=Fixed(f"Data, model {tag}"))
    return Section(anchor(i, cp.id), F.text(cp.title or cp.id), blocks,
                   badges=[badge(la), badge(lb)], ident=F.text(cp.id), flags=flags, css="probe")


def _compare_row(i: int, cp: CompareProbe, alpha: Any) -> list:
    la, lb = F.compare_levels(cp)
    rose = F.compare_rose(cp)
    change = F.change_word(la, lb, rose)
    return [cell(Link(F.text(cp.id), anchor(i, cp.id))), verdict_cell(cp.a, la), verdict_cell(cp.b, lb),
            cell(Span(change, "flag") if rose else change), cell(F.pp(cp.delta.linear_probe)),
            cell(F.compare_headline_text(cp.headline)), cell(F.p_value(cp.p_value)), cell(F.p_value(cp.p_adjusted)),
            cell(F.yes_no(F.compare_significant(cp, alpha)))]


COMPARE_NOTE = ("Deltas are B minus A in balanced-accuracy percentage points (pp), from paired tests on the same "
                "test images and episodes. A move to inconclusive counts as a rise.")


def _compare(report: CompareReport) -> ReportView:
    probes = F.compare_order(report.probes)
    alpha = report.alpha
    ma, mb = report.model_a, report.model_b
    rows = [_compare_row(i, cp, alpha) for i, cp in enumerate(probes)]
    row_css = ["rose" if F.compare_rose(cp) else "" for cp in probes]
    rose_ids, sig_ids = F.compare_rose_and_significant(report)
    corr = F.text(report.correction)
    summary = [Para(cell(Fixed(f"Risk rose for {len(rose_ids)} probe(s)" + (":" if rose_ids else "")),
                         ", ".join(rose_ids), tight(Fixed(f"; significant change in {len(sig_ids)}" +
                                                          (":" if sig_ids else ""))),
                         ", ".join(sig_ids), tight(Fixed(".")))),
               table([Fixed("Probe"), Fixed("Level A"), Fixed("Level B"), Fixed("Change"),
                      Fixed("Delta linear probe (B - A)"), Fixed("Headline change"), Fixed("p"),
                      f"p adjusted ({corr})", Fixed("Significant")], rows, (4, 6, 7), "summary", row_css)]
    summary += _not_run(report)
    summary.append(Para(cell(Fixed(COMPARE_NOTE)), css="note"))
    sections = [Section("summary", Fixed("Summary"), summary)]
    sections += [_compare_probe(i, cp, report) for i, cp in enumerate(probes)]
    meta = Pairs(_model_pairs(ma, "Model A") + _model_pairs(mb, "Model B") + [
        ("Seed", cell(F.text(report.seed))),
        ("Significance", cell(Fixed("alpha"), F.compact(alpha), tight(Fixed(", multiple-testing correction")), corr,
                              Fixed(f"over {len(probes)} probes"))),
        ("Tool", _tool_cell(report))])
    title = f"creepscan compare: {F.text(ma.spec or ma.name)} vs {F.text(mb.spec or mb.name)}"
    rose = cell(Span(Fixed(f"Risk rose for {len(rose_ids)} of {len(probes)} probe(s)" + (":" if rose_ids else "."))
                     if rose_ids else Fixed(f"Risk rose for none of the {len(probes)} probe(s)."),
                     "flag" if rose_ids else "strong"), ", ".join(rose_ids))
    b_sides = [(cp.id, F.compare_levels(cp)[1], cp.reference if cp.reference is not None else cp.b.reference)
               for cp in probes]
    levels, top = _levels_line(Fixed("Model B, highest level:"), b_sides)
    banner = _banner([rose, levels, _spec_line(report.spec.b if report.spec else None)], report)
    return ReportView("compare", Fixed("creepscan compare report"), title, meta, sections, banner, top)


# --- sweep -------------------------------------------------------------------------------

def _order_cell(model: Optional[SweepModel], j: int) -> Cell:
    return cell(F.num(model.order) if model is not None and model.order is not None else Fixed(str(j)))


def _sweep_row(j: int, p: Probe, st: Optional[SweepStep], models: list) -> list:
    """One checkpoint of one probe: level, best skill, uplift, the step from the previous checkpoint."""
    cited = F.cited_gain(p.uplift)
    return [_order_cell(F.nth(models, j), j), cell(F.model_label(F.nth(models, j), j)), verdict_cell(p),
            cell(F.headline_text(F.headline_skill(p))),
            cell(F.with_ci(F.signed(cited.skill_gain, 2), F.ci_num(cited.ci95, 2, sign=True))),
            cell(F.signed(st.delta, 2) if st else NA), cell(F.p_value(st.p_value) if st else NA),
            cell(Span(Fixed("ROSE"), "flag") if st and st.level_rose is True else (Fixed("no") if st else NA)),
            cell(F.text(p.risk_reason), _inconclusive_parts(p))]


def _adaptation_items(per_model: list[Probe], models: list) -> list:
    """What each adapted checkpoint's adaptation changed against its base."""
    adapted = [(j, p.adaptation) for j, p in enumerate(per_model) if p.adaptation is not None]
    if not adapted:
        return []
    return [Subheading(cell(Fixed("What each adaptation changed (against its base)"))),
            Items([cell(strong(F.model_label(F.nth(models, j), j)), tight(":"),
                        Fixed(f"{F.text(a.change)} the level (base"), badge(a.base_level), Fixed("->"), badge(a.level),
                        tight(");"),
                        Fixed(f"headline {F.text(a.headline.metric if a.headline else None)} "
                              f"{F.pp(a.headline.change if a.headline else None)}, p ="), F.p_value(a.p_adjusted),
                        muted(f"base {F.text(a.base.spec)}")) for j, a in adapted])]


SWEEP_CAPTION = ("Headline skill (the capability axis: the best adversary's skill, 95% CI band) against checkpoint "
                 "order; floor dashed; a red rule before each checkpoint whose level rose over the previous one.")
SWEEP_TAR_CAPTION = ("The metric that decided the level: verification true accept rate at the rule's false accept "
                     "rate (raw embeddings, cosine similarity; 95% CI band) against checkpoint order; floor dashed.")


def _sweep_probe(i: int, sp: SweepProbe, models: list, order: Any = "given") -> Section:
    per_model = sp.per_model
    steps = F.sweep_steps(sp)
    rows = [_sweep_row(j, p, steps.get(j), models) for j, p in enumerate(per_model)]
    row_css = ["rose" if j in steps and steps[j].level_rose is True else "" for j in range(len(per_model))]
    first = F.nth(per_model, 0)
    blocks: list = [Pairs([("Capability", cell(F.text(sp.capability or (first.capability if first else None)))),
                           ("Policy", _policy_cell(sp.policy or (first.policy if first else None)))])]
    figs = [Figure(plots.trajectory_svg(sp, models, order), Fixed(SWEEP_CAPTION))]
    if plots.verification_decides(sp):  # plot the metric that set the level, not only the skill
        figs.append(Figure(plots.trajectory_tar_svg(sp, models, order), Fixed(SWEEP_TAR_CAPTION)))
    blocks.append(Figures(figs))
    blocks.append(Subheading(cell(Fixed("Checkpoint by checkpoint"))))
    blocks.append(table([Fixed(h) for h in ("Order", "Model", "Level", "Best skill (95% CI)",
                                            "Uplift over floor (95% CI)", "Delta vs previous", "p vs previous",
                                            "Level rose", "Why")], rows, (0, 3, 4, 5, 6), "metrics sweep", row_css))
    blocks += _adaptation_items(per_model, models)
    if first is not None and all(F.same_data(first, o) for o in per_model[1:]):
        blocks += _data_blocks(first, heading=Fixed("Data (the same for every model)"))
    else:
        for j, p in enumerate(per_model):
            blocks += _data_blocks(p, heading=f"Data, {F.model_label(F.nth(models, j), j)}")
    return Section(anchor(i, sp.id), F.text(sp.title or sp.id), blocks,
                   badges=[badge(p.risk_level) for p in per_model], ident=F.text(sp.id),
                   flags=[Fixed("LEVEL ROSE")] if any(s.level_rose is True for s in steps.values()) else [],
                   css="probe")


def _sweep_rises(probes: list[SweepProbe], models: list) -> list:
    """A line per step at which a probe's level rose."""
    rises = []
    for p in probes:
        for to, st in F.sweep_steps(p).items():
            if st.level_rose is True:
                rises.append(cell(strong(F.text(p.id)), tight(Fixed(": rose from")),
                                  F.model_label(F.nth(models, to - 1), to - 1), Fixed("to"),
                                  F.model_label(F.nth(models, to), to),
                                  Fixed(f"(p = {F.p_value(st.p_value)}, skill change {F.signed(st.delta)})")))
    return rises


SWEEP_NOTE = ("Every model ran the same probes on the same images, splits and episodes; consecutive checkpoints "
              "are compared with the paired test of compare. Skill = (balanced accuracy - chance) / (1 - chance).")


def _sweep(report: SweepReport) -> ReportView:
    models = F.sweep_models(report)
    probes = report.probes
    model_rows = [[_order_cell(m, j), cell(F.text(m.spec)), cell(F.text(m.name)), cell(F.short_fp(m.fingerprint))]
                  for j, m in enumerate(models)]
    grid = []
    for j, m in enumerate(models):
        row = [cell(F.model_label(m, j))]
        for p in probes:
            pm = F.nth(p.per_model, j)
            row.append(cell(verdict_cell(pm), F.headline_text(F.headline_skill(pm))) if pm else cell(NA))
        grid.append(row)
    rises = _sweep_rises(probes, models)
    summary: list = [Subheading(cell(Fixed("Models, in checkpoint order"))),
                     table([Fixed(h) for h in ("Order", "Spec", "Name", "Fingerprint")], model_rows, (0,), "summary"),
                     Subheading(cell(Fixed("Level and best skill (95% CI), model x probe"))),
                     table([Fixed("Model")] + [Link(F.text(p.id), anchor(i, p.id)) for i, p in enumerate(probes)],
                           grid, (), "summary sweep")]
    summary.append(Para(cell(strong(Fixed(f"Level rises between consecutive checkpoints ({len(rises)}):")),
                             None if rises else Fixed("none."))))
    if rises:
        summary.append(Items(rises))
    summary += _not_run(report)
    summary.append(Para(cell(Fixed(SWEEP_NOTE)), css="note"))
    sections = [Section("summary", Fixed("Summary"), summary)]
    order = (report.settings.order if report.settings else None) or "given"
    sections += [_sweep_probe(i, p, models, order) for i, p in enumerate(probes)]
    meta = Pairs([("Models", cell(Fixed(str(len(models))))), ("Seed", cell(F.text(report.seed))),
                  ("Suite", cell(F.suite_text(report.suite))),
                  ("Settings", cell(F.settings_text(report.settings))), ("Tool", _tool_cell(report))])
    last = [(p.id, pm.risk_level if pm else None, p.reference) for p in probes
            for pm in (F.nth(p.per_model, len(models) - 1),)]
    last_label = F.model_label(F.nth(models, len(models) - 1), len(models) - 1)
    levels, top = _levels_line(Fixed(f"Last checkpoint ({last_label}), highest level:"), last)
    rises_line = cell(Span(Fixed(f"Level rose {len(rises)} time(s) between consecutive checkpoints."), "flag")
                      if rises else strong(Fixed("No level rose between consecutive checkpoints.")))
    banner = _banner([levels, rises_line], report)
    return ReportView("sweep", Fixed("creepscan sweep report"), f"creepscan sweep: {len(models)} models", meta,
                      sections, banner, top)


def build_view(result: Union[Report, dict]) -> ReportView:
    """The display model of an audit, compare or sweep report: the typed report (``result.load_report``),
    or report.json's dict, which is read into it first (``_fmt.typed_report``: a dict that breaks the schema
    raises ``ValueError``)."""
    report = F.typed_report(result)
    if report.kind == "compare":
        return _compare(report)
    if report.kind == "sweep":
        return _sweep(report)
    return _audit(report)
