"""Model card export: sections and numbers, byte-identical regeneration from report.json, YAML that a
YAML parser reads back, a CycloneDX 1.6 fragment that validates, Markdown that stays text in a browser."""
from __future__ import annotations

import copy
import hashlib
import html
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from creepscan.cli import main
from creepscan.report import write_reports
from creepscan.report.card import CARD_FILES, write_card
from creepscan.spec import compare_spec, evaluate_spec, parse_spec

DATA = Path(__file__).parent / "data"
CDX = DATA / "cyclonedx"
CHROMIUM = Path("/usr/bin/chromium")

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=\"document.title='pwned'\">"
SPEC = f"""\
spec_version = 1
model = "acme/retail-clip-v3"
note = "Product search by photo. {SCRIPT.replace('"', '')}"
[[allowed]]
probe = "benign-reference"
min_skill = 0.5
context = ["retail | search"]
[[prohibited]]
probe = "face-identity"
max_risk = "low"
legal_basis = ["EU AI Act Art. 5(1)(e)", "<b>bold</b> & [link](http://x)"]
[[prohibited]]
probe = "emotion"
max_risk = "medium"
context = ["workplace", {json.dumps(IMG)}]
"""


def _hostile_report() -> dict:
    report = json.loads((DATA / "sample_audit.json").read_text(encoding="utf-8"))
    face = next(p for p in report["probes"] if p["id"] == "face-identity")
    face["title"] = f"{SCRIPT} | face id"           # a probe label that must stay text, and a pipe
    face["data"]["source"] = "folder <data>/faces & co"
    return report


def _spec():
    return parse_spec(SPEC.encode("utf-8"), "retail.toml")


def _audit_dir(tmp_path: Path) -> tuple[Path, dict, dict]:
    report = _hostile_report()
    block = evaluate_spec(_spec(), report)
    report["spec"] = block                        # what the audit stores, so `card` needs nothing else
    out = tmp_path / "report"
    write_reports(report, out)
    write_card(report, block, out)
    return out, report, block


# --- content -----------------------------------------------------------------------------------------


def test_markdown_sections_and_evidence(tmp_path):
    out, report, block = _audit_dir(tmp_path)
    text = (out / "model-card.md").read_text(encoding="utf-8")
    sections = ["## Intended uses", "## Out-of-scope and prohibited uses", "## Repurposing evidence"]
    positions = [text.index(s) for s in sections]
    assert positions == sorted(positions)
    evidence = text[positions[2]:]
    for c in block["clauses"]:
        if c["kind"] != "prohibited":
            continue
        ev = c["evidence"]
        lo, hi = ev["skill_ci95"]
        # measured level, headline skill with its CI, the uplift CI, the probe data
        assert f"Measured level: {c['measured_level']}" in evidence
        assert f"{ev['best_skill']:.2f} [{lo:.2f}, {hi:.2f}]" in evidence
        assert f"[{ev['skill_gain_ci95'][0]:.2f}, {ev['skill_gain_ci95'][1]:.2f}]" in evidence
        assert ev["data_fingerprint"] in evidence
    report_bytes = (out / "report.json").read_bytes()
    assert "sha256:" + hashlib.sha256(report_bytes).hexdigest() in text
    assert f"| creepscan version | {report['tool']['version']} |" in text
    assert f"| Seed | {report['seed']} |" in text
    assert "**Use specification: failed**" in text and block["passed"] is False


def test_markdown_escapes_every_data_string(tmp_path):
    out, _, _ = _audit_dir(tmp_path)
    text = (out / "model-card.md").read_text(encoding="utf-8")
    for raw in (SCRIPT, "<b>bold</b>", "<data>", IMG[:4]):
        assert raw not in text
    assert "&lt;script>alert(1)&lt;/script>" in text
    assert "\\[link\\](http://x)" in text          # no link from data


def test_markdown_renders_as_text_in_python_markdown(tmp_path):
    markdown = pytest.importorskip("markdown")
    out, _, _ = _audit_dir(tmp_path)
    page = markdown.markdown((out / "model-card.md").read_text(encoding="utf-8"), extensions=["tables"])
    scan = _Scan()
    scan.feed(page)
    assert scan.tags.get("script", 0) == 0 and scan.tags.get("img", 0) == 0 and scan.tags.get("b", 0) == 0
    assert scan.tags.get("a", 0) == 0 and not scan.event_attrs
    assert SCRIPT in scan.text and "<b>bold</b> & [link](http://x)" in scan.text
    # every table row keeps its cell count although a title holds a pipe
    for header, rows in scan.tables:
        assert rows and all(n == header for n in rows), (header, rows)
    assert len(scan.tables) == 3


# --- regeneration ------------------------------------------------------------------------------------


