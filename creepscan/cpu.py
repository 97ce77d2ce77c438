"""What the CPUs of this process can do, and how many threads to give torch.

Two choices are made here, each returned with a one-line reason that the report records:

* **precision** (``choose_cpu_precision``): bf16 weights (``pure_bf16``) only where the CPU has bf16
  instructions (``avx512_bf16`` or ``amx_bf16``; without them torch emulates bf16 at a few percent
  of fp32's speed), where a bf16 kernel of the kind the model spends its time in (a transformer's
  matmul or a ResNet's convolution) measurably beats fp32 on this machine, and where the model's
  own bf16 embeddings agree with its fp32 ones (cosine > ``COSINE_BOUND`` per image). The kernel
  timings are taken once per machine (CPU model, flags, torch version) and kept in the cache
  folder; the agreement check runs once per weights on that machine.
* **threads** (``choose_threads`` / ``apply_threads``): torch's intra-op threads meet at a barrier
  after every operation, so one thread sharing its core with another busy process holds all the
  others back (measured: 2 threads beside one busy loop ran 2x slower than 1 thread). The default
  is one thread per usable CPU that other processes are not already keeping busy.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # instructions that run bf16 dot products natively
# Flags worth recording beside a timing: they decide which kernels torch and oneDNN can use.
RECORDED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
COSINE_BOUND = 0.999          # per image, bf16 vs fp32 embeddings of the same model (as on a GPU)
MIN_SPEEDUP = 1.15            # bf16 must beat fp32 by this much: below it, timing noise could decide
KERNELS = ("matmul", "conv")
# Idle share of a CPU below which it counts as taken by another process; 0.25 of a core of
# background noise (a shell, a logger) must not cost a thread.
BUSY_TOLERANCE = 0.25


# ------------------------------------------------------------------------------------------------
# The machine
# ------------------------------------------------------------------------------------------------

def usable_cpus() -> list[int]:
    """The CPU ids this process may run on (its affinity mask, which containers and ``taskset``
    narrow); every CPU where the platform has no affinity call."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (Linux: /proc/cpuinfo); empty where unknown."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def torch_capability() -> str:
    """The widest vector instruction set torch's own CPU kernels use here (``AVX512``, ``AVX2``, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # older torch: not knowing must not stop an audit
        return "unknown"


def machine_identity() -> dict:
    """What the kernel timings depend on: the CPU model, its relevant flags, torch's CPU capability
    and the torch version. Two machines with the same identity share cached timings."""
    flags = cpu_flags()
    return {"cpu": cpu_model(), "flags": [f for f in RECORDED_FLAGS if f in flags],
            "torch_capability": torch_capability(), "torch": torch.__version__}


def machine_key(identity: dict | None = None) -> str:
    ident = json.dumps(identity or machine_identity(), sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


def native_bf16() -> tuple[bool, str]:
    """(whether the CPU has bf16 dot-product instructions, one line saying which or why not)."""
    flags = cpu_flags()
    present = [f for f in BF16_FLAGS if f in flags]
    if present:
        return True, f"the CPU has {'/'.join(present)}"
    return False, (f"the CPU has no {'/'.join(BF16_FLAGS)} instructions (torch capability "
                   f"{torch_capability()}): bf16 would be emulated, far slower than fp32")


# ------------------------------------------------------------------------------------------------
# The per-machine record (kernel timings, agreement checks), kept in the cache folder
# ------------------------------------------------------------------------------------------------

# What this process already knows, by machine key: a test session or an audit asks for the same
# facts many times (model, floor, one cache folder per test) and must not measure them again.
_KNOWN: dict[str, dict] = {}


def _record_path(cache_dir) -> Path:
    if cache_dir is None:
        from .cache import default_cache_dir

        cache_dir = default_cache_dir()
    return Path(cache_dir) / "machine" / f"{machine_key()}.json"


def _recall(section: str, name: str, cache_dir, measure: Callable[[], dict]) -> dict:
    """``record[section][name]`` for this machine: from this process's memory, else from the
    cache folder's record, else ``measure()`` (then kept in both)."""
    known = _KNOWN.setdefault(machine_key(), {})
    if name in known.get(section, {}):
        return known[section][name]
    path = _record_path(cache_dir)
    try:
        record = json.loads(path.read_text())
        record = record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        record = {}
    record.setdefault("identity", machine_identity())
    entry = record.get(section, {}).get(name)
    if not isinstance(entry, dict):
        entry = measure()
        record.setdefault(section, {})[name] = entry
        _save_record(path, record)
    known.setdefault(section, {})[name] = entry
    return entry


