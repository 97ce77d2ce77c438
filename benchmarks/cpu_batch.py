"""Where a CPU's time goes in the image tower, and which batch size suits its caches.

    python benchmarks/cpu_batch.py [--arch ViT-B-32] [--batches 8 16 32 64 128] [--images 256] [--rounds 3]

Model-only fp32 ``encode_images`` on random preprocessed batches (random weights cost what trained
ones do), in one process, the batch sizes alternating round by round so that other load on the
machine weighs on all of them alike; each size reports its best round. Then one batch of the chosen
size under ``torch.profiler``: the share of CPU time in the dense matrix products (aten::mm, addmm,
bmm, baddbmm, linear's and attention's kernels) against everything else (softmax, layer norm, GELU,
copies), which is what separates the model from the matmul-rate "arithmetic limit" of
benchmarks/extract.py. Prints a table and writes benchmarks/results/cpu_batch_cpu.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::mkldnn_convolution", "aten::_scaled_dot_product_attention_math")


def main() -> int:
    import torch

    from creepscan import cpu
    from creepscan.encoders.openclip import random_init

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--images", type=int, default=256, help="images per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu_batch_cpu.json"))
    args = ap.parse_args()

    threads, why = cpu.apply_threads()
    enc = random_init(args.arch, device="cpu", seed=0).configure(precision="fp32")
    size = enc.model.visual.image_size
    size = size if isinstance(size, int) else size[0]
    gen = torch.Generator().manual_seed(0)
    data = {b: torch.randn(b, 3, size, size, generator=gen) for b in args.batches}
    for b in args.batches:  # first calls (allocation, oneDNN primitive creation) are not throughput
        enc.encode_images(data[b])
    rates: dict[int, list[float]] = {b: [] for b in args.batches}
    for r in range(args.rounds):
        order = args.batches[r % len(args.batches):] + args.batches[:r % len(args.batches)]
        for b in order:
            calls = max(1, args.images // b)
            t = time.perf_counter()
            for _ in range(calls):
                enc.encode_images(data[b])
            rates[b].append(calls * b / (time.perf_counter() - t))
            print(f"  round {r}: batch {b}: {rates[b][-1]:.1f} images/s", file=sys.stderr, flush=True)
    best = {b: max(v) for b, v in rates.items()}
    top = max(best, key=best.get)

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        enc.encode_images(data[top])
    self_us: dict[str, float] = {}
    for e in prof.key_averages():
        self_us[e.key] = self_us.get(e.key, 0.0) + e.self_cpu_time_total
    total = sum(self_us.values())
    gemm = sum(v for k, v in self_us.items() if k in GEMM or "mkldnn" in k.lower() and "conv" in k.lower())
    heaviest = sorted(self_us.items(), key=lambda kv: -kv[1])[:10]

    print(f"\n{args.arch} fp32 on {cpu.cpu_model()} ({len(cpu.usable_cpus())} usable CPUs, {threads} threads: {why})")
    print("| batch | images/s (best of rounds) | rounds | x batch 64 |")
    print("| ---: | ---: | --- | ---: |")
    ref = best.get(64)
    for b in args.batches:
        rel = f"{best[b] / ref:.2f}" if ref else "-"
        print(f"| {b} | {best[b]:.1f} | {', '.join(f'{v:.1f}' for v in rates[b])} | {rel} |")
    print(f"\nprofile of one batch of {top}: {100 * gemm / total:.0f}% of CPU time in dense matrix products")
    for k, v in heaviest:
        print(f"  {k}: {100 * v / total:.1f}%")
    doc = {
        "benchmark": "cpu_batch", "command": "python " + " ".join(["benchmarks/cpu_batch.py"] + sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu.cpu_model(), "usable_cpus": len(cpu.usable_cpus()), "flags_bf16": cpu.native_bf16()[1],
                    "torch_capability": cpu.torch_capability(), "platform": platform.platform(),
                    "torch": torch.__version__, "threads": threads, "threads_reason": why},
        "arch": args.arch, "images_per_measurement": args.images,
        "images_per_s": {str(b): v for b, v in rates.items()},
        "best_images_per_s": {str(b): v for b, v in best.items()},
        "profiled_batch": top, "gemm_share_of_cpu_time": gemm / total,
        "heaviest_ops": [{"op": k, "share": v / total} for k, v in heaviest],
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
