"""The report view model (creepscan/report/view.py) block by block, and what both templates and the
terminal summary make of the round-2 fields: inconclusive, level range, the two axes, uplift tests,
power, grouped splits, extra heads, cost to repurpose, open set, use spec, sweep."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from creepscan.levels import ALL_LEVELS, level_rose
from creepscan.report import render_html, render_markdown, summary_text
from creepscan.report.view import LEVEL_COLOURS, Badge, Figures, Items, Pairs, Para, Subheading, Table, build_view
from creepscan.report.view import badge as view_badge
from creepscan.result import load_report

DATA = Path(__file__).parent / "data"
HOSTILE = "<script>alert(9)</script> | *x* [a](http://e)"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture()
def audit() -> dict:
    return load("sample_audit.json")


@pytest.fixture()
def compare() -> dict:
    return load("sample_compare.json")


@pytest.fixture()
def sweep() -> dict:
    return load("sample_sweep.json")


# --- helpers: read the view as text ------------------------------------------------------

def text(cell) -> str:
    """A cell's parts as plain text (badges by label, links by text)."""
    return " ".join(p.label if isinstance(p, Badge) else p.text for p in cell)


def section(view, ident: str):
    return next(s for s in view.sections if s.ident == ident)


def pairs(sec) -> dict[str, str]:
    out = {}
    for b in sec.blocks:
        if isinstance(b, Pairs):
            out.update({k: text(v) for k, v in b.items})
    return out


def table_after(sec, heading: str) -> Table:
    """The first table after the subheading that starts with ``heading``."""
    seen = False
    for b in sec.blocks:
        if isinstance(b, Subheading) and text(b.text).startswith(heading):
            seen = True
        elif seen and isinstance(b, Table):
            return b
    raise AssertionError(f"no table after {heading!r}")


def rows(t: Table) -> list[list[str]]:
    return [[text(c) for c in r] for r in t.rows]


def paras(sec, css: str) -> list[str]:
    return [text(b.parts) for b in sec.blocks if isinstance(b, Para) and b.css == css]


def probe(result: dict, pid: str) -> dict:
    return next(p for p in result["probes"] if p["id"] == pid)


def md_table(text_: str, first_cell: str) -> list[list[str]]:
    """The Markdown table whose header starts with ``first_cell``, as cells (escaped pipes kept)."""
    lines = text_.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell} |"))
    out = []
    for line in lines[i:]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    assert len({len(r) for r in out}) == 1, "a cell broke the table"
    return out[2:]


# --- inconclusive --------------------------------------------------------------------------

def test_inconclusive_probe_shows_badge_code_meaning_and_detail(audit):
    sec = section(build_view(audit), "emotion")
    assert [b.name for b in sec.badges] == ["inconclusive"]
    (para,) = paras(sec, "inconclusive")
    detail = probe(audit, "emotion")["inconclusive"]["detail"]
    assert para.startswith("Inconclusive: underpowered") and detail in para
    assert "minimum detectable effect" in para                  # the code explained, not just named
    # a conclusive probe has no such paragraph
    assert paras(section(build_view(audit), "face-identity"), "inconclusive") == []


def _bare_inconclusive(audit: dict) -> dict:
    """The sample with its first probe inconclusive and no inconclusive block."""
    p = audit["probes"][0]
    p["risk_level"], p["inconclusive"] = "inconclusive", None
    return audit


def test_inconclusive_badge_has_its_own_colour_and_is_loud(audit):
    others = {LEVEL_COLOURS[k] for k in ("none", "low", "medium", "high", "critical", "n/a")}
    assert LEVEL_COLOURS["inconclusive"] not in others
    v = build_view(_bare_inconclusive(audit))
    (badge,) = section(v, audit["probes"][0]["id"]).badges
    assert badge.loud and badge.label == "INCONCLUSIVE"
    # a level the report does not know is n/a, never "none"; a report.json with one breaks the schema
    assert view_badge("safe-ish").name == "n/a"
    audit["probes"][0]["risk_level"] = "safe-ish"
    with pytest.raises(ValueError, match="schema at probes/0/risk_level"):
        build_view(audit)


