"""``py:MODULE:CALLABLE`` plug-ins and the pixel baseline that serves as their default floor."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelUnavailable, error_summary


class PluginEncoder:
    """Adapter that checks a plug-in object at the door and normalises what it returns."""

    library = "plugin"

    def __init__(self, obj, spec: str, *, is_floor: bool = False):
        for attr in ("preprocess", "encode_images"):
            if not callable(getattr(obj, attr, None)):
                raise ModelUnavailable(f"plug-in {spec} returned an object without a callable `{attr}`: an encoder "
                                       "needs `preprocess`, `encode_images` and `fingerprint` (README, Adding a model)")
        fingerprint = getattr(obj, "fingerprint", None)
        if not fingerprint:
            raise ModelUnavailable(
                f"plug-in {spec} has no `fingerprint`: give it a stable string that changes when its weights change"
            )
        self._obj = obj
        self.spec = spec
        self.name = str(getattr(obj, "name", spec))
        self.fingerprint = str(fingerprint)
        self.preprocess = obj.preprocess
        self.preprocess_id = str(getattr(obj, "preprocess_id", ""))
        self._is_floor = is_floor
        self._floor = None

    def encode_images(self, batch):
        out = self._obj.encode_images(batch)
        if isinstance(out, torch.Tensor):
            out = out.detach().float().cpu().numpy()
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise ModelUnavailable(f"plug-in {self.spec}: encode_images returned shape {out.shape}, "
                                   f"want [{len(batch)}, d]")
        return out

    @property
    def has_text(self) -> bool:
        return callable(getattr(self._obj, "encode_text", None))

    def encode_text(self, texts):
        out = self._obj.encode_text(list(texts))
        if isinstance(out, torch.Tensor):
            out = out.detach().float().cpu().numpy()
        return np.asarray(out, dtype=np.float32)

    @property
    def floor(self):
        if self._is_floor:
            return None
        if self._floor is None:
            declared = getattr(self._obj, "floor", None)
            if declared is not None:
                self._floor = PluginEncoder(declared, f"{self.spec} (its declared floor)", is_floor=True)
            else:
                self._floor = PixelEncoder()
        return self._floor


def _pixel_tensor(img, size):
    a = np.asarray(img.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


class PixelEncoder:
    """Raw pixels at 16x16: what an adversary gets with no model at all."""

    size = 16
    name = "pixels 16x16"
    spec = "raw pixels, 16x16 RGB (no model)"
    fingerprint = "pixels-16x16-v1"
    library = "creepscan"  # no model: creepscan's own pixel baseline
    preprocess_id = "resize16"
    floor = None

    def preprocess(self, img):
        return _pixel_tensor(img, self.size)

    def encode_images(self, batch):
        x = torch.as_tensor(batch, dtype=torch.float32).flatten(1)
        x = x - x.mean(1, keepdim=True)
        return x.numpy()


def load_plugin(spec: str):
    """``py:MODULE:CALLABLE`` -> encoder. MODULE is a dotted name on sys.path (the current folder
    included) or a path to a ``.py`` file."""
    body = spec[len("py:"):]
    module_name, sep, attr = body.rpartition(":")
    if not sep or not module_name or not attr:
        raise ModelUnavailable(f"plug-in spec '{spec}' must be py:MODULE:CALLABLE, "
                               "e.g. py:my_models:build or py:./enc.py:build")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise ModelUnavailable(f"plug-in file not found: {path}")
            mod_spec = importlib.util.spec_from_file_location(f"creepscan_plugin_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[mod_spec.name] = module
            mod_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except ModelUnavailable:
        raise
    except ImportError as exc:
        raise ModelUnavailable(f"cannot import plug-in module '{module_name}': {exc}; "
                               "is it on PYTHONPATH or in the current folder?") from exc
    except Exception as exc:
        raise ModelUnavailable(f"plug-in module '{module_name}' failed to import: {error_summary(exc, 300)}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelUnavailable(f"plug-in module '{module_name}' has no callable '{attr}'")
    try:
        obj = factory()
    except Exception as exc:
        raise ModelUnavailable(f"plug-in {spec}: {attr}() failed: {error_summary(exc, 300)}") from exc
    return PluginEncoder(obj, spec)
