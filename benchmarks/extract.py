"""Embedding throughput against the arithmetic limit and the peer's plain loop, in one run.

    python benchmarks/extract.py [--device cuda|cpu] [--n 20000] [--arch ViT-B-32] [--size 256]
                                 [--reps 1] [--only WORD ...] [--out PATH]

Random weights cost the same as trained ones. Each row runs in its own child process, so its peak
host memory (VmHWM, which includes importing torch) and peak device memory are its own:

  matmul          the device's measured dense matmul rate (bf16 on a GPU; fp32 and bf16 on a CPU;
                  the best of every pass); with the model's FLOPs per image (counted by torch's
                  FlopCounterMode with the attention fast path off, so its projections are
                  counted) it gives the arithmetic limit in images/s that every other row is a
                  fraction of. On a CPU each row also measures the fp32 rate in its own process,
                  before and after it, and gives its share of that limit too ("same process"): the
                  2048^3 rate on these shared machines moves by 1.5x within minutes;
  model-only/...  encode_images on a preprocessed batch already on the device, per precision,
                  memory format, batch size and torch.compile;
  creepscan/...   creepscan.features.extract end to end from JPEG files, cold cache: listing is
                  done before, hashing, decoding, preprocessing, the model and the cache writes are
                  timed; ``fast`` = batched JPEG decode + tensor transform, ``pil`` = the reference;
                  ``auto`` = what an audit does on this machine (its precision choice and why);
  model + floor   the whole per-probe embedding cost: the model and its random-init floor through
                  creepscan.features.extract_many (one decode for both), beside the peer loop
                  run twice (once per model), as a peer script would do it;
  cached          the same call again, served from the embedding cache;
  peer            the CLIP_benchmark way: PIL decode + the model's own preprocess in a 4-worker
                  DataLoader, batch 64, fp16 autocast on a GPU (fp32 on a CPU), a plain loop.

With ``--reps N`` every row runs N times (later passes in rotated order) and reports its best
pass: on a shared machine, other processes' load only ever slows a row. The creepscan rows set
torch's threads as an audit does (``creepscan.cpu.apply_threads``); the model-only and peer rows
keep torch's default. Every row gives images/s, x its peer row, and its share of the fp32 arithmetic limit (of the bf16
limit too where the CPU has bf16 instructions); a model + floor row counts two model passes per
image. The creepscan rows also report the smallest per-image cosine between their embeddings and
the fp32 PIL reference's (the peer rows' models in fp32 on the same files); the script exits 1 if
any is below 0.999. The JSON records the CPU (model name, flags, torch's CPU capability) and, on a
CPU, the bars of issue 15 with whether each held in this run.
Prints a table and writes benchmarks/results/extract_<device>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: creepscan
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: the shared meter

from attacks import peak_host_mib  # VmHWM: ru_maxrss would carry the parent's peak

ROOT = Path(__file__).resolve().parents[1]

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

    # An input that needs grad keeps nn.MultiheadAttention off its fused inference kernel, which
    # FlopCounterMode does not count (a ViT-B/32 would read 5.9 instead of 8.7 GFLOP).
    x = torch.zeros(1, 3, *image_size, device=device, requires_grad=True)
    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), counter:
        model.encode_image(x)
    return float(counter.get_total_flops())


def matmul_rate(dev, dtype, samples=5) -> float:
    """Best of ``samples`` timed square matmuls (FLOP/s): the attainable dense rate."""
    import torch

    n = 8192 if dev == "cuda" else 2048
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    a @ b
    _sync(dev)
    reps = 20 if dev == "cuda" else 1
    best = 0.0
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(dev)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t))
        if best < 1e10 and dev == "cpu":
            break  # an emulated dtype (bf16 without hardware support): one slow sample says enough
    return best


def row_matmul(args) -> dict:
    """The machine's attainable dense rate per dtype, and the model's FLOPs per image."""
    import torch

    dev = args.device
    out = {str(dt).replace("torch.", ""): matmul_rate(dev, dt)
           for dt in ((torch.bfloat16,) if dev == "cuda" else (torch.float32, torch.bfloat16))}
    enc = _encoder(args, precision="fp32")
    return {"matmul_flops_per_s": out, "flops_per_image": flops_per_image(enc.model, dev, _size(enc))}


MODEL_SEED = 1  # the benchmark's "model": random weights other than its floor's (FLOOR_SEED)


def _encoder(args, seed=MODEL_SEED, **settings):
    from creepscan.encoders.openclip import random_init

    enc = random_init(args.arch, device=args.device, seed=seed)
    # the parent's cache folder: the CPU's precision choice is measured once per run, not per row
    return enc.configure(cache_dir=Path(args.images).parent / "machine-cache", **settings)


def _size(enc):
    size = enc.model.visual.image_size
    return size if isinstance(size, (tuple, list)) else (size, size)


def row_model(args, precision="auto", channels_last=None, compile=False, batch=None) -> dict:
    import torch

    enc = _encoder(args, precision=precision, channels_last=channels_last, compile=compile)
    size = _size(enc)
    # counted on the fp32 model: configure() casts the weights only at the first encode, below
    flops = flops_per_image(enc.model, args.device, size)
    batch = batch or args.batch or (1024 if args.device == "cuda" else enc.batch_size)
    x = torch.randn(batch, 3, *size, device=args.device)
    t = time.perf_counter()
    enc.encode_images(x)  # warm-up (and the compile, when asked for; and a CPU's precision choice)
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
            "precision": enc.precision, "precision_reason": enc.precision_reason,
            "channels_last": enc.channels_last, "batch": batch, "threads": torch.get_num_threads()}


def _reference(args, floor=False):
    """fp32 embeddings through the model's own PIL preprocess, for the agreement check."""
    import numpy as np

    path = Path(args.images).parent / ("reference_floor.npy" if floor else "reference.npy")
    return np.load(path) if path.exists() else None


