"""What report.json holds, as typed dataclasses; its JSON Schema is generated from them.

The dataclasses describe the report the pipeline writes (``audit.run_audit``, ``compare.run_compare``,
``sweep.run_sweep``, the attacks' ``to_json`` and ``risk.assess``), after ``report.jsonio`` has made
it JSON (NaN and infinities become null, so every measured number may be null). A field without a
default is required: those are the fields the report's published contract names. Fields with a
default are documented but optional (partial results, older reports), and every object admits
further properties, so a report may grow without breaking readers that validate it.

``load_report(obj)`` reads a report dict into these dataclasses (an ``AuditReport``, ``CompareReport`` or
``SweepReport`` by its ``kind``), for readers that read attributes instead of dict lookups (the CLI's gates,
the model card). ``to_json_dict(report)`` is the other direction, the one serialiser the writers use: the
three ``run_*`` functions fill the top level as these dataclasses, compare's and sweep's probe rows and a
sweep's steps too (the model blocks and each model's probe block are still the pipeline's dicts, passed
through as they are).

``report_schema()`` builds the schema with pydantic's ``TypeAdapter`` (which reads stdlib
dataclasses); ``creepscan schema`` prints it, and the package ships it as
``creepscan/schemas/report-v{SCHEMA_VERSION}.schema.json`` (a test keeps the two equal). The module
imports nothing heavy: the CLI prints the schema without torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Annotated, Any, Literal, Optional, Union

__all__ = ["SCHEMA_VERSION", "SCHEMA_FILE", "report_schema", "shipped_schema", "validate_report", "load_report",
           "to_json_dict", "Report"]

SCHEMA_VERSION = "1"
SCHEMA_FILE = f"report-v{SCHEMA_VERSION}.schema.json"

Level = Literal["none", "low", "medium", "high", "critical", "inconclusive"]
Num = Optional[float]             # a measured number; null where it was NaN or not measurable
CI = tuple[Optional[float], Optional[float]]  # [lower, upper] of a 95% interval

# Every object may carry more properties than described (the report grows; readers keep working).
_OPEN = {"extra": "allow", "use_attribute_docstrings": True}


def _open(cls):
    cls.__pydantic_config__ = dict(_OPEN)
    return dataclass(cls, kw_only=True)  # keyword-only: a subclass may add required fields


def _absent():
    """An optional field that report.json leaves out (rather than writing null) while it is None: blocks
    a later step adds, such as the use spec's verdicts."""
    return field(default=None, metadata={"omit_none": True})


# ---------------------------------------------------------------------------------------------------
# Shared blocks


@_open
class Tool:
    """The program that wrote the report."""

    name: Literal["creepscan"]
    version: str

    @classmethod
    def this(cls) -> "Tool":
        """This program, at its installed version."""
        from . import __version__

        return cls(name="creepscan", version=__version__)


@_open
class ModelInfo:
    """One model as loaded: the spec given on the command line and a stable identity of its weights."""

    spec: str
    """MODEL as given (alias, ARCH:TAG, ARCH --weights FILE, hf-hub:ORG/NAME, py:MODULE:CALLABLE, ...)."""
    fingerprint: str
    """sha256 of the weights (``sha256:<hex>``) or the plug-in's declared identity."""
    name: Optional[str] = None
    """A short display name (the architecture, or the plug-in's name)."""
    library: Optional[str] = None
    """What loaded the model: open_clip, transformers, peft, timm, or a plug-in."""
    base: Optional[Union[str, dict[str, Any]]] = None
    """For an adapter: its base model."""


@_open
class Skipped:
    """An image that could not be used."""

    path: str
    reason: str


@_open
class Accuracy:
    """Balanced accuracy (mean per-class recall) on held-out test images, with its 95% CI."""

    accuracy: Num
    ci95: CI
    skill: Num = None
    """(accuracy - chance) / (1 - chance): 0 = chance, 1 = perfect."""


@_open
class LinearProbe(Accuracy):
    """Logistic regression on the frozen embeddings; C chosen on validation images only."""

    C: Num = None
    val_accuracy: Num = None
    n_train: Optional[int] = None
    n_val: Optional[int] = None
    n_test: Optional[int] = None
    folds: Optional[int] = None


@_open
class FewShot(Accuracy):
    """k labelled images per class (support sets drawn from training images), averaged over episodes."""

    k: int
    episodes: Optional[int] = None
    winner: Optional[str] = None
    """Which few-shot classifier (prototype or logistic) the validation images chose."""


