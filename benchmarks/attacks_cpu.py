"""Speed of the attack suite on CPU, against one scikit-learn fit on the same data.

The acceptance check times a whole audit of 10,000 images x 512-d features (100 classes) against
ONE ``LogisticRegression(C=10.0, max_iter=1000).fit`` on a 60% subset. This script builds exactly
that data, times that fit and ``creepscan.attacks.evaluate`` (linear probe with its C search,
few-shot curve, verification) in the same process, for the model features and for a 16-d noise
floor, prints a table and writes benchmarks/results/attacks_cpu.json.

    python benchmarks/attacks_cpu.py [--n 10000] [--dim 512] [--classes 100] [--out PATH]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sklearn  # noqa: E402
import torch  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from creepscan.attacks import evaluate, stratified_split  # noqa: E402


def make_data(n: int, dim: int, n_classes: int, seed: int = 0):
    """Class centre ~ N(0, I) plus 8.0 * N(0, I) noise, L2-normalised, float32; balanced classes."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    y = rng.permutation(np.arange(n) % n_classes)
    X = centres[y] + 8.0 * rng.standard_normal((n, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y.astype(np.int64)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the GPU path of every attack)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attacks_cpu.json"))
    args = ap.parse_args(argv)

    X, y = make_data(args.n, args.dim, args.classes, args.seed)
    split = stratified_split(y, seed=args.seed)
    floor = np.random.default_rng(args.seed + 1).standard_normal((args.n, 16)).astype(np.float32)
    load_before = os.getloadavg()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        sk = LogisticRegression(C=10.0, max_iter=1000).fit(X[split.train], y[split.train])
        t_sklearn = time.perf_counter() - t

    timings = {}
    t = time.perf_counter()
    m = evaluate(X, y, args.classes, split, seed=args.seed, device=args.device)
    timings["evaluate_model_cold"] = time.perf_counter() - t
    t = time.perf_counter()
    f = evaluate(floor, y, args.classes, split, seed=args.seed, device=args.device)
    timings["evaluate_floor_16d"] = time.perf_counter() - t
    t = time.perf_counter()
    m2 = evaluate(X, y, args.classes, split, seed=args.seed, device=args.device)
    timings["evaluate_model_warm"] = time.perf_counter() - t
    assert json.dumps(m.to_json()) == json.dumps(m2.to_json()), "evaluate is not deterministic"

    # the parts, timed separately on the warm process
    from creepscan.attacks.few_shot import few_shot_curve
    from creepscan.attacks.linear_probe import linear_probe
    from creepscan.attacks.verification import verification
    t = time.perf_counter()
    lp = linear_probe(X, y, args.classes, split, seed=args.seed)
    parts = {"linear_probe": time.perf_counter() - t}
    t = time.perf_counter()
    few_shot_curve(X, y, args.classes, split, seed=args.seed, C=lp.C)
    parts["few_shot"] = time.perf_counter() - t
    t = time.perf_counter()
    verification(X, y, seed=args.seed)
    parts["verification"] = time.perf_counter() - t

    both = timings["evaluate_model_cold"] + timings["evaluate_floor_16d"]
    result = {
        "command": "python benchmarks/attacks_cpu.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "data": {"n": args.n, "dim": args.dim, "classes": args.classes, "noise": 8.0, "dtype": "float32",
                 "split": split.sizes(), "floor_dim": 16},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
                    "python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "seconds": {
            "sklearn_fit_C10_train60": round(t_sklearn, 3),
            **{k: round(v, 3) for k, v in timings.items()},
            **{f"part_{k}": round(v, 3) for k, v in parts.items()},
        },
        "ratios_to_one_sklearn_fit": {
            "evaluate_model_cold": round(timings["evaluate_model_cold"] / t_sklearn, 2),
            "evaluate_model_warm": round(timings["evaluate_model_warm"] / t_sklearn, 2),
            "evaluate_model_plus_floor": round(both / t_sklearn, 2),
        },
        "sklearn_fit": {"n_iter": int(np.max(sk.n_iter_))},
        "metrics": {
            "linear_probe": m.linear_probe.to_json(),
            "few_shot": [{k: e[k] for k in ("k", "accuracy", "episodes", "winner")} for e in m.to_json()["few_shot"]],
            "verification": {k: v for k, v in m.verification.to_json().items() if k != "roc"},
            "floor_linear_probe_accuracy": f.linear_probe.to_json()["accuracy"],
        },
    }
    rows = [("sklearn LogisticRegression(C=10).fit, 60% train", t_sklearn, 1.0)]
    rows += [(f"evaluate: {k}", v, v / t_sklearn) for k, v in timings.items()]
    rows += [(f"  part: {k}", v, v / t_sklearn) for k, v in parts.items()]
    rows.append(("evaluate model (cold) + floor", both, both / t_sklearn))
    print(f"{args.n} x {args.dim}, {args.classes} classes; torch threads {torch.get_num_threads()}")
    print(f"{'what':50s} {'seconds':>9s} {'x sklearn fit':>14s}")
    for name, sec, ratio in rows:
        print(f"{name:50s} {sec:9.2f} {ratio:14.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
