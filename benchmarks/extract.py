"""Embedding throughput against the arithmetic limit and the peer's plain loop, in one run.

    python benchmarks/extract.py [--device cuda|cpu] [--n 20000] [--arch ViT-B-32] [--size 256]

Random weights cost the same as trained ones. Each row runs in its own child process, so its peak
host memory (ru_maxrss, which includes importing torch) and peak device memory are its own:

  matmul          the device's measured dense matmul rate (bf16 on a GPU; fp32 and bf16 on a CPU);
                  with the model's FLOPs per image (counted by torch's FlopCounterMode) it gives the
                  arithmetic limit in images/s that every other row is a fraction of;
  model-only/...  encode_images on a preprocessed batch already on the device, per precision
                  (and channels_last / torch.compile variants on a GPU);
  creepscan/...   creepscan.features.extract end to end from JPEG files, cold cache: listing is
                  done before, hashing, decoding, preprocessing, the model and the cache writes are
                  timed; ``fast`` = batched JPEG decode + tensor transform, ``pil`` = the reference;
  cached          the same call again, served from the embedding cache;
  peer            the CLIP_benchmark way: PIL decode + the model's own preprocess in a 4-worker
                  DataLoader, batch 64, fp16 autocast on a GPU (fp32 on a CPU), a plain loop.

The creepscan rows also report the smallest per-image cosine between their embeddings and the
fp32 PIL reference's (the peer row's model in fp32 on the same files); the script exits 1 if any
is below 0.999, which is how the fast paths' agreement is checked on a GPU.
Prints a table and writes benchmarks/results/extract_<device>.json.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from attacks import peak_host_mib  # noqa: E402  (VmHWM: ru_maxrss would carry the parent's peak)

COSINE_BOUND = 0.999


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

def _write_some(job) -> None:
    import numpy as np
    from PIL import Image

    root, start, stop, size = job
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        a = (rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).resize((size, size), Image.BILINEAR).save(Path(root) / f"c{i % 10}" / f"{i:06d}.jpg",
                                                                     quality=90)


def write_jpegs(root: Path, n: int, size: int) -> None:
    """n JPEGs (quality 90) of size x size: upsampled colour noise (seeded per file), ten label
    folders; written by all cores (device time is scarce)."""
    from concurrent.futures import ProcessPoolExecutor

    for c in range(10):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    step = 500
    jobs = [(str(root), s, min(s + step, n), size) for s in range(0, n, step)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_write_some, jobs))


# ------------------------------------------------------------------------------------------------
# Rows (each runs in a child process)
# ------------------------------------------------------------------------------------------------

def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def flops_per_image(model, device, image_size) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, *image_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.encode_image(x)
    return float(counter.get_total_flops())


def row_matmul(args) -> dict:
    """Best of several timed square matmuls per dtype (the machine's attainable dense rate)."""
    import torch

    dev = args.device
    n = 8192 if dev == "cuda" else 2048
    out = {}
    for dtype in ((torch.bfloat16,) if dev == "cuda" else (torch.float32, torch.bfloat16)):
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        a @ b
        _sync(dev)
        reps = 20 if dev == "cuda" else 1
        best = 0.0
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            _sync(dev)
            best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t))
            if best < 1e10 and dev == "cpu":
                break  # an emulated dtype (bf16 without hardware support): one slow sample says enough
        out[str(dtype).replace("torch.", "")] = best
    return {"matmul_flops_per_s": out}


def _encoder(args, **settings):
    from creepscan.encoders.openclip import random_init

    enc = random_init(args.arch, device=args.device)
    return enc.configure(**settings) if settings else enc


def row_model(args, precision="auto", channels_last=None, compile=False) -> dict:
    import torch

    enc = _encoder(args, precision=precision, channels_last=channels_last, compile=compile)
    size = enc.model.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    # counted on the fp32 model: configure() casts the weights only at the first encode, below
    flops = flops_per_image(enc.model, args.device, size)
    batch = args.batch or (1024 if args.device == "cuda" else 32)
    x = torch.randn(batch, 3, *size, device=args.device)
    t = time.perf_counter()
    enc.encode_images(x)  # warm-up (and the compile, when asked for)
    if args.device == "cuda":
        enc.encode_images(x)
    _sync(args.device)
    warm = time.perf_counter() - t
    # a time budget, not a count: bf16 on a CPU without bf16 instructions is ~10x slower than fp32
    budget, reps = (5.0, 0) if args.device == "cuda" else (10.0, 0)
    t = time.perf_counter()
    while reps == 0 or time.perf_counter() - t < budget:
        enc.encode_images(x)
        reps += 1
        if args.device == "cuda" and reps % 5 == 0:
            _sync(args.device)
    _sync(args.device)
    s = time.perf_counter() - t
    return {"images": reps * batch, "seconds": s, "flops_per_image": flops, "warmup_s": warm,
            "precision": enc.precision, "channels_last": enc.channels_last, "batch": batch}