def test_inconclusive_in_markdown_and_html(audit):
    md = render_markdown(audit)
    assert "## emotion: Emotion recognition (**INCONCLUSIVE**)" in md
    assert "**Inconclusive:** **underpowered**" in md
    summary = md_table(md, "Probe")
    assert summary[2][1] == "**INCONCLUSIVE** (underpowered) CIs allow none to medium"
    page = render_html(audit)
    bg, fg = LEVEL_COLOURS["inconclusive"]
    badge = (f'<span class="badge level-inconclusive" style="background:{bg};color:{fg}">'
             f"INCONCLUSIVE</span>")
    assert page.count(badge) >= 3                               # summary, heading, risk line
    block = re.search(r'<p class="inconclusive">(.*?)</p>', page).group(1)
    assert '<span class="flag">underpowered</span>' in block
    assert "minimum detectable effect is 0.31 &gt; margin 0.10" in block


def test_inconclusive_without_reason_block_still_says_so(audit):
    v = build_view(_bare_inconclusive(audit))
    (para,) = paras(section(v, audit["probes"][0]["id"]), "inconclusive")
    assert para.startswith("Inconclusive: unspecified")


# --- level range, axis, adversary ----------------------------------------------------------

def test_level_range_axis_and_strongest_adversary(audit):
    view = build_view(audit)
    fi = pairs(section(view, "face-identity"))
    assert fi["Levels the CIs allow"] == "medium to high"
    assert fi["Decided by"] == "capability axis" and fi["Strongest adversary"] == "mlp"
    assert pairs(section(view, "attribute-gender"))["Decided by"] == "both axes"
    bare = copy.deepcopy(audit)
    for key in ("level_range", "risk_axis", "strongest_adversary"):
        probe(bare, "face-identity").pop(key)
    fi = pairs(section(build_view(bare), "face-identity"))
    assert not {"Levels the CIs allow", "Decided by", "Strongest adversary"} & set(fi)


# --- the two axes and the uplift tests -------------------------------------------------------

def test_axes_table_uses_capability_axis_then_falls_back_to_linear_probe(audit):
    t = table_after(section(build_view(audit), "face-identity"), "Two axes")
    cap, upl = rows(t)
    assert cap[1:3] == ["0.886", "[0.829, 0.931]"] and "mlp" in cap[3] and "k to threshold: 4" in cap[3]
    # the gain the reason cites: the strongest significant test (here mlp), not the linear probe's
    assert upl[1:3] == ["+0.766", "[+0.700, +0.820]"] and "mlp" in upl[3]
    assert "largest upper 95% bound 0.820 >= margin 0.100" in upl[3]
    bare = copy.deepcopy(audit)
    probe(bare, "face-identity").pop("capability_axis")
    cap = rows(table_after(section(build_view(bare), "face-identity"), "Two axes"))[0]
    # (0.87 - 0.125) / 0.875 and the same map applied to the CI [0.82, 0.92]
    assert cap[1:3] == ["0.851", "[0.794, 0.909]"] and "linear probe" in cap[3]


def test_uplift_tests_table_one_row_per_test(audit):
    sec = section(build_view(audit), "face-identity")
    t = next(b for b in sec.blocks if isinstance(b, Table) and text(b.header[0]) == "Attack"
             and text(b.header[1]) == "Skill gain")
    tests = probe(audit, "face-identity")["uplift"]["tests"]
    assert [r[0] for r in rows(t)] == [x["attack"] for x in tests]
    assert rows(t)[0][1:7] == ["+0.751", "[+0.691, +0.801]", "+0.801", "0.028", "0.0005", "0.0020"]
    assert rows(t)[2][7] == "paired over episodes"
    assert text(t.header[6]) == "p adjusted"
    probe(audit, "face-identity")["uplift"]["correction"] = "holm over the attacks tested"
    t = next(b for b in section(build_view(audit), "face-identity").blocks
             if isinstance(b, Table) and text(b.header[1]) == "Skill gain")
    assert text(t.header[6]) == "p adjusted (holm over the attacks tested)"
    no_tests = copy.deepcopy(audit)
    probe(no_tests, "face-identity")["uplift"].pop("tests")
    sec = section(build_view(no_tests), "face-identity")
    assert not any(isinstance(b, Table) and text(b.header[1]) == "Skill gain" for b in sec.blocks)


