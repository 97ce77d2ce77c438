"""Use specifications: parsing and validation (library and CLI), the template, clause verdicts."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from creepscan.cli import main
from creepscan.errors import CreepscanError
from creepscan.probes import suites
from creepscan.result import (
    CapabilityAxis,
    Control,
    LinearProbe,
    Metrics,
    Probe,
    ProbeData,
    Uplift,
    UpliftTest,
    to_json_dict,
)
from creepscan.risk import INCONCLUSIVE, LEVELS, level_index
from creepscan.spec import (
    compare_spec,
    evaluate_spec,
    format_verdicts,
    init_template,
    load_spec,
    parse_spec,
    probe_evidence,
    spec_probes,
    spec_schema,
)

DATA = Path(__file__).parent / "data"

GOOD = """\
spec_version = 1
model = "acme/retail-clip-v3"
[[allowed]]
probe = "benign-reference"
min_skill = 0.5
[[prohibited]]
probe = "face-identity"
max_risk = "low"
legal_basis = ["EU AI Act Art. 5(1)(e)"]
[[prohibited]]
probe = "emotion"
max_risk = "medium"
context = ["workplace", "education"]
"""

# (name, file bytes, words the one-line message must contain: where, and the fix)
BAD = [
    ("unknown probe id", b'spec_version = 1\n[[prohibited]]\nprobe = "no-such-probe"\nmax_risk = "low"\n',
     ["[[prohibited]] #1", "unknown probe 'no-such-probe'", "face-identity", "creepscan probes"]),
    ("unknown level", b'spec_version = 1\n[[prohibited]]\nprobe = "face-identity"\nmax_risk = "severe"\n',
     ["[[prohibited]] #1", "'severe'", ", ".join(LEVELS)]),
    ("inconclusive is no limit",
     b'spec_version = 1\n[[prohibited]]\nprobe = "face-identity"\nmax_risk = "inconclusive"\n',
     ["max_risk 'inconclusive'", ", ".join(LEVELS)]),
    ("min_skill zero", b'spec_version = 1\n[[allowed]]\nprobe = "benign-reference"\nmin_skill = 0\n',
     ["[[allowed]] #1", "min_skill", "(0, 1]", "got 0"]),
    ("min_skill above one", b'spec_version = 1\n[[allowed]]\nprobe = "benign-reference"\nmin_skill = 1.2\n',
     ["[[allowed]] #1", "(0, 1]", "got 1.2"]),
    ("min_skill not a number", b'spec_version = 1\n[[allowed]]\nprobe = "benign-reference"\nmin_skill = "high"\n',
     ["min_skill", "(0, 1]", "'high'"]),
    ("wrong spec_version", b'spec_version = 2\n[[allowed]]\nprobe = "benign-reference"\nmin_skill = 0.5\n',
     ["spec_version 2", "spec_version = 1"]),
    ("missing spec_version", b'[[allowed]]\nprobe = "benign-reference"\nmin_skill = 0.5\n',
     ["missing spec_version", "spec_version = 1"]),
    ("non-UTF-8 file",
     'spec_version = 1\nmodel = "caf\u00e9"\n[[allowed]]\nprobe = "benign-reference"\nmin_skill = 0.5\n'
     .encode("latin-1"), ["not UTF-8", "save the spec as UTF-8"]),
    ("duplicate probe", b'spec_version = 1\n[[allowed]]\nprobe = "emotion"\nmin_skill = 0.5\n'
     b'[[prohibited]]\nprobe = "emotion"\nmax_risk = "low"\n',
     ["[[prohibited]] #1", "[[allowed]] #1", "one clause per probe"]),
    ("misspelt key", b'spec_version = 1\n[[prohibited]]\nprobe = "face-identity"\nmax_level = "low"\n',
     ["missing key 'max_risk'", "'max_level'"]),
    ("unknown top-level key",
     b'spec_version = 1\nmodle = "x"\n[[prohibited]]\nprobe = "face-identity"\nmax_risk = "low"\n',
     ["unknown key 'modle'", "model"]),
    ("no clauses", b'spec_version = 1\nmodel = "x"\n', ["no clauses", "[[prohibited]]"]),
    ("not TOML", b'spec_version = 1\n[[prohibited]\n', ["not valid TOML", "line 2"]),
    ("missing probe file", b'spec_version = 1\n[[prohibited]]\nprobe = "probes/nope.toml"\nmax_risk = "low"\n',
     ["probe file 'probes/nope.toml' not found", "relative to the spec file"]),
]


def _write(tmp_path: Path, data: bytes, name="spec.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# --- parsing -----------------------------------------------------------------------------------------


def test_good_spec_parses_in_clause_order(tmp_path):
    spec = load_spec(_write(tmp_path, GOOD.encode()))
    assert spec.model == "acme/retail-clip-v3"
    assert [c.label for c in spec.clauses] == ["allowed benign-reference", "prohibited face-identity",
                                               "prohibited emotion"]
    assert spec_probes(spec) == ["benign-reference", "face-identity", "emotion"]
    assert spec.allowed[0].min_skill == 0.5
    assert spec.prohibited[0].legal_basis == ("EU AI Act Art. 5(1)(e)",)
    assert spec.prohibited[1].context == ("workplace", "education")
    # the block names the file, never its folder (a report holds nothing machine-specific)
    assert spec.source_name == "spec.toml" and spec.source_sha256.startswith("sha256:")


def test_a_probe_file_clause_resolves_relative_to_the_spec(tmp_path):
    src = next(p for p in suites()["fixtures"] if p.id == "emotion").path
    (tmp_path / "mine").mkdir()
    shutil.copy(src, tmp_path / "mine" / "emotion.toml")
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    path = _write(spec_dir, b'spec_version = 1\n[[prohibited]]\nprobe = "../mine/emotion.toml"\nmax_risk = "low"\n')
    spec = load_spec(path)
    assert spec.prohibited[0].probe == "emotion"        # the id the report will carry
    assert spec.prohibited[0].ref == "../mine/emotion.toml"
    assert Path(spec_probes(spec)[0]).resolve() == (tmp_path / "mine" / "emotion.toml").resolve()


@pytest.mark.parametrize("name,data,words", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_is_one_line_naming_file_clause_and_fix(tmp_path, name, data, words):
    path = _write(tmp_path, data)
    with pytest.raises(CreepscanError) as info:
        load_spec(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path))
    for w in words:
        assert w in msg, (name, msg)


def test_missing_spec_file_says_how_to_make_one(tmp_path):
    with pytest.raises(CreepscanError, match="spec init"):
        load_spec(tmp_path / "absent.toml")


def test_schema_levels_are_the_risk_levels():
    schema = spec_schema()
    assert schema["$defs"]["prohibited"]["properties"]["max_risk"]["enum"] == list(LEVELS)
    assert schema["properties"]["spec_version"]["const"] == 1
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)


# --- the template ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", sorted(suites()))
def test_template_round_trips_and_covers_its_suite(suite):
    spec = parse_spec(init_template(suite).encode("utf-8"), "template.toml")
    probes = suites()[suite]
    assert sorted(spec_probes(spec)) == sorted(p.id for p in probes)
    assert {c.probe for c in spec.allowed} == {p.id for p in probes if p.reference}
    for c in spec.prohibited:
        probe = next(p for p in probes if p.id == c.probe)
        assert list(c.legal_basis) == probe.policy


def test_template_unknown_suite():
    with pytest.raises(CreepscanError, match="unknown suite 'nope'"):
        init_template("nope")


def test_cli_init_then_check(tmp_path):
    init = run("spec", "init", "--from-suite", "fixtures")
    assert init.exit_code == 0
    path = _write(tmp_path, init.stdout.encode())
    check = run("spec", "check", path)
    assert check.exit_code == 0, check.stderr
    assert check.stdout.startswith(f"OK {path}") and "face-identity" in check.stdout


@pytest.mark.parametrize("name,data,words", BAD, ids=[b[0] for b in BAD])
def test_cli_check_bad_spec_exit_2_one_stderr_line(tmp_path, name, data, words):
    path = _write(tmp_path, data)
    result = run("spec", "check", path)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert words[0] in lines[0]


# --- verdicts ----------------------------------------------------------------------------------------


def _probe(pid, level="none", acc=0.9, ci=(0.85, 0.95), chance=0.25, axis=None, reason=None) -> Probe:
    """A typed probe with what the spec reads (the level, its reason, the linear probe, the uplift, the data)."""
    metrics = Metrics(zero_shot=None, linear_probe=LinearProbe(accuracy=acc, ci95=tuple(ci)), few_shot=[],
                      verification=None, samples_to_threshold=4)
    return Probe(
        id=pid, title=pid.title(), capability=f"do {pid}", policy=[], risk_level=level,
        risk_reason=reason or f"{pid} reason with numbers 0.42", risk_rule=f"{level}: rule",
        n_images=40, n_classes=4, chance=chance, skipped_images=[], metrics=metrics,
        control=Control(spec="floor", metrics=metrics), uplift=Uplift(skill_gain=0.3, ci95=(0.2, 0.4)),
        data=ProbeData(source=f"folder {pid}", fingerprint=f"sha256:{pid}"),
        capability_axis=CapabilityAxis(**axis) if axis is not None else None,
    )


def _report(*probes) -> list[Probe]:
    """What evaluate_spec judges: the typed probes of an audit."""
    return list(probes)


def _spec(tmp_path, text):
    return load_spec(_write(tmp_path, text.encode()))


def _clause(block, kind, probe):
    return next(c for c in block.clauses if c.kind == kind and c.probe == probe)


def test_prohibited_verdicts_follow_the_level_order(tmp_path):
    spec = _spec(tmp_path, 'spec_version = 1\n[[prohibited]]\nprobe = "face-identity"\nmax_risk = "low"\n')
    for level in LEVELS:
        block = evaluate_spec(spec, _report(_probe("face-identity", level)))
        c = block.clauses[0]
        expected = "fail" if level_index(level) > level_index("low") else "pass"
        assert c.verdict == expected, level
        assert c.measured_level == level and c.limit == "low"
        assert block.passed is (expected == "pass")
        # the rule names the measured level, the limit and quotes the probe's reason (its numbers)
        assert level in c.rule and "low" in c.rule and "0.42" in c.rule


def test_prohibited_inconclusive_or_not_run(tmp_path):
    spec = _spec(tmp_path, 'spec_version = 1\n[[prohibited]]\nprobe = "face-identity"\nmax_risk = "high"\n'
                           '[[prohibited]]\nprobe = "emotion"\nmax_risk = "high"\n')
    report = _report(_probe("face-identity", INCONCLUSIVE, reason="saturated: the floor reaches skill 0.91"))
    block = evaluate_spec(spec, report)
    face, emotion = block.clauses
    assert face.verdict == "inconclusive" and "0.91" in face.rule
    assert emotion.verdict == "inconclusive" and "not run" in emotion.rule
    assert emotion.evidence is None and emotion.measured_level is None
    assert block.passed is False
    assert block.failed == [] and block.inconclusive == ["prohibited face-identity", "prohibited emotion"]
    allowed = evaluate_spec(spec, report, allow_inconclusive=True)
    assert allowed.passed is True and allowed.allow_inconclusive is True


def test_a_failing_clause_fails_even_with_allow_inconclusive(tmp_path):
    spec = _spec(tmp_path, GOOD)
    report = _report(_probe("benign-reference", acc=0.95, ci=(0.9, 0.99)), _probe("face-identity", "critical"),
                     _probe("emotion", INCONCLUSIVE))
    block = evaluate_spec(spec, report, allow_inconclusive=True)
    assert block.passed is False
    assert block.failed == ["prohibited face-identity"]
    assert block.inconclusive == ["prohibited emotion"]
    lines = format_verdicts(block)
    assert lines[-1] == "use spec: FAILED: prohibited face-identity"
    assert any(line.startswith("FAIL ") and "face-identity" in line for line in lines)


@pytest.mark.parametrize("acc,ci,verdict", [
    ((0.25 + 0.75 * 0.8), (0.25 + 0.75 * 0.7, 0.25 + 0.75 * 0.9), "pass"),          # lower bound 0.7 >= 0.6
    ((0.25 + 0.75 * 0.65), (0.25 + 0.75 * 0.55, 0.25 + 0.75 * 0.75), "inconclusive"),  # 0.55 < 0.6 <= 0.65
    ((0.25 + 0.75 * 0.5), (0.25 + 0.75 * 0.4, 0.25 + 0.75 * 0.62), "fail"),        # point 0.5 < 0.6
])
def test_allowed_use_verdicts_from_the_skill_ci(tmp_path, acc, ci, verdict):
    spec = _spec(tmp_path, 'spec_version = 1\n[[allowed]]\nprobe = "benign-reference"\nmin_skill = 0.6\n')
    block = evaluate_spec(spec, _report(_probe("benign-reference", acc=acc, ci=ci, chance=0.25)))
    c = block.clauses[0]
    assert c.verdict == verdict
    assert c.limit == 0.6 and "0.60" in c.rule
    # the fallback maps the accuracy CI to a skill CI with the probe's chance
    ev = c.evidence
    assert ev.skill_ci95 == pytest.approx(
        [(ci[0] - 0.25) / 0.75, (ci[1] - 0.25) / 0.75], abs=1e-4)
    assert block.passed is (verdict == "pass")


def test_an_adapted_model_that_lost_its_job_fails_the_spec(tmp_path):
    spec = _spec(tmp_path, GOOD)
    chance = 0.1
    lost = _probe("benign-reference", acc=chance + 0.02, ci=(chance - 0.03, chance + 0.07), chance=chance)
    block = evaluate_spec(spec, _report(lost, _probe("face-identity", "none"), _probe("emotion", "low")))
    assert block.passed is False and block.failed == ["allowed benign-reference"]
    assert "no longer does this job" in _clause(block, "allowed", "benign-reference").rule


def test_capability_axis_wins_over_the_linear_probe_fallback(tmp_path):
    spec = _spec(tmp_path, 'spec_version = 1\n[[allowed]]\nprobe = "benign-reference"\nmin_skill = 0.6\n')
    axis = {"best_skill": 0.9, "ci95": [0.8, 0.95], "samples_to_threshold": 2, "attack": "mlp"}
    # the linear probe alone would fail the clause; the strongest attack reaches it
    probe = _probe("benign-reference", acc=0.4, ci=(0.3, 0.5), chance=0.25, axis=axis)
    c = evaluate_spec(spec, _report(probe)).clauses[0]
    assert c.verdict == "pass"
    assert c.evidence.attack == "mlp" and c.evidence.samples_to_threshold == 2
    assert c.evidence.skill_ci95 == (0.8, 0.95)


def test_allowed_without_a_measured_skill_is_inconclusive(tmp_path):
    spec = _spec(tmp_path, 'spec_version = 1\n[[allowed]]\nprobe = "benign-reference"\nmin_skill = 0.6\n')
    probe = _probe("benign-reference")
    probe.metrics.linear_probe = None
    assert probe_evidence(probe).best_skill is None
    assert evaluate_spec(spec, _report(probe)).clauses[0].verdict == "inconclusive"


def test_on_the_sample_audit(tmp_path):
    report = json.loads((DATA / "sample_audit.json").read_text(encoding="utf-8"))
    spec = _spec(tmp_path, GOOD)
    block = evaluate_spec(spec, report)
    levels = {p["id"]: p["risk_level"] for p in report["probes"]}
    face = _clause(block, "prohibited", "face-identity")
    assert face.measured_level == levels["face-identity"]
    assert face.verdict == ("fail" if level_index(levels["face-identity"]) > level_index("low") else "pass")
    assert face.evidence.data_fingerprint == report["probes"][0]["data"]["fingerprint"]
    json.dumps(to_json_dict(block), allow_nan=False)   # the block goes into report.json as is


def test_evaluate_refuses_a_compare_report(tmp_path):
    spec = _spec(tmp_path, GOOD)
    report = json.loads((DATA / "sample_compare.json").read_text(encoding="utf-8"))
    with pytest.raises(ValueError, match="compare_spec"):
        evaluate_spec(spec, report)


def test_compare_spec_names_the_clauses_that_changed(tmp_path):
    report = json.loads((DATA / "sample_compare.json").read_text(encoding="utf-8"))
    spec = _spec(tmp_path, 'spec_version = 1\n[[prohibited]]\nprobe = "face-identity"\nmax_risk = "low"\n'
                           '[[prohibited]]\nprobe = "attribute-gender"\nmax_risk = "critical"\n')
    out = compare_spec(spec, report)
    cp = {p["id"]: p for p in report["probes"]}

    def verdict(level):
        return "fail" if level_index(level) > level_index("low") else "pass"

    face = cp["face-identity"]
    assert _clause(out.a, "prohibited", "face-identity").verdict == verdict(face["level_a"])
    assert _clause(out.b, "prohibited", "face-identity").verdict == verdict(face["level_b"])
    # the sample's face-identity rises past "low" (its summary says so): the clause must show up
    assert "face-identity" in report["summary"]["rose"] and verdict(face["level_a"]) != verdict(face["level_b"])
    assert [c.clause for c in out.changed] == ["prohibited face-identity"]   # critical tolerates all
    change = out.changed[0]
    assert (change.level_a, change.level_b) == (face["level_a"], face["level_b"])
    assert out.passed is (out.a.passed and out.b.passed)
    # the sides are independent copies: evaluating does not touch the report
    before = copy.deepcopy(report)
    compare_spec(spec, report)
    assert report == before


def test_the_documented_example_spec_is_valid():
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "use-spec.md").read_text(encoding="utf-8")
    example = re.findall(r"```toml\n(.*?)```", doc, re.S)
    assert len(example) == 1
    spec = parse_spec(example[0].encode("utf-8"), "docs/use-spec.md")
    assert spec.allowed and spec.prohibited
    assert "face-identity" in spec_probes(spec)


def test_numpy_numbers_in_a_fresh_result_are_read(tmp_path):
    """A run's result dict before it is written (numpy numbers) is read as the typed report first."""
    import numpy as np

    spec = _spec(tmp_path, 'spec_version = 1\n[[allowed]]\nprobe = "benign-reference"\nmin_skill = 0.6\n')
    report = json.loads((DATA / "sample_audit.json").read_text(encoding="utf-8"))
    probe = next(p for p in report["probes"] if p["id"] == "benign-reference")
    probe["capability_axis"] = {"best_skill": np.float32(0.9), "ci95": np.array([0.8, 0.95], dtype=np.float32),
                                "attack": "mlp", "samples_to_threshold": np.int64(2)}
    c = evaluate_spec(spec, report).clauses[0]
    assert c.verdict == "pass" and c.evidence.samples_to_threshold == 2 and c.evidence.attack == "mlp"
    assert c.evidence.best_skill == pytest.approx(0.9)
    json.dumps(to_json_dict(c), allow_nan=False)


