"""The GPU paths against the CPU reference. Skipped where no CUDA device is visible (CI); run on a
GPU machine with ``python -m pytest -q tests/test_gpu.py`` (benchmarks/gpu_session.sh does).

Tolerances: embeddings (nvjpeg decode + tensor transform + bf16) within cosine 0.999 per image of
the CPU fp32 PIL reference; attack accuracies within 1 point (linear probe, few-shot means) and
verification AUC within 0.005 of the CPU run on the same features, the same C grid and the same
episodes: only float reduction order differs, which can flip near-tie predictions.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY
from test_decode import _awkward_folder

from creepscan.attacks import evaluate, stratified_split
from creepscan.data import load_image_set
from creepscan.encoders import resolve_encoder
from creepscan.features import extract

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def test_gpu_embeddings_agree_with_cpu_reference(tiny_weights, tmp_path):
    images = load_image_set(_awkward_folder(tmp_path / "d"))
    cpu = resolve_encoder(TINY, weights=tiny_weights["safetensors"], device="cpu")
    gpu = resolve_encoder(TINY, weights=tiny_weights["safetensors"], device="cuda")
    assert gpu.precision in ("pure_bf16", "amp_fp16") and gpu.channels_last
    ref = extract(cpu, images, cache_dir=tmp_path / "c", decode="pil")
    fast = extract(gpu, images, cache_dir=tmp_path / "c")  # auto: nvjpeg + tensor transform
    assert fast.stats["n_embedded"] > 0 and fast.skipped == ref.skipped
    assert np.array_equal(fast.keep, ref.keep)
    cos = (fast.X * ref.X).sum(1) / np.linalg.norm(fast.X, axis=1) / np.linalg.norm(ref.X, axis=1)
    assert cos.min() > 0.999


def test_attacks_on_gpu_agree_with_cpu():
    rng = np.random.default_rng(0)
    n, d, k = 3000, 64, 30
    centres = rng.standard_normal((k, d))
    y = rng.permutation(np.arange(n) % k)
    X = (centres[y] + 4.0 * rng.standard_normal((n, d))).astype(np.float32)
    split = stratified_split(y, seed=0)
    attacks = ("linear_probe", "few_shot", "verification")
    a = evaluate(X, y, k, split, seed=0, attacks=attacks, device="cpu")
    b = evaluate(X, y, k, split, seed=0, attacks=attacks, device="cuda")
    assert abs(a.linear_probe.accuracy - b.linear_probe.accuracy) <= 0.01
    assert a.few_shot.ks == b.few_shot.ks
    for ea, eb in zip(a.few_shot, b.few_shot):
        assert abs(ea.accuracy - eb.accuracy) <= 0.01, ea.k
    va, vb = a.verification.to_json(), b.verification.to_json()
    assert abs(va["auc"] - vb["auc"]) <= 0.005
