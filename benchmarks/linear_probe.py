"""Linear probe: this implementation vs a plain scikit-learn CLIP-protocol C search.

Both run the same protocol on the same split: coarse grid C = 1e-6 .. 1e6 in x100 steps, then three
halving steps in log10 space around the best (within the grid), C chosen on validation (balanced
accuracy, ties to the smaller C), refit on train+val, scored on test. The sklearn baseline refits
``LogisticRegression(C, max_iter=1000)`` from scratch for every C (the usual way it is done); ours
is creepscan.attacks.linear_probe (torch L-BFGS, float32, warm starts along the C path). Also
reported: sklearn refit at *our* chosen C, which is the like-for-like accuracy check.

    python benchmarks/linear_probe.py [--n 20000] [--dim 512] [--classes 100] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: creepscan
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: the shared data maker

from attacks import make_data

from creepscan.attacks.linear_probe import COARSE_LOG10_C, N_HALVINGS, linear_probe
from creepscan.attacks.splits import stratified_split
from creepscan.attacks.stats import balanced_accuracy

ROOT = Path(__file__).resolve().parents[1]


def sklearn_search(X, y, n_classes, split):
    """The same protocol with a fresh sklearn fit per C."""
    fits = {}

    def run(logc):
        if logc not in fits:
            t = time.perf_counter()
            m = LogisticRegression(C=10.0 ** logc, max_iter=1000).fit(X[split.train], y[split.train])
            acc = balanced_accuracy(y[split.val], m.predict(X[split.val]), n_classes)
            fits[logc] = (acc, time.perf_counter() - t, int(np.max(m.n_iter_)))
        return fits[logc][0]

    def best_of(cands):
        return max(sorted(cands), key=lambda logc: (run(logc), -logc))

    best = best_of(COARSE_LOG10_C)
    step, lo, hi = 1.0, COARSE_LOG10_C[0], COARSE_LOG10_C[-1]
    for _ in range(N_HALVINGS):
        best = best_of([logc for logc in (best - step, best, best + step) if lo <= logc <= hi])
        step /= 2
    fit_rows = np.concatenate([split.train, split.val])
    m = LogisticRegression(C=10.0 ** best, max_iter=1000).fit(X[fit_rows], y[fit_rows])
    acc = balanced_accuracy(y[split.test], m.predict(X[split.test]), n_classes)
    return 10.0 ** best, fits[best][0], acc, [[10.0 ** logc, round(a, 6), round(s, 3), it]
                                               for logc, (a, s, it) in sorted(fits.items())]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "linear_probe_cpu.json"))
    args = ap.parse_args(argv)

    X, y = make_data(args.n, args.dim, args.classes, args.seed)
    split = stratified_split(y, seed=args.seed)
    load_before = os.getloadavg()

    t = time.perf_counter()
    ours = linear_probe(X, y, args.classes, split, seed=args.seed)
    t_ours = time.perf_counter() - t

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        sk_C, sk_val, sk_acc, sk_search = sklearn_search(X, y, args.classes, split)
        t_sk = time.perf_counter() - t
        fit_rows = np.concatenate([split.train, split.val])
        t = time.perf_counter()
        same_C = LogisticRegression(C=ours.C, max_iter=1000).fit(X[fit_rows], y[fit_rows])
        t_same = time.perf_counter() - t
        same_acc = balanced_accuracy(y[split.test], same_C.predict(X[split.test]), args.classes)

    result = {
        "command": ("python benchmarks/linear_probe.py"
                    + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()),
        "data": {"n": args.n, "dim": args.dim, "classes": args.classes, "noise": 8.0, "dtype": "float32",
                 "split": split.sizes()},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "sklearn": sklearn.__version__, "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "creepscan": {"seconds": round(t_ours, 3), "C": ours.C, "val_accuracy": ours.val_accuracy,
                      "test_accuracy": ours.accuracy, "fits": len(ours.c_search) + 1,
                      "c_search": ours.to_json()["c_search"]},
        "sklearn_search": {"seconds": round(t_sk, 3), "C": sk_C, "val_accuracy": sk_val, "test_accuracy": sk_acc,
                           "fits": len(sk_search) + 1, "c_search_C_acc_seconds_iters": sk_search},
        "sklearn_at_our_C": {"seconds": round(t_same, 3), "test_accuracy": same_acc,
                             "abs_diff_points": round(100 * abs(same_acc - ours.accuracy), 3)},
        "speedup": round(t_sk / t_ours, 1),
    }
    print(f"{args.n} x {args.dim}, {args.classes} classes (train {split.train.size}, val {split.val.size}, "
          f"test {split.test.size}); torch threads {torch.get_num_threads()}")
    print(f"{'':34s} {'seconds':>9s} {'chosen C':>10s} {'val acc':>8s} {'test acc':>9s}")
    print(f"{'creepscan linear_probe':34s} {t_ours:9.2f} {ours.C:10.3g} {ours.val_accuracy:8.4f} {ours.accuracy:9.4f}")
    print(f"{'sklearn search (refit per C)':34s} {t_sk:9.2f} {sk_C:10.3g} {sk_val:8.4f} {sk_acc:9.4f}")
    print(f"{'sklearn refit at our C':34s} {t_same:9.2f} {ours.C:10.3g} {'':8s} {same_acc:9.4f}")
    print(f"speed-up {t_sk / t_ours:.1f}x; accuracy gap at the same C {100 * abs(same_acc - ours.accuracy):.2f} points")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
