"""The one report view model: a result dict (audit, compare or sweep) -> plain display objects.

``build_view(result)`` returns a ``ReportView``: a title, header pairs and a list of ``Section``s,
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
from typing import Any, ClassVar, Iterable, Union

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

def _model_pairs(model: Any, label: str = "Model") -> list:
    m = F.as_dict(model)
    name = m.get("name")
    extra = muted(f"({F.text(name)})") if name and name != m.get("spec") else None
    pairs = [(label, cell(F.text(m.get("spec") or name), extra)),
             (f"{label} fingerprint", cell(F.text(m.get("fingerprint"))))]
    if m.get("library"):
        pairs.append((f"{label} loaded by", cell(F.text(m.get("library")))))
    base = F.as_dict(m.get("base"))
    if base:
        pairs.append((f"{label} adapted from", cell(F.text(base.get("spec") or base.get("name")),
                                                    muted(F.short_fp(base.get("fingerprint"))))))
    if m.get("zero_shot"):
        pairs.append((f"{label} zero-shot", cell(F.text(m.get("zero_shot")))))
    return pairs


def _tool_cell(result: dict) -> Cell:
    tool = F.as_dict(result.get("tool"))
    return cell(F.text(tool.get("name") or "creepscan"), F.text(tool.get("version")),
                muted(f"(report schema {F.text(result.get('schema_version'))})"))


def _policy_cell(p: dict) -> Cell:
    pol = [F.text(x) for x in F.as_list(p.get("policy"))]
    return cell("; ".join(pol)) if pol else cell(NA)


def _not_run(result: dict) -> list:
    missing = F.dicts(result.get("not_run"))
    if not missing:
        return []
    return [Para(cell(Span(f"Not run ({len(missing)}): the report is incomplete.", "flag"))),
            Items([cell(strong(F.text(m.get("id"))), F.text(m.get("reason"))) for m in missing])]


def inconclusive_para(p: dict) -> Para | None:
    """Why a probe is inconclusive: the reason code, what it means, and the result's detail."""
    info = F.inconclusive_info(p)
    if info is None:
        return None
    code, why, detail = info
    return Para(cell(strong(Fixed("Inconclusive:")), Span(code, "flag"),
                     muted(Fixed(f"({why})")) if why != NA else None, detail), css="inconclusive")


def verdict_cell(p: dict) -> Cell:
    """A probe's level with its inconclusive reason code and the range its CIs allow."""
    info = F.inconclusive_info(p)
    rng = F.level_range(p)
    return cell(badge(p.get("risk_level")),
                muted(f"({info[0]})") if info else None,
                muted(Fixed(f"CIs allow {F.level_range_text(p)}")) if rng and rng[0] != rng[1] else None)


# --- audit: per-probe blocks -------------------------------------------------------------

def _data_blocks(p: dict, heading: str = "Data") -> list:
    data, split = F.as_dict(p.get("data")), F.as_dict(p.get("split"))
    pairs = [("Source", cell(F.text(data.get("source"))))]
    if data.get("fingerprint"):
        pairs.append(("Data fingerprint", cell(F.text(data.get("fingerprint")))))
    pairs.append(("Images", cell(Fixed(
        f"{F.count(p.get('n_images'))} in {F.count(p.get('n_classes'))} classes (chance "
        f"{F.pct(p.get('chance'))}); "
        + (f"at most {F.count(data.get('max_per_class'))} per class" if F.is_num(data.get("max_per_class"))
           else "no cap per class")))))
    folds = split.get("folds")
    pairs.append(("Split", cell(Fixed(
        f"train {F.num(split.get('train'))}, val {F.num(split.get('val'))}, test "
        f"{F.num(split.get('test'))} images" + (f"; {F.num(folds)} folds" if F.is_num(folds) and folds > 1 else "")))))
    if isinstance(split.get("grouped"), bool):
        grouped = (Fixed(f"yes, by group ({F.num(split.get('n_groups'))} groups): no group is on both "
                         "sides of a split") if split["grouped"]
                   else Fixed("no: images are split one by one"))
        pairs.append(("Grouped split", cell(grouped)))
    if "near_duplicates_dropped" in split:
        pairs.append(("Near-duplicates dropped from test", cell(F.count(split.get("near_duplicates_dropped")))))
    out = [Subheading(cell(heading)), Pairs(pairs)]
    if split.get("warning"):
        out.append(Para(cell(Span(Fixed("Split warning:"), "flag"), F.text(split["warning"])), css="warning"))
    labels = F.dicts(p.get("labels"))
    if labels:
        parts: list = [strong(Fixed(f"Labels ({len(labels)}):"))]
        for i, x in enumerate(labels[:MAX_LABELS]):
            sep = "," if i < min(len(labels), MAX_LABELS) - 1 else ""
            parts += [Span(F.text(x.get("name") or x.get("label")), "code"),
                      Fixed(f"({F.num(x.get('n_images'))}){sep}")]
        if len(labels) > MAX_LABELS:
            parts.append(muted(Fixed(f"and {len(labels) - MAX_LABELS} more")))
        out.append(Para(cell(*parts)))
    excluded = F.excluded(p)
    if excluded:
        out.append(Para(cell(strong(Fixed(f"Excluded classes ({len(excluded)}):")))))
        out.append(capped(excluded, lambda x: (F.text(x.get("label")),
                                               Fixed(f"({F.num(x.get('n_images'))} images):"),
                                               F.text(x.get("reason"))),
                          where=Fixed("report.json excluded_classes")))
    skipped = F.skipped(p)
    if skipped:
        out.append(Para(cell(strong(Fixed(f"Skipped images ({len(skipped)}):")))))
        out.append(capped(skipped, lambda x: (Span(F.text(x.get("path")), "code"), tight(Fixed(":")),
                                              F.text(x.get("reason"))),
                          where=Fixed("report.json skipped_images")))
    else:
        out.append(Para(cell(strong(Fixed("Skipped images:")), Fixed("none"))))
    return out


