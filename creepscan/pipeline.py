"""The one pipeline behind audit, compare and sweep: per probe, data -> embeddings of every model and
its floor -> splits -> attacks -> risk. ``audit``, ``compare`` and ``sweep`` only assemble its results.

Every model sees the same images, splits and few-shot episodes (they depend on the labels, groups and
seed alone), so any two models' results are paired. Where the work runs (in this process, or on Ray)
is the engine's business (``creepscan.engines``); this module only says what is computed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import result as R
from .data import ImageSet, cap_per_class, content_hashes, dataset_fingerprint, load_image_set
from .engines import AttackJob, EncoderRole, encoder_roles, engine_or_local
from .errors import CreepscanError, DataUnavailable
from .evaluation import ModelResult, ProbeResult, risk_block, rules_for
from .features import Features
from .options import Options, RunState
from .probes import Probe
from .result import NotRun
from .risk import DEFAULT_BASIS


def start_run(options: Options, engine=None) -> RunState:
    """The run's state, settled once as it starts: ``engine`` (default: this process's), and on the CPU
    one thread per usable CPU whatever the load, so the same machine always computes the same numbers."""
    threads = None
    if options.device == "cpu":
        from .cpu import apply_threads

        threads = apply_threads()[1]
    return RunState(options, engine_or_local(engine), threads)


@dataclass
class ProbeData:
    """One probe's images, capped, with their content hashes."""

    probe: Probe
    images: ImageSet
    hashes: list
    info: dict


def load_probe_data(probe: Probe, options: Options) -> ProbeData:
    """The probe's images: a local folder/manifest from --data, else its public source."""
    if options.data_path(probe.id) is not None:
        images = load_image_set(options.data_path(probe.id))
    else:
        from .data import public

        key = hashlib.sha256(json.dumps(probe.source, sort_keys=True).encode()).hexdigest()[:12]
        root = Path(options.cache_dir) / "datasets" / f"{probe.source['kind']}-{key}"
        path = public.materialize(probe.source, root, download=options.download, progress=options.progress,
                                  probe_id=probe.id)
        images = load_image_set(path)
        images.source = public.describe(probe.source)
    if probe.group_by:
        from .data import apply_group_rule

        try:
            images = apply_group_rule(images, probe.group_by)
        except ValueError as exc:
            raise DataUnavailable(f"probe {probe.id}: group_by {probe.group_by!r}: {exc}") from None
    cap = options.max_per_class if options.max_per_class is not None else probe.max_per_class
    n_listed = len(images)
    images = cap_per_class(images, cap, options.seed)
    check_counts(probe, images, cap, options.max_per_class is not None)  # before any image is embedded
    hashes = content_hashes(images.paths)
    info = {"source": images.source, "fingerprint": dataset_fingerprint(images, hashes),
            "max_per_class": cap, "n_listed": n_listed}
    return ProbeData(probe, images, hashes, info)


def embed(roles: list[EncoderRole], pd: ProbeData, state: RunState) -> dict[EncoderRole, Features]:
    """Features of each role's encoder (``engines.EncoderRole``), computed by the run's engine:
    encoders with the same weights are embedded once, model by model (each model's embeddings are
    cached before the next starts), a model and its floor sharing one decoding pass."""
    return state.engine.embed(roles, pd, state.options)


@dataclass
class LabelledSet:
    """The images every encoder could use, as integer labels over the kept classes."""

    y: np.ndarray
    rows: dict  # EncoderRole -> row indices into that encoder's Features.X, aligned with y
    kept: list  # indices into the probe's ImageSet, aligned with y
    classes: list[str]
    excluded: list[dict]
    skipped: list[dict]


def align(pd: ProbeData, features: dict[EncoderRole, Features]) -> LabelledSet:
    """Keep the images that every encoder embedded, drop classes too small for the attacks."""
    common = None
    for f in features.values():
        common = set(f.keep.tolist()) if common is None else common & set(f.keep.tolist())
    common = sorted(common or [])
    skipped = list(pd.images.skipped)
    seen = {s["path"] for s in skipped}
    for f in features.values():
        for s in f.skipped:
            if s["path"] not in seen:
                skipped.append(s)
                seen.add(s["path"])
    counts: dict[str, int] = {}
    for i in common:
        counts[pd.images.labels[i]] = counts.get(pd.images.labels[i], 0) + 1
    min_n = pd.probe.min_images_per_class
    classes = sorted(label for label, n in counts.items() if n >= min_n)
    excluded = [{"label": label, "n_images": n, "reason": f"fewer than {min_n} usable images"}
                for label, n in sorted(counts.items()) if n < min_n]
    excluded += [{"label": label, "n_images": 0, "reason": "no usable images"} for label in pd.images.empty_labels]
    all_labels = set(pd.images.labels)
    excluded += [{"label": label, "n_images": 0, "reason": "no image could be decoded"}
                 for label in sorted(all_labels - set(counts)) if label not in pd.images.empty_labels]
    index = {label: k for k, label in enumerate(classes)}
    kept = [i for i in common if pd.images.labels[i] in index]
    y = np.asarray([index[pd.images.labels[i]] for i in kept], dtype=np.int64)
    rows = {}
    for name, f in features.items():
        pos = {int(i): r for r, i in enumerate(f.keep.tolist())}
        rows[name] = np.asarray([pos[i] for i in kept], dtype=np.int64)
    return LabelledSet(y=y, rows=rows, classes=classes, excluded=excluded, skipped=skipped, kept=kept)


