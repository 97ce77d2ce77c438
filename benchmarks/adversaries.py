"""The stronger adversary's heads (issue 12): creepscan's heads vs their scikit-learn equivalents.

Data: ``attacks.make_data`` (10,000 x 512 float32, 100 balanced classes, class centre + 8x noise,
L2-normalised: the features of RESULTS.md's whole-audit speed check); split ``stratified_split(y, seed)``
(60/20/20). Each head is fitted on train, makes its choices on val and is scored on test, in
creepscan (``creepscan.attacks.heads.run_head``) and in scikit-learn doing the same protocol:

* knn: ``KNeighborsClassifier(metric="cosine", algorithm="brute")`` at every k of ``KNN_GRID``,
  k chosen on validation balanced accuracy (ties to the smaller k);
* prototype_cl2n: ``NearestCentroid`` on CL2N features (centred with the training mean,
  L2-normalised): the same classifier, so its predictions should agree exactly;
* mlp: ``MLPClassifier(hidden_layer_sizes=(MLP_HIDDEN,), alpha, learning_rate_init=MLP_LR,
  batch_size=MLP_BATCH)`` on ``StandardScaler`` features, trained one epoch at a time with
  ``partial_fit`` for every alpha of ``MLP_ALPHAS``, the (alpha, epoch) with the best validation
  accuracy kept, stopped after ``MLP_PATIENCE`` epochs without improvement, as creepscan does;
* gd_budget: plain minibatch SGD in scikit-learn: ``MLPClassifier(hidden_layer_sizes=(),
  solver="sgd", momentum=0, alpha=0)`` (multinomial logistic regression), one ``partial_fit`` per
  minibatch of ``GD_BATCH`` rows, the same step sizes, checkpoints and choices on validation as
  creepscan, per budget of ``GD_BUDGETS`` (see ``sk_gd_budget``).

Parity: each creepscan head's test balanced accuracy must be within ``PARITY_POINTS`` (2 points) of
its scikit-learn counterpart's (gd_budget: at every budget); the script exits 1 otherwise.

The default attack set: one row times ``evaluate(attacks=("linear_probe", "few_shot"))`` plus
``run_head`` of every head, in one process, and reports it in units of ONE
``LogisticRegression(C=10, max_iter=1000).fit`` on the raw training split timed in the same run
(the speed-cpu check's unit; its bar for a whole audit is 10). Optionally (``--few-shot-heads``)
a row times ``few_shot_curve`` with every head added to the few-shot curve.

Every row runs in its own child process (this script with a hidden ``--row``), so that its peak host
memory (``attacks.peak_host_mib``, the child's VmHWM) is its own; each child first warms up its code
path on a small problem, outside the timing. On cuda the clock stops after a synchronize and the
peak device memory is ``torch.cuda.max_memory_allocated``.

    python benchmarks/adversaries.py [--n 10000] [--dim 512] [--classes 100] [--seed 0]
                                     [--device cpu|cuda] [--few-shot-heads] [--out PATH]

Output: a markdown table on stdout, JSON at ``--out`` (default
benchmarks/results/adversaries_<cpu|cuda>.json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attacks import _busy_cpu_seconds, make_data, peak_host_mib  # the same data and meter

ROOT = Path(__file__).resolve().parents[1]
ROW_MARK = "@@row "
WARMUP = (1000, 10)
PARITY_POINTS = 2.0
HEAD_NAMES = ("knn", "prototype_cl2n", "mlp", "gd_budget")


# ---------------------------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------------------------

def _sync(device: str):
    import torch
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def row_head(args, head: str, device: str) -> dict:
    import torch

    from creepscan.attacks import stratified_split
    from creepscan.attacks.heads import run_head

    X, y = make_data(args.n, args.dim, args.classes, args.seed)
    split = stratified_split(y, seed=args.seed)
    before = peak_host_mib()
    t = time.perf_counter()
    Xw, yw = make_data(WARMUP[0], args.dim, WARMUP[1], args.seed + 1)
    run_head(head, Xw, yw, WARMUP[1], stratified_split(yw, seed=args.seed), seed=args.seed, device=device)
    _sync(device)
    warmup = time.perf_counter() - t
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t, cpu = time.perf_counter(), time.process_time()
    r = run_head(head, X, y, args.classes, split, seed=args.seed, device=device)
    _sync(device)
    out = {"row": f"creepscan {head} {device}", "head": head, "side": "creepscan", "device": device,
           "seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - cpu, "warmup_seconds": warmup,
           "peak_host_mib": peak_host_mib(), "host_mib_before_timed_work": before,
           "accuracy": r.accuracy, "val_accuracy": r.val_accuracy, "params": r.params,
           "budgets": [{"steps": b["steps"], "accuracy": b["accuracy"], "val_accuracy": b["val_accuracy"],
                        "stopped_at": b["stopped_at"], "lr_scale": b["lr_scale"]} for b in r.budgets],
           "torch_threads": torch.get_num_threads()}
    if torch.device(device).type == "cuda":
        out["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def row_default_set(args, device: str, few_shot_heads: bool) -> dict:
    """The default attack set in one process: evaluate(linear_probe, few_shot) + run_head of every
    head; with ``few_shot_heads`` the few-shot curve also runs every head."""
    import torch

    from creepscan.attacks import evaluate, few_shot_curve, stratified_split
    from creepscan.attacks.heads import HEADS, run_head

    X, y = make_data(args.n, args.dim, args.classes, args.seed)
    split = stratified_split(y, seed=args.seed)
    before = peak_host_mib()
    t = time.perf_counter()
    Xw, yw = make_data(WARMUP[0], args.dim, WARMUP[1], args.seed + 1)
    sw = stratified_split(yw, seed=args.seed)
    evaluate(Xw, yw, WARMUP[1], sw, seed=args.seed, attacks=("linear_probe",), device=device)
    few_shot_curve(Xw, yw, WARMUP[1], sw, seed=args.seed, ks=(1, 8), min_episodes=2, max_episodes=2, device=device,
                   heads=("prototype", "logistic") + (tuple(HEADS) if few_shot_heads else ()))
    for h in HEADS:
        run_head(h, Xw, yw, WARMUP[1], sw, seed=args.seed, device=device)
    _sync(device)
    warmup = time.perf_counter() - t
    parts: dict[str, float] = {}
    t0, cpu = time.perf_counter(), time.process_time()
    if few_shot_heads:
        t = time.perf_counter()
        m = evaluate(X, y, args.classes, split, seed=args.seed, attacks=("linear_probe",), device=device)
        _sync(device)
        parts["linear_probe"] = time.perf_counter() - t
        t = time.perf_counter()
        fs = few_shot_curve(X, y, args.classes, split, seed=args.seed, C=m.linear_probe.C, device=device,
                            heads=("prototype", "logistic") + tuple(HEADS))
        _sync(device)
        parts["few_shot (all heads)"] = time.perf_counter() - t
        few = [{"k": e.k, "winner": e.winner, "episodes": e.episodes, "heads": e.head_accuracy} for e in fs]
    else:
        t = time.perf_counter()
        m = evaluate(X, y, args.classes, split, seed=args.seed, attacks=("linear_probe", "few_shot"), device=device)
        _sync(device)
        parts["linear_probe + few_shot"] = time.perf_counter() - t
        few = [{"k": e.k, "winner": e.winner, "episodes": e.episodes} for e in m.few_shot]
    heads = {}
    for h in HEADS:
        t = time.perf_counter()
        heads[h] = run_head(h, X, y, args.classes, split, seed=args.seed, device=device).accuracy
        _sync(device)
        parts[h] = time.perf_counter() - t
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu
    return {"row": f"creepscan default set {device}" + (" (few-shot with every head)" if few_shot_heads else ""),
            "side": "creepscan", "device": device, "seconds": total, "parts": parts, "cpu_seconds": cpu,
            "warmup_seconds": warmup, "peak_host_mib": peak_host_mib(), "host_mib_before_timed_work": before,
            "linear_probe_accuracy": m.linear_probe.accuracy, "head_accuracy": heads, "few_shot": few,
            "torch_threads": torch.get_num_threads()}


def _split_from(plan: str) -> dict:
    arrays = np.load(plan)
    return {s: arrays[s] for s in ("train", "val", "test")}


def _bacc(y_true, y_pred) -> float:
    from sklearn.metrics import balanced_accuracy_score
    return float(balanced_accuracy_score(y_true, y_pred))


def sk_knn(X, y, sp, grid):
    from sklearn.neighbors import KNeighborsClassifier

    best = None
    for k in grid:  # ties go to the smaller k
        knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
        clf = knn.fit(X[sp["train"]], y[sp["train"]])
        acc = _bacc(y[sp["val"]], clf.predict(X[sp["val"]]))
        if best is None or acc > best[0] + 1e-12:
            best = (acc, k, clf)
    acc, k, clf = best
    return _bacc(y[sp["test"]], clf.predict(X[sp["test"]])), {"k": k, "val_accuracy": acc}


def sk_prototype_cl2n(X, y, sp):
    from sklearn.neighbors import NearestCentroid

    mean = X[sp["train"]].mean(axis=0)

    def cl2n(a):
        a = a - mean
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    clf = NearestCentroid().fit(cl2n(X[sp["train"]]), y[sp["train"]])
    return (_bacc(y[sp["test"]], clf.predict(cl2n(X[sp["test"]]))),
            {"val_accuracy": _bacc(y[sp["val"]], clf.predict(cl2n(X[sp["val"]])))})


def sk_mlp(X, y, sp, *, hidden, alphas, lr, batch, max_epochs, patience, seed):
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(X[sp["train"]])
    Ztr, Zva, Zte = (sc.transform(X[sp[s]]) for s in ("train", "val", "test"))
    classes = np.unique(y[sp["train"]])
    nets = [MLPClassifier(hidden_layer_sizes=(hidden,), alpha=a, learning_rate_init=lr, batch_size=batch,
                          random_state=seed, shuffle=True) for a in alphas]
    best, since = None, 0
    for epoch in range(1, max_epochs + 1):
        improved = False
        for a, net in zip(alphas, nets):
            net.partial_fit(Ztr, y[sp["train"]], classes=classes)
            acc = _bacc(y[sp["val"]], net.predict(Zva))
            if best is None or acc > best[0] + 1e-12:
                best = (acc, a, epoch, _bacc(y[sp["test"]], net.predict(Zte)))
                improved = True
        since = 0 if improved else since + 1
        if since >= patience:
            break
    return best[3], {"val_accuracy": best[0], "alpha": best[1], "epochs": best[2], "epochs_run": epoch}


def sk_gd_budget(X, y, sp, *, budgets, scales, batch, checkpoints, seed):
    """The same protocol as creepscan's gd_budget with scikit-learn's own SGD: an
    ``MLPClassifier`` with no hidden layer is multinomial logistic regression, and with
    ``solver="sgd", momentum=0, alpha=0`` and one ``partial_fit`` per minibatch it takes exactly one
    plain gradient step per call. Same centring and scalar scaling, same step sizes (scale /
    lambda_max of the features' second-moment matrix, the intercept adding eigenvalue 1), same
    checkpoints, zero initial weights, (step, step size) chosen on validation per budget."""
    from sklearn.neural_network import MLPClassifier

    tr = sp["train"]
    mean = X[tr].astype(np.float64).mean(axis=0)
    scale = float(np.sqrt(np.mean((X[tr] - mean) ** 2)))
    Ztr, Zva, Zte = ((X[sp[s]] - mean) / scale for s in ("train", "val", "test"))
    lam = max(float(np.linalg.eigvalsh(Ztr.T.astype(np.float64) @ Ztr / len(tr)).max()), 1.0)
    classes = np.unique(y[tr])
    B = min(batch, len(tr))
    rng = np.random.default_rng(seed)
    per_epoch = max(1, len(tr) // B)
    order = np.concatenate([rng.permutation(len(tr))[: per_epoch * B]
                            for _ in range(math.ceil(max(budgets) / per_epoch))]).reshape(-1, B)
    best = {b: (-1.0, None) for b in budgets}
    for sc in scales:
        clf = MLPClassifier(hidden_layer_sizes=(), solver="sgd", momentum=0.0, alpha=0.0, learning_rate_init=sc / lam,
                            batch_size=B, shuffle=False, random_state=seed)
        with np.errstate(all="ignore"):  # a too-large step diverges; validation then drops it
            # build the network with one call, then start from zero weights as creepscan does (plain
            # SGD without momentum keeps no state, so the uncounted call leaves no trace)
            clf.partial_fit(Ztr[:B], y[tr[:B]], classes=classes)
            for w in clf.coefs_ + clf.intercepts_:
                w[...] = 0.0
            for step in range(1, max(budgets) + 1):
                rows = tr[order[step - 1]]
                clf.partial_fit((X[rows] - mean) / scale, y[rows], classes=classes)
                if step in checkpoints:
                    va = _bacc(y[sp["val"]], clf.predict(Zva))
                    te = _bacc(y[sp["test"]], clf.predict(Zte))
                    for b in budgets:
                        if step <= b and va > best[b][0] + 1e-12:
                            best[b] = (va, {"steps": b, "accuracy": te, "val_accuracy": va, "stopped_at": step,
                                            "lr_scale": sc})
    out = [best[b][1] for b in sorted(budgets)]
    return out[-1]["accuracy"], {"budgets": out}


def row_sklearn(args, head: str) -> dict:
    import sklearn
    from sklearn.exceptions import ConvergenceWarning

    from creepscan.attacks import heads as H  # constants only; torch is imported but unused here

    X, y = make_data(args.n, args.dim, args.classes, args.seed)
    sp = _split_from(args.plan)
    before = peak_host_mib()
    run = {
        "knn": lambda X, y, sp: sk_knn(X, y, sp, H.KNN_GRID),
        "prototype_cl2n": sk_prototype_cl2n,
        "mlp": lambda X, y, sp: sk_mlp(X, y, sp, hidden=H.MLP_HIDDEN, alphas=H.MLP_ALPHAS, lr=H.MLP_LR,
                                       batch=H.MLP_BATCH, max_epochs=H.MLP_MAX_EPOCHS, patience=H.MLP_PATIENCE,
                                       seed=args.seed),
        "gd_budget": lambda X, y, sp: sk_gd_budget(X, y, sp, budgets=H.GD_BUDGETS, scales=H.GD_STEP_SCALES,
                                                   batch=H.GD_BATCH, checkpoints=set(H._checkpoints(H.GD_BUDGETS)),
                                                   seed=args.seed),
        "one_fit": None,
    }[head]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        if run is not None:  # warm-up on a small problem
            Xw, yw = make_data(WARMUP[0], args.dim, WARMUP[1], args.seed + 1)
            rng = np.random.default_rng(0)
            perm = rng.permutation(yw.size)
            run(Xw, yw, {"train": perm[:600], "val": perm[600:800], "test": perm[800:]})
        warmup = time.perf_counter() - t
        t, cpu = time.perf_counter(), time.process_time()
        if run is None:  # the speed check's unit: one plain fit on the raw training split
            from sklearn.linear_model import LogisticRegression
            LogisticRegression(C=10.0, max_iter=1000).fit(X[sp["train"]], y[sp["train"]])
            acc, info = None, {}
        else:
            acc, info = run(X, y, sp)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"row": f"sklearn {head}", "head": head, "side": "sklearn", "device": "cpu", "seconds": seconds,
            "cpu_seconds": cpu, "warmup_seconds": warmup, "peak_host_mib": peak_host_mib(),
            "host_mib_before_timed_work": before, "accuracy": acc, **info, "sklearn": sklearn.__version__}


# ---------------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------------

def child(args, row: str, plan: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--row", row, "--plan", str(plan), "--n", str(args.n),
           "--dim", str(args.dim), "--classes", str(args.classes), "--seed", str(args.seed)]
    print(f"running: {row} ...", file=sys.stderr, flush=True)
    busy0, t0 = _busy_cpu_seconds(), time.perf_counter()
    import resource
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    own1, wall, busy1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - t0, _busy_cpu_seconds()
    lines = [line for line in proc.stdout.splitlines() if line.startswith(ROW_MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout)
        raise RuntimeError(f"row {row!r} failed (exit status {proc.returncode})")
    out = json.loads(lines[-1][len(ROW_MARK):])
    if busy0 is not None:  # other processes' load while the row ran, in CPUs (see attacks.child)
        own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
        out["other_load_cpus"] = max(0.0, (busy1 - busy0 - own) / wall)
    return out


def parity(cs: dict, sk: dict) -> tuple[list[dict], list[str]]:
    """Per-head accuracy differences in points (gd_budget: per budget) and the breaches."""
    checks = []
    if cs["head"] == "gd_budget":
        skb = {b["steps"]: b for b in sk["budgets"]}
        for b in cs["budgets"]:
            checks.append({"head": "gd_budget", "budget": b["steps"], "creepscan": b["accuracy"],
                           "sklearn": skb[b["steps"]]["accuracy"]})
    else:
        checks.append({"head": cs["head"], "creepscan": cs["accuracy"], "sklearn": sk["accuracy"]})
    fails = []
    for c in checks:
        c["diff_points"] = round(100 * (c["creepscan"] - c["sklearn"]), 4)
        c["ok"] = abs(c["diff_points"]) <= PARITY_POINTS
        if not c["ok"]:
            where = f" at {c['budget']} steps" if "budget" in c else ""
            fails.append(f"{c['head']}{where}: creepscan {100 * c['creepscan']:.2f}% vs sklearn "
                         f"{100 * c['sklearn']:.2f}% ({c['diff_points']:+.2f} points > {PARITY_POINTS})")
    return checks, fails


def machine_info(rows) -> dict:
    import sklearn
    import torch
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "sklearn": sklearn.__version__,
            "torch_threads": next((r["torch_threads"] for r in rows if "torch_threads" in r), None),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="creepscan's device: cpu or cuda (sklearn always runs on the CPU)")
    ap.add_argument("--few-shot-heads", action="store_true",
                    help="also time the few-shot curve with every head added (slow on a CPU)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/adversaries_<device>.json)")
    ap.add_argument("--row", help=argparse.SUPPRESS)
    ap.add_argument("--plan", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.row is not None:
        side, _, rest = args.row.partition(":")
        if side == "sklearn":
            out = row_sklearn(args, rest)
        elif rest.startswith("default_set"):
            _, device, fsh = rest.split(":")
            out = row_default_set(args, device, fsh == "1")
        else:
            head, device = rest.split(":")
            out = row_head(args, head, device)
        print(ROW_MARK + json.dumps(out), flush=True)
        return 0

    import torch

    from creepscan.attacks import stratified_split

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here")
    tag = torch.device(args.device).type
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"adversaries_{tag}.json"

    load_before = os.getloadavg()
    rows, checks, failures = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        _, y = make_data(args.n, args.dim, args.classes, args.seed)
        split = stratified_split(y, seed=args.seed)
        plan = Path(tmp) / "split.npz"
        np.savez(plan, train=split.train, val=split.val, test=split.test)
        unit = child(args, "sklearn:one_fit", plan)
        rows.append(unit)
        for head in HEAD_NAMES:
            cs = child(args, f"creepscan:{head}:{args.device}", plan)
            sk = child(args, f"sklearn:{head}", plan)
            rows += [cs, sk]
            c, f = parity(cs, sk)
            checks += c
            failures += f
        rows.append(child(args, f"creepscan:default_set:{args.device}:0", plan))
        if args.few_shot_heads:
            rows.append(child(args, f"creepscan:default_set:{args.device}:1", plan))
    load_after = os.getloadavg()
    one_fit = unit["seconds"]

    lines = [f"{args.n:,} x {args.dim}, {args.classes} classes, seed {args.seed}; creepscan on {args.device}, "
             f"scikit-learn on the CPU; one LogisticRegression(C=10).fit: {one_fit:.2f} s", "",
             "| head | creepscan s | sklearn s | sklearn s / creepscan s | creepscan acc | sklearn acc | "
             "diff (points) | creepscan peak MiB | sklearn peak MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    by = {(r.get("side"), r.get("head")): r for r in rows}
    for head in HEAD_NAMES:
        cs, sk = by[("creepscan", head)], by[("sklearn", head)]
        for c in (c for c in checks if c["head"] == head):
            label = head + (f" @{c['budget']} steps" if "budget" in c else "")
            lines.append(f"| {label} | {cs['seconds']:.2f} | {sk['seconds']:.2f} | "
                         f"{sk['seconds'] / cs['seconds']:.2f} | "
                         f"{100 * c['creepscan']:.2f}% | {100 * c['sklearn']:.2f}% | {c['diff_points']:+.2f} | "
                         f"{cs['peak_host_mib']:.0f} | {sk['peak_host_mib']:.0f} |")
    lines.append("")
    for r in rows:
        if r["row"].startswith("creepscan default set"):
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in r["parts"].items())
            lines.append(f"{r['row']}: {r['seconds']:.2f} s = {r['seconds'] / one_fit:.2f} sklearn fits "
                         f"(bar <= 10); {parts}; peak host {r['peak_host_mib']:.0f} MiB")
    print("\n".join(lines))
    for r in rows:
        if r.get("other_load_cpus", 0.0) > 0.1:
            print(f"note: other processes used {r['other_load_cpus']:.2f} CPUs on average while '{r['row']}' ran; "
                  "its seconds are inflated", file=sys.stderr)

    def rounded(o):
        if isinstance(o, float):
            return float(f"{o:.6g}") if math.isfinite(o) else o
        if isinstance(o, dict):
            return {k: rounded(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [rounded(v) for v in o]
        return o

    default_rows = [r for r in rows if r["row"].startswith("creepscan default set")]
    result = {
        "command": "python " + shlex.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {"n": args.n, "dim": args.dim, "classes": args.classes, "seed": args.seed, "noise": 8.0,
                 "generator": "benchmarks/attacks.py make_data"},
        "machine": {**machine_info(rows), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after]},
        "notes": {"peak_host_mib": "peak resident set (VmHWM) of the row's own child process, imports included",
                  "other_load_cpus": "average CPUs used by other processes while the row ran; above ~0.1 the "
                                     "row's seconds are inflated",
                  "one_sklearn_fit_units": "row seconds / one LogisticRegression(C=10, max_iter=1000).fit on the "
                                           "raw training split, timed in the same run"},
        "one_sklearn_fit_seconds": one_fit,
        "rows": rows,
        "parity": {"tolerance_points": PARITY_POINTS, "checks": checks, "ok": not failures},
        "time_ratio_sklearn_over_creepscan": {h: by[("sklearn", h)]["seconds"] / by[("creepscan", h)]["seconds"]
                                              for h in HEAD_NAMES},
        "default_set_one_sklearn_fit_units": {r["row"]: r["seconds"] / one_fit for r in default_rows},
        "failures": failures,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(rounded(result), indent=2) + "\n")
    print(f"\nwrote {out_path}")
    for f in failures:
        print(f"PARITY FAILURE: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
