#!/usr/bin/env python3
"""Open a creepscan report.html in headless Chromium and check that it rendered safely.

    python scripts/check_report_html.py REPORT.html [--screenshot out.png] [--window-size 1280,2000]
                                        [--expect-text STR ...] [--chromium PATH] [--fold 1366,768]

Checks, on the DOM Chromium built (``--dump-dom``), not on the file:
  - the page rendered: it has a <title> and an <h1>;
  - every plot is an <svg class="plot ..."> holding at least one <path>/<polyline> with non-empty,
    finite geometry; there is one per <figure class="plot"> of the source, and (when report.json lies
    beside the HTML) as many of each kind as report.json calls for: audit, a learning curve per
    probe, a ROC per probe with verification, a cost plot per probe with extra adversaries;
    compare, a learning curve per probe and a ROC where either side has verification; sweep, a
    trajectory per probe;
  - no <script> element, no on* event attribute, no external resource (src/href/srcset that is not
    a fragment or data: URL, no url(...) in styles);
  - every hostile string appears in the page as text, i.e. it was escaped and not parsed: those
    given with ``--expect-text``, else every string of the report.json beside the HTML that holds
    "<" or "&" and that the file shows as text (read by a plain HTML parser), else
    <script>alert(1)</script> when the file shows it.
With ``--fold W,H`` it also loads a scripted copy of the page in a W x H viewport and checks that the
verdict banner and the first badge of the highest level end above the fold and that no chart title
reaches outside its chart.
Exits 0 with "OK ..." on success; non-zero with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
_NUM = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_PATH_TOKEN = re.compile(r"[MLHVCSQTAZmlhvcsqtaz]|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|[\s,]+")


class DomScan(HTMLParser):
    """Collects what the checks need from a serialised DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.h1 = 0
        self.scripts = 0
        self.event_attrs: list[str] = []
        self.external: list[str] = []
        self.svgs: list[dict] = []          # {"cls", "shapes": [geometry strings]}
        self.figures = 0
        self.text_parts: list[str] = []
        self._in_title = False
        self._svg_depth = 0
        self._in_style = False
        self.style_text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.event_attrs.append(f"<{tag} {name}=...>")
            if name.lower() in ("src", "href", "srcset", "xlink:href", "poster", "action", "data"):
                v = (value or "").strip()
                if v and not v.startswith("#") and not v.lower().startswith("data:"):
                    self.external.append(f"<{tag} {name}={v[:60]!r}>")
            if name.lower() == "style" and value and "url(" in value.lower():
                self.external.append(f"<{tag} style=url(...)>")
        if tag == "title" and self._svg_depth == 0:
            self._in_title = True
        elif tag == "h1":
            self.h1 += 1
        elif tag == "script":
            self.scripts += 1
        elif tag == "style":
            self._in_style = True
        elif tag == "link":
            self.external.append(f"<link {a.get('rel')} {a.get('href')!r}>")
        elif tag in ("iframe", "object", "embed", "img", "video", "audio", "image"):
            self.external.append(f"<{tag}>")
        elif tag == "figure" and "plot" in (a.get("class") or "").split():
            self.figures += 1
        if tag == "svg":
            if self._svg_depth == 0:
                self.svgs.append({"cls": a.get("class") or "", "shapes": []})
            self._svg_depth += 1
        elif self._svg_depth and tag == "path":
            self.svgs[-1]["shapes"].append(a.get("d") or "")
        elif self._svg_depth and tag in ("polyline", "polygon"):
            self.svgs[-1]["shapes"].append(a.get("points") or "")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "svg":
            self._svg_depth -= 1

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "style":
            self._in_style = False
        elif tag == "svg" and self._svg_depth:
            self._svg_depth -= 1

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._in_style:
            self.style_text += data
            return
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())


def _geometry_ok(geom: str) -> bool:
    """Non-empty, and made only of path commands and finite numbers (no NaN/inf/None)."""
    g = geom.strip()
    if not g or not _NUM.search(g):
        return False
    return "".join(_PATH_TOKEN.findall(g)) == g


def run_chromium(chromium: str, html: Path, screenshot: Path | None, window: str) -> str:
    profile = tempfile.mkdtemp(prefix="creepscan-chromium-")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--user-data-dir={profile}"]
    url = html.resolve().as_uri()
    try:
        dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
        if dom.returncode != 0 or not dom.stdout.strip():
            raise RuntimeError(f"chromium --dump-dom failed (exit {dom.returncode}): "
                               f"{dom.stderr.strip().splitlines()[-1:] or ''}")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            shot = subprocess.run(base + [f"--screenshot={screenshot.resolve()}",
                                          f"--window-size={window}", url],
                                  capture_output=True, text=True, timeout=120)
            if shot.returncode != 0 or not screenshot.exists():
                raise RuntimeError(f"chromium --screenshot failed (exit {shot.returncode})")
        return dom.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# Measures the page as a reader sees it: the verdict banner, the first badge of the highest level,