def test_power_paragraph_says_how_many_images_are_missing(audit):
    view = build_view(audit)
    (em,) = paras(section(view, "emotion"), "power")
    assert "minimum detectable effect 0.310" in em and "needs 115 test images per class" in em
    assert "this run has 12 test images per class, 103 short" in em
    (fi,) = paras(section(view, "face-identity"), "power")
    assert fi.endswith("6 test images per class, enough.")
    audit["probes"][0]["power"]["limiting_attack"] = "few_shot k=1"
    (fi,) = paras(section(build_view(audit), "face-identity"), "power")
    assert "at equivalence margin 0.100 , set by few_shot k=1 ; ruling out" in fi     # parts, spaced
    assert paras(section(view, "benign-reference"), "power") == []


# --- split ---------------------------------------------------------------------------------

def test_split_block_grouping_near_duplicates_and_warning(audit):
    view = build_view(audit)
    fi = pairs(section(view, "face-identity"))
    assert fi["Grouped split"].startswith("yes, by group (24 groups)")
    assert fi["Near-duplicates dropped from test"] == "2"
    ag = section(view, "attribute-gender")
    assert pairs(ag)["Grouped split"].startswith("no")
    (warning,) = paras(ag, "warning")
    assert warning == "Split warning: " + probe(audit, "attribute-gender")["split"]["warning"]
    assert "Grouped split" not in pairs(section(view, "emotion"))     # the result does not say


# --- heads, verification CIs, open set -----------------------------------------------------

def test_metrics_table_has_heads_budgets_verification_cis_and_open_set(audit):
    t = rows(table_after(section(build_view(audit), "face-identity"), "Metrics"))
    by_name = {r[0]: r[1:] for r in t}
    assert by_name["Head mlp (full train split)"] == ["90.0% [85.0, 94.0]", "21.6% [20.4, 22.6]"]
    assert by_name["Head gd_budget, 100 steps"][0] == "61.0% [54.0, 68.0]"
    assert by_name["Verification TAR at FAR 1e-3"] == ["20.4% [17.0, 24.0]", "not measurable"]
    assert by_name["Verification ROC AUC"] == ["0.885 [0.860, 0.910]", "0.540 [0.510, 0.570]"]
    assert by_name["Open-set rank-1 identification (unseen identities)"][0] == "81.2% [75.0, 86.0]"
    assert by_name["Open-set FNIR at FPIR 1e-2"] == ["55.0%", "99.0%"]
    assert by_name["Open-set gallery identities / non-mated probes"][0] == "4 / 96"
    plain = rows(table_after(section(build_view(audit), "emotion"), "Metrics"))
    assert not any(r[0].startswith(("Head", "Open-set")) for r in plain)


# --- cost to repurpose ---------------------------------------------------------------------

def test_cost_table_is_adversary_by_k_skill_with_ci_and_compute(audit):
    sec = section(build_view(audit), "face-identity")
    t = table_after(sec, "Cost to repurpose")
    assert [text(h) for h in t.header] == ["Adversary", "k=1", "k=2", "k=4", "k=8", "k=16", "all (train split)"]
    by_adv = {r[0]: r[1:] for r in rows(t)}
    # skill = (acc - chance) / (1 - chance) with chance 1/8: mlp on the full split, 0.90 [0.85, 0.94]
    assert by_adv["mlp"][5] == "0.89 [0.83, 0.93]"
    assert by_adv["finetune, 100 steps"][2] == "0.66 [0.59, 0.73] (41.3 s, 31.0 TFLOP)"
    assert by_adv["finetune, 1000 steps"][:4] == ["-"] * 4
    # the best of each column is bold: fine-tuning at k=4, mlp on the full split
    col_k4 = [r[3] for r in t.rows]
    strong = [text(c) for c in col_k4 if c and c[0].style == "strong"]
    assert strong == ["0.66 [0.59, 0.73] (41.3 s, 31.0 TFLOP)"]
    note = paras(sec, "note")[-1]
    assert "Fine-tuning ran on cpu (2 threads)" in note