def _reference(args):
    """fp32 embeddings through the model's own PIL preprocess, for the agreement check."""
    import numpy as np

    path = Path(args.images).parent / "reference.npy"
    return np.load(path) if path.exists() else None


def _min_cosine(a, b) -> float | None:
    import numpy as np

    if b is None or a.shape != b.shape:
        return None
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def row_creepscan(args, decode="auto", cached=False, precision="auto") -> dict:
    from creepscan.data import load_image_set
    from creepscan.features import extract

    enc = _encoder(args, precision=precision)
    images = load_image_set(args.images)
    cache = Path(tempfile.mkdtemp(dir=Path(args.images).parent))
    enc.encode_images(_warm_batch(enc))  # model build and first-call costs are not throughput
    t = time.perf_counter()
    feats = extract(enc, images, cache_dir=cache, progress=False, decode=decode, batch_size=args.batch)
    s = time.perf_counter() - t
    out = {"images": len(images), "seconds": s, "precision": enc.precision,
           "min_cosine_vs_fp32_pil": _min_cosine(feats.X, _reference(args))}
    if cached:
        t = time.perf_counter()
        extract(enc, images, cache_dir=cache, progress=False, decode=decode)
        out.update(seconds=time.perf_counter() - t, min_cosine_vs_fp32_pil=None)
    return out


def _warm_batch(enc):
    import torch

    size = enc.model.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    return torch.zeros(8, 3, *size)


class _Files:
    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        return self.preprocess(Image.open(self.paths[i]).convert("RGB"))


def row_peer(args, reference=False) -> dict:
    """CLIP_benchmark-style extraction; with ``reference`` in fp32 (saved for the agreement check)."""
    import numpy as np
    import torch

    from creepscan.data import load_image_set

    enc = _encoder(args, precision="fp32", channels_last=False)
    model, device = enc.model, args.device
    paths = [str(p) for p in load_image_set(args.images).paths]
    loader = torch.utils.data.DataLoader(_Files(paths, enc.preprocess), batch_size=64, num_workers=4)
    fp16 = device == "cuda" and not reference
    amp = torch.autocast("cuda", dtype=torch.float16) if fp16 else torch.autocast("cpu", enabled=False)
    model.encode_image(_warm_batch(enc).to(device))
    out = []
    t = time.perf_counter()
    with torch.no_grad(), amp:
        for x in loader:
            out.append(model.encode_image(x.to(device)).float().cpu())
    _sync(device)
    s = time.perf_counter() - t
    if reference:
        np.save(Path(args.images).parent / "reference.npy", torch.cat(out).numpy())
    return {"images": len(paths), "seconds": s, "precision": "amp_fp16" if fp16 else "fp32"}


def rows_for(device: str) -> list[tuple[str, str, dict]]:
    """(row name, function, keyword arguments), in the order they run."""
    gpu = device == "cuda"
    rows = [("matmul", "row_matmul", {})]
    if gpu:  # on a CPU the peer row is the fp32 reference itself
        rows += [("reference fp32 (PIL)", "row_peer", {"reference": True})]
    if gpu:
        rows += [("model-only amp_bf16", "row_model", {"precision": "amp_bf16", "channels_last": False}),
                 ("model-only pure_bf16", "row_model", {"precision": "pure_bf16", "channels_last": False}),
                 ("model-only pure_bf16 + channels_last", "row_model", {"precision": "pure_bf16", "channels_last": True}),
                 ("model-only pure_bf16 + compile", "row_model", {"precision": "pure_bf16", "compile": True}),
                 ("model-only fp32", "row_model", {"precision": "fp32", "channels_last": False})]
    else:
        rows += [("model-only fp32", "row_model", {"precision": "fp32"}),
                 ("model-only amp_bf16", "row_model", {"precision": "amp_bf16"}),
                 ("model-only pure_bf16", "row_model", {"precision": "pure_bf16"})]
    rows += [("creepscan fast decode", "row_creepscan", {"decode": "fast"}),
             ("creepscan pil decode", "row_creepscan", {"decode": "pil"}),
             ("creepscan cached rerun", "row_creepscan", {"cached": True}),
             ("peer loop", "row_peer", {"reference": not gpu})]
    if not gpu:  # the reference must exist before the creepscan rows compare with it
        rows.insert(1, rows.pop())
    return rows


