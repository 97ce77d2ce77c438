"""A sweep of tiny checkpoints on the fixtures suite: the in-process engine against a local Ray.

    python benchmarks/sweep.py [--checkpoints 8] [--threads 1] [--repeats 1] [--engines local ray]

The checkpoints are the shipped ``creepscan-tiny-vit`` configuration with weights interpolated between
two random inits (seeds 1 and 2; checkpoint i of n is (1 - i/(n-1)) * A + i/(n-1) * B), so they differ
as a training run's checkpoints do and share one random-init floor. Each run is
``python -m creepscan sweep creepscan-tiny-vit --weights ... --suite fixtures`` in a child process on
a fresh embedding cache (the fixtures' images are made once beforehand and copied in, so no run pays
for them). ``--threads`` sets OMP_NUM_THREADS for every run: the driver's torch threads, which the Ray
engine gives its actors and tasks too (the default, one, suits a shared machine; without it each run
would choose from the load of the moment). A local Ray gets the CPUs this process may use.

Measured per run: wall time of the child (imports, Ray start-up and shut-down included), the report's
own seconds (``timings.total_s``, embedding and attacks), and peak memory: the largest sum, sampled
every 0.5 s, of the proportional set size (PSS, so pages shared between processes count once) over
the child and all its descendants (the Ray engine's GCS, raylet and workers), and the child's own
peak RSS. Runs alternate between engines, repeat by repeat; ``x local`` divides by the local run of
the same repeat so that other work on the machine weighs on both sides of a ratio alike. The two
engines' reports are compared outside ``timings`` (they must be identical). Prints a table and writes
benchmarks/results/sweep_cpu.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARCH = "creepscan-tiny-vit"


def make_checkpoints(out: Path, n: int) -> list[Path]:
    """``n`` weight files between two seeded random inits of the tiny model, ckpt_<100 i>.safetensors."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from creepscan.encoders import openclip as oc_backend

    oc_backend._open_clip()  # registers the shipped tiny config
    ends = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        ends.append(open_clip.create_model(ARCH, pretrained=None).state_dict())
    paths = []
    for i in range(n):
        w = i / max(1, n - 1)
        state = {k: (ends[0][k] * (1 - w) + ends[1][k] * w).contiguous() if ends[0][k].is_floating_point()
                 else ends[0][k].contiguous() for k in ends[0]}
        paths.append(out / f"ckpt_{100 * i}.safetensors")
        save_file(state, str(paths[-1]))
    return paths


def make_datasets(cache: Path) -> None:
    """The fixtures suite's synthetic images, made once into ``cache``/datasets."""
    from creepscan.options import Options
    from creepscan.pipeline import load_probe_data
    from creepscan.probes import select

    settings = Options(cache_dir=cache, progress=False)
    for probe in select("fixtures", ()):
        load_probe_data(probe, settings)


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _pss_kib(pid: int) -> int:
    """Proportional set size of one process in KiB (its RSS where smaps_rollup cannot be read)."""
    for path, field in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            with open(path) as fh:
                for line in fh:
                    if line.startswith(field):
                        return int(line.split()[1])
        except OSError:
            continue
    return 0


class TreeMemory(threading.Thread):
    """Samples the PSS summed over a process tree every ``every`` seconds; ``peak_kib`` is the largest.
    (Reading every process's smaps costs system time: sampled twice a second, not more.)"""

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak_kib, self.n_procs = pid, every, 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            pids = _tree(self.pid)
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in pids))
            self.n_procs = max(self.n_procs, len(pids))
            self.stop.wait(self.every)