def test_cost_table_and_plot_only_with_extra_adversaries(audit):
    page = render_html(audit)
    cost_svgs = re.findall(r'<svg class="plot cost".*?</svg>', page, re.S)
    assert len(cost_svgs) == 1 and "finetune, 100 steps" in cost_svgs[0]
    assert cost_svgs[0].count('class="series adversary"') >= 4           # the few-shot heads' curves
    sec = section(build_view(audit), "emotion")
    assert not any(isinstance(b, Subheading) and text(b.text) == "Cost to repurpose" for b in sec.blocks)


# --- use specification ---------------------------------------------------------------------

def test_spec_section_lists_clauses_with_verdicts(audit):
    view = build_view(audit)
    spec = next(s for s in view.sections if s.anchor == "use-spec")
    assert [b.name for b in spec.badges] == ["fail"]
    t = next(b for b in spec.blocks if isinstance(b, Table))
    assert [[r[0], r[1], r[2], r[3]] for r in rows(t)] == [
        ["prohibited", "face-identity", "FAIL", "HIGH"],
        ["prohibited", "emotion", "INCONCLUSIVE", "INCONCLUSIVE"],
        ["allowed", "benign-reference", "pass", "none"]]
    assert "1 failed, 1 inconclusive" in text(spec.blocks[0].parts)
    audit["spec"]["passed"] = True
    spec = next(s for s in build_view(audit).sections if s.anchor == "use-spec")
    assert spec.badges[0].name == "pass"
    del audit["spec"]
    assert all(s.anchor != "use-spec" for s in build_view(audit).sections)


# --- compare -------------------------------------------------------------------------------

def test_compare_move_to_inconclusive_counts_as_a_rise(compare):
    emotion = probe(compare, "emotion")
    emotion["level_b"] = emotion["b"]["risk_level"] = "inconclusive"
    emotion["b"]["inconclusive"] = {"reason": "saturated", "detail": "floor skill 0.61"}
    for cp in compare["probes"]:
        cp.pop("risk_rose")                                     # derive it from the levels
    compare.pop("summary")
    summary = section_summary_rows(compare)
    assert summary["emotion"][2] == "ROSE"
    assert summary["attribute-gender"][2] == "same"
    sec = section(build_view(compare), "emotion")
    assert [b.name for b in sec.badges] == ["medium", "inconclusive"] and "RISK ROSE" in sec.flags
    assert "Inconclusive: saturated floor skill 0.61" in pairs(sec)["B"]
    lines = summary_text(compare).splitlines()
    row = next(line for line in lines if line.startswith("emotion "))
    assert "medium -> inconclusive" in row and "ROSE" in row


def section_summary_rows(result: dict) -> dict[str, list[str]]:
    """{probe id: [level A, level B, change]} from the compare summary table."""
    t = next(b for b in build_view(result).sections[0].blocks if isinstance(b, Table))
    return {r[0]: [r[1], r[2], r[3]] for r in rows(t)}


@pytest.mark.parametrize("level_a, level_b, rose", [("inconclusive", "low", True), ("inconclusive", "critical", True),
                                                   ("inconclusive", "none", False), ("high", "inconclusive", True),
                                                   ("inconclusive", "inconclusive", False), (None, "high", False)])
def test_compare_rise_without_risk_rose_is_the_one_level_rose(compare, level_a, level_b, rose):
    """An older report without ``risk_rose``: the view derives it with ``levels.level_rose``, as compare
    does. From inconclusive, anything above none is a rise (nothing established A's level: a gate must not
    pass on it); none is an equivalence result, never a rise."""
    cp = probe(compare, "attribute-gender")
    cp.pop("risk_rose")
    cp["level_a"], cp["level_b"] = level_a, level_b
    cp["a"]["level_range"] = ["none", "high"]   # A's range no longer decides (it did in a second, drifted copy)
    compare.pop("summary")
    assert (section_summary_rows(compare)["attribute-gender"][2] == "ROSE") is rose
    if level_a in ALL_LEVELS:
        assert level_rose(level_a, level_b) is rose


def test_compare_level_off_the_scale_is_rejected(compare):
    """A level that is not one of the six breaks the schema: it is refused, never read as no rise."""
    probe(compare, "attribute-gender")["level_a"] = "n/a"
    with pytest.raises(ValueError, match="level_a"):
        build_view(compare)


# --- sweep ---------------------------------------------------------------------------------