def _peaks(device) -> dict:
    import torch

    out = {"peak_host_mib": peak_host_mib()}
    if device == "cuda":
        out["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def child(args) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    fn, kwargs = args.row.split(":", 1)
    result = globals()[fn](args, **json.loads(kwargs))
    result.update(_peaks(args.device))
    print("ROW " + json.dumps(result))


# ------------------------------------------------------------------------------------------------
# Parent
# ------------------------------------------------------------------------------------------------

def _run_row(args, images: Path, fn: str, kwargs: dict) -> dict:
    cmd = [sys.executable, __file__, "--device", args.device, "--arch", args.arch, "--n", str(args.n),
           "--images", str(images), "--row", f"{fn}:{json.dumps(kwargs)}"]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("ROW "):
            return json.loads(line[4:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def _machine(device) -> str:
    import torch

    if device == "cuda":
        return f"{torch.cuda.get_device_name()} + {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=None, help="JPEG files (default: 20000 on a GPU, 256 on a CPU)")
    ap.add_argument("--size", type=int, default=256, help="side of the square JPEGs")
    ap.add_argument("--batch", type=int, default=None, help="images per model call (default: creepscan's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--images", help=argparse.SUPPRESS)
    ap.add_argument("--row", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.n is None:
        args.n = 20000 if args.device == "cuda" else 256
    if args.row:
        child(args)
        return 0

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "imgs"
        t = time.perf_counter()
        write_jpegs(images, args.n, args.size)
        print(f"wrote {args.n} JPEGs of {args.size}x{args.size} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        for name, fn, kwargs in rows_for(args.device):
            r = _run_row(args, images, fn, kwargs)
            r["path"] = name
            results.append(r)
            done = f"{r['images'] / r['seconds']:,.1f} images/s" if "seconds" in r else r.get("error", "done")
            print(f"  {name}: {done}", file=sys.stderr)

    rates = next((r["matmul_flops_per_s"] for r in results if "matmul_flops_per_s" in r), {})
    flops = next((r["flops_per_image"] for r in results if "flops_per_image" in r), None)
    # the arithmetic creepscan uses by default there: bf16 on a GPU, fp32 on a CPU
    peak_rate = rates.get("bfloat16" if args.device == "cuda" else "float32")
    limit = peak_rate / flops if peak_rate and flops else None
    peer = next((r for r in results if r["path"] == "peer loop" and "seconds" in r), None)
    peer_ips = peer["images"] / peer["seconds"] if peer else None
    table = []
    for r in results:
        if "seconds" not in r:
            continue
        ips = r["images"] / r["seconds"]
        table.append({
            "path": r["path"], "images": r["images"], "seconds": round(r["seconds"], 3),
            "images_per_s": round(ips, 1),
            "fraction_of_limit": round(ips / limit, 4) if limit else None,
            "x_peer": round(ips / peer_ips, 2) if peer_ips else None,
            "precision": r.get("precision"), "min_cosine_vs_fp32_pil": r.get("min_cosine_vs_fp32_pil"),
            "peak_host_mib": round(r["peak_host_mib"]),
            "peak_device_mib": round(r["peak_device_mib"]) if "peak_device_mib" in r else None,
        })
    errors = [{"path": r["path"], "error": r["error"]} for r in results if "error" in r]

    print(f"\n{args.arch} on {args.device} ({_machine(args.device)}), {args.n} JPEGs {args.size}x{args.size}")
    if flops:
        print(f"FLOPs per image {flops / 1e9:.2f} G; matmul rate "
              + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" if v >= 1e12 else f"{k} {v / 1e9:.1f} GFLOP/s"
                          for k, v in rates.items())
              + (f"; arithmetic limit {limit:,.0f} images/s" if limit else ""))
    print(f"| path | images/s | x peer | of limit | precision | min cos vs fp32 | host MiB | device MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    def cell(v, fmt):
        return "-" if v is None else fmt.format(v)

    for r in table:
        print(f"| {r['path']} | {r['images_per_s']:,.1f} | {cell(r['x_peer'], '{:.2f}')} | "
              f"{cell(r['fraction_of_limit'], '{:.2%}')} | {r['precision'] or '-'} | "
              f"{cell(r['min_cosine_vs_fp32_pil'], '{:.5f}')} | {r['peak_host_mib']} | "
              f"{cell(r['peak_device_mib'], '{}')} |")
    for e in errors:
        print(f"ERROR in {e['path']}: {e['error']}")

    bad = [r["path"] for r in table if r["min_cosine_vs_fp32_pil"] is not None and r["min_cosine_vs_fp32_pil"] <= COSINE_BOUND]
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"extract_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python benchmarks/extract.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.date.today().isoformat(), "machine": _machine(args.device), "arch": args.arch,
        "device": args.device, "n": args.n, "size": args.size, "torch": torch.__version__,
        "flops_per_image": flops, "matmul_flops_per_s": rates, "arithmetic_limit_images_per_s": limit,
        "rows": table, "errors": errors, "cosine_bound": COSINE_BOUND, "below_cosine_bound": bad,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    if bad:
        print(f"FAIL: embeddings of {', '.join(bad)} fall below cosine {COSINE_BOUND} of the fp32 reference")
    return 1 if bad or errors else 0


if __name__ == "__main__":
    sys.exit(main())