def _fs_cell(row: Any) -> Cell:
    if not isinstance(row, dict):
        return cell(NA)
    s = F.acc_ci(row)
    bits = []
    if row.get("winner"):
        bits.append(F.text(row["winner"]))
    if F.is_num(row.get("episodes")):
        bits.append(f"{F.num(row['episodes'])} episodes")
    return cell(s, muted(f"({', '.join(bits)})")) if bits and s != NA else cell(s)


def _lp_cell(block: Any) -> Cell:
    s = F.acc_ci(block)
    c = F.get(block, "C")
    pre = F.get(block, "preprocess")
    # the label-free transform chosen on validation, when it is not the raw features
    how = f", {pre}" if isinstance(pre, str) and pre != "none" else ""
    return cell(s, muted(Fixed(f"C={F.num(c, 3)}{how}"))) if s != NA and F.is_num(c) else cell(s)


def _head_rows(mm: dict, fm: dict) -> list:
    """Full-split heads (knn, prototype_cl2n, mlp, gd_budget and its step budgets), model vs floor."""
    hm, hf = F.as_dict(mm.get("heads")), F.as_dict(fm.get("heads"))
    rows = []
    for name in F.ordered_unique(list(hm) + list(hf)):
        a, b = F.as_dict(hm.get(name)), F.as_dict(hf.get(name))
        rows.append([cell(f"Head {F.text(name)} (full train split)"), cell(F.acc_ci(a)), cell(F.acc_ci(b))])
        fb = {F.as_k(x.get("steps")): x for x in F.dicts(b.get("budgets"))}
        for bud in F.dicts(a.get("budgets")):
            steps = F.as_k(bud.get("steps"))
            rows.append([cell(f"Head {F.text(name)}, {F.num(steps)} steps"), cell(F.acc_ci(bud)),
                         cell(F.acc_ci(fb.get(steps)))])
    return rows


def _verification_rows(vm: Any, vf: Any) -> list:
    rows = []
    for far, _ in F.far_items(F.get(vm, "tar_at_far") or F.get(vf, "tar_at_far")):
        rows.append([cell(f"Verification TAR at FAR {F.text(far)}"), cell(F.tar_text(vm, far)),
                     cell(F.tar_text(vf, far))])
    rows.append([cell(Fixed("Verification ROC AUC")),
                 cell(F.with_ci(F.num(F.get(vm, "auc")), F.ci_num(F.get(vm, "auc_ci95")))),
                 cell(F.with_ci(F.num(F.get(vf, "auc")), F.ci_num(F.get(vf, "auc_ci95"))))])
    rows.append([cell(Fixed("Verification pairs (genuine / impostor)")),
                 cell(Fixed(f"{F.count(F.get(vm, 'n_genuine'))} / {F.count(F.get(vm, 'n_impostor'))}")),
                 cell(Fixed(f"{F.count(F.get(vf, 'n_genuine'))} / {F.count(F.get(vf, 'n_impostor'))}"))])
    return rows


def _open_set_rows(om: Any, of: Any) -> list:
    """The open-set identification protocol: rank-1 and FNIR at each FPIR, on held-out identities."""
    rows = [[cell(Fixed("Open-set rank-1 identification (unseen identities)")),
             cell(F.with_ci(F.pct(F.get(om, "rank1")), F.ci_pct(F.get(om, "rank1_ci95")))),
             cell(F.with_ci(F.pct(F.get(of, "rank1")), F.ci_pct(F.get(of, "rank1_ci95"))))]]
    for fpir, _ in F.far_items(F.get(om, "fnir_at_fpir") or F.get(of, "fnir_at_fpir")):
        rows.append([cell(f"Open-set FNIR at FPIR {F.text(fpir)}"),
                     cell(F.pct(F.get(om, "fnir_at_fpir", fpir))), cell(F.pct(F.get(of, "fnir_at_fpir", fpir)))])
    rows.append([cell(Fixed("Open-set gallery identities / non-mated probes")),
                 cell(Fixed(f"{F.count(F.get(om, 'n_gallery'))} / {F.count(F.get(om, 'n_nonmated'))}")),
                 cell(Fixed(f"{F.count(F.get(of, 'n_gallery'))} / {F.count(F.get(of, 'n_nonmated'))}"))])
    return rows


def _learned_metric_rows(mm: dict, fm: dict) -> list:
    """Verification TAR and open-set rank-1 with the learned metric (cosine after within-identity
    whitening fitted on other identities), where it ran."""
    rows = []
    vm, vf = mm.get("verification_learned"), fm.get("verification_learned")
    if isinstance(vm, dict) or isinstance(vf, dict):
        for far, _ in F.far_items(F.get(vm, "tar_at_far") or F.get(vf, "tar_at_far")):
            rows.append([cell(f"Verification TAR at FAR {F.text(far)}, learned metric"), cell(F.tar_text(vm, far)),
                         cell(F.tar_text(vf, far))])
    om, of = mm.get("open_set_learned"), fm.get("open_set_learned")
    if isinstance(om, dict) or isinstance(of, dict):
        rows.append([cell(Fixed("Open-set rank-1 identification, learned metric")),
                     cell(F.with_ci(F.pct(F.get(om, "rank1")), F.ci_pct(F.get(om, "rank1_ci95")))),
                     cell(F.with_ci(F.pct(F.get(of, "rank1")), F.ci_pct(F.get(of, "rank1_ci95"))))])
    return rows


def metrics_table(p: dict) -> Table:
    """Model vs floor: every attack's balanced accuracy on held-out test images, with its CI."""
    mm, fm = F.model_metrics(p), F.floor_metrics(p)
    zm, zf = mm.get("zero_shot"), fm.get("zero_shot")
    rows = [[cell(Fixed("Zero-shot")), cell(F.acc_ci(zm) if zm else Fixed("n/a (no text tower)")),
             cell(F.acc_ci(zf) if zf else NA)],
            [cell(Fixed("Linear probe (full train split)")), _lp_cell(mm.get("linear_probe")),
             _lp_cell(fm.get("linear_probe"))]]
    rows += _head_rows(mm, fm)
    fsm, fsf = F.few_shot_by_k(mm), F.few_shot_by_k(fm)
    for k in sorted(set(fsm) | set(fsf)):
        rows.append([cell(Fixed(f"Few-shot k={k}")), _fs_cell(fsm.get(k)), _fs_cell(fsf.get(k))])
    for u in F.dicts(mm.get("few_shot_unavailable")):
        rows.append([cell(f"Few-shot k={F.text(u.get('k'))}"),
                     cell(muted(f"not run: {F.text(u.get('reason'))}")), cell(NA)])
    vm, vf = mm.get("verification"), fm.get("verification")
    if isinstance(vm, dict) or isinstance(vf, dict):
        rows += _verification_rows(vm, vf)
    om, of = mm.get("open_set"), fm.get("open_set")
    if isinstance(om, dict) or isinstance(of, dict):
        rows += _open_set_rows(om, of)
    rows += _learned_metric_rows(mm, fm)
    rows.append([cell(Fixed("Samples per class to threshold")), cell(F.samples_text(mm)),
                 cell(F.samples_text(fm))])
    return Table([cell(Fixed("Attack")), cell(Fixed("Model")), cell(Fixed("Floor"))], rows, (1, 2), "metrics")