def test_sweep_grid_is_model_by_probe_with_levels_and_skills(sweep):
    view = build_view(sweep)
    grid = next(b for b in view.sections[0].blocks if isinstance(b, Table) and "sweep" in b.css)
    assert [text(h) for h in grid.header] == ["Model", "face-identity", "emotion"]
    g = rows(grid)
    assert [r[0] for r in g] == [m["name"] for m in sweep["models"]]
    assert g[0][1] == "none 0.05 [-0.01, 0.11]"
    assert g[3][1] == "HIGH CIs allow medium to high 0.89 [0.83, 0.95]"
    assert g[1][2].startswith("INCONCLUSIVE (saturated)")
    rises = next(b for b in view.sections[0].blocks if isinstance(b, Items))
    assert [text(c) for c in rises.items] == [
        "face-identity : rose from interp 1/3 to interp 2/3 <i>&</i> (p = 0.0008, skill change +0.350)",
        "face-identity : rose from interp 2/3 <i>&</i> to adapted (p = 0.0020, skill change +0.336)"]


def test_sweep_probe_section_has_trajectory_and_step_table(sweep):
    sec = section(build_view(sweep), "face-identity")
    assert [b.name for b in sec.badges] == ["none", "none", "medium", "high"] and sec.flags == ["LEVEL ROSE"]
    (figs,) = [b for b in sec.blocks if isinstance(b, Figures)]
    (fig,) = figs.figures
    assert fig.svg.startswith('<svg class="plot trajectory"')
    # one red rule per rise, drawn between the two checkpoints
    rules = re.findall(r'<path class="level-rise" d="M ([0-9.]+) ', fig.svg)
    assert len(rules) == sum(s["level_rose"] for s in sweep["probes"][0]["steps"]) == 2
    ticks = [float(x) for x in re.findall(r'<text x="([0-9.]+)" y="[0-9.]+" text-anchor="middle" '
                                           r'fill="#333333">[0-3]</text>', fig.svg)]
    assert len(ticks) == 4
    assert ticks[1] < float(rules[0]) < ticks[2] < float(rules[1]) < ticks[3]
    assert 'class="band"' in fig.svg and 'class="series floor"' in fig.svg
    t = rows(table_after(sec, "Checkpoint by checkpoint"))
    assert [r[7] for r in t] == ["n/a", "no", "ROSE", "ROSE"]
    assert t[2][5:7] == ["+0.35", "0.0008"]
    emotion = rows(table_after(section(build_view(sweep), "emotion"), "Checkpoint by checkpoint"))
    assert "Inconclusive: underpowered" in emotion[0][8]


def test_sweep_html_has_one_trajectory_per_probe_and_no_learning_curves(sweep):
    page = render_html(sweep)
    assert len(re.findall(r'<svg class="plot trajectory"', page)) == len(sweep["probes"])
    assert "plot learning-curve" not in page
    assert "&lt;i&gt;&amp;&lt;/i&gt;" in page and "<i>&</i>" not in page


def test_sweep_summary_text_shows_trajectories_and_rises(sweep):
    lines = summary_text(sweep).splitlines()
    traj = next(line for line in lines if line.startswith("  face-identity "))
    assert traj.split()[1:] == ["NONE", "0.05", ">", "NONE", "0.20", ">", "*MEDIUM", "0.55", ">", "*HIGH", "0.89"]
    assert any(line.startswith("level rises: 2") for line in lines)
    assert sum("rose from" in line for line in lines) == 2


# --- terminal summary ----------------------------------------------------------------------

def test_summary_lists_skipped_and_excluded_with_where_the_lists_are(audit):
    out = summary_text(audit)
    flat = " ".join(out.split())
    n = len(probe(audit, "face-identity")["skipped_images"])
    assert f"face-identity {n} image(s) skipped (22 not an image (cannot identify image file), " \
           f"1 truncated file & \"bad\" header) [probes[0].skipped_images]." in flat
    assert "attribute-gender 1 class(es) excluded (unknown (2 images): fewer than 3 images) " \
           "[probes[1].excluded_classes]." in flat
    for p in audit["probes"]:
        p["skipped_images"], p["excluded_classes"] = [], []
    assert "data: no image skipped, no class excluded" in summary_text(audit)


