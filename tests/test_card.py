"""Model card export: sections and numbers, byte-identical regeneration from report.json, front matter
that huggingface_hub reads, a CycloneDX 1.6 BOM that the library's strict validator accepts, Markdown that
stays text in a browser."""
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
from creepscan.result import to_json_dict
from creepscan.spec import compare_spec, evaluate_spec, parse_spec

DATA = Path(__file__).parent / "data"
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
    report["spec"] = to_json_dict(block)          # what the audit stores, so `card` needs nothing else
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
    for c in block.clauses:
        if c.kind != "prohibited":
            continue
        ev = c.evidence
        lo, hi = ev.skill_ci95
        # measured level, headline skill with its CI, the uplift CI, the probe data
        assert f"Measured level: {c.measured_level}" in evidence
        assert f"{ev.best_skill:.2f} [{lo:.2f}, {hi:.2f}]" in evidence
        assert f"[{ev.skill_gain_ci95[0]:.2f}, {ev.skill_gain_ci95[1]:.2f}]" in evidence
        assert ev.data_fingerprint in evidence
    report_bytes = (out / "report.json").read_bytes()
    assert "sha256:" + hashlib.sha256(report_bytes).hexdigest() in text
    assert f"| creepscan version | {report['tool']['version']} |" in text
    assert f"| Seed | {report['seed']} |" in text
    assert "**Use specification: failed**" in text and block.passed is False


def test_markdown_escapes_every_data_string(tmp_path):
    from huggingface_hub import ModelCard

    out, _, _ = _audit_dir(tmp_path)
    text = ModelCard.load(out / "model-card.md").text      # the front matter is YAML data, not Markdown
    for raw in (SCRIPT, "<b>bold</b>", "<data>", IMG[:4]):
        assert raw not in text
    assert "&lt;script>alert(1)&lt;/script>" in text
    assert "\\[link\\](http://x)" in text          # no link from data


def test_markdown_renders_as_text_in_python_markdown(tmp_path):
    markdown = pytest.importorskip("markdown")
    out, _, _ = _audit_dir(tmp_path)
    from huggingface_hub import ModelCard

    # the Hub renders the body; the front matter is metadata, shown by its own widgets
    page = markdown.markdown(ModelCard.load(out / "model-card.md").text, extensions=["tables"])
    scan = _Scan()
    scan.feed(page)
    assert scan.tags.get("script", 0) == 0 and scan.tags.get("img", 0) == 0 and scan.tags.get("b", 0) == 0
    # the only links are the card's own, to the report beside it (relative); none comes from data
    assert [v for t, n, v in scan.attrs if t == "a"] == ["report.html", "report.json"] and not scan.event_attrs
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


# --- Hugging Face front matter -----------------------------------------------------------------------


def test_front_matter_is_read_by_huggingface_hub(tmp_path):
    from huggingface_hub import ModelCard, metadata_load

    out, report, block = _audit_dir(tmp_path)
    meta = metadata_load(out / "model-card.md")
    assert meta["tags"] and "creepscan" in meta["tags"] and "model-index" in meta
    assert "license" not in meta and "library_name" not in meta       # not known for this model: left out
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["type"] for r in results] == [p["id"] for p in report["probes"]]   # one per probe
    face = next(r for r in results if r["dataset"]["type"] == "face-identity")
    metrics = {m["type"]: m for m in face["metrics"]}
    axis = next(p for p in report["probes"] if p["id"] == "face-identity")["capability_axis"]
    assert metrics["skill"]["value"] == axis["best_skill"]
    assert [metrics["skill"]["args"]["ci95_lower"], metrics["skill"]["args"]["ci95_upper"]] == axis["ci95"]
    assert metrics["risk_level"]["value"] == "high"
    card = ModelCard.load(out / "model-card.md")
    assert card.data.model_name == "ViT-B-32 --weights w.safetensors" and len(card.data.eval_results) == 12
    body = card.text
    assert body.lstrip().startswith("# ") and "[report.html](report.html)" in body and "## Limitations" in body


