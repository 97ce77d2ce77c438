"""A frozen torch image encoder loaded by transformers, PEFT or timm, behind the encoder protocol.

The backends (``hf.py``, ``timm_backend.py``) load the weights and say how a batch of pixels becomes
one pooled embedding per image; this class runs it: precision, ``torch.compile``, batch size, the
floor (the same architecture with seeded random weights, built when first asked for) and, where
the model or its base has one, the text tower used by zero-shot.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import ModelUnavailable
from .openclip import PRECISIONS, LazyFloor, resolve_precision

FLOOR_SEED = 0


def seeded(build: Callable[[], torch.nn.Module], seed: int = FLOOR_SEED) -> torch.nn.Module:
    """``build()`` with torch's CPU generator seeded by ``seed`` and restored afterwards: the same
    seed gives the same random weights, and the caller's random stream is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class ModuleEncoder(LazyFloor):
    """A torch ``model`` whose ``embed(model, pixels) -> tensor [n, d]`` gives one pooled embedding
    per image; ``preprocess`` (PIL image -> float tensor [3, H, W]) comes from the checkpoint's own
    processor config and ``preprocess_id`` (part of the embedding cache key) names it.

    ``library``: who loaded the weights (``transformers``, ``peft``, ``timm``). ``details``: what the
    report's ``model`` block adds (preprocessing, adapter, zero-shot). ``encode_text`` exists only
    where a text tower serves zero-shot (the model's own, or its base's). ``base``: the encoder an
    adapted model is compared with (an adapter's base, or ``--base``)."""

    def __init__(self, model: torch.nn.Module, embed, preprocess, *, name: str, spec: str, fingerprint: str,
                 device, library: str, preprocess_id: str, details: dict | None = None, floor_factory=None,
                 encode_text=None, base=None):
        self.device = torch.device(device)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self._embed = embed
        self.preprocess = preprocess
        self.preprocess_id = preprocess_id
        self.name = name
        self.spec = spec
        self.fingerprint = fingerprint
        self.library = library
        self.details = dict(details or {})
        self.base = base
        self._floor_factory = floor_factory
        self._floor = None
        if encode_text is not None:
            self.encode_text = encode_text
        self._ready = False
        self.configure()

    def configure(self, precision: str = "auto", channels_last: bool | None = None, compile: bool = False,
                  cache_dir=None):
        """Speed settings, as for open_clip models. ``auto`` is fp32 on a CPU (the bf16 timing and
        agreement check is open_clip's) and bf16 autocast on a GPU with bf16. The floor and the base
        get the same settings."""
        if self._ready:
            raise RuntimeError("configure() an encoder before its first encode call")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        resolved = resolve_precision(precision, self.device)
        if resolved == "auto":
            self.precision, self.precision_reason = "fp32", "fp32: auto on a CPU for a transformers/timm model"
        elif precision == "auto":
            self.precision = "amp_bf16" if resolved == "pure_bf16" else resolved
            self.precision_reason = f"{self.precision}: auto on a GPU"
        else:
            self.precision, self.precision_reason = resolved, f"{resolved}: asked for"
        self.channels_last = bool(channels_last) if channels_last is not None else False
        self.compiled = bool(compile)
        self._settings = dict(precision=precision, channels_last=channels_last, compile=compile, cache_dir=cache_dir)
        for other in (self._floor, self.base):
            if other is not None and hasattr(other, "configure") and not getattr(other, "_ready", False):
                other.configure(**self._settings)
        return self

    @property
    def batch_size(self) -> int:
        """Images per forward pass: 16 on a CPU (as for open_clip), 256 on a GPU."""
        return 16 if self.device.type != "cuda" else 256

    def _prepare(self):
        if not self._ready:
            if self.precision == "pure_bf16":
                self.model.to(dtype=torch.bfloat16)
            if self.compiled:
                self._embed = torch.compile(self._embed, dynamic=False)
            self._ready = True

    def encode_images(self, batch) -> np.ndarray:
        """float tensor [n, 3, H, W] -> float32 array [n, d]."""
        self._prepare()
        with (torch.no_grad() if self.compiled else torch.inference_mode()), self._autocast():
            batch = torch.as_tensor(batch).to(self.device)
            if self.precision == "pure_bf16":
                batch = batch.to(torch.bfloat16)
            feats = self._embed(self.model, batch)
        if feats.ndim != 2 or feats.shape[0] != batch.shape[0]:
            raise ModelUnavailable(f"{self.spec}: the model gives image features of shape {list(feats.shape)}, not one "
                                   "pooled embedding per image")
        return feats.float().cpu().numpy()


def embedding_dim(encoder) -> int:
    """The width of ``encoder``'s image embedding: one forward pass on a grey image."""
    from PIL import Image

    pixels = torch.as_tensor(encoder.preprocess(Image.new("RGB", (64, 64), (128, 128, 128))))[None]
    with torch.inference_mode():  # not encode_images: the encoder stays configurable
        return int(encoder._embed(encoder.model, pixels.to(encoder.device)).shape[-1])
