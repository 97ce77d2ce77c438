"""Attack fitting speed (issue 6): creepscan's default attack set vs scikit-learn doing the same protocol.

Data: ``make_data`` (10,000 x 512 float32, 100 balanced classes, class centre + 8x noise,
L2-normalised: the features of the whole-audit speed check in RESULTS.md); the split is
``stratified_split(y, seed)`` (60/20/20). The sklearn row also times ONE
``LogisticRegression(C=10, max_iter=1000).fit`` on the training split, the speed check's unit
(its bar: a whole audit costs at most 10 of them), and the table gives every row in those units.

Rows, each timed in its own child process (this script re-run with a hidden ``--row``) so that
peak host memory (the child's peak resident set, see ``peak_host_mib``) belongs to that row alone:

* ``creepscan <device>``: ``creepscan.attacks.evaluate(X, y, n_classes, split, seed,
  attacks=("linear_probe", "few_shot", "verification"), device)``, what an audit runs per
  encoder, once per device (cpu, and cuda when there is one). The three parts are timed inside
  that one call by wrapping the functions ``evaluate`` calls. On cuda the clock stops after
  ``torch.cuda.synchronize()`` and peak device memory is ``torch.cuda.max_memory_allocated()``.
  Every attack chooses a label-free transform on validation (``attacks.preprocess``) and
  verification adds the learned metric, as in an audit.
* ``creepscan cpu, raw features``: the same call with ``preprocess=None`` (raw features, raw
  cosine only): the difference is what the preprocessing costs (``agreement.preprocessing_cost``),
  and this row, with no preprocessing either, is the one compared with scikit-learn.
* ``sklearn cpu``: the same protocol written plainly with scikit-learn, numpy and nothing of
  creepscan's solver:
    - linear probe: ``LogisticRegression(C, max_iter=1000)`` (lbfgs, multinomial) fitted from
      scratch at every C of the same search (coarse grid ``COARSE_LOG10_C``, then ``N_HALVINGS``
      halving steps around the best, ties to the smaller C), C chosen on validation balanced
      accuracy, refit on train+val, scored on test.
    - few-shot: the very same support sets (``draw_supports`` with creepscan's k list and seed, as
      many episodes per k as creepscan ran), per episode a cosine nearest-class-mean prototype head
      and a ``LogisticRegression`` head at the C sklearn's own search chose; the winner per k is
      the head with the higher mean validation balanced accuracy (ties to the prototype).
    - verification: the same seeded pair design as ``creepscan.attacks.verification`` (all
      within-class pairs when they fit half the pair budget, impostor pairs from shuffled block
      pairs), scored with numpy, ROC AUC and TAR at FAR from ``sklearn.metrics.roc_curve``.
  Standardisation, as creepscan does it: features are centred with the training split's mean and
  divided by its root-mean-square coordinate, and sklearn's C is multiplied by that scale
  squared. That is an exact reparameterisation of sklearn's raw-feature objective (the intercept
  absorbs the centring; the penalty is rescaled to match), so the optimum and the predictions
  are those of ``LogisticRegression(C)`` on the raw features, but lbfgs sees unit-scale inputs
  (raw coordinates are ~0.04, which would make its absolute gradient tolerance, default
  ``tol=1e-4``, looser still). The split and the support sets come from creepscan's functions,
  run in the parent so that torch stays out of the sklearn child's memory; drawing the supports
  is timed there and added to sklearn's few-shot seconds.

Every row first warms up its own code path on a small problem (1,000 x dim, 10 classes: each
attack once, few-shot capped at two k and two episodes), outside the timing; its seconds are
reported separately (on cuda they include creating the context and loading kernels).

Agreement. creepscan vs sklearn is reported, not enforced (different solvers and stopping rules;
on flat validation curves the two searches may pick different C). creepscan cpu vs cuda is
enforced: the script exits with status 1 when any of these differ by more than
  * 1 point (0.01) of balanced accuracy for the linear probe, or for a few-shot k's reported
    accuracy: both devices solve the same float32 problem, and only reduction order differs, so
    the fits differ by about their stopping tolerances; one test image is 0.05 points, and 1 point
    (20 of 2,000 test images, or an adjacent C picked on a flat validation curve) is well above
    that noise and well below any difference that would change an audit's conclusion;
  * 0.005 of verification ROC AUC and 0.01 of TAR at each FAR: the pairs are identical (their
    design depends only on the labels and the seed) and the cosine scores differ by ~1e-7, so
    these only move if something is actually wrong.
The script also exits with status 1 when a row's child process fails.

    python benchmarks/attacks.py [--n 10000] [--dim 512] [--classes 100] [--seed 0]
                                 [--devices cpu cuda] [--skip-sklearn] [--out PATH]

Output: a markdown table on stdout and JSON at ``--out`` (default
benchmarks/results/attacks_<cpu|cuda>.json, ``cuda`` when a cuda row ran).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROW_MARK = "@@row "          # the child's one JSON line on stdout starts with this
WARMUP = (1000, 10)          # warm-up problem: images, classes (dim as the benchmark)
ATTACK_SET = ("linear_probe", "few_shot", "verification")
TOL = {"linear_probe_accuracy": 0.01, "few_shot_accuracy": 0.01, "verification_auc": 0.005,
       "verification_tar": 0.01}


def make_data(n: int, dim: int, n_classes: int, seed: int = 0):
    """Class centre ~ N(0, I) plus 8.0 * N(0, I) noise, L2-normalised, float32; balanced classes.

    Kept free of torch and creepscan so that the sklearn child imports neither."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    y = rng.permutation(np.arange(n) % n_classes)
    X = centres[y] + 8.0 * rng.standard_normal((n, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y.astype(np.int64)


def peak_host_mib() -> float:
    """Peak resident memory of this process, MiB.

    On Linux this is VmHWM of /proc/self/status, not ``ru_maxrss``: Linux carries the parent's
    high-water mark into ``ru_maxrss`` across fork + exec, so a child started by a parent holding
    torch (~500 MiB) would report at least that whatever it did itself. VmHWM belongs to the
    process's own address space, which exec replaces. Elsewhere: ``ru_maxrss`` (KiB on Linux,
    bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2 ** 20 if sys.platform == "darwin" else rss / 1024.0


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score
    return float(balanced_accuracy_score(y_true, y_pred))


# ---------------------------------------------------------------------------------------------
# Child: creepscan on one device
# ---------------------------------------------------------------------------------------------

def row_creepscan(args, spec: str) -> dict:
    """``spec``: a device, or DEVICE:raw for the attacks on the raw features only (no label-free
    preprocessing, no learned verification metric: the cost the preprocessing adds)."""
    import torch

    from creepscan.attacks import evaluate, few_shot_curve, linear_probe, stratified_split, verification

    device, _, variant = spec.partition(":")

    dev = torch.device(device)
    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    X, y = make_data(args.n, args.dim, args.classes, args.seed)
    split = stratified_split(y, seed=args.seed)
    host_before = peak_host_mib()

    # Warm-up: each attack once on a small problem (few-shot capped at two k and two episodes, since
    # on a small test split its CI target would otherwise call for hundreds of episodes).
    t = time.perf_counter()
    Xw, yw = make_data(WARMUP[0], args.dim, WARMUP[1], args.seed + 1)
    sw = stratified_split(yw, seed=args.seed)
    lp = linear_probe(Xw, yw, WARMUP[1], sw, seed=args.seed, device=device)
    few_shot_curve(Xw, yw, WARMUP[1], sw, seed=args.seed, C=lp.C, ks=(1, 8), min_episodes=2,
                   max_episodes=2, device=device)
    verification(Xw, yw, seed=args.seed, device=device)
    sync()
    warmup = time.perf_counter() - t
    del Xw, yw
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)

    # Time the parts inside the one evaluate call through its timer hook (a sync on entry and exit).
    parts: dict[str, float] = {}

    @contextlib.contextmanager
    def timer(name):
        sync()
        t0 = time.perf_counter()
        yield
        sync()
        parts[name] = parts.get(name, 0.0) + time.perf_counter() - t0

    sync()
    t, cpu = time.perf_counter(), time.process_time()
    m = evaluate(X, y, args.classes, split, seed=args.seed, attacks=ATTACK_SET, device=device, timer=timer,
                 preprocess=None if variant == "raw" else "auto")
    sync()
    total, cpu = time.perf_counter() - t, time.process_time() - cpu

    ver = m.verification
    out = {
        "row": f"creepscan {device}" + (", raw features" if variant == "raw" else ""),
        "seconds": {"total": total, **parts, "warmup": warmup},
        "cpu_seconds": cpu,
        "peak_host_mib": peak_host_mib(),
        "host_mib_before_timed_work": host_before,
        "torch_threads": torch.get_num_threads(),
        "linear_probe": {"accuracy": m.linear_probe.accuracy, "C": m.linear_probe.C,
                         "preprocess": m.linear_probe.preprocess,
                         "val_accuracy": m.linear_probe.val_accuracy,
                         "c_search": [[float(c), float(a)] for c, a in m.linear_probe.c_search]},
        "few_shot": [{"k": e.k, "episodes": e.episodes, "winner": e.winner, "accuracy": e.accuracy,
                      "prototype_accuracy": e.prototype_accuracy, "logistic_accuracy": e.logistic_accuracy,
                      "prototype_val_accuracy": e.prototype_val_accuracy,
                      "logistic_val_accuracy": e.logistic_val_accuracy} for e in m.few_shot],
        # per-pair (unweighted) figures, as the scikit-learn row computes them; the audit's
        # identity-weighted ones are kept beside them
        "verification": {"auc": ver.unweighted["auc"], "tar_at_far": ver.unweighted["tar_at_far"],
                         "identity_weighted": {"auc": ver.auc, "tar_at_far": ver.tar_at_far},
                         "n_genuine": ver.n_genuine, "n_impostor": ver.n_impostor, "sampled": ver.sampled},
    }
    if cuda:
        out["peak_device_mib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
        out["peak_device_reserved_mib"] = torch.cuda.max_memory_reserved(dev) / 2 ** 20
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


# ---------------------------------------------------------------------------------------------
# Child: the same protocol with scikit-learn (imports numpy and sklearn only)
# ---------------------------------------------------------------------------------------------

def sk_linear_probe(Z, y, split, coarse, n_halvings):
    """The CLIP-protocol C search with a fresh LogisticRegression per C. Z: standardised features,
    C values are raw-feature C (the fit uses C * scale^2, see the module docstring)."""
    from sklearn.linear_model import LogisticRegression

    fits: dict[float, tuple] = {}

    def run(logc: float) -> float:
        if logc not in fits:
            t = time.perf_counter()
            clf = LogisticRegression(C=10.0 ** logc * Z.c_factor, max_iter=1000).fit(Z.train, y[split["train"]])
            acc = _balanced_accuracy(y[split["val"]], clf.predict(Z.val))
            fits[logc] = (acc, int(np.max(clf.n_iter_)), time.perf_counter() - t)
        return fits[logc][0]

    def best_of(cands):  # highest val accuracy; ties go to the smaller C
        return max(sorted(cands), key=lambda logc: (run(logc), -logc))

    best = best_of(coarse)
    step = (coarse[1] - coarse[0]) / 2.0
    lo, hi = coarse[0], coarse[-1]
    for _ in range(n_halvings):
        best = best_of([logc for logc in (best - step, best, best + step) if lo <= logc <= hi])
        step /= 2.0
    C = 10.0 ** best
    clf = LogisticRegression(C=C * Z.c_factor, max_iter=1000).fit(
        np.concatenate([Z.train, Z.val]), np.concatenate([y[split["train"]], y[split["val"]]]))
    acc = _balanced_accuracy(y[split["test"]], clf.predict(Z.test))
    return {"accuracy": acc, "C": C, "val_accuracy": fits[best][0], "refit_n_iter": int(np.max(clf.n_iter_)),
            "c_search": [[10.0 ** logc, a, it, round(s, 3)] for logc, (a, it, s) in sorted(fits.items())]}


def sk_few_shot(X, Z, y, split, C, supports: dict[int, np.ndarray]):
    """Prototype and logistic heads on the given support sets (positions into split["train"],
    class-major, k per class in sorted class order)."""
    from sklearn.linear_model import LogisticRegression

    def unit(a):
        return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)

    tr, va, te = split["train"], split["val"], split["test"]
    classes = np.unique(y[tr])
    K = classes.size
    Xn_tr = unit(X[tr])
    Xn_vt = unit(np.concatenate([X[va], X[te]]))
    Z_vt = np.concatenate([Z.val, Z.test])
    y_va, y_te = y[va], y[te]
    n_val = va.size
    out = []
    for k, sup in supports.items():
        acc = {"prototype": ([], []), "logistic": ([], [])}  # (val, test) per episode
        labels = np.repeat(classes, k)
        for rows in sup:
            protos = unit(Xn_tr[rows].reshape(K, k, -1).mean(axis=1))
            pred_p = classes[np.argmax(Xn_vt @ protos.T, axis=1)]
            clf = LogisticRegression(C=C * Z.c_factor, max_iter=1000).fit(Z.train[rows], labels)
            pred_l = clf.predict(Z_vt)
            for name, pred in (("prototype", pred_p), ("logistic", pred_l)):
                acc[name][0].append(_balanced_accuracy(y_va, pred[:n_val]))
                acc[name][1].append(_balanced_accuracy(y_te, pred[n_val:]))
        pv, pt = (float(np.mean(a)) for a in acc["prototype"])
        lv, lt = (float(np.mean(a)) for a in acc["logistic"])
        # ties go to the prototype; per-episode balanced accuracies are multiples of 1/len(y_va),
        # so equal means are a real tie and only float noise could tell them apart
        winner = "logistic" if lv - pv > 1e-9 else "prototype"
        out.append({"k": int(k), "episodes": int(len(sup)), "winner": winner,
                    "accuracy": lt if winner == "logistic" else pt, "prototype_accuracy": pt,
                    "logistic_accuracy": lt, "prototype_val_accuracy": pv, "logistic_val_accuracy": lv})
    return out


def _block_scores(Xn, members, b, rng):
    """Shuffle ``members`` into blocks of b and score block 2t against block 2t+1 (all b x b pairs)."""
    perm = rng.permutation(members)
    m = perm.size // (2 * b)
    idx = perm[: m * 2 * b].reshape(m, 2, b)
    return np.matmul(Xn[idx[:, 0]], Xn[idx[:, 1]].transpose(0, 2, 1)), idx[:, 0], idx[:, 1]


def verification_pairs(X, y, seed: int, max_pairs: int):
    """Genuine and impostor cosine scores of creepscan's verification pair design, in numpy."""
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    n = y.size
    if n * (n - 1) // 2 <= max_pairs:  # every pair i < j
        iu = np.triu_indices(n, k=1)
        scores = (Xn @ Xn.T)[iu]
        same = y[iu[0]] == y[iu[1]]
        return scores[same], scores[~same]
    rng = np.random.default_rng([int(seed), 7])
    classes, counts = np.unique(y, return_counts=True)
    per_class = counts * (counts - 1) // 2
    order = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    gen = []
    if per_class.sum() <= max_pairs // 2:  # all within-class pairs
        for c in range(classes.size):
            mem = order[starts[c]:starts[c + 1]]
            S = Xn[mem] @ Xn[mem].T
            gen.append(S[np.triu_indices(mem.size, k=1)])
    else:  # block-sampled within each class, sized to the class's share of the budget
        share = (max_pairs // 2) / per_class.sum()
        for c in range(classes.size):
            mem = order[starts[c]:starts[c + 1]]
            want = max(1, int(per_class[c] * share))
            b = max(1, min(mem.size // 2, int(round(want / max(1, mem.size // 2)))))
            if mem.size < 2:
                continue
            gen.append(_block_scores(Xn, mem, b, rng)[0].ravel())
    gen = np.concatenate(gen)
    # impostors: blocks of b images against partner blocks; shrink b until they fit the budget
    budget = max_pairs - gen.size
    p_diff = 1.0 - float(np.sum((counts / n) ** 2))
    b = int(max(1, min(n // 2, round(budget / max(1e-9, p_diff) / (n / 2)))))
    while True:
        S, rows, cols = _block_scores(Xn, np.arange(n), b, rng)
        diff = y[rows][:, :, None] != y[cols][:, None, :]
        if int(diff.sum()) <= budget or b == 1:
            break
        b = max(1, int(b * 0.9))
    return gen, S[diff]


def sk_verification(X, y, seed: int, max_pairs: int, far_levels: dict):
    from sklearn.metrics import auc, roc_curve

    gen, imp = verification_pairs(X, y, seed, max_pairs)
    labels = np.concatenate([np.ones(gen.size, np.int8), np.zeros(imp.size, np.int8)])
    fpr, tpr, _ = roc_curve(labels, np.concatenate([gen, imp]).astype(np.float64), drop_intermediate=False)
    tars = {}
    for name, far in far_levels.items():  # the best TAR whose FAR stays within the level
        tars[name] = float(tpr[fpr <= far + 1e-12].max()) if imp.size >= 10.0 / far else None
    return {"auc": float(auc(fpr, tpr)), "tar_at_far": tars, "n_genuine": int(gen.size),
            "n_impostor": int(imp.size), "sampled": bool(y.size * (y.size - 1) // 2 > max_pairs)}


class _Standardised:
    """Train-split centring and global scaling of the three splits (see the module docstring):
    statistics in float64 like creepscan's ``Standardizer``, features kept float32."""

    def __init__(self, X, split):
        Xtr = X[split["train"]].astype(np.float64)
        mean = Xtr.mean(axis=0)
        scale = float(np.sqrt(np.mean((Xtr - mean) ** 2)))
        mean32, scale32 = mean.astype(np.float32), np.float32(scale)
        self.train, self.val, self.test = ((X[split[s]] - mean32) / scale32 for s in ("train", "val", "test"))
        self.c_factor = scale ** 2


def row_sklearn(args) -> dict:
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    plan = json.loads(Path(args.plan).read_text())
    arrays = np.load(Path(args.plan).with_suffix(".npz"))
    X, y = make_data(args.n, args.dim, args.classes, args.seed)
    split = {s: arrays[s] for s in ("train", "val", "test")}
    supports = {int(k): arrays[f"supports_{k}"] for k in plan["ks"]}
    host_before = peak_host_mib()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # n_iter is reported instead
        # k=1 episodes have one sample per class, which sklearn flags as "could be regression"
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        t = time.perf_counter()  # warm-up: one small fit, prediction and ROC
        Xw, yw = make_data(WARMUP[0], args.dim, WARMUP[1], args.seed + 1)
        LogisticRegression(max_iter=1000).fit(Xw, yw).predict(Xw)
        sk_verification(Xw, yw, args.seed, 10_000, plan["far_levels"])
        warmup = time.perf_counter() - t
        del Xw, yw

        parts = {}
        cpu = time.process_time()
        t = time.perf_counter()
        Z = _Standardised(X, split)  # timed with the linear probe
        lp = sk_linear_probe(Z, y, split, plan["coarse_log10_c"], plan["n_halvings"])
        parts["linear_probe"] = time.perf_counter() - t
        t = time.perf_counter()
        fs = sk_few_shot(X, Z, y, split, lp["C"], supports)
        parts["few_shot"] = time.perf_counter() - t + plan["supports_seconds"]
        t = time.perf_counter()
        kept = np.isin(y, np.unique(y[split["train"]]))
        ver = sk_verification(X[kept], y[kept], args.seed, plan["max_pairs"], plan["far_levels"])
        parts["verification"] = time.perf_counter() - t
        cpu = time.process_time() - cpu
        t = time.perf_counter()  # the speed check's unit: one plain fit on the raw training split
        LogisticRegression(C=10.0, max_iter=1000).fit(X[split["train"]], y[split["train"]])
        one_fit = time.perf_counter() - t
    return {"row": "sklearn cpu", "one_fit_seconds": one_fit,
            "seconds": {"total": sum(parts.values()), **parts, "warmup": warmup,
                                              "supports_drawn_in_parent": plan["supports_seconds"]},
            "cpu_seconds": cpu + plan["supports_seconds"],
            "peak_host_mib": peak_host_mib(), "host_mib_before_timed_work": host_before,
            "sklearn": sklearn.__version__, "linear_probe": lp, "few_shot": fs, "verification": ver}


# ---------------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------------

def _busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def child(args, row: str, plan: Path | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--row", row, "--n", str(args.n),
           "--dim", str(args.dim), "--classes", str(args.classes), "--seed", str(args.seed)]
    if plan is not None:
        cmd += ["--plan", str(plan)]
    print(f"running: {row} ...", file=sys.stderr, flush=True)
    busy0, own0, t0 = _busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # the child's stderr passes through
    busy1, own1, wall = _busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith(ROW_MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout)
        raise RuntimeError(f"row {row!r} failed (exit status {proc.returncode})")
    out = json.loads(lines[-1][len(ROW_MARK):])
    # Other processes' load while this row ran, in CPUs: the machine's busy time minus this
    # child's own (the parent only waits). On a shared machine, a value above ~0.1 means the
    # row's seconds are inflated (torch's CPU kernels suffer most: its threads wait on each other
    # at every operation when one of them is descheduled).
    if busy0 is not None:
        own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
        out["other_load_cpus"] = max(0.0, (busy1 - busy0 - own) / wall)
    return out


def write_plan(args, workdir: Path, cs_row: dict) -> Path:
    """Everything the sklearn child takes from creepscan's conventions: split, search grid, support
    sets (as many episodes per k as creepscan ran), pair budget and FAR levels."""
    import inspect

    from creepscan.attacks import stratified_split
    from creepscan.attacks.few_shot import draw_supports
    from creepscan.attacks.linear_probe import COARSE_LOG10_C, N_HALVINGS
    from creepscan.attacks.verification import FAR_LEVELS, verification

    _, y = make_data(args.n, args.dim, args.classes, args.seed)
    split = stratified_split(y, seed=args.seed)
    classes = np.unique(y[split.train])
    arrays = {"train": split.train, "val": split.val, "test": split.test}
    t = time.perf_counter()
    for e in cs_row["few_shot"]:
        arrays[f"supports_{e['k']}"] = draw_supports(y[split.train], classes, e["k"], args.seed, range(e["episodes"]))
    supports_seconds = time.perf_counter() - t
    plan = {"coarse_log10_c": list(COARSE_LOG10_C),
            "n_halvings": N_HALVINGS, "ks": [e["k"] for e in cs_row["few_shot"]],
            "supports_seconds": supports_seconds, "far_levels": dict(FAR_LEVELS),
            "max_pairs": inspect.signature(verification).parameters["max_pairs"].default}
    path = workdir / "plan.json"
    path.write_text(json.dumps(plan))
    np.savez(path.with_suffix(".npz"), **arrays)
    return path


def compare(a: dict, b: dict) -> dict:
    """Differences a - b of the attack metrics (accuracies in points)."""
    def points(x, y):  # rounded so that float noise of the averages doesn't read as a difference
        return round(100 * (x - y), 6)

    fs_b = {e["k"]: e for e in b["few_shot"]}
    few = [{"k": e["k"], "diff_points": points(e["accuracy"], fs_b[e["k"]]["accuracy"]),
            "winners": [e["winner"], fs_b[e["k"]]["winner"]],
            "prototype_diff_points": points(e["prototype_accuracy"], fs_b[e["k"]]["prototype_accuracy"]),
            "logistic_diff_points": points(e["logistic_accuracy"], fs_b[e["k"]]["logistic_accuracy"])}
           for e in a["few_shot"] if e["k"] in fs_b]
    va, vb = a["verification"], b["verification"]
    tar = {f: (None if va["tar_at_far"][f] is None or vb["tar_at_far"].get(f) is None
               else va["tar_at_far"][f] - vb["tar_at_far"][f]) for f in va["tar_at_far"]}
    return {"linear_probe_diff_points": points(a["linear_probe"]["accuracy"], b["linear_probe"]["accuracy"]),
            "linear_probe_C": [a["linear_probe"]["C"], b["linear_probe"]["C"]],
            "few_shot": few, "verification_auc_diff": va["auc"] - vb["auc"], "verification_tar_diff": tar,
            "pairs_equal": (va["n_genuine"], va["n_impostor"]) == (vb["n_genuine"], vb["n_impostor"])}


def device_check(cpu: dict, cuda: dict) -> tuple[dict, list[str]]:
    """creepscan cpu vs cuda: max |differences| and the tolerance breaches."""
    d = compare(cpu, cuda)
    worst = {
        "linear_probe_accuracy": abs(d["linear_probe_diff_points"]) / 100,
        "few_shot_accuracy": max([abs(e["diff_points"]) / 100 for e in d["few_shot"]], default=0.0),
        "verification_auc": abs(d["verification_auc_diff"]),
        "verification_tar": max([abs(v) for v in d["verification_tar_diff"].values() if v is not None], default=0.0),
    }
    failures = [f"{k}: |cpu - cuda| = {v:.6g} > {TOL[k]}" for k, v in worst.items() if v > TOL[k]]
    if len(d["few_shot"]) != len(cpu["few_shot"]) or len(cpu["few_shot"]) != len(cuda["few_shot"]):
        failures.append("few_shot: cpu and cuda ran different k")
    if not d["pairs_equal"]:
        failures.append("verification: cpu and cuda scored different numbers of pairs")
    unmeasured = [f for f, v in d["verification_tar_diff"].items()
                  if (cpu["verification"]["tar_at_far"][f] is None) != (cuda["verification"]["tar_at_far"][f] is None)]
    if unmeasured:
        failures.append(f"verification: TAR at FAR {unmeasured} measurable on one device only")
    return {"max_abs": worst, "tolerance": TOL, "details": d, "ok": not failures}, failures


def machine_info(rows: list[dict]) -> dict:
    import sklearn
    import torch
    from threadpoolctl import threadpool_info

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "sklearn": sklearn.__version__,
            "torch_threads": next((r["torch_threads"] for r in rows if "torch_threads" in r), None),
            "blas": sorted({f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
                            for p in threadpool_info() if p.get("user_api") == "blas"}),
            "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--devices", nargs="+", default=None,
                    help="creepscan devices (space or comma separated); default: cpu, plus cuda when available")
    ap.add_argument("--skip-sklearn", action="store_true", help="don't run the scikit-learn protocol row")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/attacks_<cpu|cuda>.json)")
    ap.add_argument("--row", help=argparse.SUPPRESS)   # child mode: run one row, print one JSON line
    ap.add_argument("--plan", help=argparse.SUPPRESS)  # the sklearn child's inputs from the parent
    args = ap.parse_args(argv)

    if args.row is not None:
        out = row_sklearn(args) if args.row == "sklearn" else row_creepscan(args, args.row.split(":", 1)[1])
        print(ROW_MARK + json.dumps(out), flush=True)
        return 0

    import torch

    devices = [d for item in (args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
               for d in item.split(",") if d]
    if not devices:
        ap.error("--devices needs at least one device")
    for d in devices:
        if torch.device(d).type == "cuda" and not torch.cuda.is_available():
            ap.error(f"--devices {d}: CUDA is not available here")
    tag = "cuda" if any(torch.device(d).type == "cuda" for d in devices) else "cpu"
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"attacks_{tag}.json"

    load_before = os.getloadavg()
    rows = [child(args, f"creepscan:{d}") for d in devices]
    # the attacks without the preprocessing: what it costs, and the row the scikit-learn protocol
    # (which has none) is compared with
    rows += [child(args, f"creepscan:{d}:raw") for d in devices if d == "cpu"]
    cs = next((r for r in rows if r["row"] == "creepscan cpu, raw features"), rows[0])
    sk = None
    if not args.skip_sklearn:
        with tempfile.TemporaryDirectory() as tmp:
            sk = child(args, "sklearn", write_plan(args, Path(tmp), cs))
        rows.append(sk)
    load_after = os.getloadavg()
    for r in rows:
        if r.get("other_load_cpus", 0.0) > 0.1:
            print(f"note: other processes used {r['other_load_cpus']:.2f} CPUs on average while "
                  f"'{r['row']}' ran; its seconds are inflated", file=sys.stderr)

    # ---- agreement
    agreement: dict = {}
    failures: list[str] = []
    if sk is not None:
        agreement["creepscan_vs_sklearn"] = {"creepscan_row": cs["row"], **compare(cs, sk)}
    cpu_row = next((r for r in rows if r["row"] == "creepscan cpu"), None)
    if cpu_row is not None and cs is not cpu_row:
        agreement["preprocessing_cost"] = {
            "seconds": cpu_row["seconds"]["total"] - cs["seconds"]["total"],
            "ratio": cpu_row["seconds"]["total"] / cs["seconds"]["total"],
            "parts": {k: cpu_row["seconds"][k] - cs["seconds"][k]
                      for k in ("linear_probe", "few_shot", "verification")},
            "linear_probe_preprocess": cpu_row["linear_probe"]["preprocess"],
            "linear_probe_accuracy_diff_points":
                100 * (cpu_row["linear_probe"]["accuracy"] - cs["linear_probe"]["accuracy"])}
    gpu_row = next((r for r in rows if r["row"].startswith("creepscan cuda")), None)
    if cpu_row is not None and gpu_row is not None:
        agreement["creepscan_cpu_vs_cuda"], failures = device_check(cpu_row, gpu_row)

    # ---- table
    sk_total = sk["seconds"]["total"] if sk else None
    lines = [f"{args.n:,} x {args.dim}, {args.classes} classes, seed {args.seed}; "
             f"attacks: linear probe (C search), few-shot curve, verification",
             "",
             "| row | seconds | linear probe | few-shot | verification | speed-up vs sklearn | "
             "in one-sklearn-fit units | peak host MiB | peak device MiB | warm-up s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    one_fit = sk["one_fit_seconds"] if sk else None
    for r in rows:
        s = r["seconds"]
        ratio = sk_total / s["total"] if sk_total else None
        units = s["total"] / one_fit if one_fit else None
        lines.append(f"| {r['row']} | {s['total']:.2f} | {s['linear_probe']:.2f} | {s['few_shot']:.2f} | "
                     f"{s['verification']:.2f} | {fmt(ratio)}{'x' if ratio else ''} | {fmt(units)} | "
                     f"{r['peak_host_mib']:.0f} | {fmt(r.get('peak_device_mib'), 0)} | {s['warmup']:.2f} |")
    if one_fit:
        lines.append(f"\none sklearn LogisticRegression(C=10).fit on the training split: {one_fit:.2f} s")
    print("\n".join(lines))

    if sk is not None:
        a = agreement["creepscan_vs_sklearn"]
        print(f"\n{cs['row']} vs sklearn: linear probe {100 * cs['linear_probe']['accuracy']:.2f}% vs "
              f"{100 * sk['linear_probe']['accuracy']:.2f}% ({a['linear_probe_diff_points']:+.2f} points), "
              f"C {cs['linear_probe']['C']:.3g} vs {sk['linear_probe']['C']:.3g}")
        for e in a["few_shot"]:
            print(f"  few-shot k={e['k']:>3}: {e['diff_points']:+.2f} points (winners {e['winners'][0]} / "
                  f"{e['winners'][1]}; prototype {e['prototype_diff_points']:+.2f}, "
                  f"logistic {e['logistic_diff_points']:+.2f})")
        print(f"  verification AUC {cs['verification']['auc']:.6f} vs {sk['verification']['auc']:.6f} "
              f"({a['verification_auc_diff']:+.2e}); TAR diff "
              + ", ".join(f"@FAR {f}: {fmt(v, 6)}" for f, v in a["verification_tar_diff"].items())
              + f"; same pair counts: {a['pairs_equal']}")
    if "creepscan_cpu_vs_cuda" in agreement:
        c = agreement["creepscan_cpu_vs_cuda"]
        print("\ncreepscan cpu vs cuda, max |difference| (tolerance): "
              + ", ".join(f"{k} {v:.3g} ({TOL[k]})" for k, v in c["max_abs"].items())
              + f"; C {c['details']['linear_probe_C'][0]:.3g} vs {c['details']['linear_probe_C'][1]:.3g}"
              + ("; OK" if c["ok"] else "; FAILED"))

    def rounded(o):
        if isinstance(o, float):
            return float(f"{o:.6g}") if math.isfinite(o) else o
        if isinstance(o, dict):
            return {k: rounded(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [rounded(v) for v in o]
        return o

    result = {
        "command": "python " + shlex.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {"n": args.n, "dim": args.dim, "classes": args.classes, "seed": args.seed, "noise": 8.0,
                 "dtype": "float32", "generator": "benchmarks/attacks.py make_data"},
        "attacks": list(ATTACK_SET),
        "machine": {**machine_info(rows), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after]},
        "notes": {"peak_host_mib": "peak resident set (VmHWM) of the row's own child process: includes "
                                   "the interpreter, imports, the data and, on cuda, the CUDA context; "
                                   "host_mib_before_timed_work is the same before the timed work",
                  "peak_device_mib": "torch.cuda.max_memory_allocated after warm-up",
                  "speedup_vs_sklearn": "sklearn protocol seconds / row seconds",
                  "other_load_cpus": "average CPUs used by other processes while the row's child ran "
                                     "(Linux /proc/stat); above ~0.1 the row's seconds are inflated",
                  "cpu_seconds": "process CPU time (all threads) over the timed work: less sensitive "
                                 "than wall seconds to other load on the machine"},
        "rows": rows,
        "speedup_vs_sklearn": ({r["row"]: sk_total / r["seconds"]["total"] for r in rows} if sk_total else None),
        "one_sklearn_fit_units": ({r["row"]: r["seconds"]["total"] / one_fit for r in rows} if one_fit else None),
        "agreement": agreement,
        "failures": failures,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(rounded(result), indent=2) + "\n")
    print(f"\nwrote {out_path}")
    for f in failures:
        print(f"AGREEMENT FAILURE: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a row's child failed; its output was shown above
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