@pytest.mark.parametrize("width", [40, 60, 100])
def test_summary_wraps_long_reasons_instead_of_cutting_them(audit, width):
    reason = " ".join(f"word{i:03d}" for i in range(120)) + " END"
    probe(audit, "emotion")["risk_reason"] = reason
    lines = summary_text(audit, width=width).splitlines()
    assert all(len(line) <= width for line in lines)
    assert "..." not in "\n".join(lines[lines.index("why:"):])
    flat = " ".join(" ".join(lines).split())
    assert reason + "." in flat
    # the inconclusive code, its detail, and the levels the CIs allow, in the same paragraph
    detail = " ".join(probe(audit, "emotion")["inconclusive"]["detail"].split())
    assert f"INCONCLUSIVE (underpowered): {detail}." in flat
    assert "Levels the CIs allow: none to medium." in flat


def test_summary_shows_the_use_spec_verdict(audit):
    out = summary_text(audit)
    assert "use spec: FAILED (3 clause(s), 2 failed or inconclusive)" in out
    assert re.search(r"face-identity +FAIL: prohibited clause, measured high, limit low", out)


# --- escaping of every new field -------------------------------------------------------------

NEW_FIELDS = [
    ("emotion", "inconclusive", "detail"),
    ("face-identity", "risk_axis"),
    ("face-identity", "strongest_adversary"),
    ("face-identity", "capability_axis", "attack"),
    ("face-identity", "uplift", "tests", 0, "attack"),
    ("face-identity", "uplift", "tests", 0, "method"),
    ("attribute-gender", "split", "warning"),
    ("face-identity", "metrics", "finetune", "device"),
    ("face-identity", "metrics", "few_shot", 0, "winner"),
]


def _set(obj, path, value):
    for step in path[:-1]:
        obj = obj[step]
    obj[path[-1]] = value


