"""Same seed and data, same report: on one machine whatever its load and the cache's state; across
machines (other thread counts, bf16 arithmetic) the same levels with figures within the README's
tolerance (tests/test_cli.py::test_speed_options_are_recorded_and_change_no_decision)."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_folder
from threadpoolctl import threadpool_limits

from creepscan import cpu
from creepscan.attacks import evaluate
from creepscan.attacks.splits import make_splits
from creepscan.cli import main


def outside_timings(obj):
    """The report without its ``timings`` blocks (the only machine-dependent part)."""
    if isinstance(obj, dict):
        return {k: outside_timings(v) for k, v in obj.items() if k != "timings"}
    if isinstance(obj, list):
        return [outside_timings(v) for v in obj]
    return obj


def rep_cache_hits(out) -> int:
    return json.loads((out / "report.json").read_text())["probes"][0]["timings"]["cache"]["model"]["n_cache_hits"]


@pytest.fixture
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_same_machine_same_report_whatever_the_load_and_the_cache(tmp_path, monkeypatch, _keep_threads):
    """A busy machine with a fresh cache, then a quiet one with the warm cache: one report. The thread
    count followed the load, and a floor's few-shot accuracy moved (0.6209 -> 0.6218) with it."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "usable_cpus", lambda: [0, 1])
    data = make_folder(tmp_path / "d", n_classes=3, per_class=10, seed=4)
    probe = tmp_path / "p.toml"  # the two attacks whose arithmetic is threaded (BLAS, torch): quick
    probe.write_text('id = "p"\ntitle = "T"\ncapability = "c"\npolicy = ["x"]\n'
                     'attacks = ["linear_probe", "few_shot"]\n[source]\nkind = "lfw"\n')
    reports, threads = [], []
    for n, busy in enumerate((1.9, 0.0)):
        monkeypatch.setattr(cpu, "busy_cpus", lambda *a, busy=busy, **k: (busy, "test"))
        r = CliRunner().invoke(main, ["audit", "py:conftest_plugins:colour", "--probe", str(probe), "--data",
                                      f"p={data}", "--out", str(tmp_path / f"r{n}"), "--cache-dir",
                                      str(tmp_path / "cache"), "-q"], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        assert rep_cache_hits(tmp_path / f"r{n}") == (0 if n == 0 else 30)
        rep = json.loads((tmp_path / f"r{n}" / "report.json").read_text())
        reports.append(outside_timings(rep))
        threads.append(rep["timings"]["threads"])
    assert reports[1]["probes"][0]["metrics"] == reports[0]["probes"][0]["metrics"]
    assert reports[0] == reports[1]
    assert len(set(threads)) == 1 and threads[0].startswith("2 threads: one per usable CPU")


def test_the_attacks_give_identical_figures_on_1_or_2_threads(_keep_threads):
    """Another machine's thread count must not move an attack's figures (torch and BLAS threads)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    X = (rng.standard_normal((y.size, 8)) + 0.7 * rng.standard_normal((3, 8))[y]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    out = []
    for t in (1, 2):
        torch.set_num_threads(t)
        with threadpool_limits(t):
            m = evaluate(X, y, 3, make_splits(y, 0), seed=0, attacks=["linear_probe", "few_shot"])
        out.append(json.dumps(m.to_json(), sort_keys=True))
    assert out[0] == out[1]
