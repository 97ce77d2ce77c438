"""``sweep``: many checkpoints (a training run, a model zoo, release candidates) through one pipeline
run, so every model sees the same images, splits and few-shot episodes. Per probe: each model's audit
block, and for each pair of consecutive checkpoints the paired test of ``compare`` (Holm across the
steps of a probe) and whether the level rose. Where the work runs is the engine's business
(``creepscan.engines``); the report is the same from every engine apart from ``timings``.

Checkpoint order: as given, or (``order="step"``) by training step, read from a models file's
``step`` column or from the first run of digits in the weights file's name (``ckpt_1200.pt`` -> 1200;
without weights, in the MODEL spec).
"""
from __future__ import annotations

import copy
import csv
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .attacks.stats import holm
from .constants import DEFAULT_RULES
from .errors import CreepscanError
from .options import Options
from .paired import compare_row
from .pipeline import model_block, run, run_date
from .result import (
    SCHEMA_VERSION,
    SweepProbe,
    SweepReport,
    SweepRise,
    SweepSettings,
    SweepStep,
    SweepSummary,
    Tool,
    to_json_dict,
)

__all__ = ["ModelEntry", "SweepInputError", "ORDERS", "step_from_name", "read_models_file", "model_entries",
           "order_entries", "run_sweep", "sweep_steps"]

ORDERS = ("given", "step")
_DIGITS = re.compile(r"\d+")


class SweepInputError(CreepscanError, ValueError):
    """Bad sweep input (models, weights, models file, order): one line for the user, exit 2."""


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint of a sweep: MODEL ``spec``, local ``weights`` (a path, or None) and its training
    ``step`` (None where unknown)."""

    spec: str
    weights: str | None = None
    step: int | None = None


def step_from_name(spec: str, weights: str | None = None) -> int | None:
    """The first run of digits in the weights file's stem (``ckpt_1200.safetensors`` -> 1200), or in
    ``spec`` when there are no weights; None when there is none."""
    m = _DIGITS.search(Path(weights).stem if weights else spec)
    return int(m.group()) if m else None


def read_models_file(path) -> list[ModelEntry]:
    """A CSV with a header: ``model`` (required), ``weights`` (optional; relative paths are relative to
    the CSV's folder) and ``step`` (optional; an integer). Blank rows are skipped. The step is taken
    from the name (``step_from_name``) where the column is missing or empty."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepInputError(f"--models-file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); "
                              "give a UTF-8 CSV with columns model,weights,step") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if "model" not in columns or set(columns) - {"model", "weights", "step"}:
        raise SweepInputError(f"--models-file {path}: header {','.join(columns) or '(none)'} must be "
                              "model[,weights][,step] (e.g. 'model,weights,step' then 'ViT-B-32,ckpt_1000.pt,1000')")
    entries = []
    for n, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        if not row.get("model"):
            raise SweepInputError(f"--models-file {path}, line {n}: the 'model' column is empty; give a MODEL spec")
        weights = row.get("weights") or None
        if weights and not Path(weights).is_absolute():
            weights = str(path.parent / weights)
        step = row.get("step") or None
        if step is not None:
            try:
                step = int(step)
            except ValueError:
                raise SweepInputError(f"--models-file {path}, line {n}: step {step!r} is not an integer; "
                                      "give the training step, or leave it empty") from None
        else:
            step = step_from_name(row["model"], weights)
        entries.append(ModelEntry(row["model"], weights, step))
    if not entries:
        raise SweepInputError(f"--models-file {path}: no models listed; add one row per checkpoint")
    return entries


def model_entries(models, weights=(), models_file=None) -> list[ModelEntry]:
    """The checkpoints named on the command line, then those of ``models_file``. ``weights`` pairs
    with ``models``: one MODEL and N weights files are N checkpoints of that architecture; N MODELs
    and N weights files pair in order; no weights, each MODEL stands alone."""
    models, weights = list(models), list(weights)
    if weights and len(models) not in (1, len(weights)):
        raise SweepInputError(f"{len(weights)} --weights for {len(models)} MODELs: give one MODEL (an architecture) "
                              "with any number of --weights, or one --weights per MODEL")
    if weights:
        specs = models * len(weights) if len(models) == 1 else models
        entries = [ModelEntry(s, w, step_from_name(s, w)) for s, w in zip(specs, weights)]
    else:
        entries = [ModelEntry(s, None, step_from_name(s)) for s in models]
    if models_file:
        entries += read_models_file(models_file)
    if len(entries) < 2:
        raise SweepInputError(f"a sweep needs two or more models (got {len(entries)}); give more MODELs, --weights "
                              "or --models-file, or run `creepscan audit` for one")
    return entries


