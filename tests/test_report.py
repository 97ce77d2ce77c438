"""Report layer: report.json/.md/.html and the stdout summary, from the sample result dicts."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import pytest

from creepscan.report import render_html, render_markdown, render_reports, summary_text, to_jsonable, write_reports

DATA = Path(__file__).parent / "data"
HOSTILE = "<script>alert(1)</script>"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def audit() -> dict:
    return load("sample_audit.json")


@pytest.fixture(scope="module")
def compare() -> dict:
    return load("sample_compare.json")


@pytest.fixture(scope="module")
def sweep() -> dict:
    return load("sample_sweep.json")


@pytest.fixture(scope="module", params=["audit", "compare", "sweep"])
def result(request, audit, compare, sweep) -> dict:
    return {"audit": audit, "compare": compare, "sweep": sweep}[request.param]


def _has_verification(p: dict) -> bool:
    return isinstance((p.get("metrics") or {}).get("verification"), dict)


# --- report.json -------------------------------------------------------------------------

def test_write_reports_writes_three_files_and_json_round_trips(result, tmp_path):
    out = tmp_path / "nested" / "report-dir"
    paths = write_reports(result, out)
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html"]
    assert all(p.parent == out and p.is_file() for p in paths)
    assert json.loads(paths[0].read_text(encoding="utf-8")) == result
    # indent=2, insertion order kept, no temp files left behind
    text = paths[0].read_text(encoding="utf-8")
    assert text.startswith('{\n  "schema_version": "1",\n  "kind": ')
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]


def test_nan_and_inf_become_null_everywhere(audit, tmp_path):
    r = copy.deepcopy(audit)
    m = r["probes"][0]["metrics"]
    m["linear_probe"]["accuracy"] = float("nan")
    m["linear_probe"]["ci95"] = [float("-inf"), float("inf")]
    m["few_shot"][0]["accuracy"] = float("nan")
    m["verification"]["roc"][2] = [float("nan"), 0.5]
    r["probes"][1]["chance"] = float("inf")
    r["timings"]["total_s"] = float("nan")
    paths = write_reports(r, tmp_path)
    text = paths[0].read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    lp = back["probes"][0]["metrics"]["linear_probe"]
    assert lp["accuracy"] is None and lp["ci95"] == [None, None]
    assert back["probes"][0]["metrics"]["verification"]["roc"][2] == [None, 0.5]
    assert back["probes"][1]["chance"] is None and back["timings"]["total_s"] is None
    for p in paths[1:]:
        body = p.read_text(encoding="utf-8")
        assert not re.search(r"\bnan\b|\binf\b", body, re.I), p.name
    _assert_svg_finite(paths[2].read_text(encoding="utf-8"))


def test_to_jsonable_handles_numpy_tuples_and_paths():
    np = pytest.importorskip("numpy")
    obj = {"a": np.float32(0.5), "b": np.int64(3), "c": np.array([1.0, np.nan]), "d": (1, 2),
           "e": Path("x/y"), "f": np.bool_(True), 3: "int key"}
    out = to_jsonable(obj)
    assert out == {"a": 0.5, "b": 3, "c": [1.0, None], "d": [1, 2], "e": "x/y", "f": True,
                   "3": "int key"}
    json.dumps(out, allow_nan=False)


def test_output_is_deterministic(result, tmp_path):
    a = write_reports(result, tmp_path / "one")
    b = write_reports(copy.deepcopy(result), tmp_path / "two")
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
        assert str(tmp_path) not in pa.read_text(encoding="utf-8")


# --- escaping ----------------------------------------------------------------------------

def test_markdown_escapes_data_strings(result):
    text = render_markdown(result)
    assert HOSTILE in json.dumps(result)                       # the sample does carry it
    assert "<script" not in text.lower() and "<img" not in text.lower()
    assert "&lt;script>alert(1)&lt;/script>" in text
    assert "Tom & Jerry's \"twin\" \\| pipe" in text            # pipe escaped, prose readable


def test_html_escapes_data_strings(result):
    page = render_html(result)
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Tom &amp; Jerry&#39;s &#34;twin&#34; | pipe" in page     # markupsafe's entities
    assert "onerror=alert(2)&gt;" in page and "<img src=x" not in page


def test_html_escapes_inside_svg(audit):
    r = copy.deepcopy(audit)
    r["probes"][0]["title"] = '</title><script>alert("svg")</script>'
    page = render_html(r)
    assert "<script" not in page.lower()
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert "&lt;/title&gt;&lt;script&gt;alert(&quot;svg&quot;)" in svg


def test_html_is_self_contained(result):
    page = render_html(result)
    assert page.startswith("<!DOCTYPE html>")
    tags = " ".join(re.findall(r"<[^>]*>", page))          # markup only, not the (escaped) data
    for bad in ("<link", " src=", "<img", "<iframe", "<object", "<embed", "http:", "https:"):
        assert bad not in tags, bad
    hrefs = re.findall(r'href="([^"]*)"', tags)
    assert hrefs and all(h.startswith("#") for h in hrefs)
    style = page[page.index("<style>"):page.index("</style>")]
    assert "url(" not in style and "@import" not in style


# --- markdown structure ------------------------------------------------------------------

def _table_after(text: str, heading: str) -> list[list[str]]:
    lines = text.splitlines()
    i = lines.index(heading)
    rows = []
    for line in lines[i + 1:]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", r)[1:-1]] for r in rows]
    assert len({len(c) for c in cells}) == 1, "a cell broke the table"
    return cells[2:]                                             # drop header and rule


def test_markdown_summary_has_one_row_per_probe_with_its_level(audit):
    rows = _table_after(render_markdown(audit), "## Summary")
    assert [r[0] for r in rows] == [p["id"] for p in audit["probes"]]
    assert {p["risk_level"] for p in audit["probes"]} >= {"high", "inconclusive", "none"}
    for r, p in zip(rows, audit["probes"]):
        assert r[1].split()[0].strip("*").lower() == p["risk_level"]
        # the range the CIs allow sits beside the level when it is wider than one level
        lo, hi = p["level_range"]
        assert (f"CIs allow {lo} to {hi}" in r[1]) == (lo != hi)


def test_markdown_compare_table_lists_levels_and_rose_first(compare):
    rows = _table_after(render_markdown(compare), "## Summary")
    assert len(rows) == len(compare["probes"])
    rose = [p["id"] for p in compare["probes"] if p["risk_rose"]]
    assert [r[0] for r in rows[:len(rose)]] == rose
    by_id = {p["id"]: p for p in compare["probes"]}
    for r in rows:
        p = by_id[r[0]]
        assert (r[1].strip("*").lower(), r[2].strip("*").lower()) == (p["level_a"], p["level_b"])
    text = render_markdown(compare)
    assert "holm" in text and "adjusted" in text


def test_markdown_caps_long_lists(audit):
    text = render_markdown(audit)
    n = len(audit["probes"][0]["skipped_images"])
    assert n > 20
    assert f"Skipped images ({n}):" in text and f"- and {n - 20} more" in text


# --- summary_text ------------------------------------------------------------------------

def _check_screen(text: str, width: int) -> list[str]:
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    assert "\x1b" not in text
    text.encode("ascii")
    return lines


def _block(lines: list[str], first: str) -> list[str]:
    """The lines from the one starting with ``first`` to the next blank line."""
    i = next(i for i, line in enumerate(lines) if line.startswith(first))
    j = next((j for j in range(i, len(lines)) if not lines[j].strip()), len(lines))
    return lines[i:j]


def test_summary_text_audit(audit):
    lines = _check_screen(summary_text(audit), 100)
    assert "ViT-B-32 --weights w.safetensors" in lines[1] and "sha256:ab12cd34ef56" in lines[1]
    assert any("seed 0" in line for line in lines[:4])
    table = _block(lines, "probe ")[1:]
    assert [row.split()[0] for row in table] == [p["id"] for p in audit["probes"]]
    assert table[0].split()[1] == "HIGH" and "87.0% / 21.2%" in table[0] and "k=4" in table[0]
    assert table[2].split()[1:3] == ["INCONCLUSIVE", "(underpowered)"]
    why = _block(lines, "why:")[1:]
    # one paragraph per probe, in order, each starting on a line of its own
    assert [w.split()[0] for w in why if not w.startswith("    ")] == [p["id"] for p in audit["probes"]]


def test_summary_text_compare_puts_risen_probes_first(compare):
    assert compare["probes"][0]["risk_rose"] is False          # so the order must change
    lines = _check_screen(summary_text(compare), 100)
    ids = [p["id"] for p in compare["probes"]]
    first = next(line for line in lines if line.split()[:1] and line.split()[0] in ids)
    assert first.startswith("face-identity")
    assert "none -> medium" in first and "ROSE" in first and "significant" in first
    assert "+36.0 pp" in first and "0.0020" in first


def test_summary_text_fits_narrow_widths_and_long_strings(audit, compare, sweep):
    r = copy.deepcopy(audit)
    r["model"]["spec"] = "ViT-B-32 --weights " + "/very/long/path" * 20 + ".safetensors"
    r["probes"][0]["id"] = "an-extremely-long-probe-identifier-that-goes-on-and-on"
    r["probes"][0]["risk_reason"] = "word " * 100
    for res in (r, compare, sweep):
        for width in (40, 60, 80, 100):
            _check_screen(summary_text(res, width=width), width)


# --- plots -------------------------------------------------------------------------------

def _svgs(page: str, cls: str) -> list[str]:
    return re.findall(r'<svg class="plot %s".*?</svg>' % cls, page, re.S)


_NUMBER = r"-?\d+(?:\.\d+)?"


def _assert_svg_finite(page: str) -> None:
    """Every coordinate in every SVG is a plain finite number (no nan, inf, None, empty)."""
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert svgs
    for svg in svgs:
        for tag in re.findall(r"<[a-z]+\b[^>]*>", svg):
            for attr, val in re.findall(r'\s([a-zA-Z-]+)="([^"]*)"', tag):
                if attr in ("cx", "cy", "x", "y", "r", "width", "height", "stroke-width"):
                    assert re.fullmatch(_NUMBER, val), (attr, val)
                elif attr == "viewBox":
                    assert re.fullmatch(" ".join([_NUMBER] * 4), val), val
                elif attr == "d":
                    assert re.fullmatch(r"[MLZ] ?(?:[MLZ0-9. -]|(?<= )-)*", val) and \
                        re.search(r"\d", val), val
                    assert all(math.isfinite(float(n)) for n in re.findall(_NUMBER, val))
                elif attr == "transform":
                    assert re.fullmatch(r"rotate\(%s %s %s\)" % ((_NUMBER,) * 3), val), val


def test_html_has_learning_curve_per_probe_and_roc_only_with_verification(audit):
    page = render_html(audit)
    assert len(_svgs(page, "learning-curve")) == len(audit["probes"])
    n_ver = sum(_has_verification(p) for p in audit["probes"])
    assert n_ver == 1 and len(_svgs(page, "roc")) == n_ver
    # the ROC sits in the section of the probe that has verification
    sections = re.findall(r'<section id="probe-[^"]*" class="probe">.*?</section>', page, re.S)
    assert len(sections) == len(audit["probes"])
    for p, sec in zip(audit["probes"], sections):
        assert ("plot roc" in sec) == _has_verification(p)
        assert "plot learning-curve" in sec


def test_compare_html_plots(compare):
    page = render_html(compare)
    assert len(_svgs(page, "learning-curve")) == len(compare["probes"])
    n_ver = sum(_has_verification(p["a"]) or _has_verification(p["b"]) for p in compare["probes"])
    assert len(_svgs(page, "roc")) == n_ver >= 1
    lc = _svgs(page, "learning-curve")[0]
    assert 'class="series model-a"' in lc and 'class="series model-b"' in lc


def test_learning_curve_contents(audit):
    lc = _svgs(render_html(audit), "learning-curve")[0]
    for piece in ('class="band"', 'class="series model"', 'class="series floor"', 'class="threshold"',
                  'class="chance"', 'class="errorbar"', ">all<", ">16<", "balanced accuracy",
                  "threshold 56.2%", "chance 12.5%"):
        assert piece in lc, piece


def test_svg_coordinates_are_finite(result):
    _assert_svg_finite(render_html(result))


# --- robustness --------------------------------------------------------------------------

def _metrics(**over) -> dict:
    """A metrics block with every attack null or empty (what an encoder without them reports)."""
    return {"zero_shot": None, "linear_probe": None, "few_shot": [], "verification": None,
            "samples_to_threshold": None, **over}


def _probe(pid: str = "p", **over) -> dict:
    """A schema-valid probe with every optional block null or absent."""
    return {"id": pid, "capability": "c", "policy": [], "risk_level": "inconclusive", "risk_reason": "r",
            "n_images": 0, "n_classes": 0, "chance": None, "skipped_images": [], "metrics": _metrics(),
            "control": {"spec": "floor", "metrics": _metrics()}, **over}


def _report(kind: str, **over) -> dict:
    """A schema-valid report of ``kind`` with no probes and every optional field absent."""
    top = {"schema_version": "1", "kind": kind, "tool": {"name": "creepscan", "version": "0"}, "seed": 0}
    models = {"audit": {"model": {"spec": "m", "fingerprint": "f"}},
              "compare": {"model_a": {"spec": "a", "fingerprint": "fa"}, "model_b": {"spec": "b", "fingerprint": "fb"}},
              "sweep": {"models": [{"spec": "m0", "fingerprint": "f0"}]}}[kind]
    return {**top, **models, "probes": [], **over}


def _compare_probe(pid: str = "c", **over) -> dict:
    return {"id": pid, "delta": {"linear_probe": None}, "p_value": None, "a": _probe(), "b": _probe(), **over}


# partial results: every block that may be null is null, every list that may be empty is empty, and the
# numbers that were NaN are null; each still renders, showing n/a
MINIMAL = [
    _report("audit"),
    _report("audit", probes=[_probe()], settings=None, not_run=[{"id": "q", "reason": "no data"}]),
    _report("audit", probes=[_probe("p", risk_level="high", inconclusive={"reason": None}, metrics=_metrics(
        few_shot=[{"k": 1, "accuracy": 0.5, "ci95": [None, None]}, {"k": 2, "accuracy": None, "ci95": [None, None]}],
        linear_probe={"accuracy": 0.7, "ci95": [None, None]},
        verification={"tar_at_far": {"1e-3": None}, "auc": None, "not_measurable": ["1e-3"]}))]),
    _report("audit", spec={"clauses": [{}], "passed": None}, probes=[_probe(
        "n", inconclusive={"reason": None}, power={"mde": None}, level_range=["low", "high"],
        uplift={"skill_gain": None, "ci95": [None, None], "tests": [{"attack": "mlp", "skill_gain": None,
                                                                    "ci95": [None, None]}]},
        split={"grouped": True}, threshold={}, capability_axis={"best_skill": None, "ci95": [None, 1]},
        metrics=_metrics(heads={"mlp": None, "gd_budget": {"accuracy": None, "ci95": [None, None], "budgets": [{}]}},
                         finetune={"points": []}, few_shot=[{"k": 2, "accuracy": None, "ci95": [None, None],
                                                             "heads": {"knn": None}}],
                         open_set={"measurable": False}))]),
    _report("compare"),
    _report("compare", probes=[_compare_probe("z", level_a="low", level_b="critical", tests=None)]),
    _report("sweep"),
    _report("sweep", probes=[{"id": "s", "per_model": [_probe(), _probe(risk_level="low")],
                              "steps": [{"from": 0, "to": 1, "p_value": None, "level_rose": True}]}]),
]


@pytest.mark.parametrize("res", MINIMAL)
def test_partial_results_render(res, tmp_path):
    paths = write_reports(res, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
    page = paths[2].read_text(encoding="utf-8")
    kind = "trajectory" if res.get("kind") == "sweep" else "learning-curve"
    assert page.count(f"plot {kind}") == len(res.get("probes") or [])
    _check_screen(summary_text(res), 100)
    if res.get("probes"):
        _assert_svg_finite(page)
        assert "n/a" in paths[1].read_text(encoding="utf-8")


@pytest.mark.parametrize("broken, where", [
    ({}, "(top level)"),
    ({"kind": "audit"}, "schema_version"),
    (_report("audit", probes=[{}]), "probes/0/id"),
    (_report("audit", probes=[_probe(risk_level="weird")]), "probes/0/risk_level"),
    (_report("audit", probes=[_probe(metrics=_metrics(few_shot=["junk"]))]), "probes/0/metrics/few_shot/0"),
    (_report("compare", probes=[_compare_probe(a=None)]), "probes/0/a"),
    (_report("sweep", probes=[{"id": "s", "per_model": [None], "steps": []}]), "probes/0/per_model/0"),
])
def test_a_report_that_breaks_the_schema_is_rejected_with_the_place(broken, where, tmp_path):
    """The renderers read the typed report: a dict that is not one is refused with one line that names the
    place, before any file is written (the CLI turns it into exit 2)."""
    for render in (render_reports, summary_text, render_markdown, render_html):
        with pytest.raises(ValueError, match=f"^report does not match its schema at {re.escape(where)}: "):
            render(broken)
    with pytest.raises(ValueError, match="does not match its schema"):
        write_reports(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_renderers_read_the_typed_report(result):
    """The entry reads the dict with load_report once; the typed report itself renders the same."""
    from creepscan.result import load_report

    typed = load_report(to_jsonable(result))
    assert render_markdown(typed) == render_markdown(result)
    assert summary_text(typed, None) == summary_text(result, None)


def test_compare_rose_derived_from_levels_when_flag_missing():
    res = _report("compare", alpha=0.05, probes=[
        _compare_probe("same", level_a="low", level_b="low", p_adjusted=0.5),
        _compare_probe("up", level_a="low", level_b="critical", p_adjusted=0.01)])
    lines = summary_text(res).splitlines()
    rows = [line for line in lines if line.startswith(("same", "up"))]
    assert rows[0].startswith("up") and "ROSE" in rows[0] and "significant" in rows[0]