def wants_finetune(probe: Probe, options: Options) -> bool:
    return options.adversary == "finetune" or "finetune" in probe.attacks


def run_finetune(encoder, pd: ProbeData, ls: LabelledSet, split, options: Options, metrics=None):
    """The budgeted fine-tuning adversary on fold 0's split (train fits, val stops, test scores); None
    for an encoder without an open_clip image tower (a plug-in), which the report says. ``metrics``:
    the frozen attacks' result on the same splits, whose test groups give the CIs' units."""
    if not hasattr(encoder, "model") or not hasattr(getattr(encoder, "model"), "visual"):
        return None
    import torch

    from .attacks.finetune import finetune_attack
    from .data import decode_image

    paths = [pd.images.paths[i] for i in ls.kept]

    def images(rows):
        return torch.stack([encoder.preprocess(decode_image(paths[int(r)])) for r in rows])

    clusters = None
    if metrics is not None and getattr(metrics, "test_clusters", None) is not None:
        clusters = metrics.test_clusters[np.searchsorted(metrics.test_index, split.test)]
    return finetune_attack(encoder, images, ls.y, split, seed=options.seed, device=options.device,
                           n_classes=len(ls.classes), test_clusters=clusters)


def too_small(probe: Probe, ls: LabelledSet) -> str | None:
    if len(ls.classes) < 2:
        return (f"probe {probe.id}: only {len(ls.classes)} class has at least {probe.min_images_per_class} "
                "usable images; the attacks need two or more (add images, or lower min_images_per_class in the "
                "probe file)")
    return None


def check_counts(probe: Probe, images: ImageSet, cap: int | None, cap_from_option: bool) -> None:
    """Refuse, from the image list alone (before hours of embedding), a probe whose classes are too
    small: a cap below ``min_images_per_class``, or fewer than two classes with enough images.
    ``align`` checks again after decoding, which can only shrink a class."""
    min_n = probe.min_images_per_class
    if cap_from_option and cap is not None and cap < min_n:
        own = f"the probe's own cap is {probe.max_per_class}" if probe.max_per_class else "the probe has no cap"
        raise DataUnavailable(f"probe {probe.id}: --max-per-class {cap} keeps fewer images per class than its "
                              f"min_images_per_class ({min_n}), so every class would be excluded; raise "
                              f"--max-per-class to at least {min_n}, or drop it ({own})")
    counts: dict[str, int] = {}
    for label in images.labels:
        counts[label] = counts.get(label, 0) + 1
    enough = sorted(label for label, n in counts.items() if n >= min_n)
    if len(enough) < 2:
        small = ", ".join(f"{label} ({n})" for label, n in sorted(counts.items()) if n < min_n)
        raise DataUnavailable(
            f"probe {probe.id}: only {len(enough)} class(es) list at least {min_n} images (min_images_per_class)"
            f"{'; too small: ' + small if small else ''}; the attacks need two or more: add images to the small "
            f"classes (or lower min_images_per_class in {probe.path.name})")


def probe_header(probe: Probe, pd: ProbeData, ls: LabelledSet, splits, split_block: dict) -> dict:
    """The facts about a probe's data that every model's result shares: ``result.Probe`` fields by name
    (the blocks as ``result`` dataclasses)."""
    n_classes = len(ls.classes)
    chance = 1.0 / n_classes
    thr = rules_for(probe)["skill_threshold"]
    counts = np.bincount(ls.y, minlength=n_classes)
    return {
        "id": probe.id, "title": probe.title, "capability": probe.capability, "policy": probe.policy,
        "reference": probe.reference,
        "n_images": int(len(ls.y)), "n_classes": n_classes, "chance": round(chance, 6),
        "labels": [R.Label(label=c, name=probe.display_name(c), n_images=int(n)) for c, n in zip(ls.classes, counts)],
        "skipped_images": [R.build(R.Skipped, s) for s in ls.skipped],
        "excluded_classes": [R.build(R.ExcludedClass, e) for e in ls.excluded],
        "data": R.build(R.ProbeData, pd.info),
        "split": R.build(R.Split, {**split_block, "excluded": [R.build(R.SplitExcluded, e)
                                                               for e in split_block.get("excluded", [])]}),
        "threshold": R.Threshold(skill=thr, accuracy=round(chance + thr * (1 - chance), 6)),
        "rules": R.build(R.Rules, rules_for(probe)),
        "rules_basis": R.build(R.RulesBasis, {**DEFAULT_BASIS, **probe.risk_basis}),
        "policy_basis": [R.build(R.PolicyBasis, dict(b)) for b in probe.policy_basis],
        "use_prohibited": probe.use_prohibited,
    }


