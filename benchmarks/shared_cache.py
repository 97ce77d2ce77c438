"""Two audits on one embedding cache: wall time of a concurrent pair against one solo run.

    python benchmarks/shared_cache.py [--n 128] [--arch ViT-B-32] [--size 256] [--repeats 1]

Each extraction runs in its own child process (``creepscan.features.extract``, random weights, cold
cache, the CPU, torch's default thread count). A child loads its model, says it is ready, and starts
extracting when the parent says go, so model loading is outside every timing; a run's time is from
go until its last child is done. Per repeat, in this order:

  solo           one process on an empty cache;
  pair shared    two processes on one empty cache, claims on (the default): one embeds, the other
                 waits for its chunks, so the pair should take about the solo time;
  pair unshared  the same with ``share=False``, as before claims existed: both embed everything,
                 competing for the same cores.

``x solo`` is each run's time over the solo time of the same repeat, so a machine that is busy
with other work affects both sides of each ratio alike. Each child's embeddings are compared with
the solo run's (largest absolute difference). Prints a table and writes
benchmarks/results/shared_cache_cpu.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = {"solo": (1, True), "pair shared": (2, True), "pair unshared": (2, False)}


def write_jpegs(root: Path, n: int, size: int) -> None:
    """n JPEGs (quality 90) of size x size, upsampled colour noise seeded per file, in ten folders."""
    import numpy as np
    from PIL import Image

    for i in range(n):
        rng = np.random.default_rng(i)
        pixels = (rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8)
        folder = root / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).resize((size, size), Image.BILINEAR).save(folder / f"{i:06d}.jpg", quality=90)


def child(spec: dict) -> None:
    """One extraction: load the model, touch ``ready``, wait for ``go``, extract, write the result."""
    import numpy as np
    import torch

    from creepscan.data import load_image_set
    from creepscan.encoders.openclip import random_init
    from creepscan.features import extract

    enc = random_init(spec["arch"], device="cpu")
    images = load_image_set(spec["images"])
    Path(spec["ready"]).touch()
    while not Path(spec["go"]).exists():
        time.sleep(0.005)
    feats = extract(enc, images, cache_dir=spec["cache"], progress=False, share=spec["share"])
    end = time.time()
    np.save(spec["X"], feats.X)
    Path(spec["result"]).write_text(json.dumps({
        "end": end, "n_embedded": feats.stats["n_embedded"], "n_cache_hits": feats.stats["n_cache_hits"],
        "threads": torch.get_num_threads()}))


def run_mode(work: Path, name: str, images: Path, args, solo_X=None) -> dict:
    """Start the mode's children on a fresh cache, release them together, time them."""
    import numpy as np

    n_proc, share = MODES[name]
    tag = name.replace(" ", "-")
    run_dir = work / f"{tag}-{time.monotonic_ns()}"
    run_dir.mkdir()
    go = run_dir / "go"
    specs, procs = [], []
    for k in range(n_proc):
        spec = {"arch": args.arch, "images": str(images), "cache": str(run_dir / "cache"), "share": share,
                "go": str(go), "ready": str(run_dir / f"ready{k}"), "result": str(run_dir / f"result{k}.json"),
                "X": str(run_dir / f"X{k}.npy")}
        specs.append(spec)
        procs.append(subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)]))
    while not all(Path(s["ready"]).exists() for s in specs):
        if any(p.poll() not in (None, 0) for p in procs):
            raise SystemExit(f"{name}: a child failed before it was ready")
        time.sleep(0.05)
    start = time.time()
    go.touch()
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"{name}: a child exited with {p.returncode}")
    results = [json.loads(Path(s["result"]).read_text()) for s in specs]
    Xs = [np.load(s["X"]) for s in specs]
    ref = solo_X if solo_X is not None else Xs[0]
    return {
        "mode": name, "processes": n_proc, "share": share,
        "seconds": round(max(r["end"] for r in results) - start, 3),
        "n_embedded": [r["n_embedded"] for r in results],
        "n_cache_hits": [r["n_cache_hits"] for r in results],
        "threads_per_process": results[0]["threads"],
        "max_abs_diff_vs_solo": float(max(np.abs(X - ref).max() for X in Xs)),
        "_X": Xs[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=128, help="images")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    import torch

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="creepscan-shared-") as tmp:
        work = Path(tmp)
        images = work / "images"
        write_jpegs(images, args.n, args.size)
        for rep in range(args.repeats):
            solo = run_mode(work, "solo", images, args)
            solo_X = solo["_X"]
            for row in [solo] + [run_mode(work, m, images, args, solo_X) for m in ("pair shared", "pair unshared")]:
                row.pop("_X")
                row["repeat"] = rep
                row["x_solo"] = round(row["seconds"] / solo["seconds"], 3)
                rows.append(row)
    print(f"\n{args.arch}, CPU, {args.n} JPEGs {args.size}x{args.size}; load average before: "
          f"{load_before[0]:.1f} on {os.cpu_count()} cores (ratios are within one repeat)")
    print(f"{'repeat':>6}  {'mode':<14} {'seconds':>8} {'x solo':>7}  "
          f"{'embedded':<12} {'cache hits':<12} {'max|dX|':>8}")
    for r in rows:
        print(f"{r['repeat']:>6}  {r['mode']:<14} {r['seconds']:>8.2f} {r['x_solo']:>7.2f}  "
              f"{'/'.join(map(str, r['n_embedded'])):<12} {'/'.join(map(str, r['n_cache_hits'])):<12} "
              f"{r['max_abs_diff_vs_solo']:>8.1e}")
    out = ROOT / "benchmarks" / "results" / "shared_cache_cpu.json"
    out.write_text(json.dumps({
        "command": "python benchmarks/shared_cache.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "taken while other processes shared the machine: compare ratios within a repeat",
        "arch": args.arch, "n": args.n, "size": args.size, "torch": torch.__version__,
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
