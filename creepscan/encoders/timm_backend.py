"""timm backbones behind the encoder protocol: ``timm:NAME`` (pretrained weights from the Hub, as
timm fetches them) and ``timm:NAME --weights FILE`` (a local file, read without executing pickled
code). The embedding is the backbone's pooled features (the classifier head removed); the
preprocessing is timm's data config for the model; the floor is the architecture with seeded random
weights."""
from __future__ import annotations

import difflib
import json
from pathlib import Path

from ..errors import ModelUnavailable, error_summary
from .module import ModuleEncoder, seeded
from .weights import check_fits, fingerprint_state, load_state_dict


def _timm():
    import timm

    return timm


def embed_pooled(model, pixels):
    """[n, 3, H, W] -> [n, d]: a timm model built with ``num_classes=0`` returns its pooled features."""
    return model(pixels)


def _check_name(name: str, spec: str) -> None:
    timm = _timm()
    arch = name.split(".", 1)[0]
    if not name or not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (timm.list_models() lists them)"
        raise ModelUnavailable(f"{spec}: timm has no architecture '{arch}'{hint}")


def _create(name: str, pretrained: bool):
    return _timm().create_model(name, pretrained=pretrained, num_classes=0)


def _drop_head(state: dict, model) -> dict:
    """A full checkpoint's classifier weights (``head.*``, ``fc.*``: not part of the pooled
    backbone) are left out; everything else must fit."""
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    expected = set(model.state_dict())
    return {k: v for k, v in state.items() if k in expected or not any(k.startswith(h + ".") for h in heads)}


def _preprocess(model):
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=model)
    return create_transform(**config), {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}


def from_timm(spec: str, *, weights=None, device="cpu") -> ModuleEncoder:
    """``timm:NAME`` -> encoder; with ``weights``, the architecture with that local file."""
    name = spec[len("timm:"):].strip()
    _check_name(name, spec)
    if weights:
        model = _create(name, pretrained=False)
        state = _drop_head(load_state_dict(weights), model)
        check_fits(state, model, name, weights)
        model.load_state_dict(state, strict=True)
        full_spec, label = f"{spec} --weights {weights}", f"{name} ({Path(weights).name})"
    else:
        from .openclip import offline_if_unreachable

        offline_if_unreachable()
        try:
            model = _create(name, pretrained=True)
        except Exception as exc:  # network, offline mode, a name without pretrained weights
            raise ModelUnavailable(
                f"could not fetch the pretrained weights of {spec} ({error_summary(exc, 160)}); "
                "offline? pass a local file: "
                f"creepscan audit {spec} --weights FILE.safetensors") from exc
        full_spec, label = spec, name
    transform, data_config = _preprocess(model)
    preprocess_id = f"timm {json.dumps(data_config, sort_keys=True)} {transform!r}"

    def floor():
        random = seeded(lambda: _create(name, pretrained=False))
        return ModuleEncoder(random, embed_pooled, transform, name=f"{name.split('.')[0]} random init (seed 0)",
                             spec=f"{name.split('.')[0]} with random weights (seed 0): the same architecture without "
                                  "its training", fingerprint=fingerprint_state(random.state_dict()), device=device,
                             library="timm", preprocess_id=preprocess_id)

    return ModuleEncoder(model, embed_pooled, transform, name=label, spec=full_spec,
                         fingerprint=fingerprint_state(model.state_dict()), device=device, library="timm",
                         preprocess_id=preprocess_id,
                         details={"architecture": name, "preprocessing": {"source": "timm data config",
                                                                          "config": data_config},
                                  "zero_shot": "not applicable: a timm backbone has no text tower"},
                         floor_factory=floor)