def run_sweep(engine: str, checkpoints: list[Path], datasets: Path, work: Path, threads: int) -> dict:
    cache, out = work / f"cache-{engine}", work / f"report-{engine}"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(datasets, cache / "datasets")
    weights = [a for p in checkpoints for a in ("--weights", str(p))]
    cmd = [sys.executable, "-m", "creepscan", "sweep", ARCH, *weights, "--suite", "fixtures", "--cache-dir", str(cache),
           "--out", str(out), "-q", "--engine", engine]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    wrapper = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", wrapper, *cmd], env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    mem = TreeMemory(proc.pid)
    mem.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    mem.stop.set()
    mem.join()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"sweep with --engine {engine} failed ({proc.returncode}): {stderr.strip()[-500:]}")
    report = json.loads((out / "report.json").read_text())
    probes = report["timings"]["probes"]
    return {
        "engine": engine, "wall_s": round(wall, 2), "report_total_s": report["timings"]["total_s"],
        "embed_s": round(sum(t[0]["embed_s"] for t in probes.values()), 2),
        "attacks_s": round(sum(t[0]["attacks_s"] for t in probes.values()), 2),
        "peak_tree_pss_mib": round(mem.peak_kib / 1024, 1),
        "peak_driver_rss_mib": round(int(stdout.split()[-1]) / 1024, 1),
        "processes": mem.n_procs, "engine_detail": report["timings"]["engine"],
        "_report": {k: v for k, v in report.items() if k != "timings"},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_cpu.json"))
    args = ap.parse_args()
    if args.checkpoints < 2:
        ap.error("--checkpoints must be 2 or more (a sweep compares checkpoints)")
    from creepscan.cpu import busy_cpus, cpu_model, usable_cpus

    with tempfile.TemporaryDirectory(prefix="creepscan-bench-sweep-") as tmp:
        work = Path(tmp)
        (work / "ckpt").mkdir()
        checkpoints = make_checkpoints(work / "ckpt", args.checkpoints)
        make_datasets(work / "base")
        runs = []
        for r in range(args.repeats):
            busy_before, _ = busy_cpus()
            for engine in (args.engines if r % 2 == 0 else list(reversed(args.engines))):
                res = run_sweep(engine, checkpoints, work / "base" / "datasets", work, args.threads)
                res["repeat"], res["cpus_busy_before_repeat"] = r, round(busy_before, 2)
                runs.append(res)
                print(f"repeat {r} {engine}: {res['wall_s']} s, peak {res['peak_tree_pss_mib']} MiB", file=sys.stderr)
    same = None
    for r in range(args.repeats):
        by = {x["engine"]: x for x in runs if x["repeat"] == r}
        if "local" in by:
            for x in by.values():
                x["wall_x_local"] = round(x["wall_s"] / by["local"]["wall_s"], 2)
                x["peak_x_local"] = round(x["peak_tree_pss_mib"] / by["local"]["peak_tree_pss_mib"], 2)
        if len(by) == 2:
            ok = json.dumps(by["local"]["_report"], sort_keys=True) == json.dumps(by["ray"]["_report"], sort_keys=True)
            same = ok if same is None else same and ok
    for x in runs:
        del x["_report"]
    import ray
    import torch

    result = {
        "benchmark": "sweep",
        "command": "python " + " ".join(["benchmarks/sweep.py", *sys.argv[1:]]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "usable_cpus": len(usable_cpus()), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__},
        "setup": {"checkpoints": args.checkpoints, "arch": ARCH, "suite": "fixtures", "threads": args.threads,
                  "ray": "local, num_cpus = usable CPUs", "memory": "peak PSS summed over the run's process tree"},
        "note": "taken on a busy shared machine (other processes on the same 2 cores): read the ratios within a "
                "repeat, not the seconds",
        "reports_identical_outside_timings": same,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    head = f"{'repeat':>6} {'engine':<6} {'wall s':>8} {'x local':>8} {'report s':>9} {'embed s':>8} " \
           f"{'attacks s':>9} {'peak MiB':>9} {'x local':>8} {'procs':>6}"
    print(head)
    for x in runs:
        print(f"{x['repeat']:>6} {x['engine']:<6} {x['wall_s']:>8} {x.get('wall_x_local', ''):>8} "
              f"{x['report_total_s']:>9} {x['embed_s']:>8} {x['attacks_s']:>9} {x['peak_tree_pss_mib']:>9} "
              f"{x.get('peak_x_local', ''):>8} "
              f"{x['processes']:>6}")
    print(f"reports identical outside timings: {same}; written {args.out}")


if __name__ == "__main__":
    main()