def _min_cosine(a, b) -> float | None:
    import numpy as np

    if b is None or a.shape != b.shape:
        return None
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def row_creepscan(args, decode="auto", cached=False, precision="auto", floor=False, num_workers=None) -> dict:
    """creepscan's extraction from the JPEG files; with ``floor`` the model and its random-init
    floor together (``extract_many``: one decode, two models), as an audit embeds each probe."""
    import torch

    from creepscan.cpu import apply_threads
    from creepscan.data import load_image_set
    from creepscan.features import decode_plan, extract_many

    apply_threads()  # as an audit does: threads from the usable CPUs and the load
    enc = _encoder(args, precision=precision)
    encoders = [enc, enc.floor] if floor else [enc]
    images = load_image_set(args.images)
    cache = Path(tempfile.mkdtemp(dir=Path(args.images).parent))
    for e in encoders:  # model build, first-call costs and a CPU's precision choice are not throughput
        e.encode_images(_warm_batch(e))
    t = time.perf_counter()
    feats = extract_many(encoders, images, cache_dir=cache, progress=False, decode=decode, batch_size=args.batch,
                         num_workers=num_workers)
    s = time.perf_counter() - t
    cosines = [_min_cosine(f.X, _reference(args, floor=i == 1)) for i, f in enumerate(feats)]
    out = {"images": len(images), "seconds": s, "passes": len(encoders), "precision": enc.precision,
           "precision_reason": enc.precision_reason, "threads": torch.get_num_threads(),
           "min_cosine_vs_fp32_pil": None if None in cosines else min(cosines),
           "decode_path": decode_plan(enc, decode, num_workers)}
    if floor:
        out["floor_precision"] = enc.floor.precision
    if cached:
        t = time.perf_counter()
        extract_many(encoders, images, cache_dir=cache, progress=False, decode=decode)
        out.update(seconds=time.perf_counter() - t, min_cosine_vs_fp32_pil=None)
    return out


