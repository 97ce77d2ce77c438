"""Pipeline and CLI paths that nothing else reaches: the fine-tuning adversary through an audit, the
near-duplicate fallback, compare's --fail-on-significant gate, and running out of memory."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY, make_folder

from creepscan.cli import main
from creepscan.features import Features
from creepscan.options import Options
from creepscan.pipeline import LabelledSet, make_probe_splits


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


# --- --adversary finetune, through the whole audit -------------------------------------------

def test_adversary_finetune_runs_through_the_audit_for_model_and_floor(tmp_path, tiny_weights):
    data = make_folder(tmp_path / "people", n_classes=4, per_class=10, seed=2)
    code, _, err = cli("audit", TINY, "--weights", tiny_weights["safetensors"], "--probe", "face-identity",
                       "--data", f"face-identity={data}", "--adversary", "finetune", "--out", tmp_path / "r",
                       "--cache-dir", tmp_path / "c", "--quiet", "--allow-inconclusive")
    assert code in (0, 1), err
    (probe,) = json.loads((tmp_path / "r" / "report.json").read_text())["probes"]
    model, floor = probe["metrics"]["finetune"], probe["control"]["metrics"]["finetune"]
    for ft in (model, floor):
        assert ft["points"], ft
        for p in ft["points"]:
            assert 0.0 <= p["ci95"][0] <= p["accuracy"] <= p["ci95"][1] <= 1.0 and p["steps"] > 0
    # same budgets for both, and each budget is a paired uplift test the risk rules weigh
    assert [(p["k"], p["steps"]) for p in model["points"]] == [(p["k"], p["steps"]) for p in floor["points"]]
    tested = {t["attack"] for t in probe["uplift"]["tests"]}
    assert {f"finetune k={p['k']} ({p['steps']} steps)" for p in model["points"]} <= tested


# --- near-duplicates: a floor that cannot tell images apart ----------------------------------

def _probe_inputs(n_classes=4, per_class=15, hashes=None):
    n = n_classes * per_class
    y = np.repeat(np.arange(n_classes), per_class)
    ls = LabelledSet(y=y, rows={}, kept=list(range(n)),
                     classes=[f"c{c}" for c in range(n_classes)], excluded=[], skipped=[])
    pd = SimpleNamespace(images=SimpleNamespace(groups=None), hashes=hashes or [f"h{i}" for i in range(n)],
                         probe=SimpleNamespace(attacks=("linear_probe", "verification"), reference=False))
    return ls, pd


def _blind_floor(n: int) -> Features:
    """A floor that sees two kinds of image: after centring, every image is at cosine 1 with half of
    the others (a random-weights tower on simple synthetic pictures comes close)."""
    X = np.where((np.arange(n) % 2 == 0)[:, None], 1.0, -1.0) * np.ones((n, 16))
    return Features(X=X.astype(np.float32), keep=np.arange(n), skipped=[])


def _test_rows(splits) -> list[int]:
    return sorted(int(i) for s in splits for i in s.test)


def test_a_floor_that_calls_everything_a_near_duplicate_does_not_empty_the_test_set():
    ls, pd = _probe_inputs()
    n = len(ls.y)
    rng = np.random.default_rng(0)
    informative = Features(X=rng.normal(size=(n, 16)).astype(np.float32), keep=np.arange(n), skipped=[])
    splits_ok, block_ok, _ = make_probe_splits(ls, pd, informative.X, Options(seed=0))
    assert block_ok["near_duplicates_dropped"] == 0 and "exact duplicates" not in (block_ok.get("warning") or "")

    splits, block, _ = make_probe_splits(ls, pd, _blind_floor(n).X, Options(seed=0))
    # the fallback keeps every test image (no file is repeated) and the report says why
    assert _test_rows(splits) == _test_rows(splits_ok) and len(_test_rows(splits)) > 0
    assert block["near_duplicates_dropped"] == 0 and "only exact duplicates" in block["warning"]


def test_the_fallback_still_drops_exact_duplicates():
    n_classes, per_class = 4, 15
    # every image of class 0 is the same file: its test images repeat training images byte for byte
    hashes = ["same" if i < per_class else f"h{i}" for i in range(n_classes * per_class)]
    ls, pd = _probe_inputs(n_classes, per_class, hashes)
    n = len(ls.y)
    splits, block, _ = make_probe_splits(ls, pd, _blind_floor(n).X, Options(seed=0))
    assert "only exact duplicates" in block["warning"] and block["near_duplicates_dropped"] > 0
    for s in splits:
        fitted = {hashes[i] for i in np.concatenate([s.train, s.val])}
        assert not any(hashes[i] in fitted for i in s.test)
    assert any(ls.y[i] != 0 for i in _test_rows(splits))  # other classes keep their test images


# --- compare --fail-on-significant ------------------------------------------------------------

def _compare_result(risk_rose: bool, rose_significantly: bool) -> dict:
    from pathlib import Path

    result = json.loads((Path(__file__).parent / "data" / "sample_compare.json").read_text())
    for p in result["probes"]:
        p["risk_rose"], p["rose_significantly"] = risk_rose, False
    result["probes"][0]["rose_significantly"] = rose_significantly
    return result


@pytest.mark.parametrize("rose_significantly, flags, code", [
    (True, ["--fail-on-increase"], 0),                           # a gain without a level change passes...
    (True, ["--fail-on-increase", "--fail-on-significant"], 1),  # ...unless significant gains fail too
    (False, ["--fail-on-increase", "--fail-on-significant"], 0),
])
def test_fail_on_significant_gates_a_significant_rise_without_a_level_change(tmp_path, monkeypatch,
                                                                             rose_significantly, flags, code):
    import creepscan.compare

    result = _compare_result(risk_rose=False, rose_significantly=rose_significantly)
    monkeypatch.setattr(creepscan.compare, "run_compare", lambda *a, **k: result)
    got, _, err = cli("compare", "py:conftest_plugins:blind", "py:conftest_plugins:colour", "--probe",
                      "face-identity", "--data", f"face-identity={tmp_path}", "--out", tmp_path / "r",
                      "--cache-dir", tmp_path / "c", "--quiet", *flags)
    assert got == code, err
    if code:
        assert err.strip().splitlines() == [f"gate: significant rise on {result['probes'][0]['id']}"]


# --- out of memory ----------------------------------------------------------------------------

def test_out_of_memory_is_one_line_and_exit_2(tmp_path, monkeypatch):
    import creepscan.audit

    def exhausted(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(creepscan.audit, "run_audit", exhausted)
    data = make_folder(tmp_path / "imgs", n_classes=2, per_class=6)
    code, _, err = cli("audit", "py:conftest_plugins:colour", "--probe", "face-identity", "--data",
                       f"face-identity={data}", "--out", tmp_path / "r", "--cache-dir", tmp_path / "c", "--quiet")
    assert code == 2
    assert err.strip().splitlines() == ["error: out of memory; lower --batch-size or --max-per-class"]