def axes_table(p: dict) -> Table:
    """The two axes of a verdict: capability (what a holder can do) and uplift (what the model's
    training added over the floor), each with its 95% CI."""
    cap = F.as_dict(p.get("capability_axis"))
    head = F.headline_skill(p)
    stk = cap.get("samples_to_threshold") if "samples_to_threshold" in cap else \
        F.get(p, "metrics", "samples_to_threshold")
    cap_detail = [Fixed("by"), Span(head.source, "code"),
                  tight(Fixed(f"; k to threshold: {F.num(stk)}" if F.is_num(stk) else
                              "; threshold not reached at any k"))] if head.skill is not None else []
    u = F.as_dict(p.get("uplift"))
    upper = [t.get("upper95") for t in F.dicts(u.get("tests")) if F.is_num(t.get("upper95"))]
    margin = u.get("margin")
    u_detail = []
    if upper and F.is_num(margin):
        u_detail.append(Fixed(f"largest upper 95% bound {F.num(max(upper))} "
                              f"{'<' if max(upper) < margin else '>='} margin {F.num(margin)};"))
    elif F.is_num(margin):
        u_detail.append(Fixed(f"equivalence margin {F.num(margin)};"))
    u_detail.append(Fixed(f"model {F.num(u.get('skill_model'))} vs floor {F.num(u.get('skill_floor'))}, "
                          f"p = {F.p_value(u.get('p_value'))}, significant: {F.yes_no(u.get('significant'))}"))
    # the gain the level's reason cites (the strongest significant test, else the one nearest the margin)
    cited = F.cited_uplift_test(u)
    by = [Fixed("by"), Span(F.text(cited["attack"]), "code"), tight(Fixed(";"))] if cited.get("attack") else []
    rows = [[cell(Fixed("Capability (best skill)")), cell(F.num(head.skill)),
             cell(F.ci_num(head.ci95) or NA), cell(*cap_detail) or cell(NA)],
            [cell(Fixed("Uplift (skill gain over the floor)")), cell(F.signed(cited.get("skill_gain"))),
             cell(F.ci_num(cited.get("ci95"), sign=True) or NA), cell(*by, *u_detail)]]
    return Table([cell(Fixed("Axis")), cell(Fixed("Estimate")), cell(Fixed("95% CI")), cell(Fixed("Detail"))],
                 rows, (1, 2), "metrics axes")


def uplift_tests_table(p: dict) -> Table | None:
    tests = F.dicts(F.get(p, "uplift", "tests"))
    if not tests:
        return None
    rows = [[cell(Span(F.text(t.get("attack")), "code")), cell(F.signed(t.get("skill_gain"))),
             cell(F.ci_num(t.get("ci95"), sign=True) or NA), cell(F.signed(t.get("upper95"))),
             cell(F.num(t.get("se"))), cell(F.p_value(t.get("p_value"))), cell(F.p_value(t.get("p_adjusted"))),
             cell(F.text(t.get("method")) if t.get("method") else NA)] for t in tests]
    corr = F.get(p, "uplift", "correction")
    return table([Fixed(h) for h in ("Attack", "Skill gain", "95% CI", "Upper 95% bound", "SE", "p")] +
                 [f"p adjusted ({F.text(corr)})" if corr else Fixed("p adjusted"), Fixed("Method")],
                 rows, (1, 2, 3, 4, 5, 6), "metrics")


def power_para(p: dict) -> Para | None:
    pw = p.get("power")
    if not isinstance(pw, dict):
        return None
    need, have = pw.get("images_needed_per_class"), pw.get("test_images_per_class")
    more = ""
    if F.is_num(need) and F.is_num(have):
        more = (f"; this run has {F.count(have)} test images per class" +
                (f", {F.count(need - have)} short" if need > have else ", enough"))
    limit = pw.get("limiting_attack")
    return Para(cell(strong(Fixed("Power:")), Fixed(
        f"minimum detectable effect {F.num(pw.get('mde'))} (skill gain) at equivalence margin "
        f"{F.num(pw.get('margin'))}"), (tight(Fixed(", set by")), Span(F.text(limit), "code")) if limit else (),
        tight(Fixed(f"; ruling out a gain of the margin needs {F.count(need)} test images per class{more}."))),
        css="power")