def _save_record(path: Path, record: dict) -> None:
    """Atomic replace; an unwritable cache only means measuring again in the next process."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------
# Kernel timings
# ------------------------------------------------------------------------------------------------

def _kernel(kind: str, dtype):
    """(a callable running one kernel call, its FLOPs). Shapes are those the models spend their
    time in at creepscan's CPU batch sizes: a ViT-B MLP matmul over ~20 images' tokens, a ResNet
    3x3 convolution over a batch of 8."""
    g = torch.Generator().manual_seed(0)
    if kind == "matmul":
        a = torch.randn(1024, 768, generator=g).to(dtype)
        b = torch.randn(768, 3072, generator=g).to(dtype)
        return (lambda: torch.mm(a, b)), 2.0 * 1024 * 768 * 3072
    if kind == "conv":
        x = torch.randn(8, 64, 56, 56, generator=g).to(dtype)
        w = torch.randn(64, 64, 3, 3, generator=g).to(dtype)
        return (lambda: torch.nn.functional.conv2d(x, w, padding=1)), 2.0 * 8 * 56 * 56 * 64 * 64 * 9
    raise ValueError(f"kernel kind must be one of {KERNELS}, got {kind!r}")


def kernel_rates(kind: str = "matmul", rounds: int = 3) -> dict[str, float]:
    """Best FLOP/s of one ``kind`` kernel in fp32 and in bf16 on this process's threads.

    The two dtypes alternate, ``rounds`` times, after one warm-up call each, so a burst of
    load from another process slows both rather than one. About 0.1-0.5 s on a 2-core machine
    with native bf16; call it only there (emulated bf16 takes seconds per call)."""
    calls = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        fn, flops = _kernel(kind, dtype)
        with torch.inference_mode():
            fn()  # first call: oneDNN builds its kernel for the shape
        calls[name] = (fn, flops)
    best = dict.fromkeys(calls, 0.0)
    with torch.inference_mode():
        for _ in range(rounds):
            for name, (fn, flops) in calls.items():
                t = time.perf_counter()
                fn()
                best[name] = max(best[name], flops / max(time.perf_counter() - t, 1e-9))
    return best


def bf16_speedup(kind: str = "matmul", cache_dir=None) -> tuple[float, str]:
    """(bf16 / fp32 speed of the ``kind`` kernel on this machine, when it was measured). Measured
    once per machine identity and kept in the cache folder's ``machine/`` record."""
    if kind not in KERNELS:
        raise ValueError(f"kernel kind must be one of {KERNELS}, got {kind!r}")

    def measure():
        return {"flops_per_s": kernel_rates(kind), "threads": torch.get_num_threads(),
                "measured": datetime.datetime.now().isoformat(timespec="seconds")}

    entry = _recall("kernels", kind, cache_dir, measure)
    rates = entry["flops_per_s"]
    return rates["bfloat16"] / max(rates["float32"], 1e-9), entry["measured"]


# ------------------------------------------------------------------------------------------------
# The precision choice
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Agreement:
    """bf16 vs fp32 embeddings of one model: the smallest per-item cosine over ``n_items`` check
    inputs (images, and prompts where the model has a text tower)."""

    min_cosine: float
    n_items: int


def agreement_for(fingerprint: str, check: Callable[[], Agreement], cache_dir=None) -> Agreement:
    """``check()`` for these weights, once per machine identity (kept in the cache folder)."""

    def measure():
        found = check()
        return {"min_cosine": float(found.min_cosine), "n_items": int(found.n_items)}

    return Agreement(**_recall("agreement", fingerprint, cache_dir, measure))


def choose_cpu_precision(kind: str, check: Callable[[], Agreement], *, fingerprint: str | None = None,
                         cache_dir=None) -> tuple[str, str]:
    """``--precision auto`` on a CPU: (``"pure_bf16"`` or ``"fp32"``, one line saying why).

    ``kind``: the kernel the model spends its time in (``matmul`` for transformers, ``conv`` for
    ResNets). ``check()`` computes the model's bf16-vs-fp32 agreement; it runs only when the
    machine could profit (native bf16 and a faster kernel), and its result is cached under
    ``fingerprint`` when one is given. Each step is a module-level function so that tests can
    force every branch without depending on this machine."""
    native, why = native_bf16()
    if not native:
        return "fp32", f"fp32: {why}"
    speedup, measured = bf16_speedup(kind, cache_dir)
    if speedup < MIN_SPEEDUP:
        return "fp32", (f"fp32: {why}, but a bf16 {kind} runs at {speedup:.2f}x fp32's speed here "
                        f"(needs {MIN_SPEEDUP}x; measured {measured})")
    agreement = agreement_for(fingerprint, check, cache_dir) if fingerprint else check()
    if not agreement.min_cosine > COSINE_BOUND:
        return "fp32", (f"fp32: bf16 is {speedup:.2f}x faster here, but this model's bf16 embeddings "
                        f"reach only cosine {agreement.min_cosine:.5f} with fp32 (needs > {COSINE_BOUND}, "
                        f"over {agreement.n_items} check inputs)")
    return "pure_bf16", (f"pure_bf16: {why}, a bf16 {kind} runs {speedup:.2f}x faster than fp32 here "
                         f"(measured {measured}), and this model's bf16 embeddings agree with fp32 to "
                         f"cosine >= {agreement.min_cosine:.5f} over {agreement.n_items} check inputs")