def test_card_command_rewrites_the_same_bytes(tmp_path):
    out, _, _ = _audit_dir(tmp_path)
    written = {name: (out / name).read_bytes() for name in CARD_FILES}
    for name in CARD_FILES:
        (out / name).unlink()
    result = CliRunner().invoke(main, ["card", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [str(out / name) for name in CARD_FILES]
    assert {name: (out / name).read_bytes() for name in CARD_FILES} == written


def test_card_hash_follows_the_report_bytes(tmp_path):
    out, _, _ = _audit_dir(tmp_path)
    before = (out / "model-card.md").read_text(encoding="utf-8").splitlines()
    # same data, different bytes (a trailing newline): the card must speak for the file as it is
    with open(out / "report.json", "ab") as fh:
        fh.write(b"\n")
    CliRunner().invoke(main, ["card", str(out)], catch_exceptions=False)
    after = (out / "model-card.md").read_text(encoding="utf-8").splitlines()
    diff = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(diff) == 1
    assert hashlib.sha256((out / "report.json").read_bytes()).hexdigest() in diff[0][1]


def test_card_command_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    nospec = tmp_path / "nospec"
    nospec.mkdir()
    report = json.loads((DATA / "sample_audit.json").read_text(encoding="utf-8"))
    report.pop("spec", None)                       # an audit run without --spec
    write_reports(report, nospec)
    for folder, words in ((empty, "no report.json"), (nospec, 'no "spec" block')):
        result = CliRunner().invoke(main, ["card", str(folder)], catch_exceptions=False)
        assert result.exit_code == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and words in lines[0] and "--spec" in lines[0]
        assert not any((folder / name).exists() for name in CARD_FILES)


# --- YAML --------------------------------------------------------------------------------------------


def test_yaml_parses_to_the_same_facts(tmp_path):
    yaml = pytest.importorskip("yaml")
    out, report, block = _audit_dir(tmp_path)
    doc = yaml.safe_load((out / "model-card.yaml").read_text(encoding="utf-8"))
    assert list(doc) == ["creepscan"]
    facts = doc["creepscan"]
    assert facts["passed"] is block["passed"] and facts["failed"] == block["failed"]
    assert facts["report_sha256"] == "sha256:" + hashlib.sha256((out / "report.json").read_bytes()).hexdigest()
    assert facts["seed"] == report["seed"] and facts["tool_version"] == report["tool"]["version"]
    uses = facts["intended_uses"] + facts["prohibited_uses"]
    for c, f in zip(block["clauses"], uses):
        assert f["probe"] == c["probe"] and f["verdict"] == c["verdict"]
        assert f["best_skill"] == c["evidence"]["best_skill"]          # floats read back exactly
        assert f["best_skill_ci95"] == c["evidence"]["skill_ci95"]
        assert f["context"] == c["context"]
    assert facts["prohibited_uses"][0]["title"] == f"{SCRIPT} | face id"


def test_yaml_round_trips_awkward_strings_and_numbers(tmp_path):
    yaml = pytest.importorskip("yaml")
    report = _hostile_report()
    block = evaluate_spec(_spec(), report)
    awkward = 'a "quoted" \\ back\nslash\ttab \x07 bell \x85 nel \u2028 ls \ufeff bom \U0001F600 : # - [x] {y} \'s'
    block["model"] = awkward
    block["clauses"][1]["context"] = ["yes", "null", "1.5", "- dash", awkward]
    block["clauses"][1]["evidence"]["best_skill"] = 1e-05
    block["clauses"][1]["evidence"]["skill_gain"] = -2.5e+20
    write_card(report, block, tmp_path)
    facts = yaml.safe_load((tmp_path / "model-card.yaml").read_text(encoding="utf-8"))["creepscan"]
    assert facts["model"] == awkward
    face = facts["prohibited_uses"][0]
    assert face["context"] == ["yes", "null", "1.5", "- dash", awkward]
    assert face["best_skill"] == 1e-05 and isinstance(face["best_skill"], float)
    assert face["skill_gain"] == -2.5e+20


# --- CycloneDX ---------------------------------------------------------------------------------------


def _cdx_validator():
    from jsonschema import Draft7Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    def no_network(uri):
        raise LookupError(f"schema {uri} is not in tests/data/cyclonedx (no network in tests)")

    pairs = []
    for path in sorted(CDX.glob("*.schema.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resource = Resource.from_contents(contents, default_specification=DRAFT7)
        # the BOM schema refers to its neighbours by file name, relative to its own $id
        pairs += [(contents["$id"], resource), ("http://cyclonedx.org/schema/" + path.name, resource)]
    registry = Registry(retrieve=no_network).with_resources(pairs)
    schema = json.loads((CDX / "bom-1.6.SNAPSHOT.schema.json").read_text(encoding="utf-8"))
    return Draft7Validator(schema, registry=registry)


def _bom(model_card: dict, license_id="Apache-2.0") -> dict:
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "components": [{"type": "machine-learning-model", "name": "acme/retail-clip-v3",
                        "licenses": [{"license": {"id": license_id}}], "modelCard": model_card}],
    }


def _errors(validator, doc) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_cyclonedx_fragment_validates_against_the_1_6_schema(tmp_path):
    out, _, block = _audit_dir(tmp_path)
    fragment = json.loads((out / "model-card.cdx.json").read_text(encoding="utf-8"))
    validator = _cdx_validator()
    assert _errors(validator, _bom(fragment)) == []
    cons = fragment["considerations"]
    n_allowed = sum(c["kind"] == "allowed" for c in block["clauses"])
    assert len(cons["useCases"]) == n_allowed + 1               # the spec's note, then each allowed use
    assert [e["name"] for e in cons["ethicalConsiderations"]][0].startswith(SCRIPT)
    props = {p["name"]: p["value"] for p in fragment["properties"]}
    assert props["creepscan:spec:passed"] == "false"
    assert props["creepscan:clause:prohibited:face-identity:verdict"] == "fail"
    # the validator really checks: properties are not allowed inside considerations, and the
    # spdx licence list (a referenced file) is resolved locally
    moved = copy.deepcopy(fragment)
    moved["considerations"]["properties"] = moved.pop("properties")
    assert _errors(validator, _bom(moved))
    assert _errors(validator, _bom(fragment, license_id="Not-A-Licence"))


def test_compare_card_describes_model_b_beside_a(tmp_path):
    yaml = pytest.importorskip("yaml")
    report = json.loads((DATA / "sample_compare.json").read_text(encoding="utf-8"))
    block = compare_spec(_spec(), report)
    report["spec"] = block
    write_reports(report, tmp_path)
    paths = write_card(report, block, tmp_path)
    text = paths[0].read_text(encoding="utf-8")
    assert "Baseline (model A)" in text and report["model_b"]["fingerprint"] in text
    facts = yaml.safe_load(paths[1].read_text(encoding="utf-8"))["creepscan"]
    face = next(u for u in facts["prohibited_uses"] if u["probe"] == "face-identity")
    assert (face["baseline_verdict"], face["verdict"]) == ("pass", "fail")
    assert _errors(_cdx_validator(), _bom(json.loads(paths[2].read_text(encoding="utf-8")))) == []


# --- a real browser ----------------------------------------------------------------------------------


class _Scan(HTMLParser):
    """Tags, event attributes, text and table shapes of an HTML document."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: dict[str, int] = {}
        self.event_attrs: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.parts: list[str] = []
        self.tables: list[tuple[int, list[int]]] = []
        self._row = None
        self._in_title = False
        self.title = ""

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
            if name.lower().startswith("on"):
                self.event_attrs.append(f"<{tag} {name}>")
        if tag == "table":
            self.tables.append((0, []))
        elif tag == "tr":
            self._row = 0
        elif tag in ("td", "th") and self._row is not None:
            self._row += 1
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None and self.tables:
            header, rows = self.tables[-1]
            if header == 0:
                self.tables[-1] = (self._row, rows)
            else:
                rows.append(self._row)
            self._row = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser check needs /usr/bin/chromium "
                                                   "(apt-get install -y chromium)")
def test_model_card_in_headless_chromium_keeps_hostile_strings_as_text(tmp_path):
    markdown = pytest.importorskip("markdown")
    out, _, _ = _audit_dir(tmp_path)
    body = markdown.markdown((out / "model-card.md").read_text(encoding="utf-8"), extensions=["tables"])
    page = tmp_path / "card.html"
    # The guard replaces alert (which would block --dump-dom) by a mark in the DOM: an injected
    # script that runs leaves the mark, an onerror handler renames the page.
    guard = "<script id=\"guard\">window.alert = () => document.documentElement.setAttribute('data-ran', '1');</script>"
    page.write_text(f"<!doctype html><html><head><meta charset=\"utf-8\"><title>creepscan model card</title>{guard}"
                    f"</head><body>{body}</body></html>", encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                           "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-2000:]
    dom = _Scan()
    dom.feed(proc.stdout)
    assert dom.tags.get("h2", 0) == 3 and dom.tags.get("table", 0) == 3      # it rendered
    assert dom.tags.get("script", 0) == 1 and dom.tags.get("img", 0) == 0     # only the guard
    assert dom.event_attrs == []
    assert ("html", "data-ran", "1") not in dom.attrs                          # no script ran
    assert dom.title == "creepscan model card"                                # no handler ran
    assert SCRIPT in dom.text and html.unescape("&lt;b&gt;bold&lt;/b&gt; &amp;") in dom.text
    assert IMG in dom.text