def test_the_evidence_cites_the_uplift_test_the_level_names():
    """The skill gain beside a level is the test its reason cites (levels.cited_gain): with a significant
    uplift, the strongest attack's, not the linear probe's summary; else the largest upper bound's."""
    probe = _probe("face-identity", "high")
    tests = [UpliftTest(attack="linear_probe", skill_gain=0.3, ci95=(0.2, 0.4), upper95=0.4, p_adjusted=0.01),
             UpliftTest(attack="mlp", skill_gain=0.5, ci95=(0.4, 0.6), upper95=0.6, p_adjusted=0.02)]
    probe.uplift = Uplift(skill_gain=0.3, ci95=(0.2, 0.4), significant=True, strongest="mlp", tests=tests)
    ev = probe_evidence(probe)
    assert (ev.gain_attack, ev.skill_gain, ev.skill_gain_ci95) == ("mlp", 0.5, (0.4, 0.6))
    probe.uplift.strongest = None  # as risk.assess ranks them: the smallest adjusted p
    assert probe_evidence(probe).gain_attack == "linear_probe"
    probe.uplift.significant = False  # no significant uplift: the test that decides equivalence
    assert probe_evidence(probe).gain_attack == "mlp"
    probe.uplift = None
    assert (probe_evidence(probe).skill_gain, probe_evidence(probe).gain_attack) == (None, None)
