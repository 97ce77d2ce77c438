"""report.json's JSON Schema: generated from creepscan/result.py, shipped in the package, printed by
`creepscan schema`, and met by every report (the suite validates each one it writes: conftest.py)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from creepscan.cli import main
from creepscan.report import write_reports
from creepscan.result import SCHEMA_FILE, SCHEMA_VERSION, report_schema, schema_text, shipped_schema, validate_report

DATA = Path(__file__).parent / "data"
SHIPPED = Path(__file__).resolve().parents[1] / "creepscan" / "schemas" / SCHEMA_FILE


def test_shipped_schema_is_the_generated_one():
    """Regenerate with: python -c "from creepscan.result import *; open('creepscan/schemas/' + SCHEMA_FILE,
    'w').write(schema_text())" """
    assert SHIPPED.read_text(encoding="utf-8") == schema_text(report_schema())
    assert SCHEMA_FILE == f"report-v{SCHEMA_VERSION}.schema.json"
    jsonschema.Draft202012Validator.check_schema(shipped_schema())


def test_schema_command_prints_it():
    result = CliRunner().invoke(main, ["schema"], catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == shipped_schema()


@pytest.mark.parametrize("name", ["sample_audit.json", "sample_compare.json", "sample_sweep.json"])
def test_samples_validate(name):
    validate_report(json.loads((DATA / name).read_text(encoding="utf-8")))


def test_contract_fields_are_required_and_checked(tmp_path):
    report = json.loads((DATA / "sample_audit.json").read_text(encoding="utf-8"))
    for path, bad in [(("model", "fingerprint"), None), (("probes", 0, "risk_level"), "severe"),
                      (("probes", 0, "metrics", "linear_probe", "ci95"), [0.1]), (("seed",), "0")]:
        broken = copy.deepcopy(report)
        *head, last = path
        node = broken
        for key in head:
            node = node[key]
        if bad is None:
            del node[last]
        else:
            node[last] = bad
        where = "/".join(map(str, path if bad is not None else head)) or "top level"
        with pytest.raises(ValueError, match=f"at {where}"):
            validate_report(broken)
        with pytest.raises(ValueError):  # the suite's hook refuses to write it
            write_reports(broken, tmp_path)
    # more properties are fine: the report may grow
    grown = copy.deepcopy(report)
    grown["probes"][0]["a_later_block"] = {"base": "x"}
    grown["probes"][0]["metrics"]["linear_probe"]["below_chance"] = True
    validate_report(grown)


def test_load_report_gives_the_typed_report_readers_read():
    from creepscan.result import AuditReport, CompareReport, SweepReport, load_report

    audit = load_report(json.loads((DATA / "sample_audit.json").read_text(encoding="utf-8")))
    assert isinstance(audit, AuditReport) and audit.probes[0].risk_level in {"none", "low", "medium", "high",
                                                                               "critical", "inconclusive"}
    assert isinstance(audit.probes[0].metrics.linear_probe.accuracy, float)
    assert isinstance(load_report(json.loads((DATA / "sample_compare.json").read_text())), CompareReport)
    sweep = load_report(json.loads((DATA / "sample_sweep.json").read_text()))
    assert isinstance(sweep, SweepReport) and all(isinstance(s.from_, int) for p in sweep.probes for s in p.steps)
    broken = json.loads((DATA / "sample_audit.json").read_text(encoding="utf-8"))
    broken["probes"][0]["risk_level"] = "severe"
    with pytest.raises(ValueError, match="at probes/0/risk_level"):
        load_report(broken)


def test_to_json_dict_writes_fields_in_file_order_and_leaves_out_an_absent_spec():
    from creepscan.result import AuditReport, SweepStep, Tool, to_json_dict

    probes = [{"id": "p", "ci95": (0.1, 0.2)}]
    report = AuditReport(schema_version="1", kind="audit", tool=Tool(name="creepscan", version="9"), seed=3,
                         model={"spec": "m", "fingerprint": "sha256:0"}, suite=None, probes=probes, not_run=[])
    out = to_json_dict(report)
    assert list(out) == ["schema_version", "kind", "tool", "seed", "model", "suite", "settings", "probes",
                         "not_run", "timings"]  # suite null is written; spec (never set here) is left out
    assert out["tool"] == {"name": "creepscan", "version": "9"} and out["suite"] is None
    assert out["probes"] is probes  # the pipeline's blocks pass through untouched (tuples stay for jsonio)
    report.spec = {"passed": True}
    assert list(to_json_dict(report))[-1] == "spec"
    assert to_json_dict(SweepStep(from_=0, to=1, p_value=None))["from"] == 0
