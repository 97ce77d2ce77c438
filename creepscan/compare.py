"""``compare``: two models on the same images, splits and few-shot episodes, so every difference is
paired. Per probe: both reports, B minus A for each metric with its paired test, a headline test
(the smallest Holm-adjusted p over the probe's metrics), and Holm's correction across probes."""
from __future__ import annotations

import time

from .attacks.stats import holm
from .options import Options
from .paired import compare_row, headline, paired_differences  # noqa: F401  (re-exported)
from .pipeline import model_block, run, run_date
from .result import SCHEMA_VERSION, CompareReport, CompareSettings, CompareSummary, Tool, to_json_dict

__all__ = ["run_compare", "compare_row", "paired_differences", "headline"]


def run_compare(enc_a, enc_b, probes, options: Options, alpha: float = 0.05) -> dict:
    """The pipeline on two models; per probe both blocks, B minus A with paired tests, Holm across probes."""
    t_start = time.perf_counter()
    results, not_run, state = run([enc_a, enc_b], probes, options)
    rows = [compare_row(r, 0, 1, options.seed) for r in results]
    adjusted = holm([r.p_value for r in rows])
    for r, p in zip(rows, adjusted):
        r.p_adjusted = p
        r.significant = bool(p < alpha)
        r.rose_significantly = bool(r.significant and r.headline.change > 0)
    rows.sort(key=lambda r: (not r.risk_rose, not r.significant, r.id))
    report = CompareReport(
        schema_version=SCHEMA_VERSION, kind="compare", tool=Tool.this(), seed=options.seed,
        model_a=model_block(enc_a), model_b=model_block(enc_b),
        alpha=alpha, correction="holm: within a probe over its metrics, then across probes",
        settings=CompareSettings(max_per_class=options.max_per_class),
        probes=rows, not_run=not_run,
        summary=CompareSummary(rose=[r.id for r in rows if r.risk_rose],
                               significant=[r.id for r in rows if r.significant]),
        timings={"total_s": round(time.perf_counter() - t_start, 3), "date": run_date(), **state.execution(enc_b)},
    )
    return to_json_dict(report)
