"""torch's thread count on a shared machine: creepscan's default against fixed choices (issue 14).

    python benchmarks/threads.py [--n 10000] [--dim 512] [--classes 100] [--busy 2] [--reps 2]
                                 [--out PATH]

The work is the attack set an audit runs per encoder: ``creepscan.attacks.evaluate`` on
``attacks.make_data(n, dim, classes)`` (10,000 x 512, 100 classes by default, the features
benchmarks/attacks.py and the whole-audit speed check use), split 60/20/20, after a warm-up on
a small problem. Each run is a child process (this script with a hidden ``--child``), timed with
one of these thread settings:

  default               ``creepscan.cpu.apply_threads()`` at start, as the CLI does: one thread per
                        usable CPU (before issue 23: minus those other processes kept busy);
  OMP_NUM_THREADS=1     the environment variable, which torch (and apply_threads) obey;
  all CPUs              ``OMP_NUM_THREADS`` = the CPUs this process may use (torch's own default);
  spinning              the default's threads with ``OMP_WAIT_POLICY=ACTIVE``: idle OpenMP threads
                        spin (torch's own behaviour) instead of sleeping (creepscan sets PASSIVE
                        when it is imported, unless the variable is set);

under two conditions: ``as found`` (no load added by this script; the machine's own background,
measured, is in the table) and ``+N busy loops`` (``--busy`` Python processes spinning
``while True: pass``, started before and killed after, by their process ids). Settings rotate
order between repetitions so a drift in background load does not favour one; each cell is the
median over ``--reps``. The bar: in each condition the default within 1.3x of the best setting.
Prints a table and writes benchmarks/results/threads_cpu.json; exits 1 if the bar is missed or a
child fails.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

BAR = 1.3  # the default's seconds / the best setting's, per condition
SETTINGS = ("default", "OMP_NUM_THREADS=1", "all CPUs", "spinning")


def child(args) -> None:
    """One timed run; prints ``ROW {json}``."""
    import warnings

    warnings.filterwarnings("ignore")
    from creepscan.cpu import apply_threads

    threads, why = apply_threads()  # first, as the CLI does: the sample sees the load as it is now
    import torch
    from attacks import ATTACK_SET, WARMUP, make_data

    from creepscan.attacks import evaluate, stratified_split

    X, y = make_data(args.n, args.dim, args.classes, args.seed)
    split = stratified_split(y, seed=args.seed)
    Xw, yw = make_data(WARMUP[0], args.dim, WARMUP[1], args.seed + 1)
    evaluate(Xw, yw, WARMUP[1], stratified_split(yw, seed=args.seed), seed=args.seed,
             attacks=("linear_probe", "verification"))
    t = time.perf_counter()
    metrics = evaluate(X, y, args.classes, split, seed=args.seed, attacks=ATTACK_SET)
    seconds = time.perf_counter() - t
    print("ROW " + json.dumps({"seconds": seconds, "threads": torch.get_num_threads(), "why": why,
                               "linear_probe_accuracy": metrics.linear_probe.accuracy}))


def _run_child(args, setting: str, n_cpus: int) -> dict:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)  # creepscan's own (idle OpenMP threads sleep) unless a row says
    if setting == "spinning":  # torch's own default: idle OpenMP threads spin for a while
        env["OMP_WAIT_POLICY"] = "ACTIVE"
    elif setting == "OMP_NUM_THREADS=1":
        env["OMP_NUM_THREADS"] = "1"
    elif setting == "all CPUs":
        env["OMP_NUM_THREADS"] = str(n_cpus)
    cmd = [sys.executable, __file__, "--child", "--n", str(args.n), "--dim", str(args.dim),
           "--classes", str(args.classes), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("ROW "):
            return json.loads(line[4:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def _busy_loops(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="images (rows of features)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes in the loaded condition")
    ap.add_argument("--reps", type=int, default=2, help="runs per cell (the median is reported)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.reps < 1 or args.busy < 0:
        ap.error(f"--reps must be >= 1 and --busy >= 0, got {args.reps} and {args.busy}")

    from creepscan.cpu import busy_cpus, machine_identity, usable_cpus

    n_cpus = len(usable_cpus())
    conditions = [("as found", 0), (f"+{args.busy} busy loops", args.busy)]
    runs, errors = [], []
    for condition, n_loops in conditions:
        loops = _busy_loops(n_loops)
        try:
            time.sleep(1.0 if loops else 0.0)  # let the loops be scheduled before anything samples
            for rep in range(args.reps):
                order = SETTINGS[rep % len(SETTINGS):] + SETTINGS[:rep % len(SETTINGS)]
                for setting in order:
                    background = round(busy_cpus(sample_s=0.5)[0], 2)
                    r = _run_child(args, setting, n_cpus)
                    r.update(condition=condition, setting=setting, rep=rep, busy_cpus_before=background)
                    (errors if "error" in r else runs).append(r)
                    shown = f"{r['seconds']:.2f} s on {r['threads']} thread(s)" if "seconds" in r else r["error"]
                    print(f"  {condition} | {setting} | rep {rep}: {shown} (busy CPUs before: {background})",
                          file=sys.stderr)
        finally:
            _stop(loops)

    table, bars = [], []
    for condition, _ in conditions:
        cells = {}
        for setting in SETTINGS:
            mine = [r for r in runs if r["condition"] == condition and r["setting"] == setting]
            if mine:
                cells[setting] = {"seconds": statistics.median(r["seconds"] for r in mine),
                                  "threads": sorted({r["threads"] for r in mine}),
                                  "busy_cpus_before": round(statistics.median(r["busy_cpus_before"] for r in mine), 2),
                                  "runs": [round(r["seconds"], 3) for r in mine]}
        if not cells:
            continue
        best = min(c["seconds"] for c in cells.values())
        for setting, c in cells.items():
            table.append({"condition": condition, "setting": setting, "seconds": round(c["seconds"], 3),
                          "x_best": round(c["seconds"] / best, 2), "threads": c["threads"],
                          "busy_cpus_before": c["busy_cpus_before"], "runs": c["runs"]})
        if "default" in cells:
            ratio = cells["default"]["seconds"] / best
            bars.append({"condition": condition, "default_x_best": round(ratio, 3), "holds": ratio <= BAR})
    whys = sorted({f"{r['condition']}: {r['why']}" for r in runs if r["setting"] == "default"})

    print(f"\nattack set on {args.n} x {args.dim}, {args.classes} classes; {n_cpus} usable CPUs; "
          f"median of {args.reps} run(s) per cell")
    print("| condition | setting | threads | seconds | x best | busy CPUs before (others) |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in table:
        print(f"| {r['condition']} | {r['setting']} | {'/'.join(map(str, r['threads']))} | {r['seconds']:.2f} | "
              f"{r['x_best']:.2f} | {r['busy_cpus_before']} |")
    for why in whys:
        print(f"default chose {why}")
    for b in bars:
        print(f"bar (default within {BAR}x of the best), {b['condition']}: "
              f"{'holds' if b['holds'] else 'MISSED'} ({b['default_x_best']:.2f}x)")
    for e in errors:
        print(f"ERROR in {e['condition']} | {e['setting']}: {e['error']}")

    out = Path(args.out or ROOT / "benchmarks" / "results" / "threads_cpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python benchmarks/threads.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.date.today().isoformat(), "cpu": machine_identity(), "usable_cpus": n_cpus,
        "n": args.n, "dim": args.dim, "classes": args.classes, "reps": args.reps, "busy_loops": args.busy,
        "bar": BAR, "rows": table, "bars": bars, "default_reasons": whys, "runs": runs, "errors": errors,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    return 1 if errors or not all(b["holds"] for b in bars) else 0


if __name__ == "__main__":
    sys.exit(main())