def model_block(encoder) -> dict:
    """Who the encoder is: spec, name, fingerprint, the library that loaded it, what its backend
    records (preprocessing, adapter, zero-shot) and, for an adapted model, its base."""
    block = {"spec": encoder.spec, "name": encoder.name, "fingerprint": encoder.fingerprint,
             "library": getattr(encoder, "library", "plugin")}
    block.update(getattr(encoder, "details", None) or {})
    if getattr(encoder, "base", None) is not None:
        block["base"] = model_block(encoder.base)
    return block


def check_data_keys(probes: list[Probe], options: Options) -> None:
    ids = {p.id for p in probes}
    for key in options.data_ids():
        if key not in ids:
            raise CreepscanError(
                f"--data {key}=...: no probe '{key}' is being run (running: {', '.join(sorted(ids))}); "
                f"add --probe {key} or fix the id"
            )


def load_or_record(probe: Probe, options: Options, n_probes: int, not_run: list[NotRun]) -> ProbeData | None:
    """A probe whose public data cannot be fetched is recorded as not run, so the others still run;
    the CLI then exits 2 after writing the report. Local data given with --data that fails, or a run
    of a single probe, fails at once."""
    try:
        return load_probe_data(probe, options)
    except DataUnavailable as exc:
        if options.data_path(probe.id) is not None or n_probes == 1:
            raise
        options.log(f"  {probe.id}: not run: {exc}", "warning")
        not_run.append(NotRun(id=probe.id, reason=str(exc)))
        return None


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------

NEAR_DUPLICATE_MAX_SHARE = 0.2

GROUPLESS_WARNING = ("the images carry no group (person, session): photos of one person may sit on both sides of "
                     "the split, so identity can stand in for the attribute; give a CSV 'group' column or a probe "
                     "'group_by' rule")


def make_probe_splits(ls: LabelledSet, pd: ProbeData, X_ref: np.ndarray | None, options: Options):
    """Splits shared by every model (labels, groups and seed only), with near-duplicates of a
    train/val image dropped from test (judged under ``X_ref``, float [n, d]: a floor's embeddings of
    the labelled images, in ``ls.y`` order). Returns (splits, block, groups)."""
    from .attacks import splits as S

    groups = getattr(pd.images, "groups", None)
    kept_groups = None
    if groups is not None and any(g is not None for g in groups):
        kept_groups = [groups[i] for i in ls.kept]
    splits = S.make_splits(ls.y, options.seed, groups=kept_groups, n_folds=options.folds)
    hashes = [pd.hashes[i] for i in ls.kept]
    kept_splits, n_dropped = S.drop_near_duplicates(splits, X_ref, hashes)
    note = None
    # The share is judged against the test images (all of them with rotating folds, 20% of the
    # probe with one split), and no fold may lose all its test images.
    n_test = sum(int(s.test.size) for s in splits)
    emptied = any(s.test.size and not k.test.size for s, k in zip(splits, kept_splits))
    if n_dropped > NEAR_DUPLICATE_MAX_SHARE * n_test or emptied:
        # A floor that cannot tell most images apart (e.g. random weights on simple synthetic data,
        # or near-identical photos) would empty the test set: keep the exact duplicates only, and say so.
        kept_splits, n_dropped = S.drop_near_duplicates(splits, None, hashes)
        note = (f"the floor's embeddings called more than {NEAR_DUPLICATE_MAX_SHARE:.0%} of the test images "
                "(or all of a fold's) near-duplicates, so only exact duplicates (same file content) were dropped")
    if not any(k.test.size for k in kept_splits):
        raise DataUnavailable(f"probe {pd.probe.id}: every test image is a copy (same file content) of a training "
                              f"or validation image ({n_dropped} of {n_test}), so nothing can be scored; remove "
                              "the duplicate files from the data")
    splits = kept_splits
    block = S.split_info(splits, kept_groups, n_dropped)
    if note:
        block["warning"] = "; ".join(w for w in (block.get("warning"), note) if w)
    if kept_groups is None and "verification" not in pd.probe.attacks and not pd.probe.reference:
        block["warning"] = "; ".join(w for w in (block.get("warning"), GROUPLESS_WARNING) if w)
    return splits, block, kept_groups


