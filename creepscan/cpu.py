"""What the CPUs of this process can do, and how many threads to give torch.

Two choices are made here, each returned with a one-line reason that the report records:

* **precision** (``choose_cpu_precision``): bf16 weights (``pure_bf16``) only where the CPU's flags
  say a bf16 matmul beats fp32 (``bf16_by_flags``: AMX, or an AMD CPU with ``avx512_bf16``; an Intel
  CPU with ``avx512_bf16`` but no AMX runs oneDNN's bf16 matmul at 0.58x fp32, and without either
  flag torch emulates bf16 at a few percent of fp32's speed), and where the model's own bf16
  embeddings agree with its fp32 ones (cosine > ``COSINE_BOUND`` per image; checked once per
  weights and kept in the cache folder). The flags, not a timing, decide: a timing taken on a busy
  machine, or on another machine with the same CPU, could choose otherwise, and the same CPU must
  always make the same choice.
* **threads** (``choose_threads`` / ``apply_threads``): one torch thread per usable CPU (the
  affinity mask), never fewer because of other processes' load: a reduction split over another
  number of threads rounds differently, so a count that followed the load made the same command
  on the same machine give other figures (a floor's few-shot accuracy moved from 0.6209 to 0.6218).
  Load only costs time; ``OMP_NUM_THREADS`` (the user's choice) overrides. ``busy_cpus`` measures
  the load for the benchmarks' records.
"""
from __future__ import annotations

import hashlib
import json
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


def cpu_vendor() -> str:
    return _cpuinfo().get("vendor_id", "")


def bf16_by_flags() -> tuple[bool, str]:
    """(whether bf16 matmuls run faster than fp32 on this CPU, one line saying why), from the CPU's
    vendor and flags alone, so one CPU always gets one answer:

    * ``amx_bf16``: oneDNN runs bf16 matmuls on AMX tiles, several times the fp32 rate;
    * ``avx512_bf16`` on an AMD CPU (Zen 4 and later): bf16 dot products at twice fp32's width
      (2-3x fp32 measured by a user on an EPYC);
    * ``avx512_bf16`` on an Intel CPU without AMX: oneDNN's bf16 matmul ran at 0.58x fp32
      (benchmarks/RESULTS.md, ``brg_matmul:avx512_core_bf16``);
    * neither: bf16 is emulated."""
    flags, vendor = cpu_flags(), cpu_vendor()
    if "amx_bf16" in flags:
        return True, "the CPU has amx_bf16 (AMX tiles run bf16 matmuls several times faster than fp32)"
    if "avx512_bf16" in flags and vendor == "AuthenticAMD":
        return True, "an AMD CPU with avx512_bf16 (Zen 4 or later: bf16 dot products at twice fp32's width)"
    if "avx512_bf16" in flags:
        return False, (f"the CPU ({vendor or 'vendor unknown'}) has avx512_bf16 but no amx_bf16: oneDNN's bf16 "
                       "matmul runs slower than fp32 there (0.58x measured)")
    return False, native_bf16()[1]


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
    ResNets), named in the reason. The CPU's flags decide whether bf16 is faster
    (``bf16_by_flags``); only then ``check()`` computes the model's bf16-vs-fp32 agreement, cached
    under ``fingerprint`` when one is given. Each step is a module-level function so that tests can
    force every branch without depending on this machine."""
    fast, why = bf16_by_flags()
    if not fast:
        return "fp32", f"fp32: {why}"
    agreement = agreement_for(fingerprint, check, cache_dir) if fingerprint else check()
    if not agreement.min_cosine > COSINE_BOUND:
        return "fp32", (f"fp32: {why}, but this model's bf16 embeddings reach only cosine "
                        f"{agreement.min_cosine:.5f} with fp32 (needs > {COSINE_BOUND}, over "
                        f"{agreement.n_items} check inputs)")
    return "pure_bf16", (f"pure_bf16: {why}, and this model's bf16 embeddings ({kind}-bound) agree with fp32 "
                         f"to cosine >= {agreement.min_cosine:.5f} over {agreement.n_items} check inputs")


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


def choose_threads() -> tuple[int, str]:
    """(torch intra-op threads for this process, one line saying why): one per usable CPU, whatever
    the load, so the same machine always computes the same numbers."""
    n = len(usable_cpus())
    return n, (f"{n} thread{'s' * (n != 1)}: one per usable CPU (not reduced for other processes' load, "
               "which would change the figures' rounding)")


def apply_threads(threads: int | None = None) -> tuple[int, str]:
    """Set torch's intra-op threads and say why: ``threads`` when given (an explicit option);
    left as they are when ``OMP_NUM_THREADS`` is set (the user's choice, which torch already
    follows); otherwise ``choose_threads()``. Returns (threads in use, reason)."""
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads}; omit it for one per usable CPU")
        torch.set_num_threads(int(threads))
        return int(threads), f"{int(threads)} thread{'s' * (int(threads) != 1)}: asked for"
    env = os.environ.get("OMP_NUM_THREADS")
    if env:
        n = torch.get_num_threads()
        return n, f"{n} thread{'s' * (n != 1)}: OMP_NUM_THREADS={env}"
    n, why = choose_threads()
    torch.set_num_threads(n)
    return n, why