def cost_blocks(p: dict) -> list:
    """The "cost to repurpose" table: adversary x images per class -> skill with its 95% CI (and the
    seconds and FLOPs where the adversary measured them); the best adversary per column in bold."""
    pts = F.cost_points(p)
    if not pts:
        return []
    chance = p.get("chance")
    advs = F.ordered_unique(pt.adversary for pt in pts)
    ks = sorted({pt.k for pt in pts if pt.k is not None}) + \
        ([F.ALL_TRAIN] if any(pt.k is None for pt in pts) else [])
    grid = {(pt.adversary, pt.k): pt for pt in pts}
    best = {k: max((F.skill_of(pt.accuracy, chance) for (a, kk), pt in grid.items() if kk == k
                    and F.is_num(F.skill_of(pt.accuracy, chance))), default=None) for k in ks}
    rows = []
    for a in advs:
        row = [cell(Span(a, "code"))]
        for k in ks:
            pt = grid.get((a, k))
            if pt is None:
                row.append(cell(Fixed("-")))
                continue
            s = F.skill_of(pt.accuracy, chance)
            val = F.with_ci(F.num(s, 2), F.ci_num(F.skill_ci_of(pt.ci95, chance), 2))
            cost = ", ".join(x for x in (F.seconds(pt.seconds), F.flops(pt.flops)) if x != NA)
            row.append(cell(strong(val) if F.is_num(s) and s == best[k] else val,
                            muted(Fixed(f"({cost})")) if cost else None))
        rows.append(row)
    header = [Fixed("Adversary")] + [Fixed(f"k={k}") if k is not None else Fixed("all (train split)") for k in ks]
    out = [Subheading(cell(Fixed("Cost to repurpose"))),
           table(header, rows, tuple(range(1, len(ks) + 1)), "metrics cost")]
    note = [Fixed("Skill = (balanced accuracy - chance) / (1 - chance) on the held-out test images; "
                  "k = labelled images per class; the best adversary of each column in bold.")]
    ft = F.get(p, "metrics", "finetune")
    if isinstance(ft, dict) and ft.get("device"):
        note += [Fixed("Fine-tuning ran on"), Span(F.text(ft["device"]), "code"),
                 Fixed("(seconds of that device; FLOPs counted from the architecture).")]
    out.append(Para(cell(*note), css="note"))
    return out


def _figures(p: dict, caption_floor: str) -> Figures:
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


def adaptation_blocks(p: dict) -> list:
    """What the adaptation changed on this probe (an adapted model's ``adaptation`` block): the
    base's level and the adapted model's, whether the adaptation raised, kept or lowered it, and
    adapted minus base per attack with its paired test."""
    a = F.as_dict(p.get("adaptation"))
    if not a:
        return []
    base = F.as_dict(a.get("base"))
    head = F.as_dict(a.get("headline"))
    sig = a.get("significant")
    rows = []
    tests, delta = F.as_dict(a.get("tests")), F.as_dict(a.get("delta"))
    named = [("Linear probe", delta.get("linear_probe"), tests.get("linear_probe"))]
    if tests.get("zero_shot"):
        named.append(("Zero-shot", delta.get("zero_shot"), tests.get("zero_shot")))
    for k, t in F.as_dict(tests.get("few_shot")).items():
        named.append((f"Few-shot k={F.text(k)}", F.get(delta, "few_shot", k), t))
    for label, d, t in named:
        rows.append([cell(Fixed(label)), cell(F.pp(d)), *_test_cells(t)])
    return [
        Subheading(cell(Fixed("What the adaptation changed (against its base)"))),
        Para(cell(strong(Fixed("Adaptation:")), Span(f"{F.text(a.get('change'))} the level", "strong"),
                  Fixed("(base"), badge(a.get("base_level")), Fixed("-> adapted"), badge(a.get("level")), tight(")."),
                  Fixed(f"Headline: {F.text(head.get('metric'))} {F.pp(head.get('change'))}, p ="),
                  F.p_value(a.get("p_adjusted")), Fixed("after Holm across probes:"),
                  Fixed("a significant change." if sig else "no significant change." if sig is False else ""),
                  muted(f"Base: {F.text(base.get('spec') or base.get('name'))}"))),
        table([Fixed(h) for h in ("Metric", "Adapted minus base", "95% CI", "p (paired test)")], rows,
              (1, 2, 3)),
    ]


def _audit_probe(i: int, p: dict) -> Section:
    ctrl = F.as_dict(p.get("control"))
    level = F.level_name(p.get("risk_level"))
    pairs = [("Capability", cell(F.text(p.get("capability")))), ("Policy", _policy_cell(p))]
    if F.level_range(p):
        pairs.append(("Levels the CIs allow", cell(F.level_range_text(p))))
    if p.get("risk_axis") is not None:
        pairs.append(("Decided by", cell(F.axis_text(p))))
    pairs.append(("Rule that fired", cell(F.text(p.get("risk_rule")))))
    thr = F.as_dict(p.get("threshold"))
    pairs.append(("Threshold", cell(Fixed(f"skill {F.num(thr.get('skill'), 2)} (= balanced accuracy "
                                          f"{F.pct(F.threshold_accuracy(p))})"))))
    adv = F.strongest_adversary(p)
    if adv:
        pairs.append(("Strongest adversary", cell(Span(F.text(adv), "code"))))
    pairs.append(("Floor (control)", cell(F.text(ctrl.get("spec")), muted(F.short_fp(ctrl.get("fingerprint"))))))
    blocks: list = [Para(cell(strong(Fixed("Risk:")), badge(level), F.text(p.get("risk_reason"))), css="reason")]
    blocks += [b for b in (inconclusive_para(p),) if b]
    blocks += [Pairs(pairs), _figures(p, F.text(ctrl.get("spec"))),
               Subheading(cell(Fixed("Two axes: capability and uplift (skill, 95% CI)"))), axes_table(p)]
    blocks += [b for b in (uplift_tests_table(p), power_para(p)) if b]
    blocks += [Subheading(cell(Fixed("Metrics (balanced accuracy on held-out test images, 95% CI)"))),
               metrics_table(p)]
    blocks += adaptation_blocks(p)
    blocks += cost_blocks(p)
    blocks += _data_blocks(p)
    return Section(anchor(i, p.get("id")), F.text(p.get("title") or p.get("id")), blocks,
                   badges=[badge(level)], ident=F.text(p.get("id")), css="probe")


def _spec_section(result: dict) -> Section | None:
    spec = result.get("spec")
    if not isinstance(spec, dict):
        return None
    clauses = F.dicts(spec.get("clauses"))
    passed = spec.get("passed")
    overall = verdict_badge("pass" if passed is True else "fail" if passed is False else None)
    rows = [[cell(F.text(c.get("kind"))), cell(F.text(c.get("probe"))), cell(verdict_badge(c.get("verdict"))),
             cell(badge(c.get("measured_level")) if c.get("measured_level") is not None else NA),
             cell(F.text(c.get("limit")) if c.get("limit") is not None else NA),
             cell(F.text(c.get("rule")) if c.get("rule") is not None else NA)] for c in clauses]
    n_fail = sum(str(c.get("verdict")).lower() == "fail" for c in clauses)
    n_inc = sum(str(c.get("verdict")).lower() == "inconclusive" for c in clauses)
    blocks = [Para(cell(strong(Fixed("Result:")), overall,
                        Fixed(f"{len(clauses)} clause(s): {n_fail} failed, {n_inc} inconclusive.")))]
    if rows:
        blocks.append(table([Fixed(h) for h in ("Clause", "Probe", "Verdict", "Measured level", "Limit", "Rule")],
                            rows, css="summary spec"))
    return Section("use-spec", Fixed("Use specification"), blocks, badges=[overall])


