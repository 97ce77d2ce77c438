"""The declared minimum versions are true for what the code uses of its dependencies' less stable API."""
from __future__ import annotations

import configparser
import inspect
import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def declared_minimum(dist: str) -> tuple[int, ...]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    for line in cfg["options"]["install_requires"].splitlines():
        m = re.fullmatch(rf"{re.escape(dist)}>=([0-9.]+)", line.strip())
        if m:
            return tuple(int(p) for p in m.group(1).split("."))
    raise AssertionError(f"setup.cfg declares no minimum for {dist}")


def as_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def test_open_clip_meets_the_declared_minimum_and_has_what_the_code_uses():
    import open_clip
    from open_clip.transformer import VisionTransformer

    assert as_tuple(version("open_clip_torch")) >= declared_minimum("open_clip_torch")
    # attacks/finetune.py splits the image tower with these (private in open_clip, present from 2.32)
    assert callable(getattr(VisionTransformer, "_embeds", None)) and callable(getattr(VisionTransformer, "_pool", None))
    # encoders/openclip.py: a hub model's floor is built without its weights (from 3.0)
    assert "load_weights" in inspect.signature(open_clip.create_model).parameters
    for name in ("add_model_config", "list_models", "create_model_and_transforms", "get_tokenizer",
                 "list_pretrained_tags_by_model"):
        assert callable(getattr(open_clip, name, None)), name


def test_the_project_configs_are_registered_through_the_public_api():
    from creepscan.encoders.openclip import _CONFIG_NAMES, _open_clip

    oc = _open_clip()
    assert "creepscan-tiny-vit" in _CONFIG_NAMES and set(_CONFIG_NAMES) <= set(oc.list_models())