@pytest.mark.parametrize("path", NEW_FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_hostile_strings_in_new_fields_stay_text(audit, path):
    _set(probe(audit, path[0]), path[1:], HOSTILE)
    md, page = render_markdown(audit), render_html(audit)
    assert "<script" not in md.lower() and "<script" not in page.lower()
    assert "&lt;script&gt;alert(9)&lt;/script&gt; | *x* [a](http://e)" in page
    assert "&lt;script>alert(9)&lt;/script> \\| \\*x\\* \\[a\\](http://e)" in md
    md_table(md, "Probe")                                        # tables still whole
    md_table(md, "Attack")


@pytest.mark.parametrize("path", [("metrics", "heads"), ("metrics", "few_shot", 0, "heads")])
def test_hostile_adversary_names_stay_text(audit, path):
    """Head names become table headers, legend labels and row labels."""
    fi = probe(audit, "face-identity")
    heads = fi
    for step in path:
        heads = heads[step]
    heads[HOSTILE] = heads.pop(next(iter(heads)))
    md, page = render_markdown(audit), render_html(audit)
    assert "<script" not in md.lower() and "<script" not in page.lower()
    assert "&lt;script&gt;alert(9)&lt;/script&gt;" in page.split('class="plot cost"')[1].split("</svg>")[0]
    cost = md_table(md, "Adversary")
    assert any(r[0] == "&lt;script>alert(9)&lt;/script> \\| \\*x\\* \\[a\\](http://e)" for r in cost)


def test_hostile_strings_in_sweep_and_spec_stay_text(sweep, audit):
    sweep["models"][0]["name"] = HOSTILE
    sweep["probes"][0]["id"] = HOSTILE
    audit["spec"]["clauses"][0]["rule"] = HOSTILE
    audit["spec"]["clauses"][1]["probe"] = HOSTILE
    for result in (sweep, audit):
        md, page = render_markdown(result), render_html(result)
        assert "<script" not in md.lower() and "<script" not in page.lower()
        assert "&lt;script&gt;alert(9)&lt;/script&gt;" in page
        assert "&lt;script>alert(9)&lt;/script> \\| \\*x\\*" in md
    svg = re.search(r'<svg class="plot trajectory".*?</svg>', render_html(sweep), re.S).group(0)
    assert "<script" not in svg


def test_numbers_keep_readable_brackets_but_data_brackets_are_escaped(audit):
    md = render_markdown(audit)
    assert "| Linear probe (full train split) | 87.0% [82.0, 92.0] C=3.162 |" in md
    probe(audit, "face-identity")["capability"] = "[click](http://evil) me"
    assert "\\[click\\](http://evil) me" in render_markdown(audit)


# --- the verdict first, severity order, figures that fit, numbers a person reads ---------------


def test_banner_gives_the_highest_level_counts_and_spec_first(audit):
    view = build_view(audit)
    assert view.banner_level == "high"
    text = " ".join(p.text if hasattr(p, "text") else p.label for b in view.banner for p in b.parts)
    assert "Highest level:" in text and "face-identity, attribute-gender" in text
    assert "Use specification:" in text and "1 failed, 1 inconclusive" in text
    html = render_html(audit)
    assert html.index('id="verdict"') < html.index("Model fingerprint") < html.index('id="summary"')
    md = render_markdown(audit)
    assert md.index("**Highest level:** **HIGH**") < md.index("**Model:**")


def test_probes_are_ordered_by_severity_with_reasons_below_the_table(audit):
    audit["probes"].reverse()                        # given least severe first
    view = build_view(audit)
    ids = [s.ident for s in view.sections if s.ident]
    # high first (ties keep the order given), then inconclusive, then none, the reference probe last
    assert ids == ["attribute-gender", "face-identity", "emotion", "benign-reference"]
    summary = view.sections[0].blocks
    table = next(b for b in summary if isinstance(b, Table))
    assert "Reason" not in [h[0].text for h in table.header]
    reasons = next(b for b in summary if isinstance(b, Items))
    assert [it[0].text for it in reasons.items] == ids


def test_number_formats_a_person_reads(audit):
    from creepscan.report import _fmt as F

    assert (F.count(29.6), F.count(1200), F.count(None)) == ("29.6", "1,200", "n/a")
    audit["suite"] = None
    audit["probes"][0]["data"]["max_per_class"] = None
    md = render_markdown(audit)
    assert "at most n/a" not in md and "no cap per class" in md
    assert "**Suite:** n/a" not in md and "chosen one by one" in md


def test_compare_paired_test_names_each_method_once(compare):
    cp = compare["probes"][0]
    method = "Monte Carlo sign-flip, 2000 draws ({n} nonzero pairs) over test images of episode-averaged correctness"
    cp["tests"]["few_shot"] = {k: {"ci95": [0, 0.1], "p_value": 0.5, "method": method.format(n=40 + int(k))}
                               for k in ("1", "2", "4", "8", "16")}
    md = render_markdown(compare)
    assert md.count("episode-averaged correctness") == 1


def test_sweep_axis_uses_the_steps_and_plots_the_deciding_metric(sweep):
    from creepscan.report import plots

    for m, step in zip(sweep["models"], (0, 1000, 2500, 4000)):
        m["step"] = step
    sweep["settings"]["order"] = "step"
    report = load_report(sweep)
    svg = plots.trajectory_svg(report.probes[0], report.models, "step")
    assert ">2,500</text>" in svg and "training step" in svg
    assert ">2</text>" not in svg.split('class="xlabel"')[0].split("</path>")[-1]
    for pm in sweep["probes"][0]["per_model"]:
        pm["risk_rule"] = "critical: verification TAR at FAR 1e-3 >= 0.5"
        pm.setdefault("metrics", {})["verification"] = {"tar_at_far": {"1e-3": 0.6}, "tar_ci95": {"1e-3": [0.5, 0.7]},
                                                        "auc": 0.9}
    html = render_html(sweep)
    assert html.count('class="plot trajectory-tar"') == 1
    assert "Verification TAR at FAR 1e-3 across checkpoints" in html


def test_long_chart_titles_wrap_instead_of_being_cut():
    from creepscan.report.svg import Chart

    title = "A very long probe title that names the capability in full: skill across checkpoints " * 2
    svg = Chart(title=title, x_range=(0, 1), y_range=(0, 1), x_ticks=[], y_ticks=[], x_label="x",
                y_label="y").render()
    assert "\u2026" not in svg and svg.count("<tspan") >= 3
    spans = re.findall(r"<tspan[^>]*>([^<]*)</tspan>", svg)
    assert " ".join(spans).split() == title.split()