def _levels_line(label: str, probes: list, level_key: str = "risk_level") -> tuple[Cell, str]:
    """"label: HIGHEST on ids; levels: CRITICAL 1, HIGH 2, ..." and the highest level's name."""
    judged = [p for p in probes if F.get(p, "reference") is not True]
    counts = F.level_counts(F.get(p, level_key) for p in judged)
    if not counts:
        return cell(strong(label), NA), "n/a"
    top = counts[0][0]
    ids = [F.text(F.get(p, "id")) for p in judged if F.level_name(F.get(p, level_key)) == top]
    parts: list = [strong(label), badge(top), Fixed("on"), ", ".join(ids), tight(Fixed(";")), Fixed("all levels:")]
    for i, (lv, n) in enumerate(counts):
        parts += [badge(lv), Fixed(f"{n}" + ("," if i < len(counts) - 1 else ""))]
    n_ref = len(probes) - len(judged)
    if n_ref:
        parts.append(muted(Fixed(f"(and {n_ref} reference probe{'s' * (n_ref != 1)}, not a prohibited capability)")))
    return cell(*parts), top


def _spec_line(spec: Any) -> Cell | None:
    if not isinstance(spec, dict) or not isinstance(spec.get("clauses"), list):
        return None
    clauses = F.dicts(spec.get("clauses"))
    passed = spec.get("passed")
    n_fail = sum(str(c.get("verdict")).lower() == "fail" for c in clauses)
    n_inc = sum(str(c.get("verdict")).lower() == "inconclusive" for c in clauses)
    return cell(strong(Fixed("Use specification:")),
                verdict_badge("pass" if passed is True else "fail" if passed is False else None),
                Fixed(f"{len(clauses)} clause{'s' * (len(clauses) != 1)}: {n_fail} failed, {n_inc} inconclusive"),
                Link(Fixed("(clauses)"), "use-spec"))


def _banner(lines: list, result: dict) -> list:
    out = [Para(c, css="verdict-line") for c in lines if c]
    missing = F.dicts(result.get("not_run"))
    if missing:
        out.append(Para(cell(Span(Fixed(f"Incomplete: {len(missing)} probe(s) not run:"), "flag"),
                             ", ".join(F.text(m.get("id")) for m in missing)), css="verdict-line"))
    return out


def _audit(result: dict) -> ReportView:
    # most severe first (inconclusive just below high): what an auditor must see comes first
    probes = sorted(F.probe_list(result), key=F.severity_rank)
    model = F.as_dict(result.get("model"))
    rows = []
    for i, p in enumerate(probes):
        mm, fm = F.model_metrics(p), F.floor_metrics(p)
        ver = mm.get("verification")
        rows.append([
            cell(Link(F.text(p.get("id")), anchor(i, p.get("id")))),
            verdict_cell(p),
            cell(F.headline_text(F.headline_skill(p))),
            cell(Fixed(f"{F.pct(F.get(mm, 'linear_probe', 'accuracy'))} vs "
                       f"{F.pct(F.get(fm, 'linear_probe', 'accuracy'))}")),
            cell(F.samples_text(mm)),
            cell(F.acc_ci(mm.get("zero_shot")) if mm.get("zero_shot") else NA),
            cell(F.tar_text(ver, "1e-3", with_interval=False) if isinstance(ver, dict) else NA),
        ])
    summary = table([Fixed(h) for h in ("Probe", "Level", "Best skill (95% CI)",
                                        "Linear probe (model vs floor)", "Few-shot k to threshold",
                                        "Zero-shot", "Verification TAR@1e-3")],
                    rows, (2, 3, 4, 5, 6), "summary")
    # the reasons below the table, each whole: a sentence in a narrow cell would push the table down
    reasons = Items([cell(strong(F.text(p.get("id"))), tight(Fixed(":")), F.text(p.get("risk_reason")))
                     for p in probes])
    sections = [Section("summary", Fixed("Summary"), [summary, Subheading(cell(Fixed("Why each level"))), reasons]
                        + _not_run(result) + [Para(cell(Fixed(
        "Accuracies are balanced accuracy (mean per-class recall) on held-out test images. The floor is "
        "the control encoder (by default the same architecture with random weights): what an adversary "
        "gets without this model's training. Inconclusive means the evidence cannot place the probe on "
        "the none..critical scale (saturated: the floor solves it too; underpowered: too few test "
        "images); it fails every gate unless allowed.")), css="note")])]
    spec = _spec_section(result)
    if spec:
        sections.append(spec)
    sections += [_audit_probe(i, p) for i, p in enumerate(probes)]
    meta = Pairs(_model_pairs(model) + [
        ("Seed", cell(F.text(result.get("seed")))), ("Suite", cell(F.suite_text(result.get("suite")))),
        ("Settings", cell(F.settings_text(result.get("settings")))), ("Tool", _tool_cell(result))])
    levels, top = _levels_line(Fixed("Highest level:"), probes)
    banner = _banner([levels, _spec_line(result.get("spec"))], result)
    return ReportView("audit", Fixed("creepscan audit report"),
                      f"creepscan audit: {F.text(model.get('spec') or model.get('name'))}", meta, sections,
                      banner, top)


# --- compare -----------------------------------------------------------------------------

def _test_cells(test: Any) -> list:
    return [cell(F.ci_pct(F.get(test, "ci95"), sign=True) or NA), cell(F.p_value(F.get(test, "p_value")))]


