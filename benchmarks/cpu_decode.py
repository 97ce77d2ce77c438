"""On a CPU, decode beside the model (worker processes) or take turns with it (threads)? A/B in one process.

    python benchmarks/cpu_decode.py [--arch ViT-B-32] [--n 256] [--size 256] [--rounds 8]

Three measurements alternate round by round in one process, so the machine's slow spells (other
tenants of a shared host move the matmul rate by 1.5x within minutes) weigh on all of them alike:

  model only   ``encode_images`` on the same number of preprocessed images already in memory;
  threads      ``creepscan.features.extract`` from the JPEG files, cold cache, the CPU default:
               PIL in this process's threads, one batch at a time, then the model;
  workers      the same call with two DataLoader worker processes decoding beside the model
               (creepscan's CPU path before).

Each end-to-end round is divided by the model-only round next to it: the share of the model's own
speed that survives decoding, hashing and cache writes. The embeddings of both paths must be equal
bit for bit (the script exits 1 otherwise). Reports the median and the range of each share and the
paired difference, writes benchmarks/results/cpu_decode_cpu.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    import warnings

    import numpy as np
    import torch
    from extract import write_jpegs

    from creepscan.cpu import apply_threads, busy_cpus, cpu_model, machine_identity
    from creepscan.data import load_image_set
    from creepscan.encoders.openclip import random_init
    from creepscan.features import decode_plan, extract

    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=256, help="JPEG files")
    ap.add_argument("--size", type=int, default=256, help="side of the square JPEGs")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu_decode_cpu.json"))
    args = ap.parse_args()

    threads, why = apply_threads()  # as an audit does
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs"
        write_jpegs(root, args.n, args.size)
        images = load_image_set(root)
        enc = random_init(args.arch, device="cpu", seed=1).configure(precision="fp32", cache_dir=Path(tmp) / "m")
        size = enc.model.visual.image_size
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        batch = enc.batch_size
        x = torch.randn(batch, 3, *size)
        enc.encode_images(x)

        def model_only():
            t = time.perf_counter()
            for _ in range(0, args.n, batch):
                enc.encode_images(x)
            return args.n / (time.perf_counter() - t)

        def end_to_end(num_workers):
            cache = tempfile.mkdtemp(dir=tmp)
            t = time.perf_counter()
            f = extract(enc, images, cache_dir=cache, progress=False, decode="pil", num_workers=num_workers)
            return len(images) / (time.perf_counter() - t), f.X

        shares = {"threads": [], "workers": []}
        speeds = {"model only": [], "threads": [], "workers": []}
        busy = []
        equal = True
        for r in range(args.rounds):
            order = ("threads", "workers") if r % 2 == 0 else ("workers", "threads")
            busy.append(busy_cpus(sample_s=0.2)[0])
            for name in order:
                m = model_only()
                ips, X = end_to_end(None if name == "threads" else 2)
                if name == "threads":
                    ref = X
                else:
                    other = X
                speeds["model only"].append(m)
                speeds[name].append(ips)
                shares[name].append(ips / m)
            equal = equal and np.array_equal(ref, other)
            print(f"  round {r + 1}: threads {shares['threads'][-1]:.3f}, workers {shares['workers'][-1]:.3f} "
                  f"of the model's speed", file=sys.stderr)
        diffs = [a - b for a, b in zip(shares["threads"], shares["workers"])]

    def summary(v):
        return {"median": round(statistics.median(v), 4), "min": round(min(v), 4), "max": round(max(v), 4),
                "runs": [round(a, 4) for a in v]}

    doc = {
        "command": "python benchmarks/cpu_decode.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(), "machine": cpu_model(), "cpu": machine_identity(),
        "torch": torch.__version__, "arch": args.arch, "n": args.n, "size": args.size, "batch": batch,
        "threads": why, "rounds": args.rounds, "busy_cpus_per_round": [round(b, 2) for b in busy],
        "paths": {"threads": decode_plan(enc), "workers": decode_plan(enc, num_workers=2)},
        "images_per_s": {k: summary(v) for k, v in speeds.items()},
        "share_of_model_speed": {k: summary(v) for k, v in shares.items()},
        "paired_difference_threads_minus_workers": summary(diffs),
        "threads_ahead_in_rounds": sum(d > 0 for d in diffs),
        "embeddings_equal": bool(equal),
    }
    print(f"\n{args.arch}, {args.n} JPEGs {args.size}x{args.size}, batch {batch}, {why}")
    print("| path | images/s (median) | share of the model's speed: median | min | max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k in ("threads", "workers"):
        s, v = doc["share_of_model_speed"][k], doc["images_per_s"][k]
        print(f"| {k}: {doc['paths'][k]} | {v['median']:.1f} | {s['median']:.3f} | {s['min']:.3f} | {s['max']:.3f} |")
    print(f"| model only | {doc['images_per_s']['model only']['median']:.1f} | 1 | | |")
    d = doc["paired_difference_threads_minus_workers"]
    print(f"threads - workers, paired by round: median {d['median']:+.3f} (range {d['min']:+.3f} to {d['max']:+.3f}); "
          f"threads ahead in {doc['threads_ahead_in_rounds']} of {args.rounds} rounds; embeddings equal: {equal}")
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
