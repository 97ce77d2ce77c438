"""Frozen encoders behind one protocol, resolved from a MODEL string by one factory.

An encoder has ``name``, ``spec``, ``fingerprint`` (stable id of its weights), ``preprocess``
(PIL image -> tensor of a fixed shape), ``preprocess_id`` (part of the cache key),
``encode_images(batch) -> float32 [n, d]``, optionally ``encode_text(list[str]) -> [n, d]``, and
``floor``: the encoder used as its control.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelUnavailable
from .protocol import has_text

# The backends (open_clip, plug-ins) import torch: they load on first use, so that `creepscan models`
# and `creepscan probes`, which only read ALIASES and probe files, start in a fraction of a second.
_LAZY = {"PixelEncoder": "plugin", "PluginEncoder": "plugin", "load_plugin": "plugin"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Alias:
    arch: str
    tag: str
    source: str


# Models are data: each alias names an open_clip architecture and pretrained tag.
ALIASES: dict[str, Alias] = {
    "clip-vit-b32": Alias("ViT-B-32", "openai", "OpenAI CLIP ViT-B/32 (open_clip tag 'openai')"),
    "clip-vit-b16": Alias("ViT-B-16", "openai", "OpenAI CLIP ViT-B/16"),
    "clip-vit-l14": Alias("ViT-L-14", "openai", "OpenAI CLIP ViT-L/14"),
    "clip-rn50": Alias("RN50", "openai", "OpenAI CLIP ResNet-50"),
    "laion-vit-b32": Alias("ViT-B-32", "laion2b_s34b_b79k", "LAION-2B ViT-B/32 (OpenCLIP)"),
    "laion-vit-b16": Alias("ViT-B-16", "laion2b_s34b_b88k", "LAION-2B ViT-B/16 (OpenCLIP)"),
    "laion-vit-l14": Alias("ViT-L-14", "laion2b_s32b_b82k", "LAION-2B ViT-L/14 (OpenCLIP)"),
    "datacomp-vit-b32": Alias("ViT-B-32", "datacomp_xl_s13b_b90k", "DataComp-XL ViT-B/32"),
    "datacomp-vit-b16": Alias("ViT-B-16", "datacomp_xl_s13b_b90k", "DataComp-XL ViT-B/16"),
    "metaclip-vit-b32": Alias("ViT-B-32-quickgelu", "metaclip_400m", "MetaCLIP 400M ViT-B/32"),
}


def same_path(path) -> str:
    """A weights path written the same way however it was typed (``./w/a.pt``, ``w/a.pt`` or its
    absolute form): relative to the working folder when inside it, else absolute; symbolic links
    are kept (``ckpt_latest.pt`` stays its own name). The report records it in the model's spec."""
    import os

    full = os.path.abspath(os.path.expanduser(os.fspath(path)))
    rel = os.path.relpath(full)
    return rel if not rel.startswith(os.pardir) else full


@dataclass(frozen=True)
class Form:
    """A way of naming a MODEL beyond the open_clip ones: ``matches(spec)`` says whether a spec is of
    this form; ``load(spec, weights, device, base)`` builds it (``base``: an encoder or None). The
    backends behind them (transformers, PEFT, timm) are imported only when such a MODEL is used."""

    name: str
    example: str
    matches: Callable[[str], bool]
    load: Callable


def _no_weights(form: str, weights) -> None:
    if weights:
        raise ModelUnavailable(f"--weights goes with an open_clip architecture or timm:NAME; {form} holds its own "
                               "weights")


def _load_hf_hub(spec, weights, device, base):
    from . import hf

    _no_weights("an hf: checkpoint", weights)
    return hf.from_hub(spec, device=device, base=base)


def _load_folder(spec, weights, device, base):
    from . import hf

    _no_weights("a transformers or PEFT folder", weights)
    return hf.from_folder(Path(spec), device=device, spec=spec, base=base)


def _load_timm(spec, weights, device, base):
    from .timm_backend import from_timm

    return from_timm(spec, weights=weights, device=device)


FORMS: list[Form] = [
    Form("transformers or PEFT checkpoint on the Hugging Face Hub", "hf:ORG/NAME[@REVISION]",
         lambda s: s.startswith("hf:"), _load_hf_hub),
    Form("timm backbone (pretrained, or local weights)", "timm:NAME [--weights FILE]",
         lambda s: s.startswith("timm:"), _load_timm),
    Form("transformers save_pretrained folder, or PEFT adapter folder", "PATH/TO/FOLDER",
         lambda s: s not in ALIASES and Path(s).is_dir(), _load_folder),
]


def resolve_encoder(spec: str, *, weights=None, device="cpu", cache_dir=None, base: str | None = None):
    """MODEL string (+ optional local weights) -> encoder.

    Forms: an alias (``clip-vit-b32``), ``ARCH:TAG``, ``ARCH --weights FILE``, ``hf-hub:ORG/NAME``,
    ``py:MODULE:CALLABLE``, and ``FORMS``: ``hf:ORG/NAME[@REV]``, ``timm:NAME``, a local folder.
    ``base``: a MODEL the result is audited against (its ``adaptation`` block); for a PEFT adapter it
    replaces the base named in adapter_config.json.
    """
    base_encoder = resolve_encoder(base, device=device, cache_dir=cache_dir) if base else None
    encoder = _resolve(spec.strip(), weights, device, cache_dir, base_encoder)
    if base_encoder is not None and getattr(encoder, "base", None) is None:
        from .hf import attach_base

        attach_base(encoder, base_encoder)
    return encoder


def _resolve(spec: str, weights, device, cache_dir, base):
    from . import openclip
    from .plugin import load_plugin

    weights = same_path(weights) if weights else weights
    for form in FORMS:
        if form.matches(spec):
            return form.load(spec, weights, device, base)
    if spec.startswith("py:"):
        if weights:
            raise ModelUnavailable("--weights is for open_clip architectures; a py: plug-in loads its own weights")
        return load_plugin(spec)
    if spec.startswith("hf-hub:"):
        if weights:
            raise ModelUnavailable("--weights goes with an open_clip architecture, not an hf-hub: model")
        return openclip.from_hf_hub(spec, device=device)
    if spec in ALIASES:
        alias = ALIASES[spec]
        if weights:
            return openclip.from_local_weights(alias.arch, weights, device=device, spec=f"{spec} --weights {weights}")
        return openclip.from_pretrained(alias.arch, alias.tag, device=device, spec=spec, cache_dir=cache_dir)
    arch, sep, tag = spec.partition(":")
    if sep:
        if weights:
            raise ModelUnavailable(f"give either a pretrained tag ({spec}) or --weights, not both")
        return openclip.from_pretrained(arch, tag, device=device, spec=spec, cache_dir=cache_dir)
    if weights:
        return openclip.from_local_weights(arch, weights, device=device)
    if openclip.known_architecture(spec):
        raise ModelUnavailable(
            f"'{spec}' is an architecture without weights: add a pretrained tag ({spec}:TAG, see "
            f"`creepscan models`) or a local file (--weights FILE.safetensors)"
        )
    import difflib

    close = difflib.get_close_matches(spec, list(ALIASES), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ModelUnavailable(
        f"unknown model '{spec}': use an alias (creepscan models), ARCH:TAG, ARCH --weights FILE, hf-hub:ORG/NAME, "
        f"hf:ORG/NAME, timm:NAME, a save_pretrained folder or py:MODULE:CALLABLE.{hint}"
    )


__all__ = ["ALIASES", "Alias", "FORMS", "Form", "PixelEncoder", "has_text", "resolve_encoder"]