@_open
class Verification:
    """1:1 matching of raw embeddings by cosine similarity: true accept rate at each false accept rate."""

    tar_at_far: dict[str, Num]
    auc: Num
    tar_ci95: Optional[dict[str, Optional[CI]]] = None
    auc_ci95: Optional[CI] = None
    n_genuine: Optional[int] = None
    n_impostor: Optional[int] = None
    not_measurable: Optional[list[str]] = None
    roc: Optional[list[list[Num]]] = None
    """ROC points [FAR, TAR]."""


@_open
class Metrics:
    """Every attack's result on one encoder."""

    zero_shot: Optional[Accuracy]
    """Class names as text prompts, no labelled images; null without a text tower."""
    linear_probe: Optional[LinearProbe]
    few_shot: list[FewShot]
    verification: Optional[Verification]
    """Null for probes without identities."""
    samples_to_threshold: Optional[int]
    """Fewest labelled images per class at which an attack reaches the skill threshold; null: never."""
    few_shot_unavailable: Optional[list[dict[str, Any]]] = None
    heads: Optional[dict[str, Any]] = None
    """Other attacks (knn, prototype_cl2n, mlp, gd_budget) by id."""
    finetune: Optional[dict[str, Any]] = None
    """The fine-tuning adversary (--adversary finetune)."""
    open_set: Optional[dict[str, Any]] = None
    """1:N open-set identification (face probes)."""


@_open
class Control:
    """The floor: the same architecture without its training, scored on the same images."""

    spec: str
    metrics: Metrics
    fingerprint: Optional[str] = None
    name: Optional[str] = None


@_open
class UpliftTest:
    """One attack's paired test of model against floor (skill units; Holm-adjusted p)."""

    attack: str
    skill_gain: Num
    ci95: CI
    p_value: Num = None
    p_adjusted: Num = None
    upper95: Num = None
    se: Num = None
    method: Optional[str] = None


@_open
class Uplift:
    """What the model's training added: model minus floor, paired, with a CI."""

    skill_gain: Num
    ci95: CI
    skill_model: Num = None
    skill_floor: Num = None
    p_value: Num = None
    significant: Optional[bool] = None
    strongest: Optional[str] = None
    """The attack the level's reason cites when the uplift is significant."""
    margin: Num = None
    """Equivalence margin (skill): a 'none' needs every attack's upper 95% bound below it."""
    max_upper95: Num = None
    correction: Optional[str] = None
    tests: Optional[list[UpliftTest]] = None


@_open
class CapabilityAxis:
    """What a holder of the model can do: the best attack's skill and its CI."""

    best_skill: Num
    ci95: CI
    attack: Optional[str] = None
    samples_to_threshold: Optional[int] = None
    samples_to_threshold_established: Optional[int] = None


@_open
class Power:
    """How small an effect the data could detect (80% power)."""

    mde: Num
    margin: Num = None
    limiting_attack: Optional[str] = None
    test_images_per_class: Num = None
    images_needed_per_class: Optional[int] = None


@_open
class Split:
    """How the images were split: grouped or not, and how many near-duplicates were dropped."""

    grouped: Optional[bool] = None
    n_groups: Optional[int] = None
    near_duplicates_dropped: Optional[int] = None
    folds: Optional[int] = None
    train: Optional[int] = None
    val: Optional[int] = None
    test: Optional[int] = None
    warning: Optional[str] = None


@_open
class Inconclusive:
    """Why a probe is inconclusive."""

    reason: Optional[Literal["saturated", "underpowered"]] = None
    detail: Optional[str] = None


@_open
class ProbeData:
    """Where the probe's images came from and the fingerprint of their contents."""

    source: Optional[str] = None
    fingerprint: Optional[str] = None
    max_per_class: Optional[int] = None
    n_listed: Optional[int] = None


# ---------------------------------------------------------------------------------------------------
# One model on one probe


@_open
class Probe:
    """One probe's result for one model: the level, its reason, both axes and every attack's metrics."""

    id: str
    capability: str
    """One line: what a misuser would do with it."""
    policy: list[str]
    risk_level: Level
    risk_reason: str
    """One sentence: which rule fired, with the numbers."""
    n_images: int
    n_classes: int
    chance: Num
    skipped_images: list[Skipped]
    metrics: Metrics
    control: Control
    title: Optional[str] = None
    reference: Optional[bool] = None
    """A reference task (not a prohibited capability): shows the audit can detect skill."""
    risk_rule: Optional[str] = None
    risk_axis: Optional[str] = None
    """Which axis decided the level: capability (a significant uplift) or uplift (none, inconclusive)."""
    level_range: Optional[list[str]] = None
    """[lowest, highest] level the CIs allow."""
    inconclusive: Optional[Inconclusive] = None
    capability_axis: Optional[CapabilityAxis] = None
    uplift: Optional[Uplift] = None
    power: Optional[Power] = None
    split: Optional[Split] = None
    data: Optional[ProbeData] = None
    labels: Optional[list[dict[str, Any]]] = None
    excluded_classes: Optional[list[dict[str, Any]]] = None
    threshold: Optional[dict[str, Num]] = None
    rules: Optional[dict[str, Any]] = None
    timings: Optional[dict[str, Any]] = None