def check_images(n: int = 8, size: int = 256, seed: int = 0) -> list:
    """``n`` seeded RGB images (PIL) with structure at several scales, the inputs of an agreement
    check: colour noise upsampled from 4x4 to 64x64 cells (smooth fields to fine texture) over a
    gradient, so the check sees neither constant nor white-noise inputs only."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    out = []
    for i in range(n):
        cells = (4, 8, 16, 32, 64)[i % 5]
        noise = Image.fromarray((rng.random((cells, cells, 3)) * 255).astype(np.uint8)).resize(
            (size, size), Image.BICUBIC)
        grad = (np.outer(ramp, 1 - ramp)[..., None] * rng.random(3) * 255).astype(np.float32)
        pixels = 0.7 * np.asarray(noise, dtype=np.float32) + 0.3 * grad
        out.append(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)))
    return out


# ------------------------------------------------------------------------------------------------
# Threads
# ------------------------------------------------------------------------------------------------

def _parse_stat(text: str, cpus: list[int], count_nice: bool) -> dict[int, tuple[float, float]]:
    """(busy, total) jiffies per CPU in ``cpus`` from the text of /proc/stat. Time spent in
    niced processes counts as busy only when ``count_nice``: a process at a lower priority than
    ours yields its core to our threads, so it does not stall them."""
    wanted, out = set(cpus), {}
    for line in text.splitlines():
        name, *fields = line.split() or [""]
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in wanted:
            values = [float(v) for v in fields]
            idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
            free = idle + (0.0 if count_nice else values[1])
            out[int(name[3:])] = (sum(values) - free, sum(values))
    return out


def _cpu_times(cpus: list[int]) -> dict[int, tuple[float, float]] | None:
    """(busy, total) jiffies per CPU in ``cpus`` from /proc/stat, or None where unreadable."""
    try:
        text = Path("/proc/stat").read_text()
        count_nice = os.getpriority(os.PRIO_PROCESS, 0) > 0  # we are niced ourselves: they are peers
    except (OSError, AttributeError):
        return None
    return _parse_stat(text, cpus, count_nice) or None


def busy_cpus(cpus: list[int] | None = None, sample_s: float = 0.2) -> tuple[float, str]:
    """(how many of ``cpus`` other processes keep busy, how it was measured).

    /proc/stat sampled over ``sample_s`` seconds while this process sleeps, so what is busy is
    someone else (niced processes left out unless this one is niced too); where /proc/stat is
    missing, the 1-minute load average (slower to react, and it counts niced processes)."""
    cpus = cpus if cpus is not None else usable_cpus()
    before = _cpu_times(cpus)
    if before is not None:
        time.sleep(sample_s)
        after = _cpu_times(cpus) or {}
        busy = 0.0
        for cpu, (b0, t0) in before.items():
            b1, t1 = after.get(cpu, (b0, t0))
            busy += (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        return busy, f"/proc/stat over {sample_s:g} s"
    try:
        return float(min(os.getloadavg()[0], len(cpus))), "1-minute load average"
    except (AttributeError, OSError):
        return 0.0, "no load information"


def threads_for(n_cpus: int, busy: float) -> int:
    """Intra-op threads for ``n_cpus`` usable CPUs of which ``busy`` (a sum of fractions of a
    CPU) are taken by other processes: one per CPU left free, at least one. A CPU counts as taken
    once more than ``BUSY_TOLERANCE`` of it is used, because a thread that shares its core stalls
    every other thread at each operation's barrier."""
    if n_cpus < 1:
        raise ValueError(f"n_cpus must be at least 1, got {n_cpus}")
    if busy < 0 or not math.isfinite(busy):
        raise ValueError(f"busy must be a non-negative number of CPUs, got {busy!r}")
    taken = max(0, math.ceil(busy - BUSY_TOLERANCE))
    return max(1, min(n_cpus, n_cpus - taken))


def choose_threads(sample_s: float = 0.2) -> tuple[int, str]:
    """(torch intra-op threads for this process now, one line saying why). Costs ``sample_s``."""
    cpus = usable_cpus()
    busy, how = busy_cpus(cpus, sample_s)
    n = threads_for(len(cpus), busy)
    return n, (f"{n} thread{'s' * (n != 1)}: {len(cpus)} usable CPU{'s' * (len(cpus) != 1)}, "
               f"{busy:.1f} kept busy by other processes ({how})")


def apply_threads(threads: int | None = None, sample_s: float = 0.2) -> tuple[int, str]:
    """Set torch's intra-op threads and say why: ``threads`` when given (an explicit option);
    left as they are when ``OMP_NUM_THREADS`` is set (the user's choice, which torch already
    follows); otherwise ``choose_threads()``. Returns (threads in use, reason)."""
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads}; omit it to choose from the load")
        torch.set_num_threads(int(threads))
        return int(threads), f"{int(threads)} thread{'s' * (int(threads) != 1)}: asked for"
    env = os.environ.get("OMP_NUM_THREADS")
    if env:
        n = torch.get_num_threads()
        return n, f"{n} thread{'s' * (n != 1)}: OMP_NUM_THREADS={env}"
    n, why = choose_threads(sample_s)
    torch.set_num_threads(n)
    return n, why
