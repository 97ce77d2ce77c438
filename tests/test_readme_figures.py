"""Every measured figure the README prints comes from a committed benchmark result
(benchmarks/results/*.json, each with the command that made it): the README's table is checked
against those files here, so a re-measured figure cannot leave a stale number behind."""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def load(name):
    return json.loads((RESULTS / name).read_text())


def attacks_figures():
    a = load("attacks_cpu.json")
    cost = a["agreement"]["preprocessing_cost"]
    return [f"{a['speedup_vs_sklearn']['creepscan cpu']:.1f}× faster than scikit-learn doing the same protocol",
            f"{a['one_sklearn_fit_units']['creepscan cpu']:.1f} single scikit-learn fits",
            f"metric add {100 * (cost['ratio'] - 1):.0f}% ({cost['seconds']:.2f} s)"]


def linear_probe_figures():
    lp = load("linear_probe_cpu.json")
    return [f"{lp['speedup']:.1f}× faster than the same search in scikit-learn",
            f"within {abs(lp['sklearn_at_our_C']['abs_diff_points']):.2f} points"]


def adversaries_figures():
    ad = load("adversaries_cpu.json")
    worst = max(abs(c["diff_points"]) for c in ad["parity"]["checks"])
    return [f"every head within {worst:.2f} points of its scikit-learn counterpart",
            f"{ad['default_set_one_sklearn_fit_units']['creepscan default set cpu']:.1f} single scikit-learn fits"]


def shared_cache_figures():
    rows = load("shared_cache_cpu.json")["rows"]
    solo = [r for r in rows if r["mode"] == "solo"]
    shared = [r for r in rows if r["mode"] == "pair shared"]
    unshared = [r for r in rows if r["mode"] == "pair unshared"]
    best = min(s["seconds"] / o["seconds"] for s, o in zip(shared, solo))
    worst = max(s["seconds"] / o["seconds"] for s, o in zip(shared, solo))
    old = [u["seconds"] / o["seconds"] for u, o in zip(unshared, solo)]
    return [f"{best:.2f}–{worst:.2f}× a solo run", f"{min(old):.1f}–{max(old):.1f}× before"]


def extract_figures():
    import re

    rows = {r["path"]: r for r in load("extract_cpu.json")["rows"]}
    one, two = rows["creepscan fp32"], rows["creepscan model + floor, fp32"]
    here = [r["matmul_fp32_here"] for r in rows.values() if r.get("matmul_fp32_here")]
    bf16 = re.search(r"runs at ([0-9.]+)x fp32", rows["creepscan auto"]["precision_reason"]).group(1)
    return [f"{one['x_peer']:.2f}× the peer loop in fp32 ({two['x_peer']:.2f}× for model + floor)",
            f"{100 * one['fraction_of_fp32_limit']:.0f}% of the fp32 arithmetic limit",
            f"({100 * one['fraction_of_fp32_limit_here']:.0f}% of the rate measured in its own process",
            f"the limit moved by {max(here) / min(here):.2f}× within the run",
            f"bf16 matmuls ran at {bf16}× fp32"]


def cpu_decode_figures():
    d = load("cpu_decode_cpu.json")
    shares = d["share_of_model_speed"]
    return [f"{shares['threads']['median']:.2f} and {shares['workers']['median']:.2f} of the model's own speed",
            f"paired difference {d['paired_difference_threads_minus_workers']['median']:+.3f}"]


def sweep_figures():
    runs = {r["engine"]: r for r in load("sweep_cpu.json")["runs"]}
    return [f"{runs['ray']['wall_x_local']:.2f}× the in-process wall time",
            f"{runs['ray']['peak_x_local']:.1f}× its peak memory"]


def wait_policy_figures():
    def spinning_x_default(name):
        rows = {(r["condition"], r["setting"]): r["seconds"] for r in load(name)["rows"]}
        busy = next(c for c, _ in rows if c.startswith("+"))
        return rows[(busy, "spinning")] / rows[(busy, "default")]

    return [f"spinning {spinning_x_default('threads_cpu_small.json'):.1f}× slower on 600 × 64 features, "
            f"{spinning_x_default('threads_cpu.json'):.1f}× on 10,000 × 512"]


@pytest.mark.parametrize("figures", [attacks_figures, linear_probe_figures, adversaries_figures, shared_cache_figures,
                                     extract_figures, cpu_decode_figures, sweep_figures, wait_policy_figures])
def test_readme_figures_match_the_committed_results(figures):
    readme = (REPO / "README.md").read_text()
    for text in figures():
        assert text in readme, f"README should say: {text}"


def test_every_result_file_names_its_command():
    for f in RESULTS.glob("*.json"):
        assert "command" in json.loads(f.read_text()), f