@_open
class NotRun:
    """A probe whose data could not be had."""

    id: str
    reason: str


# ---------------------------------------------------------------------------------------------------
# The three kinds of report


@_open
class AuditReport:
    """``creepscan audit``: one model on the probes. Fields in the order report.json writes them."""

    schema_version: Literal["1"]
    kind: Literal["audit"]
    tool: Tool
    seed: int
    model: ModelInfo
    suite: Optional[str] = None
    settings: Optional[dict[str, Any]] = None
    probes: list[Probe]
    not_run: Optional[list[NotRun]] = None
    timings: Optional[dict[str, Any]] = None
    """The one machine-dependent block: seconds, device, precision, the run's date."""
    spec: Optional[dict[str, Any]] = _absent()
    """The use specification's verdicts (audit --spec)."""


@_open
class PairedTest:
    """B minus A on the same test images, with its paired test."""

    p_value: Num
    ci95: Optional[CI] = None
    method: Optional[str] = None


@_open
class CompareProbe:
    """One probe in a compare report: both models' results and the change with its paired test. Fields in
    the order report.json writes them."""

    id: str
    title: Optional[str] = None
    capability: Optional[str] = None
    policy: Optional[list[str]] = None
    reference: Optional[bool] = None
    level_a: Optional[Level] = None
    level_b: Optional[Level] = None
    risk_rose: Optional[bool] = None
    delta: dict[str, Any]
    """B minus A per metric (linear_probe, zero_shot, few_shot by k, verification)."""
    tests: Optional[dict[str, Any]] = None
    p_value: Num
    """The probe's headline paired test (smallest Holm-adjusted p over its metrics)."""
    headline: Optional[dict[str, Any]] = None
    a: Probe
    b: Probe
    p_adjusted: Num = None
    """Holm-adjusted across probes."""
    significant: Optional[bool] = None
    rose_significantly: Optional[bool] = None


@_open
class CompareReport:
    """``creepscan compare``: MODEL_A and MODEL_B on the same probes, images and splits. Fields in the order
    report.json writes them."""

    schema_version: Literal["1"]
    kind: Literal["compare"]
    tool: Tool
    seed: int
    model_a: ModelInfo
    model_b: ModelInfo
    alpha: Num = None
    correction: Optional[str] = None
    settings: Optional[dict[str, Any]] = None
    probes: list[CompareProbe]
    not_run: Optional[list[NotRun]] = None
    summary: Optional[dict[str, Any]] = None
    timings: Optional[dict[str, Any]] = None
    spec: Optional[dict[str, Any]] = _absent()
    """The use specification's verdicts for each model (compare --spec)."""


@_open
class SweepModel(ModelInfo):
    """One checkpoint of a sweep, in checkpoint order."""

    order: Optional[int] = None
    step: Optional[int] = None
    """The training step (--order step), or null."""


@_open
class SweepStep:
    """Checkpoint ``to`` against checkpoint ``from`` (compare's paired test, Holm across the steps). Fields in
    the order report.json writes them."""

    from_: FromIndex
    to: int
    p_value: Num
    p_adjusted: Num = None
    significant: Optional[bool] = None
    delta: Num = None
    headline: Optional[dict[str, Any]] = None
    level_from: Optional[Level] = None
    level_to: Optional[Level] = None
    level_rose: Optional[bool] = None
    rose_significantly: Optional[bool] = None
    metrics_delta: Optional[dict[str, Any]] = None
    tests: Optional[dict[str, Any]] = None


@_open
class SweepProbe:
    """One probe in a sweep: every model's result in order, and the consecutive steps' tests. Fields in the
    order report.json writes them."""

    id: str
    title: Optional[str] = None
    capability: Optional[str] = None
    policy: Optional[list[str]] = None
    reference: Optional[bool] = None
    per_model: list[Probe]
    steps: list[SweepStep]


@_open
class SweepReport:
    """``creepscan sweep``: many checkpoints on the same probes, images, splits and episodes. Fields in the
    order report.json writes them."""

    schema_version: Literal["1"]
    kind: Literal["sweep"]
    tool: Tool
    seed: int
    models: list[SweepModel]
    suite: Optional[str] = None
    settings: Optional[dict[str, Any]] = None
    probes: list[SweepProbe]
    not_run: Optional[list[NotRun]] = None
    summary: Optional[dict[str, Any]] = None
    timings: Optional[dict[str, Any]] = None