def _warm_batch(enc):
    import torch

    return torch.zeros(8, 3, *_size(enc))


class _Files:
    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        return self.preprocess(Image.open(self.paths[i]).convert("RGB"))


def row_peer(args, reference=False, floor=False) -> dict:
    """CLIP_benchmark-style extraction; with ``floor`` run a second time with the random-init twin
    (a peer script embeds each model in its own pass); with ``reference`` in fp32, saved for the
    agreement check."""
    import numpy as np
    import torch

    from creepscan.data import load_image_set
    from creepscan.encoders.openclip import FLOOR_SEED

    models = [_encoder(args, precision="fp32", channels_last=False)]
    if floor:
        models.append(_encoder(args, seed=FLOOR_SEED, precision="fp32", channels_last=False))
    device = args.device
    paths = [str(p) for p in load_image_set(args.images).paths]
    fp16 = device == "cuda" and not reference
    amp = torch.autocast("cuda", dtype=torch.float16) if fp16 else torch.autocast("cpu", enabled=False)
    for enc in models:
        enc.model.encode_image(_warm_batch(enc).to(device))
    outs = []
    t = time.perf_counter()
    for enc in models:
        loader = torch.utils.data.DataLoader(_Files(paths, enc.preprocess), batch_size=64, num_workers=4)
        out = []
        with torch.no_grad(), amp:
            for x in loader:
                out.append(enc.model.encode_image(x.to(device)).float().cpu())
        outs.append(torch.cat(out).numpy())
    _sync(device)
    s = time.perf_counter() - t
    if reference:
        for i, X in enumerate(outs):
            np.save(Path(args.images).parent / ("reference_floor.npy" if i else "reference.npy"), X)
    return {"images": len(paths), "seconds": s, "passes": len(models),
            "precision": "amp_fp16" if fp16 else "fp32", "threads": torch.get_num_threads()}


def _cpu_has_bf16() -> bool:
    from creepscan.cpu import native_bf16

    return native_bf16()[0]


PEER, PEER_2 = "peer loop", "peer loop, model + floor (two passes)"


def rows_for(device: str) -> list[tuple[str, str, dict]]:
    """(row name, function, keyword arguments), in the order they run. The peer rows run first:
    they write the fp32 references the creepscan rows are checked against."""
    gpu = device == "cuda"
    rows = [("matmul", "row_matmul", {})]
    if gpu:
        rows += [("reference fp32 (PIL)", "row_peer", {"reference": True}),
                 ("model-only amp_bf16", "row_model", {"precision": "amp_bf16", "channels_last": False}),
                 ("model-only pure_bf16", "row_model", {"precision": "pure_bf16", "channels_last": False}),
                 ("model-only pure_bf16 + channels_last", "row_model",
                  {"precision": "pure_bf16", "channels_last": True}),
                 ("model-only pure_bf16 + compile", "row_model", {"precision": "pure_bf16", "compile": True}),
                 ("model-only fp32", "row_model", {"precision": "fp32", "channels_last": False}),
                 (PEER, "row_peer", {})]
    else:  # on a CPU the peer rows are the fp32 references themselves
        rows += [(PEER, "row_peer", {"reference": True}),
                 (PEER_2, "row_peer", {"reference": True, "floor": True}),
                 ("model-only fp32", "row_model", {"precision": "fp32"}),
                 ("model-only fp32, batch 16", "row_model", {"precision": "fp32", "batch": 16}),
                 ("model-only fp32, batch 128", "row_model", {"precision": "fp32", "batch": 128}),
                 ("model-only fp32 + channels_last", "row_model", {"precision": "fp32", "channels_last": True}),
                 ("model-only fp32 + compile", "row_model", {"precision": "fp32", "compile": True}),
                 ("model-only pure_bf16", "row_model", {"precision": "pure_bf16"}),
                 ("model-only amp_bf16", "row_model", {"precision": "amp_bf16"}),
                 ("model-only auto", "row_model", {"precision": "auto"})]
        if _cpu_has_bf16():
            rows += [("model-only pure_bf16 + compile", "row_model", {"precision": "pure_bf16", "compile": True})]
    rows += [("creepscan fast decode", "row_creepscan", {"decode": "fast"}),
             ("creepscan pil decode", "row_creepscan", {"decode": "pil"})]
    if not gpu:
        rows += [("creepscan fp32", "row_creepscan", {"precision": "fp32"}),
                 ("creepscan fp32, decode in 2 worker processes", "row_creepscan",
                  {"precision": "fp32", "num_workers": 2}),
                 ("creepscan auto", "row_creepscan", {}),
                 ("creepscan model + floor, fp32", "row_creepscan", {"precision": "fp32", "floor": True}),
                 ("creepscan model + floor, auto", "row_creepscan", {"floor": True})]
    rows += [("creepscan cached rerun", "row_creepscan", {"cached": True})]
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
    here = args.device == "cpu" and fn in ("row_model", "row_creepscan", "row_peer")
    if here:  # the fp32 rate in this process before the row (torch's default threads) and after it (the row's)
        import torch

        before = matmul_rate("cpu", torch.float32, samples=3)
    result = globals()[fn](args, **json.loads(kwargs))
    if here and "seconds" in result:
        result["matmul_fp32_here"] = max(before, matmul_rate("cpu", torch.float32, samples=3))
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
    from creepscan.cpu import cpu_model, usable_cpus

    return f"{cpu_model()}, {len(usable_cpus())} usable of {os.cpu_count()} cores"


