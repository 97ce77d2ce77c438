"""Loading local weight files without executing pickled code, and fingerprinting weights."""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Mapping

import torch

from ..errors import ModelUnavailable, error_summary


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file, a torch state dict, or an open_clip training checkpoint.

    Torch files are read with ``weights_only=True``: a file that needs anything beyond tensors and
    plain containers to unpickle is refused, so no pickled code runs. Training checkpoints
    (``{"state_dict": ..., "epoch": ...}``, keys prefixed ``module.`` by DDP) are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelUnavailable(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise ModelUnavailable(f"cannot read {path} as safetensors: {error_summary(exc, 160)}") from exc
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ModelUnavailable(
                f"refused to load {path}: it holds pickled objects other than tensors, which could run "
                "code; convert it to .safetensors (or a plain state dict) on a machine you trust"
            ) from exc
        except Exception as exc:
            raise ModelUnavailable(f"cannot read {path} as a torch state dict: {error_summary(exc, 160)}") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state:
        raise ModelUnavailable(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        out[key[len("module."):] if key.startswith("module.") else key] = value
    if not out:
        raise ModelUnavailable(f"{path} holds no tensors")
    return out


def check_fits(state: Mapping[str, torch.Tensor], model: torch.nn.Module, arch: str, path) -> None:
    """Raise naming the first key where the file and the architecture disagree."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise ModelUnavailable(
                f"weights file {path} does not fit {arch}: it lacks '{key}' "
                f"({len(set(expected) - set(state))} of {len(expected)} keys missing); is it for another architecture?"
            )
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelUnavailable(
                f"weights file {path} does not fit {arch}: '{key}' has shape {list(state[key].shape)}, "
                f"the architecture wants {list(tensor.shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ModelUnavailable(
            f"weights file {path} does not fit {arch}: unexpected key '{extra[0]}' ({len(extra)} extra keys)"
        )


def fingerprint_state(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of all tensors, in name order.

    Stable across runs and machines for the same weights (byte order is little-endian everywhere
    torch runs in practice).
    """
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return "sha256:" + h.hexdigest()