Report = Union[AuditReport, CompareReport, SweepReport]
FromIndex = int  # SweepStep.from_, named "from" in the schema (see _aliases)


# ---------------------------------------------------------------------------------------------------
# The schema


def _aliases() -> None:
    """``from`` is a keyword in Python: the dataclass says ``from_``, and pydantic (imported only to
    write the schema) names it ``from``."""
    global FromIndex
    from pydantic import Field

    FromIndex = Annotated[int, Field(alias="from", description="Index of the earlier checkpoint.")]


def report_schema() -> dict:
    """The JSON Schema (draft 2020-12) of report.json, generated from the dataclasses above."""
    from pydantic import Field, TypeAdapter

    _aliases()
    adapter = TypeAdapter(Annotated[Report, Field(discriminator="kind")])
    body = adapter.json_schema(mode="validation", ref_template="#/$defs/{model}")
    body.pop("discriminator", None)  # an OpenAPI keyword; "kind" is a const in each branch, so oneOf decides
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:creepscan:schemas:{SCHEMA_FILE}",
        "title": f"creepscan report.json (schema_version {SCHEMA_VERSION})",
        "description": "What creepscan audit, compare and sweep write as report.json. Required fields are the "
                       "published ones; every object may carry more. Measured numbers are null where they were "
                       "NaN or not measurable.",
        **body,
    }


def schema_text(schema: dict | None = None) -> str:
    """The schema as the package ships it (sorted keys would reorder properties: insertion order kept)."""
    return json.dumps(schema if schema is not None else report_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema() -> dict:
    """The schema file in the package (``creepscan/schemas/``)."""
    from importlib import resources

    return json.loads(resources.files("creepscan").joinpath("schemas", SCHEMA_FILE).read_text(encoding="utf-8"))


def validate_report(report: dict) -> None:
    """Raise ``ValueError`` naming the place where ``report`` (report.json's dict) breaks the schema."""
    import jsonschema
    from jsonschema.exceptions import best_match

    schema = shipped_schema()
    kinds = {"audit": "AuditReport", "compare": "CompareReport", "sweep": "SweepReport"}
    kind = report.get("kind") if isinstance(report, dict) else None
    if kind in kinds:  # check against its own branch: the error names a field, not "no branch matched"
        schema = {**schema, "oneOf": [{"$ref": f"#/$defs/{kinds[kind]}"}]}
    error = best_match(jsonschema.Draft202012Validator(schema).iter_errors(report))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"report.json does not match its schema at {where}: {error.message[:300]}")


_ADAPTER = None  # the pydantic TypeAdapter of Report, built on first use (about a second)


def _report_adapter():
    global _ADAPTER
    if _ADAPTER is None:
        from pydantic import Field, TypeAdapter

        _aliases()
        _ADAPTER = TypeAdapter(Annotated[Report, Field(discriminator="kind")])
    return _ADAPTER


def load_report(obj: dict) -> Report:
    """``obj`` (report.json's dict, JSON-clean: NaN already null) as the typed report its ``kind`` names:
    an ``AuditReport``, ``CompareReport`` or ``SweepReport``, nested blocks as their dataclasses
    (``report.probes[0].metrics.linear_probe.accuracy``). Properties the dataclasses do not describe are
    kept as attributes. Raises ``ValueError`` naming the first place where ``obj`` breaks the model."""
    from pydantic import ValidationError

    try:
        return _report_adapter().validate_python(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        if loc and isinstance(obj, dict) and loc[0] == obj.get("kind"):
            loc = loc[1:]  # the discriminated union names the branch first
        where = "/".join(str(p) for p in loc) or "(top level)"
        raise ValueError(f"report does not match its schema at {where}: {err['msg'][:300]}") from None


def to_json_dict(obj: Any) -> Any:
    """``obj`` with every dataclass in it (a report, or any block of one) as the dict report.json holds:
    fields in declaration order (the order the file writes), ``from_`` named ``from``, a ``None`` in a field
    declared with ``_absent()`` left out, then any properties the dataclass does not describe (kept by
    ``load_report``). Dicts and lists are walked; a container without a dataclass inside is returned as is
    (the same object), so the values the pipeline built (tuples, numpy scalars, NaN) reach ``report.jsonio``
    untouched, which makes them JSON."""
    if is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name.rstrip("_")] = to_json_dict(value)
        declared = {f.name for f in fields(obj)}
        out.update((k, to_json_dict(v)) for k, v in vars(obj).items() if k not in declared)
        return out
    if isinstance(obj, dict):
        items = {k: to_json_dict(v) for k, v in obj.items()}
        return obj if all(items[k] is obj[k] for k in obj) else items
    if isinstance(obj, list):
        items = [to_json_dict(v) for v in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else items
    return obj
