"""``audit``: the pipeline on one model; the report is its per-probe blocks (fields: docs/report-format.md)."""
from __future__ import annotations

import time

from .constants import DEFAULT_RULES
from .options import Options
from .pipeline import model_block, run, run_date
from .probes import Probe
from .result import SCHEMA_VERSION, AuditReport, AuditSettings, Tool, to_json_dict

__all__ = ["run_audit"]


def run_audit(encoder, probes: list[Probe], options: Options, suite: str | None = None) -> dict:
    """Audit one encoder on the given probes; returns the report dict (fields: docs/report-format.md)."""
    t_start = time.perf_counter()
    results, not_run, state = run([encoder], probes, options)
    report = AuditReport(
        schema_version=SCHEMA_VERSION, kind="audit", tool=Tool.this(), seed=options.seed,
        model=model_block(encoder), suite=suite,
        settings=AuditSettings(max_per_class=options.max_per_class,
                               skill_threshold_default=DEFAULT_RULES["skill_threshold"], alpha=DEFAULT_RULES["alpha"],
                               equivalence_margin_default=DEFAULT_RULES["equivalence_margin"]),
        probes=[r.models[0].block for r in results], not_run=not_run,
        # The one machine-dependent block (nothing else in the report depends on the machine).
        timings={"total_s": round(time.perf_counter() - t_start, 3), "date": run_date(), **state.execution(encoder)},
    )
    return to_json_dict(report)