def compare_table(cp: dict) -> Table:
    """A vs B, metric by metric: [metric, A, B, delta, CI of delta, p]."""
    a, b = F.as_dict(cp.get("a")), F.as_dict(cp.get("b"))
    ma, mb = F.model_metrics(a), F.model_metrics(b)
    d, tests = F.as_dict(cp.get("delta")), F.as_dict(cp.get("tests"))
    rows = [[cell(Fixed("Linear probe")), cell(F.acc_ci(ma.get("linear_probe"))),
             cell(F.acc_ci(mb.get("linear_probe"))), cell(F.pp(d.get("linear_probe"))),
             *_test_cells(tests.get("linear_probe"))]]
    za, zb = ma.get("zero_shot"), mb.get("zero_shot")
    if za or zb or d.get("zero_shot") is not None:
        rows.append([cell(Fixed("Zero-shot")), cell(F.acc_ci(za)), cell(F.acc_ci(zb)), cell(F.pp(d.get("zero_shot"))),
                     *_test_cells(tests.get("zero_shot"))])
    ha, hb = F.as_dict(ma.get("heads")), F.as_dict(mb.get("heads"))
    dh, th = F.as_dict(d.get("heads")), F.as_dict(tests.get("heads"))
    for name in F.ordered_unique(list(ha) + list(hb)):
        rows.append([cell(f"Head {F.text(name)}"), cell(F.acc_ci(ha.get(name))), cell(F.acc_ci(hb.get(name))),
                     cell(F.pp(dh.get(name))), *_test_cells(th.get(name))])
    fa, fb = F.few_shot_by_k(ma), F.few_shot_by_k(mb)
    dfs, tfs = F.as_dict(d.get("few_shot")), F.as_dict(tests.get("few_shot"))
    for k in sorted(set(fa) | set(fb)):
        rows.append([cell(Fixed(f"Few-shot k={k}")), cell(F.acc_ci(fa.get(k))), cell(F.acc_ci(fb.get(k))),
                     cell(F.pp(dfs.get(str(k)))), *_test_cells(tfs.get(str(k)))])
    va, vb = ma.get("verification"), mb.get("verification")
    if isinstance(va, dict) or isinstance(vb, dict):
        for far, _ in F.far_items(F.get(va, "tar_at_far") or F.get(vb, "tar_at_far")):
            rows.append([cell(f"Verification TAR at FAR {F.text(far)}"), cell(F.tar_text(va, far)),
                         cell(F.tar_text(vb, far)), cell(F.pp(d.get(f"verification_tar_{far}"))),
                         *_test_cells(tests.get(f"verification_tar_{far}"))])
        rows.append([cell(Fixed("Verification ROC AUC")), cell(F.num(F.get(va, "auc"))), cell(F.num(F.get(vb, "auc"))),
                     cell(NA), cell(NA), cell(NA)])
    oa, ob = ma.get("open_set"), mb.get("open_set")
    if isinstance(oa, dict) or isinstance(ob, dict):
        rows.append([cell(Fixed("Open-set rank-1 identification")), cell(F.pct(F.get(oa, "rank1"))),
                     cell(F.pct(F.get(ob, "rank1"))), cell(F.pp(d.get("open_set_rank1"))),
                     *_test_cells(tests.get("open_set_rank1"))])
    ha_, hb_ = F.headline_skill(a), F.headline_skill(b)
    rows.append([cell(Fixed("Best skill (capability axis)")), cell(F.headline_text(ha_)), cell(F.headline_text(hb_)),
                 cell(F.signed(d.get("best_skill"))), cell(NA), cell(NA)])
    rows.append([cell(Fixed("Skill (uplift over floor)")), cell(F.num(F.get(a, "uplift", "skill_model"))),
                 cell(F.num(F.get(b, "uplift", "skill_model"))), cell(F.signed(d.get("skill"))), cell(NA), cell(NA)])
    rows.append([cell(Fixed("Samples per class to threshold")), cell(F.samples_text(ma)), cell(F.samples_text(mb)),
                 cell(NA), cell(NA), cell(NA)])
    return table([Fixed(h) for h in ("Metric", "A", "B", "Delta (B - A)", "95% CI of delta", "p (unadjusted)")],
                 rows, (1, 2, 3, 4, 5), "metrics")


def _inconclusive_parts(p: dict) -> Cell:
    """"Inconclusive: CODE detail" for a cell, or nothing when the probe is not inconclusive."""
    info = F.inconclusive_info(p)
    return cell(Span(Fixed("Inconclusive:"), "flag"), strong(info[0]), info[2]) if info else ()


def _side_cell(p: dict) -> Cell:
    """One side of a compare: level, reason, rule, and what makes it inconclusive."""
    return cell(verdict_cell(p), F.text(p.get("risk_reason")), muted(f"(rule: {F.text(p.get('risk_rule'))})"),
                _inconclusive_parts(p))


def _compare_probe(i: int, cp: dict, result: dict) -> Section:
    a, b = F.as_dict(cp.get("a")), F.as_dict(cp.get("b"))
    la, lb = F.compare_levels(cp)
    sig = F.compare_significant(cp, result.get("alpha"))
    flags = ([Fixed("RISK ROSE")] if F.compare_rose(cp) else []) + ([Fixed("significant")] if sig is True else [])
    tests = F.as_dict(cp.get("tests"))
    # one line per distinct method (the few-shot ks share one; their pair counts differ)
    named = [("linear probe", tests.get("linear_probe")), ("zero-shot", tests.get("zero_shot"))]
    named += [("few-shot", t) for t in F.as_dict(tests.get("few_shot")).values()]
    methods = F.ordered_unique(f"{what}: {re.sub(r' [(][0-9,]+ nonzero pairs[)]', '', F.text(t.get('method')))}"
                               for what, t in named if isinstance(t, dict) and t.get("method"))
    paired = cell(Fixed(f"p = {F.p_value(cp.get('p_value'))}, adjusted"), f"({F.text(result.get('correction'))})",
                  Fixed(f"p = {F.p_value(cp.get('p_adjusted'))}, significant at alpha"),
                  F.compact(result.get("alpha")), tight(Fixed(":")), F.yes_no(sig),
                  muted(f"({'; '.join(methods)})") if methods else None)
    # the levels the compare block states win over the sides' own (older results carry only those)
    blocks: list = [Pairs([("A", _side_cell(dict(a, risk_level=la))), ("B", _side_cell(dict(b, risk_level=lb))),
                           ("Paired test", paired),
                           ("Capability", cell(F.text(cp.get("capability") or a.get("capability")))),
                           ("Policy", _policy_cell(cp) if cp.get("policy") else _policy_cell(a))])]
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
    return Section(anchor(i, cp.get("id")), F.text(cp.get("title") or cp.get("id")), blocks,
                   badges=[badge(la), badge(lb)], ident=F.text(cp.get("id")), flags=flags, css="probe")


