"""``compare``: two models on the same images, splits and few-shot episodes, so every difference is
paired. Per probe: both reports, B minus A for each metric with its paired test, a headline test
(the smallest Holm-adjusted p over the probe's metrics), and Holm's correction across probes."""
from __future__ import annotations

import time

from . import __version__
from .attacks.splits import stratified_split
from .attacks.few_shot import paired_few_shot
from .attacks.stats import holm, paired_bootstrap
from .audit import (SCHEMA_VERSION, Settings, _check_data_keys, _order, align, embed, evaluate_encoder,
                    load_or_record, model_block, probe_header, risk_block, too_small)
from .errors import DataUnavailable
from .risk import level_index


def run_compare(enc_a, enc_b, probes, settings: Settings, alpha: float = 0.05) -> dict:
    _check_data_keys(probes, settings)
    t_start = time.perf_counter()
    encoders = {"a": enc_a, "floor_a": enc_a.floor, "b": enc_b, "floor_b": enc_b.floor}
    rows, not_run = [], []
    for n, probe in enumerate(probes, 1):
        settings.log(f"[{n}/{len(probes)}] {probe.id}: loading data")
        pd = load_or_record(probe, settings, len(probes), not_run)
        if pd is None:
            continue
        settings.log(f"[{n}/{len(probes)}] {probe.id}: embedding")
        feats = embed(encoders, pd, settings)
        ls = align(pd, feats)
        problem = too_small(probe, ls)
        if problem:
            raise DataUnavailable(problem)
        split = stratified_split(ls.y, settings.seed)
        settings.log(f"[{n}/{len(probes)}] {probe.id}: attacks on {len(ls.y)} images, {len(ls.classes)} classes")
        metrics, done = {}, {}
        for key, enc in encoders.items():
            if enc.fingerprint in done:
                metrics[key] = metrics[done[enc.fingerprint]]
                continue
            metrics[key] = evaluate_encoder(enc, feats[key].X[ls.rows[key]], ls, split, probe, settings)
            done[enc.fingerprint] = key
        header = probe_header(probe, pd, ls, split)
        sides = {}
        for side in ("a", "b"):
            r = dict(header)
            r.update(risk_block(probe, metrics[side], metrics[f"floor_{side}"], header["chance"], settings.seed))
            r["metrics"] = metrics[side].to_json()
            r["control"] = {**model_block(encoders[f"floor_{side}"]), "metrics": metrics[f"floor_{side}"].to_json()}
            sides[side] = _order(r)
        delta, tests = paired_differences(metrics["a"], metrics["b"], split, ls.y, len(ls.classes), settings.seed)
        rows.append({
            "id": probe.id, "title": probe.title, "capability": probe.capability, "policy": probe.policy,
            "reference": probe.reference,
            "level_a": sides["a"]["risk_level"], "level_b": sides["b"]["risk_level"],
            "risk_rose": level_index(sides["b"]["risk_level"]) > level_index(sides["a"]["risk_level"]),
            "delta": delta, "tests": tests, **headline(delta, tests),
            "a": sides["a"], "b": sides["b"],
        })
    adjusted = holm([r["p_value"] for r in rows])
    for r, p in zip(rows, adjusted):
        r["p_adjusted"] = p
        r["significant"] = bool(p < alpha)
        r["rose_significantly"] = bool(r["significant"] and r["headline"]["change"] > 0)
    rows.sort(key=lambda r: (not r["risk_rose"], not r["significant"], r["id"]))
    return {
        "schema_version": SCHEMA_VERSION, "kind": "compare", "tool": {"name": "creepscan", "version": __version__},
        "model_a": model_block(enc_a), "model_b": model_block(enc_b), "seed": settings.seed,
        "alpha": alpha, "correction": "holm: within a probe over its metrics, then across probes",
        "settings": {"max_per_class": settings.max_per_class},
        "probes": rows, "not_run": not_run,
        "summary": {"rose": [r["id"] for r in rows if r["risk_rose"]],
                    "significant": [r["id"] for r in rows if r["significant"]]},
        "timings": {"total_s": round(time.perf_counter() - t_start, 3), **settings.execution(enc_b)},
    }


def headline(delta: dict, tests: dict) -> dict:
    """The probe's headline test: its metric tests (linear probe, zero-shot, each few-shot k)
    Holm-adjusted within the probe, the smallest adjusted p taken. A saturated linear probe (both
    models at 100%) can hide a large change in how few images suffice; this catches it."""
    named = [("linear_probe", delta["linear_probe"], tests["linear_probe"]["p_value"])]
    if "zero_shot" in tests:
        named.append(("zero_shot", delta["zero_shot"], tests["zero_shot"]["p_value"]))
    named += [(f"few_shot k={k}", delta["few_shot"][k], t["p_value"]) for k, t in tests["few_shot"].items()]
    adjusted = holm([p for _, _, p in named])
    best = min(range(len(named)), key=lambda i: (adjusted[i], -abs(named[i][1]), i))
    return {"p_value": adjusted[best],
            "headline": {"metric": named[best][0], "change": named[best][1], "p_within_probe": adjusted[best]}}


def paired_differences(ma, mb, split, y, n_classes, seed):
    """B minus A for each metric both models have, with its paired test."""
    y_test = y[split.test]
    lp = paired_bootstrap(y_test, ma.linear_probe.test_correct, mb.linear_probe.test_correct, n_classes, seed)
    delta = {"linear_probe": lp["delta"], "zero_shot": None, "few_shot": {}, "verification_tar_1e-3": None,
             "verification_auc": None}
    tests = {"linear_probe": {"ci95": lp["ci95"], "p_value": lp["p_value"],
                              "method": "exact paired sign-flip test over test images (CI: stratified bootstrap)"}}
    if ma.zero_shot is not None and mb.zero_shot is not None:
        zs = paired_bootstrap(y_test, ma.zero_shot.test_correct, mb.zero_shot.test_correct, n_classes, seed)
        delta["zero_shot"] = zs["delta"]
        tests["zero_shot"] = {"ci95": zs["ci95"], "p_value": zs["p_value"],
                              "method": "exact paired sign-flip test over test images (CI: stratified bootstrap)"}
    ks_a = set(ma.few_shot.ks) if ma.few_shot is not None else set()
    ks_b = set(mb.few_shot.ks) if mb.few_shot is not None else set()
    tests["few_shot"] = {}
    for k in sorted(ks_a & ks_b):
        # Episodes are drawn from the labels and seed alone, so episode i is the same for A and B.
        t = paired_few_shot(ma.few_shot[k], mb.few_shot[k], n_classes, seed)
        delta["few_shot"][str(k)] = t["delta"]
        tests["few_shot"][str(k)] = {"ci95": t["ci95"], "p_value": t["p_value"],
                                     "method": "paired sign-flip test over test images of episode-averaged correctness (CI: bootstrap over episodes and test images)"}
    if ma.verification is not None and mb.verification is not None:
        va, vb = ma.verification.to_json(), mb.verification.to_json()
        ta, tb = va["tar_at_far"].get("1e-3"), vb["tar_at_far"].get("1e-3")
        if ta is not None and tb is not None:
            delta["verification_tar_1e-3"] = round(tb - ta, 6)
        delta["verification_auc"] = round(vb["auc"] - va["auc"], 6)
    return delta, tests
