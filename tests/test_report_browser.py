"""report.html in a real browser: headless Chromium renders it, plots and all, with data as text.

Skipped where /usr/bin/chromium is absent (install with ``apt-get install -y chromium``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from creepscan.report import write_reports

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "check_report_html.py"
CHROMIUM = Path("/usr/bin/chromium")
DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="headless browser check needs /usr/bin/chromium "
                                       "(apt-get install -y chromium)")


def _check(html: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(html), *extra],
                          capture_output=True, text=True, timeout=300)


# plots each sample must have: (class, how many), as report.json calls for (see the check's docstring)
PLOTS = {"sample_audit.json": {"learning-curve": 4, "roc": 1, "cost": 1},
         "sample_compare.json": {"learning-curve": 4, "roc": 1},
         "sample_sweep.json": {"trajectory": 2}}


@pytest.mark.parametrize("sample", sorted(PLOTS))
def test_sample_report_renders_in_chromium(sample, tmp_path):
    """Rendered safely, every plot drawn, and at a 1366x768 laptop screen the verdict banner and the
    highest level show without scrolling, and no chart title reaches outside its chart."""
    result = json.loads((DATA / sample).read_text(encoding="utf-8"))
    paths = write_reports(result, tmp_path)
    shot = tmp_path / "shot.png"
    proc = _check(paths[2], "--screenshot", str(shot), "--fold", "1366,768")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"rendered, {sum(PLOTS[sample].values())} plots" in proc.stdout
    assert "verdict and highest level above the fold at 1366,768, no chart title clipped" in proc.stdout
    # the hostile label was found as text (the check derives it from report.json)
    assert "hostile strings shown as text" in proc.stdout and " 0 hostile" not in proc.stdout
    assert shot.stat().st_size > 10_000


def test_check_counts_plots_against_report_json(tmp_path):
    """A sweep page that lost a trajectory figure fails, and says which kind is missing."""
    result = json.loads((DATA / "sample_sweep.json").read_text(encoding="utf-8"))
    html = write_reports(result, tmp_path)[2]
    page = html.read_text(encoding="utf-8")
    start = page.index('<figure class="plot">')
    bad = page[:start] + page[page.index("</figure>", start) + len("</figure>"):]
    html.write_text(bad, encoding="utf-8")
    proc = _check(html)
    assert proc.returncode == 1
    assert "1 trajectory plots, expected 2" in proc.stderr


def test_check_catches_an_injected_script_and_a_broken_plot(tmp_path):
    result = json.loads((DATA / "sample_audit.json").read_text(encoding="utf-8"))
    html = write_reports(result, tmp_path)[2]
    page = html.read_text(encoding="utf-8")
    bad = page.replace("&lt;script&gt;alert(1)&lt;/script&gt;", "<script>alert(1)</script>", 1)
    bad = bad.replace('class="series model" d="M', 'class="series model" d="M nan', 1)
    assert bad != page
    html.write_text(bad, encoding="utf-8")
    proc = _check(html)
    assert proc.returncode == 1
    assert "<script> element" in proc.stderr
    assert "non-numeric" in proc.stderr


def test_fold_check_catches_a_buried_verdict_and_a_clipped_title(tmp_path):
    """The layout check fails a page whose banner is pushed below the fold and whose chart title is
    drawn past the chart's edge, and names both."""
    result = json.loads((DATA / "sample_audit.json").read_text(encoding="utf-8"))
    html = write_reports(result, tmp_path)[2]
    page = html.read_text(encoding="utf-8")
    bad = page.replace('<div id="verdict"', '<div style="height:900px"></div><div id="verdict"', 1)
    bad = bad.replace('<tspan x="10"', '<tspan x="400"', 1)       # the first chart's title, moved right
    assert bad.count("height:900px") == 1 and '<tspan x="400"' in bad
    html.write_text(bad, encoding="utf-8")
    proc = _check(html, "--fold", "1366,768")
    assert proc.returncode == 1
    assert "verdict banner ends at" in proc.stderr and "below the fold" in proc.stderr
    assert "chart title clipped in plot 0" in proc.stderr
