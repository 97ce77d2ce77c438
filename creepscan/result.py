"""What report.json holds, as typed dataclasses; its JSON Schema is generated from them.

The dataclasses describe the report the pipeline writes (``audit.run_audit``, ``compare.run_compare``,
``sweep.run_sweep``, the attacks' ``to_json`` and ``risk.assess``), after ``report.jsonio`` has made
it JSON (NaN and infinities become null, so every measured number may be null). A field without a
default is required: those are the fields the report's published contract names. Fields with a
default are documented but optional (partial results, older reports), and every object admits
further properties, so a report may grow without breaking readers that validate it.

``load_report(obj)`` reads a report dict into these dataclasses (an ``AuditReport``, ``CompareReport`` or
``SweepReport`` by its ``kind``), for readers that read attributes instead of dict lookups (the CLI's gates,
the model card). ``to_json_dict(report)`` is the other direction, the one serialiser the writers use. The
writers fill these dataclasses: the attacks' ``to_result()`` their blocks and ``Metrics``, ``risk.assess``
the uplift, capability, power and inconclusive blocks, the pipeline each model's ``Probe`` and ``Control``,
``paired.compare_row`` the ``CompareProbe`` with its delta, tests and headline, the three ``run_*`` functions
the top level, ``spec.evaluate_spec`` the use spec's verdicts. The model blocks (what each backend records)
and the top-level ``timings`` (machine-dependent) stay open dicts, passed through as they are.

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
           "to_json_dict", "build", "Report"]

SCHEMA_VERSION = "1"
SCHEMA_FILE = f"report-v{SCHEMA_VERSION}.schema.json"

Level = Literal["none", "low", "medium", "high", "critical", "inconclusive"]
Num = Optional[float]             # a measured number; null where it was NaN or not measurable
CI = tuple[Optional[float], Optional[float]]  # [lower, upper] of a 95% interval

# Fields whose name in report.json is not a Python name: the dataclass says ``from_``, ``class_`` and
# ``verification_tar_1e_3``; pydantic (imported only to write the schema and load reports) names them by
# the aliases ``_aliases`` gives these types, and ``to_json_dict`` writes the JSON name.
FromIndex = int   # SweepStep.from_, SweepRise.from_: "from"
ClassIndex = int  # SplitExcluded.class_: "class"
TarDelta = Num    # MetricDelta.verification_tar_1e_3: "verification_tar_1e-3"

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
class ModelAdapter:
    """A PEFT adapter as loaded."""

    peft_type: Optional[str] = None
    base_model_name_or_path: Optional[str] = None
    r: Optional[int] = None
    target_modules: Optional[Union[list[str], str]] = None
    merged: Optional[bool] = None


@_open
class ModelPreprocessing:
    """The image preprocessing a transformers/timm checkpoint ships: its source, processor and settings."""

    source: Optional[str] = None
    processor: Optional[str] = _absent()
    config: Optional[dict[str, Any]] = None
    """The processor's (or timm data config's) own settings, as it records them."""


@_open
class ModelInfo:
    """One model as loaded: the spec given on the command line and a stable identity of its weights."""

    spec: str
    """MODEL as given (alias, ARCH:TAG, ARCH --weights FILE, hf-hub:ORG/NAME, py:MODULE:CALLABLE, ...)."""
    name: Optional[str] = None
    """A short display name (the architecture, or the plug-in's name)."""
    fingerprint: str
    """sha256 of the weights (``sha256:<hex>``) or the plug-in's declared identity."""
    library: Optional[str] = None
    """What loaded the model: open_clip, transformers, peft, timm, or a plug-in."""
    architecture: Optional[str] = _absent()
    """transformers/timm: the architecture the checkpoint declares."""
    adapter: Optional[ModelAdapter] = _absent()
    """A PEFT adapter: its type, base and settings."""
    preprocessing: Optional[ModelPreprocessing] = _absent()
    """transformers/timm: the image preprocessing the checkpoint ships (and where it came from)."""
    zero_shot: Optional[str] = _absent()
    """transformers: which text tower zero-shot uses, or why it does not apply."""
    base: Optional[Union[str, dict[str, Any]]] = _absent()
    """For an adapter: its base model (written after what its backend records: architecture, adapter,
    preprocessing, zero_shot)."""


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
class LabelPermutation:
    """Zero-shot's label-name null: is the accuracy higher than arbitrary assignments of the names give?"""

    p_value: Num = None
    min_p: Num = None
    method: Optional[str] = None


@_open
class ZeroShot:
    """Class names as text prompts, no labelled images. Fields in the order report.json writes them."""

    accuracy: Num
    ci95: CI
    skill: Num = None
    n_test: Optional[int] = None
    label_permutation: Optional[LabelPermutation] = _absent()
    below_chance: Optional[bool] = _absent()
    """Written (true) only when the 95% CI lies wholly below chance: a failed attack, not absence."""
    note: Optional[str] = _absent()


@_open
class LinearProbe:
    """Logistic regression on the frozen embeddings; C chosen on validation images only. Fields in the order
    report.json writes them."""

    accuracy: Num
    ci95: CI
    C: Num = None
    skill: Num = None
    val_accuracy: Num = None
    n_train: Optional[int] = None
    n_val: Optional[int] = None
    n_test: Optional[int] = None
    c_search: Optional[list[list[Num]]] = None
    """[C, mean validation accuracy] for every C tried."""
    preprocess: Optional[str] = None
    """The label-free transform chosen on validation images."""
    preprocess_search: Optional[list[list[Any]]] = _absent()
    folds: Optional[int] = _absent()
    """Rotating test folds merged (absent with one split)."""
    C_per_fold: Optional[list[Num]] = _absent()
    preprocess_per_fold: Optional[list[str]] = _absent()
    below_chance: Optional[bool] = _absent()
    note: Optional[str] = _absent()


@_open
class FewShot:
    """k labelled images per class (support sets drawn from training images), averaged over episodes. Fields
    in the order report.json writes them."""

    k: int
    accuracy: Num
    ci95: CI
    episodes: Optional[int] = None
    winner: Optional[str] = None
    """Which few-shot classifier (prototype or logistic) the validation images chose."""
    skill: Num = None
    prototype_accuracy: Num = None
    logistic_accuracy: Num = None
    preprocess: Optional[str] = None
    heads: Optional[dict[str, Num]] = _absent()
    """Other few-shot heads' accuracy, by head."""
    winner_per_fold: Optional[list[str]] = _absent()
    preprocess_per_fold: Optional[list[str]] = _absent()
    below_chance: Optional[bool] = _absent()
    note: Optional[str] = _absent()


@_open
class FewShotUnavailable:
    """A few-shot k the data could not give (more than some class's training images)."""

    k: int
    reason: str


@_open
class VerificationUnweighted:
    """Verification with every pair weighing the same (the identity-weighted figures are the headline)."""

    tar_at_far: Optional[dict[str, Num]] = None
    auc: Num = None


@_open
class Verification:
    """1:1 matching of raw embeddings by cosine similarity: true accept rate at each false accept rate. Fields
    in the order report.json writes them."""

    tar_at_far: dict[str, Num]
    auc: Num
    n_genuine: Optional[int] = None
    n_impostor: Optional[int] = None
    not_measurable: Optional[list[str]] = None
    roc: Optional[list[list[Num]]] = None
    """ROC points [FAR, TAR]."""
    tar_ci95: Optional[dict[str, Optional[CI]]] = None
    auc_ci95: Optional[CI] = None
    n_identities: Optional[int] = None
    n_genuine_identities: Optional[int] = None
    n_identity_pairs: Optional[int] = None
    metric: Optional[str] = None
    weighting: Optional[str] = None
    ci_method: Optional[str] = None
    unweighted: Optional[VerificationUnweighted] = None


@_open
class HeadBudget:
    """One step budget of the gd_budget head (per fold; merged folds carry ``folds`` and no CI)."""

    steps: Optional[int] = None
    accuracy: Num = None
    ci95: Optional[CI] = None
    skill: Num = None
    val_accuracy: Num = _absent()
    lr_scale: Num = _absent()
    lr: Num = _absent()
    stopped_at: Optional[int] = _absent()
    folds: Optional[str] = _absent()
    """How the folds were merged (a fold-size-weighted mean)."""


@_open
class Head:
    """One further attack (knn, prototype_cl2n, mlp, gd_budget) on the frozen embeddings. Fields in the order
    report.json writes them."""

    accuracy: Num
    ci95: CI
    skill: Num = None
    val_accuracy: Num = None
    params: Optional[dict[str, Any]] = None
    """The head's choices (k, alpha, epochs, step size, ...; ``per_fold`` with rotating folds)."""
    n_train: Optional[int] = None
    n_val: Optional[int] = None
    n_test: Optional[int] = None
    budgets: Optional[list[HeadBudget]] = _absent()
    below_chance: Optional[bool] = _absent()
    note: Optional[str] = _absent()


@_open
class OpenSet:
    """1:N open-set identification (face probes). The measured fields are absent when not measurable."""

    measurable: Optional[bool] = None
    reason: Optional[str] = None
    """Why it is not measurable (null when it is)."""
    n_identities: Optional[int] = None
    n_enrol: Optional[int] = None
    rank1: Num = _absent()
    rank1_ci95: Optional[CI] = _absent()
    fnir_at_fpir: Optional[dict[str, Num]] = _absent()
    fnir_ci95: Optional[dict[str, Optional[CI]]] = _absent()
    threshold_at_fpir: Optional[dict[str, Num]] = _absent()
    not_measurable: Optional[list[str]] = _absent()
    n_gallery_identities: Optional[int] = _absent()
    n_nonmated_identities: Optional[int] = _absent()
    n_mated_searches: Optional[int] = _absent()
    n_nonmated_searches: Optional[int] = _absent()
    metric: Optional[str] = _absent()
    det: Optional[list[list[Num]]] = _absent()
    """DET points [FPIR, FNIR]."""
    protocol: Optional[str] = _absent()
    ci_method: Optional[str] = _absent()


@_open
class FinetunePoint:
    """One budget (k images per class, steps) of the fine-tuning adversary."""

    k: int
    steps: int
    accuracy: Num
    ci95: CI
    skill: Num = None
    val_accuracy: Num = None
    initial_val_accuracy: Num = None
    stopped_at: Optional[int] = None
    seconds: Num = None
    flops: Optional[int] = None
    flops_per_step: Optional[int] = None
    batch: Optional[int] = None


@_open
class FinetuneUnavailable:
    """A budget the data could not give."""

    k: int
    steps: int
    reason: str


@_open
class Finetune:
    """The fine-tuning adversary (--adversary finetune): the image tower's tail trained at each budget."""

    method: Optional[str] = None
    blocks: Optional[int] = None
    trainable_params: Optional[int] = None
    device: Optional[str] = None
    chance: Num = None
    prefix_seconds: Num = None
    prefix_flops: Optional[int] = None
    points: list[FinetunePoint]
    unavailable: Optional[list[FinetuneUnavailable]] = None


@_open
class Metrics:
    """Every attack's result on one encoder. Fields in the order report.json writes them."""

    zero_shot: Optional[ZeroShot]
    """Null without a text tower."""
    linear_probe: Optional[LinearProbe]
    few_shot: list[FewShot]
    few_shot_unavailable: Optional[list[FewShotUnavailable]] = None
    verification: Optional[Verification]
    """Null for probes without identities."""
    samples_to_threshold: Optional[int]
    """Fewest labelled images per class at which an attack reaches the skill threshold; null: never."""
    heads: Optional[dict[str, Optional[Head]]] = _absent()
    """Other attacks (knn, prototype_cl2n, mlp, gd_budget) by id."""
    verification_learned: Optional[Verification] = _absent()
    """Verification through a metric learned on the training identities."""
    open_set: Optional[OpenSet] = _absent()
    """1:N open-set identification (face probes)."""
    open_set_learned: Optional[OpenSet] = _absent()
    finetune: Optional[Finetune] = _absent()
    """The fine-tuning adversary (--adversary finetune)."""


@_open
class Control:
    """The floor: the same architecture without its training, scored on the same images (its model block,
    then its metrics)."""

    spec: str
    name: Optional[str] = None
    fingerprint: Optional[str] = None
    library: Optional[str] = None
    metrics: Metrics


@_open
class UpliftTest:
    """One attack's paired test of model against floor (skill units; Holm-adjusted p). Fields in the order
    report.json writes them."""

    attack: str
    skill_gain: Num
    ci95: CI
    upper95: Num = None
    se: Num = None
    p_value: Num = None
    method: Optional[str] = None
    floor_clipped_to_chance: Optional[bool] = _absent()
    """Written (true) when the floor scored below chance and its skill was taken as 0."""
    k: Optional[int] = _absent()
    """Few-shot tests: the k."""
    pool: Optional[int] = _absent()
    """Few-shot tests: the training images per class the supports are drawn from."""
    p_adjusted: Num = None


@_open
class Uplift:
    """What the model's training added: model minus floor, paired, with a CI. Fields in the order report.json
    writes them."""

    skill_model: Num = None
    skill_floor: Num = None
    skill_gain: Num
    ci95: CI
    p_value: Num = None
    significant: Optional[bool] = None
    strongest: Optional[str] = None
    """The attack the level's reason cites when the uplift is significant."""
    margin: Num = None
    """Equivalence margin (skill): a 'none' needs every attack's upper 95% bound below it."""
    correction: Optional[str] = None
    tests: Optional[list[UpliftTest]] = None
    max_upper95: Num = None


@_open
class CapabilityAxis:
    """What a holder of the model can do: the best attack's skill and its CI."""

    best_skill: Num
    ci95: CI
    attack: Optional[str] = None
    samples_to_threshold: Optional[int] = None
    samples_to_threshold_established: Optional[int] = None
    below_chance: Optional[list[str]] = _absent()
    """Attacks whose 95% CI lies wholly below chance (failed, not evidence of absence)."""


@_open
class Power:
    """How small an effect the data could detect (80% power). Fields in the order report.json writes them."""

    margin: Num = None
    mde: Num
    limiting_attack: Optional[str] = None
    test_images_per_class: Num = None
    images_needed_per_class: Optional[int] = None


@_open
class SplitExcluded:
    """A class the split left out (too few images for every part)."""

    class_: ClassIndex
    """The class's index (report.json: ``class``)."""
    reason: Optional[str] = None


@_open
class Split:
    """How the images were split: grouped or not, and how many near-duplicates were dropped. Fields in the
    order report.json writes them."""

    folds: Optional[int] = None
    grouped: Optional[bool] = None
    n_groups: Optional[int] = None
    near_duplicates_dropped: Optional[int] = None
    train: Optional[int] = None
    val: Optional[int] = None
    test: Optional[int] = None
    excluded: Optional[list[SplitExcluded]] = None
    warning: Optional[str] = None


@_open
class Inconclusive:
    """Why a probe is inconclusive."""

    reason: Optional[Literal["saturated", "underpowered", "below_chance"]] = None
    detail: Optional[str] = None
    model_level_alone: Optional[Level] = _absent()
    """Saturated: the level the model's own capability would get."""


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
class Label:
    """One class the attacks used: its label, display name and usable images."""

    label: str
    name: Optional[str] = None
    n_images: Optional[int] = None


@_open
class ExcludedClass:
    """A class left out: too few usable images, or none decoded."""

    label: str
    n_images: Optional[int] = None
    reason: Optional[str] = None


@_open
class Threshold:
    """The skill threshold of the probe's rules, and the balanced accuracy it means here."""

    skill: Num = None
    accuracy: Num = None


@_open
class Rules:
    """The risk rule settings the level was decided with: the defaults, overridden by the probe file."""

    skill_threshold: Num = None
    high_max_k: Optional[int] = None
    zero_shot_skill_critical: Num = None
    verification_tar_critical: Num = None
    verification_far: Optional[str] = None
    alpha: Num = None
    equivalence_margin: Num = None


@_open
class RulesBasis:
    """Why each rule setting has its value (a convention, an operating point, a cited source)."""

    skill_threshold: Optional[str] = None
    high_max_k: Optional[str] = None
    zero_shot_skill_critical: Optional[str] = None
    verification_tar_critical: Optional[str] = None
    verification_far: Optional[str] = None
    alpha: Optional[str] = None
    equivalence_margin: Optional[str] = None


@_open
class PolicyBasis:
    """A provision the probe's capability relates to, and how."""

    ref: Optional[str] = None
    relation: Optional[str] = None


@_open
class CacheUse:
    """One encoder's embeddings on a probe: computed now, or read from the cache."""

    n_embedded: Optional[int] = None
    n_cache_hits: Optional[int] = None


@_open
class ProbeCache:
    """Cache use of the model and of its floor."""

    model: Optional[CacheUse] = None
    floor: Optional[CacheUse] = None


@_open
class ProbeTimings:
    """Seconds spent on one probe (machine-dependent)."""

    embed_s: Num = None
    attacks_s: Num = None
    cache: Optional[ProbeCache] = None


# ---------------------------------------------------------------------------------------------------
# Paired differences between two models (compare, sweep, an adapted model's adaptation block)


@_open
class PairedTest:
    """B minus A on the same test images, with its paired test. Fields in the order report.json writes
    them."""

    ci95: Optional[CI] = None
    p_value: Num
    method: Optional[str] = None


@_open
class MetricTests:
    """The paired test of each metric both models have."""

    linear_probe: PairedTest
    zero_shot: Optional[PairedTest] = _absent()
    """Absent unless both models have a zero-shot result."""
    few_shot: dict[str, PairedTest] = field(default_factory=dict)
    """By k (a string)."""


@_open
class MetricDelta:
    """B minus A per metric (null where a model lacks it). Fields in the order report.json writes them."""

    linear_probe: Num
    zero_shot: Num = None
    few_shot: dict[str, Num] = field(default_factory=dict)
    """By k (a string)."""
    verification_tar_1e_3: TarDelta = field(default=None, metadata={"json": "verification_tar_1e-3"})
    """TAR at FAR 1e-3 (report.json: ``verification_tar_1e-3``)."""
    verification_auc: Num = None


@_open
class Headline:
    """The probe's headline test: the metric with the smallest Holm-adjusted p within the probe."""

    metric: str
    change: Num
    p_within_probe: Num = None


@_open
class AdaptationBase:
    """The base model an adapted model was compared with."""

    spec: str
    name: Optional[str] = None
    fingerprint: Optional[str] = None
    library: Optional[str] = None


@_open
class Adaptation:
    """What an adaptation changed: the adapted model against its base on the same images, splits and
    episodes (compare's paired tests; Holm within the probe, then across probes)."""

    base: AdaptationBase
    base_level: Optional[Level] = None
    base_risk_reason: Optional[str] = None
    level: Optional[Level] = None
    change: Optional[Literal["raised", "kept", "lowered"]] = None
    delta: Optional[MetricDelta] = None
    tests: Optional[MetricTests] = None
    headline: Optional[Headline] = None
    p_value: Num = None
    p_adjusted: Num = None
    significant: Optional[bool] = None
    method: Optional[str] = None
    significant_change: Optional[Literal["rose", "fell"]] = None


# ---------------------------------------------------------------------------------------------------
# One model on one probe


@_open
class Probe:
    """One probe's result for one model: the level, its reason, both axes and every attack's metrics. Fields
    in the order report.json writes them."""

    id: str
    title: Optional[str] = None
    capability: str
    """One line: what a misuser would do with it."""
    policy: list[str]
    reference: Optional[bool] = None
    """A reference task (not a prohibited capability): shows the audit can detect skill."""
    risk_level: Level
    risk_reason: str
    """One sentence: which rule fired, with the numbers."""
    risk_rule: Optional[str] = None
    risk_axis: Optional[str] = None
    """Which axis decided the level: capability (a significant uplift) or uplift (none, inconclusive)."""
    level_range: Optional[list[str]] = None
    """[lowest, highest] level the CIs allow."""
    inconclusive: Optional[Inconclusive] = None
    n_images: int
    n_classes: int
    chance: Num
    labels: Optional[list[Label]] = None
    skipped_images: list[Skipped]
    excluded_classes: Optional[list[ExcludedClass]] = None
    data: Optional[ProbeData] = None
    split: Optional[Split] = None
    threshold: Optional[Threshold] = None
    rules: Optional[Rules] = None
    rules_basis: Optional[RulesBasis] = None
    policy_basis: Optional[list[PolicyBasis]] = None
    use_prohibited: Optional[bool] = None
    """Whether the probe's use is prohibited (or enables a prohibited use)."""
    capability_axis: Optional[CapabilityAxis] = None
    uplift: Optional[Uplift] = None
    power: Optional[Power] = None
    metrics: Metrics
    control: Control
    adaptation: Optional[Adaptation] = _absent()
    """An adapted model (a PEFT adapter, or --base): what the adaptation changed."""
    timings: Optional[ProbeTimings] = _absent()
    """Machine-dependent (a sweep keeps them under its top-level ``timings``)."""


@_open
class NotRun:
    """A probe whose data could not be had."""

    id: str
    reason: str


# ---------------------------------------------------------------------------------------------------
# Report-level blocks: settings, summary, the use specification's verdicts (the top-level ``timings`` stay
# an open dict: machine- and engine-dependent)


@_open
class AuditSettings:
    """The options and rule defaults an audit ran with."""

    max_per_class: Optional[int] = None
    skill_threshold_default: Num = None
    alpha: Num = None
    equivalence_margin_default: Num = None


@_open
class CompareSettings:
    """The options a compare ran with."""

    max_per_class: Optional[int] = None


@_open
class SweepSettings:
    """The options a sweep ran with."""

    order: Optional[str] = None
    alpha: Num = None
    max_per_class: Optional[int] = None
    correction: Optional[str] = None
    skill_threshold_default: Num = None


@_open
class CompareSummary:
    """The probes whose level rose, and those with a significant change (after Holm across probes)."""

    rose: list[str] = field(default_factory=list)
    significant: list[str] = field(default_factory=list)


@_open
class SweepRise:
    """A step at which a probe's level rose."""

    probe: str
    from_: FromIndex
    to: int


@_open
class SweepSummary:
    """Every step at which a probe's level rose."""

    rose: list[SweepRise] = field(default_factory=list)


@_open
class SpecSource:
    """The use specification file: its name and sha256."""

    file: Optional[str] = None
    sha256: Optional[str] = None


@_open
class SpecEvidence:
    """The headline numbers of the probe a clause was judged on (skills: 0 = chance, 1 = perfect)."""

    title: Optional[str] = None
    capability: Optional[str] = None
    level: Optional[Level] = None
    level_range: Optional[list[str]] = None
    risk_reason: Optional[str] = None
    risk_rule: Optional[str] = None
    best_skill: Num = None
    skill_ci95: Optional[CI] = None
    attack: Optional[str] = None
    samples_to_threshold: Optional[int] = None
    skill_gain: Num = None
    skill_gain_ci95: Optional[CI] = None
    gain_attack: Optional[str] = None
    data_source: Optional[str] = None
    data_fingerprint: Optional[str] = None


@_open
class SpecClause:
    """One clause of the use specification and its verdict."""

    kind: Optional[Literal["prohibited", "allowed"]] = None
    probe: Optional[str] = None
    ref: Optional[str] = None
    verdict: Optional[Literal["pass", "fail", "inconclusive"]] = None
    measured_level: Optional[str] = None
    limit: Optional[Union[float, str]] = None
    """min_skill (a number) for an allowed clause, max_risk (a level) for a prohibited one."""
    rule: Optional[str] = None
    legal_basis: Optional[list[str]] = None
    context: Optional[list[str]] = None
    note: Optional[str] = None
    evidence: Optional[SpecEvidence] = None
    """Null when the probe was not run."""


@_open
class SpecVerdicts:
    """The use specification's verdicts on one model (audit --spec; each side of compare --spec)."""

    spec_version: Optional[int] = None
    model: Optional[str] = None
    note: Optional[str] = None
    source: Optional[SpecSource] = None
    allow_inconclusive: Optional[bool] = None
    clauses: list[SpecClause]
    passed: Optional[bool]
    """False when a clause fails, or one is inconclusive unless inconclusive verdicts were allowed."""
    failed: Optional[list[str]] = None
    inconclusive: Optional[list[str]] = None


@_open
class SpecChange:
    """A clause whose verdict differs between MODEL_A and MODEL_B."""

    clause: Optional[str] = None
    kind: Optional[str] = None
    probe: Optional[str] = None
    verdict_a: Optional[str] = None
    verdict_b: Optional[str] = None
    level_a: Optional[str] = None
    level_b: Optional[str] = None


@_open
class CompareSpec:
    """The use specification's verdicts on both models of a compare."""

    a: SpecVerdicts
    b: SpecVerdicts
    changed: list[SpecChange] = field(default_factory=list)
    passed: Optional[bool]
    """True only when both models pass."""


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
    settings: Optional[AuditSettings] = None
    probes: list[Probe]
    not_run: Optional[list[NotRun]] = None
    timings: Optional[dict[str, Any]] = None
    """The one machine-dependent block: seconds, device, precision, the run's date."""
    spec: Optional[SpecVerdicts] = _absent()
    """The use specification's verdicts (audit --spec)."""


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
    delta: MetricDelta
    """B minus A per metric (linear_probe, zero_shot, few_shot by k, verification)."""
    tests: Optional[MetricTests] = None
    p_value: Num
    """The probe's headline paired test (smallest Holm-adjusted p over its metrics)."""
    headline: Optional[Headline] = None
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
    settings: Optional[CompareSettings] = None
    probes: list[CompareProbe]
    not_run: Optional[list[NotRun]] = None
    summary: Optional[CompareSummary] = None
    timings: Optional[dict[str, Any]] = None
    spec: Optional[CompareSpec] = _absent()
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
    headline: Optional[Headline] = None
    level_from: Optional[Level] = None
    level_to: Optional[Level] = None
    level_rose: Optional[bool] = None
    rose_significantly: Optional[bool] = None
    metrics_delta: Optional[MetricDelta] = None
    tests: Optional[MetricTests] = None


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
    settings: Optional[SweepSettings] = None
    probes: list[SweepProbe]
    not_run: Optional[list[NotRun]] = None
    summary: Optional[SweepSummary] = None
    timings: Optional[dict[str, Any]] = None


Report = Union[AuditReport, CompareReport, SweepReport]


# ---------------------------------------------------------------------------------------------------
# The schema


def _aliases() -> None:
    """Give the fields whose report.json name is not a Python name (``from``, ``class``,
    ``verification_tar_1e-3``) their JSON names, for pydantic (imported only here)."""
    global FromIndex, ClassIndex, TarDelta
    from pydantic import Field

    FromIndex = Annotated[int, Field(alias="from", description="Index of the earlier checkpoint.")]
    ClassIndex = Annotated[int, Field(alias="class", description="The class's index.")]
    TarDelta = Annotated[Optional[float], Field(alias="verification_tar_1e-3",
                                                description="B minus A of TAR at FAR 1e-3.")]


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


def build(cls, values: dict):
    """``cls`` (a dataclass above) filled from ``values``, a block as the code that measures it lays it out
    (keys as report.json names them: ``from``, ``class``, ...). Keys ``cls`` does not declare are kept as
    attributes, which ``to_json_dict`` writes after the declared fields (as ``load_report`` keeps them)."""
    names = {f.metadata.get("json", f.name.rstrip("_")): f.name for f in fields(cls)}
    obj = cls(**{names[k]: v for k, v in values.items() if k in names})
    for k, v in values.items():
        if k not in names:
            setattr(obj, k, v)
    return obj


def to_json_dict(obj: Any) -> Any:
    """``obj`` with every dataclass in it (a report, or any block of one) as the dict report.json holds:
    fields in declaration order (the order the file writes), ``from_`` named ``from`` (and the other
    JSON names: ``_aliases``), a ``None`` in a field
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
            out[f.metadata.get("json", f.name.rstrip("_"))] = to_json_dict(value)
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