# and every chart title against its chart. Injected into a copy of the page only (the report itself
# forbids scripts); the result is written into the DOM, which --dump-dom returns.
_LAYOUT_JS = """
<script>
(function () {
  var vh = window.innerHeight, out = {viewport: [window.innerWidth, vh], titles: []};
  var banner = document.getElementById('verdict');
  if (banner) {
    var r = banner.getBoundingClientRect();
    out.banner = {top: r.top, bottom: r.bottom};
    var lv = (banner.className.match(/level-([a-z]+)/) || [])[1];
    out.level = lv || null;
    var badge = lv ? document.querySelector('.badge.level-' + lv) : null;
    if (badge) { var b = badge.getBoundingClientRect(); out.badge = {top: b.top, bottom: b.bottom}; }
  }
  document.querySelectorAll('svg.plot').forEach(function (svg, i) {
    var s = svg.getBoundingClientRect();
    svg.querySelectorAll('text.title').forEach(function (t) {
      var r = t.getBoundingClientRect();
      out.titles.push({plot: i, text: t.textContent, left: r.left - s.left, right: s.right - r.right,
                       top: r.top - s.top});
    });
  });
  var pre = document.createElement('pre');
  pre.id = 'creepscan-layout';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def measure_layout(chromium: str, html: Path, window: str) -> dict:
    """Positions in a ``window`` (W,H) viewport: the banner, the highest level's first badge and each
    chart title's room inside its chart (negative = clipped), from a scripted copy of the page."""
    source = html.read_text(encoding="utf-8")
    source = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", source)
    source = source.replace("</body>", _LAYOUT_JS + "</body>")
    folder = Path(tempfile.mkdtemp(prefix="creepscan-layout-"))
    profile = tempfile.mkdtemp(prefix="creepscan-chromium-")
    try:
        page = folder / "layout.html"
        page.write_text(source, encoding="utf-8")
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
                               f"--user-data-dir={profile}", f"--window-size={window}", "--dump-dom",
                               page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
        m = re.search(r'<pre id="creepscan-layout">(.*?)</pre>', proc.stdout, re.S)
        if proc.returncode != 0 or not m:
            raise RuntimeError(f"chromium layout run failed (exit {proc.returncode})")
        import html as html_mod

        return json.loads(html_mod.unescape(m.group(1)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(profile, ignore_errors=True)


def layout_problems(layout: dict) -> list[str]:
    """The verdict banner and the highest level above the fold; no chart title clipped."""
    problems = []
    height = layout["viewport"][1]
    if "banner" not in layout:
        problems.append("no verdict banner (#verdict)")
    elif layout["banner"]["bottom"] > height:
        problems.append(f"the verdict banner ends at {layout['banner']['bottom']:.0f} px, below the fold ({height} px)")
    if layout.get("level") and "badge" not in layout:
        problems.append(f"no badge of the highest level ({layout['level']})")
    elif "badge" in layout and layout["badge"]["bottom"] > height:
        problems.append(f"the highest level ({layout['level']}) first shows at {layout['badge']['top']:.0f} px, "
                        f"below the fold ({height} px)")
    for t in layout["titles"]:
        if t["left"] < -0.5 or t["right"] < -0.5 or t["top"] < -0.5:
            problems.append(f"chart title clipped in plot {t['plot']}: {t['text'][:60]!r}")
    return problems


def hostile_strings(report_json: Path) -> list[str]:
    """Strings in the report data that markup would parse: they must come out as text."""
    found: list[str] = []

    def walk(v):
        if isinstance(v, str):
            if ("<" in v or "&" in v) and v not in found:
                found.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(json.loads(report_json.read_text(encoding="utf-8")))
    return found


def _has_ver(p: dict) -> bool:
    return isinstance((p.get("metrics") or {}).get("verification"), dict)


def _has_cost(p: dict) -> bool:
    """Whether the probe measured more adversaries than the classic ones (then it has a cost plot)."""
    m = p.get("metrics") or {}
    few_shot_heads = any(isinstance(r, dict) and r.get("heads") for r in m.get("few_shot") or [])
    finetune = (m.get("finetune") or {}).get("points") if isinstance(m.get("finetune"), dict) else None
    return bool(m.get("heads")) or bool(finetune) or few_shot_heads


def expected_plots(report_json: Path) -> dict[str, int] | None:
    """{plot class: how many} the report should have, from report.json; None if unreadable.

    audit: a learning curve per probe, a ROC per probe with verification, a cost plot per probe with
    extra adversaries; compare: a learning curve per probe, a ROC where A or B has verification;
    sweep: a trajectory per probe.
    """
    try:
        r = json.loads(report_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    probes = [p for p in r.get("probes") or [] if isinstance(p, dict)]
    if r.get("kind") == "sweep":
        return {"trajectory": len(probes), "learning-curve": 0, "roc": 0, "cost": 0}
    if r.get("kind") == "compare":
        rocs = sum(1 for p in probes if _has_ver(p.get("a") or {}) or _has_ver(p.get("b") or {}))
        return {"learning-curve": len(probes), "roc": rocs, "trajectory": 0}
    return {"learning-curve": len(probes), "roc": sum(map(_has_ver, probes)),
            "cost": sum(map(_has_cost, probes)), "trajectory": 0}


def check(dom: str, source: str, hostile: list[str], expect: dict[str, int] | None) -> list[str]:
    problems = []
    scan = DomScan()
    scan.feed(dom)
    scan.close()
    src = DomScan()
    src.feed(source)
    src.close()
    if "creepscan" not in scan.title.lower():
        problems.append(f"page title missing or wrong: {scan.title!r}")
    if scan.h1 < 1:
        problems.append("no <h1>: the page did not render its header")
    plots = [s for s in scan.svgs if "plot" in s["cls"].split()]
    for i, s in enumerate(plots):
        shapes = [g for g in s["shapes"] if g.strip()]
        if not shapes:
            problems.append(f"plot {i} ({s['cls']}) has no path/polyline with data")
        bad = [g for g in s["shapes"] if not _geometry_ok(g)]
        if bad:
            problems.append(f"plot {i} ({s['cls']}) has {len(bad)} empty or non-numeric shapes, "
                            f"e.g. {bad[0][:60]!r}")
    if src.figures != len(plots):
        problems.append(f"{src.figures} plot figures in the file but {len(plots)} plot svgs rendered")
    if src.figures == 0 and (expect is None or any(expect.values())):
        problems.append("no plot figure in the file")
    for cls, want in (expect or {}).items():
        got = sum(cls in s["cls"].split() for s in plots)
        if got != want:
            problems.append(f"{got} {cls} plots, expected {want} (from report.json)")
    if scan.scripts:
        problems.append(f"{scan.scripts} <script> element(s) in the rendered DOM")
    if scan.event_attrs:
        problems.append(f"event-handler attributes in the DOM: {scan.event_attrs[:3]}")
    if scan.external:
        problems.append(f"external resources referenced: {scan.external[:3]}")
    if "url(" in scan.style_text.lower() or "@import" in scan.style_text.lower():
        problems.append("stylesheet loads something (url(...) or @import)")
    text = scan.text
    for h in hostile:
        if " ".join(h.split()) not in text:
            problems.append(f"hostile string not shown as text (parsed as markup?): {h[:60]!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="report.html to check")
    ap.add_argument("--screenshot", type=Path, help="also save a PNG screenshot here")
    ap.add_argument("--window-size", default="1280,2000", help="screenshot size W,H (default 1280,2000)")
    ap.add_argument("--expect-text", action="append", default=None,
                    help="a string that must appear as text (default: the hostile strings of the "
                         "report.json beside the HTML, else <script>alert(1)</script> if in the file)")
    ap.add_argument("--chromium", default=os.environ.get("CREEPSCAN_CHROMIUM", CHROMIUM))
    ap.add_argument("--fold", default=None, metavar="W,H",
                    help="also check the layout in a W,H viewport (e.g. 1366,768): the verdict banner and the "
                         "highest level above the fold, no chart title clipped")
    args = ap.parse_args(argv)

    if not args.report.is_file():
        print(f"check_report_html: no such file: {args.report}", file=sys.stderr)
        return 2
    if not (shutil.which(args.chromium) or Path(args.chromium).is_file()):
        print(f"check_report_html: chromium not found at {args.chromium}; install it "
              f"(apt-get install -y chromium) or pass --chromium PATH", file=sys.stderr)
        return 2
    source = args.report.read_text(encoding="utf-8")
    beside = args.report.with_name("report.json")
    if args.expect_text is not None:
        hostile = args.expect_text
    else:
        # the ones the renderer chose to show (lists are capped): text of the file, read by a plain
        # HTML parser (entities decoded, markup not text) -> they must be text in Chromium's DOM too
        shown = DomScan()
        shown.feed(source)
        shown.close()
        candidates = hostile_strings(beside) if beside.is_file() else ["<script>alert(1)</script>"]
        hostile = [h for h in candidates if " ".join(h.split()) in shown.text]
    expect = expected_plots(beside) if beside.is_file() else None
    try:
        dom = run_chromium(args.chromium, args.report, args.screenshot, args.window_size)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        print(f"check_report_html: {e}", file=sys.stderr)
        return 3
    problems = check(dom, source, hostile, expect)
    if args.fold:
        try:
            layout = measure_layout(args.chromium, args.report, args.fold)
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            print(f"check_report_html: {e}", file=sys.stderr)
            return 3
        problems += layout_problems(layout)
    if problems:
        for p in problems:
            print(f"check_report_html: {args.report}: {p}", file=sys.stderr)
        return 1
    scan = DomScan()
    scan.feed(dom)
    n = sum("plot" in s["cls"].split() for s in scan.svgs)
    print(f"OK {args.report}: rendered, {n} plots, {len(hostile)} hostile strings shown as text, "
          f"no scripts, no external resources"
          + (f", verdict and highest level above the fold at {args.fold}, no chart title clipped"
             if args.fold else "")
          + (f", screenshot {args.screenshot}" if args.screenshot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
