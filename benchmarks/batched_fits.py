"""Batched C searches and episodes (issue 22): the attacks of one encoder on a probe the size of the
fixtures suite's emotion probe, with the L-BFGS fits of several searches batched (creepscan's
default) against one call per search, in one process, rounds alternating.

Data: 600 x 64 float32 features, 6 classes of 100 (Gaussian centres at ``sep`` times the noise;
0 = labels dealt at random, as in the emotion probe), mixed by a random rotation and scaled over
two decades with a common offset (an embedding's anisotropy), 5 rotating test folds (``make_splits``),
``evaluate(..., attacks=("linear_probe", "few_shot"))`` with the default label-free transforms.
"Batched" fits each C of the linear probe's searches (4 transforms x 5 folds) in one call, and a
few-shot k's first episodes of every transform in one call; "one call per search" sets
``BATCH_FLOATS`` to 0 in both modules, which is the code path of a search alone. The metrics of the
two must be identical (checked on every round). One thread, so that the figure does not depend on
the machine's other load more than it must: process CPU seconds are the measure.

    python benchmarks/batched_fits.py --rounds 3
"""
import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results" / "batched_fits_cpu.json"


def data(sep: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(6), 100)
    X = rng.standard_normal((y.size, 64)) + sep * rng.standard_normal((6, 64))[y]
    # an embedding's anisotropy: coordinates mixed and scaled over two decades, plus a common offset
    A = np.linalg.qr(rng.standard_normal((64, 64)))[0] * np.logspace(0, -2, 64)
    return (X @ A + rng.standard_normal(64)).astype(np.float32), y


def run(X, y, splits, batched: bool):
    from creepscan import result as R
    from creepscan.attacks import evaluate

    fs = sys.modules["creepscan.attacks.few_shot"]
    lp = sys.modules["creepscan.attacks.linear_probe"]
    keep = lp.BATCH_FLOATS
    lp.BATCH_FLOATS = fs.BATCH_FLOATS = keep if batched else 0
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        m = evaluate(X, y, 6, splits, seed=0, attacks=("linear_probe", "few_shot"))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        lp.BATCH_FLOATS = fs.BATCH_FLOATS = keep
    return cpu, wall, json.dumps(R.to_json_dict(m.to_result()), sort_keys=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import creepscan.attacks.few_shot  # noqa: F401  (the modules whose BATCH_FLOATS a mode sets)
    from creepscan.attacks.splits import make_splits

    rows = []
    for sep, name in ((0.0, "labels at random (the emotion probe)"), (0.3, "weak signal")):
        X, y = data(sep)
        splits = make_splits(y, seed=0, n_folds=5)
        run(X, y, splits, True)  # warm-up: first calls pay for lazy imports and allocations
        times = {"batched": [], "one call per search": []}
        same = True
        for _ in range(args.rounds):
            ref = None
            for mode in ("one call per search", "batched"):
                cpu, wall, out = run(X, y, splits, mode == "batched")
                times[mode].append({"cpu_s": round(cpu, 3), "wall_s": round(wall, 3)})
                same &= ref is None or out == ref
                ref = out
        med = {m: statistics.median(r["cpu_s"] for r in t) for m, t in times.items()}
        rows.append({"data": name, "sep": sep, "rounds": times, "median_cpu_s": med,
                     "speedup": round(med["one call per search"] / med["batched"], 2), "metrics_identical": same})
        print(f"{name:40s} one call per search {med['one call per search']:6.2f} CPU-s   batched "
              f"{med['batched']:6.2f} CPU-s   x{rows[-1]['speedup']:.2f}   identical: {same}")
    out = {"benchmark": "batched_fits", "command": "python benchmarks/batched_fits.py " + " ".join(sys.argv[1:]),
           "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "machine": {"cpu": platform.processor() or platform.machine(), "platform": platform.platform(),
                       "python": platform.python_version(), "torch": torch.__version__, "threads": 1},
           "setup": "600 x 64 features, 6 classes of 100, 5 rotating folds, linear probe + few-shot, "
                    "default transforms", "rows": rows}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    if not all(r["metrics_identical"] for r in rows):
        sys.exit("the batched and one-at-a-time metrics differ")


if __name__ == "__main__":
    main()
