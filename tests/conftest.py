"""Shared test fixtures: a tiny open_clip model with random weights, small image folders."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
# as creepscan/__init__.py does, before torch loads here: idle OpenMP threads sleep, so the test
# processes (pytest-xdist runs two) do not spin against each other on a small machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# every report the tests write (a dict with a schema_version) is validated against report.json's
# schema by creepscan.report.write_reports; dicts without one are renderer fixtures, not reports
os.environ.setdefault("CREEPSCAN_CHECK_SCHEMA", "1")
# pytest-xdist runs one worker per CPU (up to 4): each computes with its share of the CPUs, as a user
# running several audits at once would set OMP_NUM_THREADS. Two threads in each of two workers on two
# cores only contended (the fixtures audit: 53 CPU-s at two threads, 44 at one). A value already set
# wins; the tests of creepscan's own thread choice unset it.
os.environ.update({"OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0))
                                                // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))}
                  if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ
                  and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1 and hasattr(os, "sched_getaffinity")
                  else {})

import numpy as np
import pytest
import torch
from PIL import Image

if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # in case a plugin imported torch first

TINY = "creepscan-tiny-vit"  # shipped in creepscan/encoders/configs: 32px ViT, 2 layers, 64-d
ROOT = Path(__file__).resolve().parents[1]


# The files whose tests take longest (module fixtures included), longest first, as --durations=0 measured
# them. pytest-xdist hands each file to one worker (--dist loadfile) in collection order
# (--no-loadscope-reorder): the long ones start at once, instead of last behind many short files, where
# one worker would run on alone. Files not named keep their order after these.
LONG_FIRST = ("test_engines.py", "test_audit_fixtures.py", "test_sweep.py", "test_cli.py", "test_decode.py",
              "test_risk.py", "test_adapted_models.py", "test_cli_errors.py", "test_coverage.py", "test_encoders.py",
              "test_report_browser.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


def load_fixture_generator():
    """fixtures/generate.py as a module, loaded by its path under a private name: the folder is not a
    package, so it cannot shadow (or be shadowed by) the PyPI package ``fixtures``."""
    spec = importlib.util.spec_from_file_location("_creepscan_fixtures_generate", ROOT / "fixtures" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_folder(root: Path, n_classes=4, per_class=8, seed=0, signal=True, size=40) -> Path:
    """Coloured-pattern images, one sub-folder per label; with signal the label sets the hue."""
    rng = np.random.default_rng(seed)
    for i in range(n_classes * per_class):
        true = i % n_classes
        label = true if signal else int(rng.integers(n_classes))
        hue = np.array([(true * 67) % 255, (true * 131) % 255, (true * 29) % 255], dtype=np.float32)
        img = hue[None, None, :] * rng.uniform(0.7, 1.0) + rng.normal(0, 12, (size, size, 3))
        d = root / f"c{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"img{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def identity_checkpoints(tmp_path_factory) -> Path:
    """A folder with base.safetensors (the tiny model's random weights) and adapted.safetensors (120
    steps toward telling synthetic people apart: scripts/finetune_identity.py, the offline demo's own
    script), trained once per session for every module that audits them (read-only: copy to change)."""
    from filelock import FileLock

    # pytest-xdist's workers share one run folder above their own: the first to get here trains, the
    # others wait on the lock and read the same files
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "identity-ckpt"
    with FileLock(str(shared / "identity-ckpt.lock")):
        if not (out / "adapted.safetensors").exists():
            proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "finetune_identity.py"), str(out),
                                   "--steps", "120"], check=True, capture_output=True, text=True)
            (out.parent / f"{out.name}.stderr").write_text(proc.stderr)  # for the demo's progress-lines test
    return out


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_folder(tmp_path / "imgs")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> dict:
    """The tiny model's weights as safetensors, a plain state dict and a DDP training checkpoint."""
    import open_clip
    from safetensors.torch import save_file

    from creepscan.encoders import openclip as oc_backend

    oc_backend._open_clip()  # registers the shipped tiny config
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(123)
    model = open_clip.create_model(TINY, pretrained=None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(d / "tiny.safetensors"))
    torch.save(state, d / "tiny.pt")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, d / "tiny-ckpt.pt")
    return {"safetensors": d / "tiny.safetensors", "state_dict": d / "tiny.pt", "checkpoint": d / "tiny-ckpt.pt"}


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test reaches the network or the user's cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CREEPSCAN_CACHE", str(tmp_path / "default-cache"))