def _compare(result: dict) -> ReportView:
    probes = F.compare_order(F.probe_list(result))
    alpha = result.get("alpha")
    ma, mb = F.as_dict(result.get("model_a")), F.as_dict(result.get("model_b"))
    rows, row_css = [], []
    for i, cp in enumerate(probes):
        la, lb = F.compare_levels(cp)
        rose = F.compare_rose(cp)
        change = F.change_word(la, lb, rose)
        rows.append([cell(Link(F.text(cp.get("id")), anchor(i, cp.get("id")))),
                     verdict_cell(dict(F.as_dict(cp.get("a")), risk_level=la)),
                     verdict_cell(dict(F.as_dict(cp.get("b")), risk_level=lb)),
                     cell(Span(change, "flag") if rose else change),
                     cell(F.pp(F.get(cp, "delta", "linear_probe"))), cell(F.compare_headline_text(cp)),
                     cell(F.p_value(cp.get("p_value"))), cell(F.p_value(cp.get("p_adjusted"))),
                     cell(F.yes_no(F.compare_significant(cp, alpha)))])
        row_css.append("rose" if rose else "")
    rose_ids, sig_ids = F.compare_rose_and_significant(result)
    corr = F.text(result.get("correction"))
    summary = [Para(cell(Fixed(f"Risk rose for {len(rose_ids)} probe(s)" + (":" if rose_ids else "")),
                         ", ".join(rose_ids), tight(Fixed(f"; significant change in {len(sig_ids)}" +
                                                          (":" if sig_ids else ""))),
                         ", ".join(sig_ids), tight(Fixed(".")))),
               table([Fixed("Probe"), Fixed("Level A"), Fixed("Level B"), Fixed("Change"),
                      Fixed("Delta linear probe (B - A)"), Fixed("Headline change"), Fixed("p"),
                      f"p adjusted ({corr})", Fixed("Significant")], rows, (4, 6, 7), "summary", row_css)]
    summary += _not_run(result)
    summary.append(Para(cell(Fixed(
        "Deltas are B minus A in balanced-accuracy percentage points (pp), from paired tests on the same "
        "test images and episodes. A move to inconclusive counts as a rise.")), css="note"))
    sections = [Section("summary", Fixed("Summary"), summary)]
    sections += [_compare_probe(i, cp, result) for i, cp in enumerate(probes)]
    meta = Pairs(_model_pairs(ma, "Model A") + _model_pairs(mb, "Model B") + [
        ("Seed", cell(F.text(result.get("seed")))),
        ("Significance", cell(Fixed("alpha"), F.compact(alpha), tight(Fixed(", multiple-testing correction")), corr,
                              Fixed(f"over {len(probes)} probes"))),
        ("Tool", _tool_cell(result))])
    title = (f"creepscan compare: {F.text(ma.get('spec') or ma.get('name'))} vs "
             f"{F.text(mb.get('spec') or mb.get('name'))}")
    rose = cell(Span(Fixed(f"Risk rose for {len(rose_ids)} of {len(probes)} probe(s)" + (":" if rose_ids else "."))
                     if rose_ids else Fixed(f"Risk rose for none of the {len(probes)} probe(s)."),
                     "flag" if rose_ids else "strong"), ", ".join(rose_ids))
    b_sides = [dict(F.as_dict(cp.get("b")), id=cp.get("id"), risk_level=F.compare_levels(cp)[1],
                    reference=cp.get("reference", F.get(cp, "b", "reference"))) for cp in probes]
    levels, top = _levels_line(Fixed("Model B, highest level:"), b_sides)
    spec = F.as_dict(result.get("spec"))
    banner = _banner([rose, levels, _spec_line(spec.get("b") if "b" in spec else spec or None)], result)
    return ReportView("compare", Fixed("creepscan compare report"), title, meta, sections, banner, top)


# --- sweep -------------------------------------------------------------------------------

