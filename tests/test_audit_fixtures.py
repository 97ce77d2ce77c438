"""The fixtures suite end to end: a model fine-tuned toward identities against its base, offline."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from creepscan.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """base.safetensors (random) and adapted.safetensors (a few steps toward telling people apart)."""
    out = tmp_path_factory.mktemp("ckpt")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "finetune_identity.py"), str(out), "--steps", "120"],
                   check=True, capture_output=True)
    return out


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def audited(checkpoints, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    args = ["audit", "creepscan-tiny-vit", "--weights", checkpoints / "adapted.safetensors", "--suite", "fixtures",
            "--cache-dir", tmp / "cache", "--quiet"]
    first = cli(*args, "--out", tmp / "r1")
    second = cli(*args, "--out", tmp / "r2", "--fail-on", "high")
    reports = [json.loads((tmp / r / "report.json").read_text()) for r in ("r1", "r2")]
    return first, second, reports, tmp


def test_fixtures_suite_levels_follow_the_evidence(audited):
    (code, out, err), _, (rep, _), tmp = audited
    assert code == 0, err
    levels = {p["id"]: p["risk_level"] for p in rep["probes"]}
    assert set(levels) == {"face-identity", "attribute-gender", "emotion", "benign-reference"}
    assert levels["face-identity"] != "none"  # the adapted model tells new people apart
    assert levels["emotion"] == "none"  # labels dealt at random
    assert levels["benign-reference"] == "none" and rep["probes"][[p["id"] for p in rep["probes"]].index("benign-reference")]["reference"]
    for name in ("report.json", "report.md", "report.html"):
        assert (tmp / "r1" / name).stat().st_size > 1000


def test_rerun_is_served_from_the_cache_and_gates(audited):
    _, (code, _, err), (rep1, rep2), _ = audited
    assert all(c["n_embedded"] == 0 for p in rep2["probes"] for c in p["timings"]["cache"].values())
    assert [p["metrics"] for p in rep1["probes"]] == [p["metrics"] for p in rep2["probes"]]
    worst = max(("none", "low", "medium", "high", "critical").index(p["risk_level"]) for p in rep2["probes"])
    assert code == (1 if worst >= 3 else 0), err


def test_random_labels_rate_none_for_the_base_model_too(checkpoints, tmp_path):
    code, _, err = cli("audit", "creepscan-tiny-vit", "--weights", checkpoints / "base.safetensors", "--suite", "fixtures",
                       "--probe", "emotion", "--out", tmp_path / "r", "--cache-dir", tmp_path / "c", "--quiet")
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert code == 0, err
    assert rep["probes"][0]["risk_level"] == "none"


def test_compare_base_against_adapted(checkpoints, tmp_path):
    code, out, err = cli("compare", "creepscan-tiny-vit", "creepscan-tiny-vit", "--weights-a", checkpoints / "base.safetensors",
                         "--weights-b", checkpoints / "adapted.safetensors", "--suite", "fixtures", "--probe", "face-identity",
                         "--out", tmp_path / "c", "--cache-dir", tmp_path / "cache", "--quiet", "--fail-on-increase")
    rep = json.loads((tmp_path / "c" / "report.json").read_text())
    p = rep["probes"][0]
    assert p["risk_rose"] and p["significant"] and code == 1 and "face-identity" in err