def order_entries(entries: list[ModelEntry], order: str = "given") -> list[ModelEntry]:
    """``given``: as listed. ``step``: by training step (ties keep their listed order); every entry
    needs a step."""
    if order not in ORDERS:
        raise SweepInputError(f"--order {order!r}: choose one of {', '.join(ORDERS)}")
    if order == "given":
        return list(entries)
    missing = [e for e in entries if e.step is None]
    if missing:
        e = missing[0]
        raise SweepInputError(f"--order step: no step for {e.spec}{' ' + e.weights if e.weights else ''} (no digits in "
                              "its file name); give a 'step' column in --models-file, or use --order given")
    return sorted(entries, key=lambda e: e.step)


def sweep_steps(pr, seed: int, alpha: float) -> list[SweepStep]:
    """Consecutive checkpoints of one probe's result: model i+1 against model i with compare's paired
    test (``compare.compare_row``), Holm-adjusted across the steps of the probe."""
    rows = [(i, compare_row(pr, i, i + 1, seed)) for i in range(len(pr.models) - 1)]
    adjusted = holm([r.p_value for _, r in rows])
    steps = []
    for (i, r), p_adj in zip(rows, adjusted):
        steps.append(SweepStep(
            from_=i, to=i + 1, p_value=r.p_value, p_adjusted=p_adj, significant=bool(p_adj < alpha),
            delta=r.headline.change, headline=r.headline,
            level_from=r.level_a, level_to=r.level_b, level_rose=r.risk_rose,
            rose_significantly=bool(p_adj < alpha and r.headline.change > 0),
            metrics_delta=r.delta, tests=r.tests,
        ))
    return steps


def run_sweep(encoders: list, probes: list, options: Options, *, steps: list | None = None, order: str = "given",
              suite: str | None = None, alpha: float = 0.05, engine=None) -> dict:
    """The pipeline on every encoder (in checkpoint order), on ``engine`` (default: this process), one
    report dict ``kind: "sweep"``.

    ``steps``: each encoder's training step (or None), recorded beside it. Returns ``models`` (each
    ``model_block`` + ``order``, its position, + ``step``), ``probes`` (each with ``per_model``, the
    audit block of every model in order, and ``steps``, see ``sweep_steps``), ``not_run``, ``summary``
    and ``timings`` (the one machine-dependent block: seconds, the engine, and each model's cache use
    per probe)."""
    if len(encoders) < 2:
        raise SweepInputError(f"a sweep needs two or more models (got {len(encoders)})")
    steps = list(steps) if steps is not None else [None] * len(encoders)
    if len(steps) != len(encoders):
        raise SweepInputError(f"{len(steps)} steps for {len(encoders)} models: give one step (or None) per model")
    if not 0 < alpha < 1:
        raise SweepInputError(f"alpha {alpha} must lie strictly between 0 and 1 (e.g. 0.05)")
    t_start = time.perf_counter()
    results, not_run, state = run(encoders, probes, options, engine)
    probe_rows, per_probe_timings, rises = [], {}, []
    for pr in results:
        per_model, timings = [], []
        for m in pr.models:
            block = copy.copy(m.block)  # the sweep keeps each model's timings under its own top-level timings
            timings.append(block.timings)
            block.timings = None
            per_model.append(block)
        p = pr.probe
        st = sweep_steps(pr, options.seed, alpha)
        rises += [SweepRise(probe=p.id, from_=s.from_, to=s.to) for s in st if s.level_rose]
        probe_rows.append(SweepProbe(id=p.id, title=p.title, capability=p.capability, policy=p.policy,
                                     reference=p.reference, per_model=per_model, steps=st))
        per_probe_timings[p.id] = timings
    report = SweepReport(
        schema_version=SCHEMA_VERSION, kind="sweep", tool=Tool.this(), seed=options.seed,
        models=[{**model_block(enc), "order": i, "step": step} for i, (enc, step) in enumerate(zip(encoders, steps))],
        suite=suite,
        settings=SweepSettings(order=order, alpha=alpha, max_per_class=options.max_per_class,
                               correction="holm: within a probe over its metrics, then across the probe's steps",
                               skill_threshold_default=DEFAULT_RULES["skill_threshold"]),
        probes=probe_rows, not_run=not_run,
        summary=SweepSummary(rose=rises),
        # The one machine-dependent block (nothing else in the report depends on the machine or the engine).
        timings={"total_s": round(time.perf_counter() - t_start, 3), "date": run_date(),
                 "engine": state.engine.describe(),
                 "execution": [state.execution(enc) for enc in encoders], "probes": per_probe_timings},
    )
    return to_json_dict(report)