def _sweep_probe(i: int, sp: dict, models: list, order: Any = "given") -> Section:
    per_model = F.as_list(sp.get("per_model"))
    steps = F.sweep_steps(sp)
    rows, row_css = [], []
    for j, p in enumerate(per_model):
        p = F.as_dict(p)
        st = F.as_dict(steps.get(j))
        rose = st.get("level_rose") is True
        u = F.as_dict(p.get("uplift"))
        rows.append([cell(F.num(F.get(models, j, "order")) if F.is_num(F.get(models, j, "order")) else Fixed(str(j))),
                     cell(F.model_label(F.get(models, j), j)), verdict_cell(p),
                     cell(F.headline_text(F.headline_skill(p))),
                     cell(F.with_ci(F.signed(F.cited_uplift_test(u).get("skill_gain"), 2),
                                    F.ci_num(F.cited_uplift_test(u).get("ci95"), 2, sign=True))),
                     cell(F.signed(st.get("delta"), 2) if st else NA), cell(F.p_value(st.get("p_value")) if st else NA),
                     cell(Span(Fixed("ROSE"), "flag") if rose else (Fixed("no") if st else NA)),
                     cell(F.text(p.get("risk_reason")), _inconclusive_parts(p))])
        row_css.append("rose" if rose else "")
    first = F.as_dict(F.get(per_model, 0))
    blocks: list = [Pairs([("Capability", cell(F.text(sp.get("capability") or first.get("capability")))),
                           ("Policy", _policy_cell(sp) if sp.get("policy") else _policy_cell(first))])]
    figs = [Figure(plots.trajectory_svg(sp, models, order), Fixed(
        "Headline skill (the capability axis: the best adversary's skill, 95% CI band) against checkpoint "
        "order; floor dashed; a red rule before each checkpoint whose level rose over the previous one."))]
    if plots.verification_decides(sp):  # plot the metric that set the level, not only the skill
        figs.append(Figure(plots.trajectory_tar_svg(sp, models, order), Fixed(
            "The metric that decided the level: verification true accept rate at the rule's false accept rate "
            "(raw embeddings, cosine similarity; 95% CI band) against checkpoint order; floor dashed.")))
    blocks.append(Figures(figs))
    blocks.append(Subheading(cell(Fixed("Checkpoint by checkpoint"))))
    blocks.append(table([Fixed(h) for h in ("Order", "Model", "Level", "Best skill (95% CI)",
                                            "Uplift over floor (95% CI)", "Delta vs previous", "p vs previous",
                                            "Level rose", "Why")], rows, (0, 3, 4, 5, 6), "metrics sweep", row_css))
    adapted = [(j, F.as_dict(F.as_dict(p).get("adaptation"))) for j, p in enumerate(per_model)]
    adapted = [(j, a) for j, a in adapted if a]
    if adapted:
        blocks.append(Subheading(cell(Fixed("What each adaptation changed (against its base)"))))
        blocks.append(Items([cell(strong(F.model_label(F.get(models, j), j)), tight(":"),
                                  Fixed(f"{F.text(a.get('change'))} the level (base"), badge(a.get("base_level")),
                                  Fixed("->"), badge(a.get("level")), tight(");"),
                                  Fixed(f"headline {F.text(F.get(a, 'headline', 'metric'))} "
                                        f"{F.pp(F.get(a, 'headline', 'change'))}, p ="), F.p_value(a.get("p_adjusted")),
                                  muted(f"base {F.text(F.get(a, 'base', 'spec'))}")) for j, a in adapted]))
    others = [F.as_dict(x) for x in per_model[1:]]
    if all(F.same_data(first, o) for o in others):
        blocks += _data_blocks(first, heading=Fixed("Data (the same for every model)"))
    else:
        for j, p in enumerate(per_model):
            blocks += _data_blocks(F.as_dict(p), heading=f"Data, {F.model_label(F.get(models, j), j)}")
    levels = [badge(F.get(p, "risk_level")) for p in per_model]
    return Section(anchor(i, sp.get("id")), F.text(sp.get("title") or sp.get("id")), blocks,
                   badges=levels, ident=F.text(sp.get("id")),
                   flags=[Fixed("LEVEL ROSE")] if any(s.get("level_rose") is True for s in steps.values()) else [],
                   css="probe")


def _sweep(result: dict) -> ReportView:
    models = F.sweep_models(result)
    probes = F.probe_list(result)
    model_rows = [[cell(F.num(m.get("order")) if F.is_num(m.get("order")) else Fixed(str(j))),
                   cell(F.text(m.get("spec"))), cell(F.text(m.get("name"))), cell(F.short_fp(m.get("fingerprint")))]
                  for j, m in enumerate(models)]
    grid = []
    for j, m in enumerate(models):
        row = [cell(F.model_label(m, j))]
        for p in probes:
            pm = F.as_dict(F.get(p, "per_model", j))
            row.append(cell(verdict_cell(pm), F.headline_text(F.headline_skill(pm))) if pm else cell(NA))
        grid.append(row)
    rises = []
    for p in probes:
        for to, st in F.sweep_steps(p).items():
            if st.get("level_rose") is True:
                rises.append(cell(strong(F.text(p.get("id"))), tight(Fixed(": rose from")),
                                  F.model_label(F.get(models, to - 1), to - 1), Fixed("to"),
                                  F.model_label(F.get(models, to), to),
                                  Fixed(f"(p = {F.p_value(st.get('p_value'))}, skill change "
                                        f"{F.signed(st.get('delta'))})")))
    summary: list = [Subheading(cell(Fixed("Models, in checkpoint order"))),
                     table([Fixed(h) for h in ("Order", "Spec", "Name", "Fingerprint")], model_rows, (0,), "summary"),
                     Subheading(cell(Fixed("Level and best skill (95% CI), model x probe"))),
                     table([Fixed("Model")] + [Link(F.text(p.get("id")), anchor(i, p.get("id")))
                                               for i, p in enumerate(probes)], grid, (), "summary sweep")]
    summary.append(Para(cell(strong(Fixed(f"Level rises between consecutive checkpoints ({len(rises)}):")),
                             None if rises else Fixed("none."))))
    if rises:
        summary.append(Items(rises))
    summary += _not_run(result)
    summary.append(Para(cell(Fixed(
        "Every model ran the same probes on the same images, splits and episodes; consecutive checkpoints "
        "are compared with the paired test of compare. Skill = (balanced accuracy - chance) / (1 - chance).")),
        css="note"))
    sections = [Section("summary", Fixed("Summary"), summary)]
    order = F.get(result, "settings", "order") or "given"
    sections += [_sweep_probe(i, p, models, order) for i, p in enumerate(probes)]
    meta = Pairs([("Models", cell(Fixed(str(len(models))))), ("Seed", cell(F.text(result.get("seed")))),
                  ("Suite", cell(F.suite_text(result.get("suite")))),
                  ("Settings", cell(F.settings_text(result.get("settings")))), ("Tool", _tool_cell(result))])
    last = [dict(F.as_dict(F.get(p, "per_model", len(models) - 1)), id=p.get("id"), reference=p.get("reference"))
            for p in probes]
    last_label = F.model_label(F.get(models, len(models) - 1), len(models) - 1)
    levels, top = _levels_line(Fixed(f"Last checkpoint ({last_label}), highest level:"), last)
    rises_line = cell(Span(Fixed(f"Level rose {len(rises)} time(s) between consecutive checkpoints."), "flag")
                      if rises else strong(Fixed("No level rose between consecutive checkpoints.")))
    banner = _banner([levels, rises_line], result)
    return ReportView("sweep", Fixed("creepscan sweep report"), f"creepscan sweep: {len(models)} models", meta,
                      sections, banner, top)


def build_view(result: dict) -> ReportView:
    """The display model of an audit, compare or sweep result dict (see module docstring)."""
    kind = F.result_kind(result)
    if kind == "compare":
        return _compare(result)
    if kind == "sweep":
        return _sweep(result)
    return _audit(result)