def test_card_names_no_local_path_and_no_rule_identifier(tmp_path):
    report = _hostile_report()
    report["model"]["spec"] = "ViT-B-32 --weights /home/ana/runs/exp7/ckpt_1200.safetensors"
    report["model"]["base"] = {"spec": "hf:acme/base-vit", "fingerprint": "sha256:" + "c" * 64}
    report["model"]["library"] = "peft"
    report["model"]["license"] = "apache-2.0"
    report["timings"]["date"] = "2026-03-04T05:06:07Z"
    block = evaluate_spec(_spec(), report)
    write_card(report, block, tmp_path)
    text = (tmp_path / "model-card.md").read_text(encoding="utf-8")
    assert "/home/ana" not in text and "ckpt_1200.safetensors" in text
    assert "2026-03-04" in text
    from huggingface_hub import metadata_load

    meta = metadata_load(tmp_path / "model-card.md")
    assert (meta["license"], meta["library_name"], meta["base_model"]) == ("apache-2.0", "peft", "acme/base-vit")
    body = text.split("\n---\n", 1)[1]
    for ident in ("risk_rule", "samples_to_threshold", "skill_threshold", "verification_tar_critical",
                  "linear_probe", "few_shot", "(rule:"):
        assert ident not in body, ident
    bom = json.loads((tmp_path / "model-card.cdx.json").read_text(encoding="utf-8"))
    assert "/home/ana" not in json.dumps(bom)
    assert [c["name"] for c in bom["components"] if c["bom-ref"] == "base"] == ["hf:acme/base-vit"]


def test_skill_gain_is_the_one_the_verdict_cites(tmp_path):
    """The gain shown beside a level is the uplift test the level's reason names (the strongest
    significant one), not the linear probe's by default."""
    report = _hostile_report()
    face = next(p for p in report["probes"] if p["id"] == "face-identity")
    face["uplift"]["strongest"] = "mlp"
    block = evaluate_spec(_spec(), report)
    write_card(report, block, tmp_path)
    text = (tmp_path / "model-card.md").read_text(encoding="utf-8")
    mlp = next(t for t in face["uplift"]["tests"] if t["attack"] == "mlp")
    assert mlp["skill_gain"] != face["uplift"]["skill_gain"]
    assert f"Skill gained over the floor [95% CI]: {mlp['skill_gain']:+.2f}" in text
    assert f"{face['uplift']['skill_gain']:+.2f} [" not in text


# --- CycloneDX ---------------------------------------------------------------------------------------


def _strict(text: str):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)


def test_cyclonedx_bom_is_strictly_valid_1_6(tmp_path):
    out, report, block = _audit_dir(tmp_path)
    text = (out / "model-card.cdx.json").read_text(encoding="utf-8")
    assert _strict(text) is None
    bom = json.loads(text)
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"] == [{"alg": "SHA-256", "content": report["model"]["fingerprint"].split(":")[1]}]
    assert {c["name"] for c in bom["metadata"]["tools"]["components"]} == {"creepscan"}
    data = {c["bom-ref"]: c for c in bom["components"]}
    assert data["data-face-identity"]["hashes"][0]["content"] in report["probes"][0]["data"]["fingerprint"]
    metrics = model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    skill = next(m for m in metrics if m["slice"] == "face-identity" and m["type"] == "best adaptation skill")
    axis = report["probes"][0]["capability_axis"]
    assert skill["confidenceInterval"] == {"lowerBound": str(axis["ci95"][0]), "upperBound": str(axis["ci95"][1])}
    cons = model["modelCard"]["considerations"]
    # findings are named risks, with no invented mitigation; the limitations are said
    assert all(set(r) == {"name"} for r in cons["ethicalConsiderations"])
    assert any("face-identity" in r["name"] and "high" in r["name"] for r in cons["ethicalConsiderations"])
    assert cons["technicalLimitations"]
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["creepscan:spec:passed"] == "false"
    digest = hashlib.sha256((out / "report.json").read_bytes()).hexdigest()
    assert props["creepscan:report:sha256"] == "sha256:" + digest
    # the validator really checks: a property where the schema has none fails
    bad = copy.deepcopy(bom)
    bad["metadata"]["component"]["modelCard"]["considerations"]["properties"] = []
    assert _strict(json.dumps(bad)) is not None