def run_probe(probe: Probe, pd: ProbeData, encoders: list, state: RunState, tag: str = "") -> ProbeResult:
    """Every model (and its floor) on one probe's images: the same splits and episodes for all."""
    options = state.options
    t0 = time.perf_counter()
    roles = encoder_roles(encoders)
    options.log(f"{tag}{probe.id}: {len(pd.images)} images; embedding with {len(encoders)} model(s) and floor(s)")
    feats = embed(roles, pd, state)
    t_embed = time.perf_counter() - t0
    ls = align(pd, feats)
    problem = too_small(probe, ls)
    if problem:
        raise DataUnavailable(problem)
    first_floor = EncoderRole.of("floor", 0)  # the near-duplicate judge: the first model's floor
    X_floor = feats[first_floor].X[ls.rows[first_floor]]
    splits, split_block, groups = make_probe_splits(ls, pd, X_floor, options)
    header = probe_header(probe, pd, ls, splits, split_block)
    options.log(f"{tag}{probe.id}: attacks on {len(ls.y)} images, {len(ls.classes)} classes")
    t1 = time.perf_counter()
    # Identical weights are evaluated once; the engine runs the jobs (here, or as Ray tasks).
    firsts: dict[str, EncoderRole] = {}
    for role in roles:
        firsts.setdefault(role.fingerprint, role)
    jobs = [AttackJob(r, feats[r], ls.rows[r], ls, splits, probe, groups) for r in firsts.values()]
    done: dict[str, object] = {}
    for job, m in zip(jobs, state.engine.evaluate(jobs, options)):
        enc = job.encoder
        if wants_finetune(probe, options):  # needs the image tower itself: always in this process
            options.log(f"{tag}{probe.id}: fine-tuning {enc.name} (the finetune adversary)")
            m = dataclasses.replace(m, finetune=run_finetune(enc, pd, ls, splits[0], options, m))
        done[enc.fingerprint] = m

    by_role = {r: r.fingerprint for r in roles}

    def metrics_of(role: str, index: int):
        return done[by_role[EncoderRole.of(role, index)]]

    results = []
    n_test = sum(int(s.test.size) for s in splits)
    per_class = n_test / max(1, len(ls.classes))
    for i, enc in enumerate(encoders):
        m, f = metrics_of("model", i), metrics_of("floor", i)
        # result.Probe declares its fields in the order an auditor reads them (level and reason first)
        block = R.Probe(**header, **risk_block(probe, m, f, header["chance"], options.seed, per_class,
                                               floor_description=getattr(enc.floor, "spec", None)),
                        metrics=m.to_result(),
                        control=R.build(R.Control, {**model_block(enc.floor), "metrics": f.to_result()}))
        if EncoderRole.of("base", i) in by_role:
            from .adaptation import adaptation_block

            block.adaptation = adaptation_block(
                ProbeResult(probe, header, ls, splits, [ModelResult(enc, m, f, block)]), enc.base,
                metrics_of("base", i), metrics_of("basefloor", i), options.seed, per_class)
        stats = {name: feats[EncoderRole.of(name, i)].stats for name in ("model", "floor")}
        cache = {name: R.CacheUse(n_embedded=st["n_embedded"], n_cache_hits=st["n_cache_hits"])
                 for name, st in stats.items()}
        block.timings = R.ProbeTimings(embed_s=round(t_embed, 3), attacks_s=round(time.perf_counter() - t1, 3),
                                       cache=R.ProbeCache(**cache))
        results.append(ModelResult(enc, m, f, block))
    return ProbeResult(probe, header, ls, splits, results)


def run(encoders: list, probes: list[Probe], options: Options, engine=None):
    """Run every probe on every encoder, on ``engine`` (default: this process). Returns (list of
    ProbeResult, not_run records, the run's ``RunState``)."""
    check_data_keys(probes, options)
    state = start_run(options, engine)
    options.log(f"{len(encoders)} model(s) on {len(probes)} probe(s), device {options.device}"
                + (f", {state.threads}" if state.threads else "") + f", seed {options.seed}", "debug")
    out, not_run = [], []
    for n, probe in enumerate(probes, 1):
        tag = f"[{n}/{len(probes)}] "
        options.log(f"{tag}{probe.id}: loading data")
        pd = load_or_record(probe, options, len(probes), not_run)
        if pd is None:
            continue
        t0 = time.perf_counter()
        out.append(run_probe(probe, pd, encoders, state, tag))
        levels = ", ".join(m.block.risk_level for m in out[-1].models)
        options.log(f"{tag}{probe.id}: done in {time.perf_counter() - t0:.0f} s (level: {levels})")
    from .adaptation import adjust_across_probes

    adjust_across_probes(out)
    return out, not_run, state


def run_date() -> str:
    """When the run finished, UTC, ISO 8601 to the second (``2026-01-02T03:04:05Z``): the audit's date
    in the model card. It differs between runs, so reports keep it under ``timings``."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