def _busy_now() -> float:
    from creepscan.cpu import busy_cpus

    return round(busy_cpus(sample_s=0.5)[0], 2)


def _bars(table, has_bf16: bool) -> list[dict]:
    """Issue 15's bars on a CPU, each with the row it is read from and whether it held here."""
    by = {r["path"]: r for r in table}

    def bar(text, path, key, bound, extra_ok=True):
        r = by.get(path)
        value = r.get(key) if r else None
        return {"bar": text, "row": path, "value": value,
                "holds": None if value is None else bool(value >= bound and extra_ok)}

    bars = [bar(">= 1.0x the peer loop in fp32", "creepscan fp32", "x_peer", 1.0),
            bar(">= 1.0x the peer loop in fp32, model + floor", "creepscan model + floor, fp32", "x_peer", 1.0),
            bar(">= 75% of the fp32 arithmetic limit, end to end", "creepscan fp32", "fraction_of_fp32_limit", 0.75),
            bar(">= 75% of the fp32 arithmetic limit, end to end, against the rate in the row's own process",
                "creepscan fp32", "fraction_of_fp32_limit_here", 0.75)]
    if has_bf16:
        auto = by.get("creepscan auto", {})
        cos = auto.get("min_cosine_vs_fp32_pil")
        bars.append(bar(">= 2x the peer loop with native bf16, cosine > 0.999", "creepscan auto", "x_peer", 2.0,
                        extra_ok=cos is not None and cos > COSINE_BOUND))
    return bars


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=None, help="JPEG files (default: 20000 on a GPU, 256 on a CPU)")
    ap.add_argument("--size", type=int, default=256, help="side of the square JPEGs")
    ap.add_argument("--batch", type=int, default=None, help="images per model call (default: creepscan's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only the rows whose names contain one of these words "
                         "(the matmul and peer rows always run)")
    ap.add_argument("--reps", type=int, default=1,
                    help="passes over all rows (later ones in rotated order); each row reports its best pass")
    ap.add_argument("--out", default=None)
    ap.add_argument("--images", help=argparse.SUPPRESS)
    ap.add_argument("--row", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.n is None:
        args.n = 20000 if args.device == "cuda" else 256
    if args.reps < 1:
        ap.error(f"--reps must be at least 1, got {args.reps}")
    if args.row:
        child(args)
        return 0

    from creepscan.cpu import machine_identity, native_bf16

    gpu = args.device == "cuda"
    has_bf16 = not gpu and native_bf16()[0]
    rows = rows_for(args.device)
    if args.only:
        rows = [r for r in rows if r[1] in ("row_matmul", "row_peer") or any(w in r[0] for w in args.only)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "imgs"
        t = time.perf_counter()
        write_jpegs(images, args.n, args.size)
        print(f"wrote {args.n} JPEGs of {args.size}x{args.size} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        runs: dict[str, list[dict]] = {}
        for rep in range(args.reps):
            # later passes rotate the order (the references from the first pass stay on disk), so
            # a drift in other processes' load does not always fall on the same rows
            order = rows if rep == 0 else rows[rep % len(rows):] + rows[:rep % len(rows)]
            for name, fn, kwargs in order:
                busy = _busy_now()
                r = _run_row(args, images, fn, kwargs)
                r["path"], r["busy_cpus_before"] = name, busy
                runs.setdefault(name, []).append(r)
                done = f"{r['images'] / r['seconds']:,.1f} images/s" if "seconds" in r else r.get("error", "done")
                print(f"  {name}: {done} (other processes kept {busy} CPUs busy)", file=sys.stderr)
        for name, _, _ in rows:  # the best of the passes: load from others only ever slows a row
            timed = [r for r in runs[name] if "seconds" in r]
            best = max(timed, key=lambda r: r["images"] / r["seconds"]) if timed else runs[name][0]
            rated = [r["matmul_flops_per_s"] for r in runs[name] if "matmul_flops_per_s" in r]
            if rated:  # the matmul row: the best rate of every pass, per dtype
                best["matmul_flops_per_s"] = {dt: max(r.get(dt, 0.0) for r in rated) for dt in rated[0]}
                best["matmul_runs_flops_per_s"] = rated
            if len(timed) > 1:
                best["runs_images_per_s"] = [round(r["images"] / r["seconds"], 2) for r in timed]
            results.append(best)

    rates = next((r["matmul_flops_per_s"] for r in results if "matmul_flops_per_s" in r), {})
    flops = next((r["flops_per_image"] for r in results if "flops_per_image" in r), None)
    # the arithmetic limit in images/s (one model pass each): fp32 and, where the CPU has bf16
    # instructions or on a GPU, bf16
    limits = {dt: rates[dt] / flops for dt in (("bfloat16",) if gpu else ("float32", "bfloat16"))
              if flops and rates.get(dt) and (gpu or dt == "float32" or has_bf16)}
    peers = {r["path"]: r["images"] / r["seconds"] for r in results if r["path"] in (PEER, PEER_2) and "seconds" in r}
    table = []
    for r in results:
        if "seconds" not in r:
            continue
        ips = r["images"] / r["seconds"]
        passes = r.get("passes", 1)
        peer_ips = peers.get(PEER_2 if passes == 2 else PEER)
        row = {"path": r["path"], "images": r["images"], "seconds": round(r["seconds"], 3), "passes": passes,
               "images_per_s": round(ips, 1), "x_peer": round(ips / peer_ips, 2) if peer_ips else None}
        for dt, limit in limits.items():
            if "cached" not in r["path"]:  # a cache read does no arithmetic
                row[f"fraction_of_{'fp32' if dt == 'float32' else 'bf16'}_limit"] = round(ips * passes / limit, 4)
        if r.get("matmul_fp32_here") and flops and "cached" not in r["path"]:
            # against the fp32 rate measured in the row's own process around it: a ratio within one
            # run, which the machine's slow spells (other tenants) move much less than either figure
            row["matmul_fp32_here"] = round(r["matmul_fp32_here"])
            row["fraction_of_fp32_limit_here"] = round(ips * passes * flops / r["matmul_fp32_here"], 4)
        row.update({k: r.get(k) for k in ("precision", "precision_reason", "floor_precision", "threads", "batch",
                                          "busy_cpus_before", "runs_images_per_s") if r.get(k) is not None})
        row["min_cosine_vs_fp32_pil"] = r.get("min_cosine_vs_fp32_pil")
        row["peak_host_mib"] = round(r["peak_host_mib"])
        if "peak_device_mib" in r:
            row["peak_device_mib"] = round(r["peak_device_mib"])
        table.append(row)
    errors = [{"path": r["path"], "error": r["error"]} for r in results if "error" in r]
    identity = machine_identity()

    print(f"\n{args.arch} on {args.device} ({_machine(args.device)}), {args.n} JPEGs {args.size}x{args.size}")
    if not gpu:
        print(f"CPU flags {', '.join(identity['flags']) or 'none of note'}; torch capability "
              f"{identity['torch_capability']}; native bf16: {native_bf16()[1]}")
    if flops:
        print(f"FLOPs per image {flops / 1e9:.2f} G; matmul rate "
              + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" if v >= 1e12 else f"{k} {v / 1e9:.1f} GFLOP/s"
                          for k, v in rates.items())
              + "".join(f"; {dt} arithmetic limit {v:,.1f} images/s" for dt, v in limits.items()))
    limit_cols = [k for k in ("fraction_of_fp32_limit", "fraction_of_fp32_limit_here", "fraction_of_bf16_limit")
                  if any(k in r for r in table)]
    heads = ["path", "images/s", "x peer"] + [
        f"of {k.split('_')[2]} limit" + (" (same process)" if k.endswith("here") else "")
        for k in limit_cols] + [
        "precision", "min cos vs fp32", "host MiB", "busy CPUs"] + (["device MiB"] if gpu else [])
    print("| " + " | ".join(heads) + " |")
    print("|" + " --- |" * len(heads))

    def cell(v, fmt):
        return "-" if v is None else fmt.format(v)

    for r in table:
        cells = [r["path"], f"{r['images_per_s']:,.1f}", cell(r["x_peer"], "{:.2f}")]
        cells += [cell(r.get(k), "{:.0%}") for k in limit_cols]
        cells += [r.get("precision") or "-", cell(r["min_cosine_vs_fp32_pil"], "{:.5f}"), str(r["peak_host_mib"]),
                  cell(r.get("busy_cpus_before"), "{}")]
        if gpu:
            cells.append(cell(r.get("peak_device_mib"), "{}"))
        print("| " + " | ".join(cells) + " |")
    for e in errors:
        print(f"ERROR in {e['path']}: {e['error']}")
    reasons = sorted({r["precision_reason"] for r in table if r.get("precision_reason")})
    for reason in reasons:
        print(f"precision: {reason}")
    bars = [] if gpu else _bars(table, has_bf16)
    for b in bars:
        verdict = {True: "holds", False: "MISSED", None: "not measured"}[b["holds"]]
        print(f"bar {b['bar']}: {verdict} ({b['row']}: {b['value']})")

    bad = [r["path"] for r in table
           if r["min_cosine_vs_fp32_pil"] is not None and r["min_cosine_vs_fp32_pil"] <= COSINE_BOUND]
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"extract_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python benchmarks/extract.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.date.today().isoformat(), "machine": _machine(args.device), "cpu": identity,
        "reps": args.reps,
        "arch": args.arch, "device": args.device, "n": args.n, "size": args.size, "torch": torch.__version__,
        "flops_per_image": flops, "matmul_flops_per_s": rates, "arithmetic_limit_images_per_s": limits,
        "rows": table, "bars": bars, "errors": errors, "cosine_bound": COSINE_BOUND, "below_cosine_bound": bad,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    if bad:
        print(f"FAIL: embeddings of {', '.join(bad)} fall below cosine {COSINE_BOUND} of the fp32 reference")
    return 1 if bad or errors else 0


if __name__ == "__main__":
    sys.exit(main())
