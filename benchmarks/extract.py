"""Embedding throughput: creepscan's extraction vs the peer's plain loop, in the same run.

    python benchmarks/extract.py [--arch ViT-B-32] [--n 512] [--device cpu]

Random weights cost the same as trained ones. Measures, on JPEG files written here:
  model-only   images/s of encode_image on a preprocessed batch held in memory;
  creepscan    creepscan.features.extract end to end from JPEG files (cold cache);
  cached       the same call again (served from the embedding cache);
  peer         the CLIP_benchmark way: PIL decode in a 4-worker DataLoader, batch 64,
               fp16 autocast on CUDA (fp32 on CPU), a plain per-batch loop.
Prints a table and writes benchmarks/results/extract_<device>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from creepscan.data import load_image_set  # noqa: E402
from creepscan.encoders.openclip import random_init  # noqa: E402
from creepscan.features import extract  # noqa: E402


def write_jpegs(root: Path, n: int, size: int = 256) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        a = (rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).resize((size, size), Image.BILINEAR).save(d / f"{i:05d}.jpg", quality=90)


class _Files(torch.utils.data.Dataset):
    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.preprocess(Image.open(self.paths[i]).convert("RGB"))


def peer_extract(model, preprocess, paths, device):
    loader = torch.utils.data.DataLoader(_Files(paths, preprocess), batch_size=64, num_workers=4)
    out = []
    amp = torch.autocast("cuda", dtype=torch.float16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), amp:
        for x in loader:
            out.append(model.encode_image(x.to(device)).float().cpu())
    return torch.cat(out).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    enc = random_init(args.arch, device=args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs"
        write_jpegs(root, args.n)
        images = load_image_set(root)
        x = torch.stack([enc.preprocess(Image.open(images.paths[i % len(images)]).convert("RGB")) for i in range(64)])
        enc.encode_images(x[:8])  # warm-up
        reps = max(1, args.n // 64)
        t = time.perf_counter()
        for _ in range(reps):
            enc.encode_images(x)
        rows.append(("model-only", reps * 64, time.perf_counter() - t))

        t = time.perf_counter()
        feats = extract(enc, images, cache_dir=Path(tmp) / "cache", progress=False)
        rows.append(("creepscan", len(images), time.perf_counter() - t))
        t = time.perf_counter()
        extract(enc, images, cache_dir=Path(tmp) / "cache", progress=False)
        rows.append(("creepscan (cached)", len(images), time.perf_counter() - t))

        t = time.perf_counter()
        ref = peer_extract(enc.model, enc.preprocess, [str(p) for p in images.paths], args.device)
        rows.append(("peer loop", len(images), time.perf_counter() - t))
        a = feats.X / np.linalg.norm(feats.X, axis=1, keepdims=True)
        b = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        min_cos = float((a * b).sum(1).min())
    peak_host_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peer_s = rows[3][2]
    table = [{"path": name, "images": n, "seconds": round(s, 3), "images_per_s": round(n / s, 1),
              "speedup_vs_peer": round(peer_s / s * n / rows[3][1], 2)} for name, n, s in rows]
    print(f"{args.arch} on {args.device} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), {args.n} JPEGs 256x256")
    print(f"{'path':<20} {'images':>7} {'seconds':>9} {'img/s':>9} {'x peer':>7}")
    for r in table:
        print(f"{r['path']:<20} {r['images']:>7} {r['seconds']:>9.3f} {r['images_per_s']:>9.1f} {r['speedup_vs_peer']:>7.2f}")
    print(f"min cosine(creepscan, peer) per image: {min_cos:.6f}; peak host memory {peak_host_mb:.0f} MiB")
    out = Path(args.out or Path(__file__).parent / "results" / f"extract_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "arch": args.arch, "device": args.device,
                               "cpu_count": os.cpu_count(), "torch": torch.__version__, "rows": table,
                               "min_cosine_vs_peer": min_cos, "peak_host_mib": round(peak_host_mb)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