def test_card_refuses_a_spec_block_that_breaks_the_schema(tmp_path):
    """The card reads the report with its spec block typed: a verdict off the three is refused, naming it."""
    report = _hostile_report()
    block = evaluate_spec(_spec(), report)
    block.clauses[0].verdict = "maybe"
    with pytest.raises(ValueError, match="spec/clauses/0/verdict"):
        write_card(report, block, tmp_path / "card")
    assert not (tmp_path / "card").exists()


def test_compare_card_describes_model_b_beside_a(tmp_path):
    from huggingface_hub import metadata_load

    report = json.loads((DATA / "sample_compare.json").read_text(encoding="utf-8"))
    block = compare_spec(_spec(), report)
    report["spec"] = to_json_dict(block)
    write_reports(report, tmp_path)
    paths = write_card(report, block, tmp_path)
    text = paths[0].read_text(encoding="utf-8")
    assert "Baseline (model A)" in text and report["model_b"]["fingerprint"] in text
    assert "finetuned-faces.safetensors" in text
    meta = metadata_load(paths[0])
    assert len(meta["model-index"][0]["results"]) == len(report["probes"])
    assert _strict(paths[1].read_text(encoding="utf-8")) is None


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
    from huggingface_hub import ModelCard

    body = markdown.markdown(ModelCard.load(out / "model-card.md").text, extensions=["tables"])
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
    assert dom.tags.get("h2", 0) == 5 and dom.tags.get("table", 0) == 3      # it rendered
    assert dom.tags.get("script", 0) == 1 and dom.tags.get("img", 0) == 0     # only the guard
    assert dom.event_attrs == []
    assert ("html", "data-ran", "1") not in dom.attrs                          # no script ran
    assert dom.title == "creepscan model card"                                # no handler ran
    assert SCRIPT in dom.text and html.unescape("&lt;b&gt;bold&lt;/b&gt; &amp;") in dom.text
    assert IMG in dom.text


def test_card_command_refuses_a_report_that_breaks_the_schema_in_one_line(tmp_path):
    out, report, block = _audit_dir(tmp_path)
    broken = json.loads((out / "report.json").read_text(encoding="utf-8"))
    broken["seed"] = "zero"                        # the card reads the typed report: seed must be an integer
    (out / "report.json").write_text(json.dumps(broken), encoding="utf-8")
    for name in CARD_FILES:
        (out / name).unlink()
    result = CliRunner().invoke(main, ["card", str(out)], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "schema at seed" in lines[0]
    assert not any((out / name).exists() for name in CARD_FILES)


def test_the_card_of_the_typed_report_is_the_card_of_its_dict():
    """The CLI hands the card the typed report it read once, with the verdicts evaluate_spec returned: the
    texts are those `creepscan card` makes from report.json's dict."""
    from creepscan.report import jsonio
    from creepscan.report.card import render_card
    from creepscan.result import load_report

    report = _hostile_report()
    typed = load_report(jsonio.to_jsonable(report))
    typed.spec = evaluate_spec(_spec(), typed)
    report["spec"] = to_json_dict(typed.spec)
    data = jsonio.dumps(jsonio.to_jsonable(report)).encode("utf-8")
    assert render_card(typed, typed.spec, data) == render_card(report, report["spec"], data)
    with pytest.raises(ValueError, match="CompareSpec"):
        render_card(load_report(json.loads((DATA / "sample_compare.json").read_text(encoding="utf-8"))),
                    typed.spec, data)
