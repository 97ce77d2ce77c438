"""transformers checkpoints and PEFT adapters behind the encoder protocol.

Forms: a local folder saved by ``save_pretrained`` (config.json, safetensors weights,
preprocessor_config.json), ``hf:ORG/NAME[@REVISION]`` (the same from the Hugging Face Hub), and a
PEFT adapter folder or repo (adapter_config.json naming its base; LoRA and its kin are merged into
the base's weights). Preprocessing is the checkpoint's own image processor (its PIL backend), read
offline from the folder. The floor is the architecture built from the checkpoint's config with
seeded random weights. Custom model code is never run (``trust_remote_code`` stays off), and pickled
weights are read only by ``weights.load_state_dict``, which executes nothing.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelUnavailable, error_summary
from .module import ModuleEncoder, embedding_dim, seeded
from .weights import fingerprint_state, load_state_dict

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = "pytorch_model.bin"
ADAPTER_SAFE = "adapter_model.safetensors"
ADAPTER_PICKLED = "adapter_model.bin"
PROCESSOR_CONFIG = "preprocessor_config.json"
# What an hf: download fetches: configs, safetensors weights, tokenizer files; pickles only when a
# repository has nothing else (they are then read without executing anything).
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]
HUB_PICKLES = [PICKLED_WEIGHTS, ADAPTER_PICKLED]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@dataclass(frozen=True)
class Arch:
    """How one transformers architecture gives a pooled image embedding.

    ``cls``: the class that loads it (None: ``AutoModel``); ``pooled``: ``image_features`` (the
    model's ``get_image_features``), ``image_embeds`` or ``pooler_output`` (fields of its output), or
    ``auto`` (the first of those the output has); ``text``: it has a text tower (zero-shot);
    ``joint``: its embedding lives in an image-text space, so a base's text tower can serve it;
    ``padding``: how prompts are padded for its text tower (SigLIP was trained on max-length)."""

    cls: str | None
    pooled: str
    text: bool = False
    joint: bool = False
    padding: object = True


# Models are data: the architectures named in config.json, then a default per model_type.
ARCHITECTURES: dict[str, Arch] = {
    "CLIPModel": Arch("CLIPModel", "image_features", text=True, joint=True),
    "CLIPVisionModelWithProjection": Arch("CLIPVisionModelWithProjection", "image_embeds", joint=True),
    "CLIPVisionModel": Arch("CLIPVisionModel", "pooler_output"),
    # a task fine-tune of CLIP's vision tower: the backbone's pooled output (the head is dropped)
    "CLIPForImageClassification": Arch("CLIPVisionModel", "pooler_output"),
    "SiglipModel": Arch("SiglipModel", "image_features", text=True, joint=True, padding="max_length"),
    # SigLIP's attention-pooling head ends in the image-text space: no separate projection
    "SiglipVisionModel": Arch("SiglipVisionModel", "pooler_output", joint=True),
    "SiglipForImageClassification": Arch("SiglipVisionModel", "pooler_output", joint=True),
    "Dinov2Model": Arch("Dinov2Model", "pooler_output"),
    "Dinov2ForImageClassification": Arch("Dinov2Model", "pooler_output"),
}
BY_MODEL_TYPE = {"clip": "CLIPModel", "clip_vision_model": "CLIPVisionModel", "siglip": "SiglipModel",
                 "siglip_vision_model": "SiglipVisionModel", "dinov2": "Dinov2Model"}
GENERIC = Arch(None, "auto")


def _transformers():
    """transformers, imported when an hf MODEL is used, with its progress bars and warnings off (the
    CLI prints one line per error)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


# --- embeddings and text ---------------------------------------------------------------------

def _pooled(out) -> torch.Tensor:
    """The pooled embedding in a model output: ``image_embeds``, else ``pooler_output`` (a CNN's
    [n, c, 1, 1] pooled map flattened)."""
    for field in ("image_embeds", "pooler_output"):
        value = out if isinstance(out, torch.Tensor) else getattr(out, field, None)
        if value is not None:
            return value.flatten(1) if value.ndim == 4 else value
    raise ModelUnavailable("the model's output has no pooled image embedding (image_embeds or pooler_output); "
                           "audit it through a py: plug-in that says how to pool it")


def embed_image_features(model, pixels):
    """[n, 3, H, W] -> [n, d]: ``get_image_features`` (CLIP, SigLIP: the image-text space)."""
    return _pooled(model.get_image_features(pixel_values=pixels))


def embed_image_embeds(model, pixels):
    return model(pixel_values=pixels).image_embeds


def embed_pooler_output(model, pixels):
    return _pooled(model(pixel_values=pixels).pooler_output)


def embed_auto(model, pixels):
    if hasattr(model, "get_image_features"):
        return embed_image_features(model, pixels)
    return _pooled(model(pixel_values=pixels))


def embed_cls_token(model, pixels):
    """The first token of the last hidden state: for a checkpoint saved without its pooler (a ViT
    task fine-tune keeps the encoder and its classifier, not the pooler)."""
    return model(pixel_values=pixels).last_hidden_state[:, 0]


EMBED = {"image_features": embed_image_features, "image_embeds": embed_image_embeds,
         "pooler_output": embed_pooler_output, "auto": embed_auto, "cls_token": embed_cls_token}


class TextTower:
    """``encode_text`` of an encoder whose model has a text tower: prompts -> float32 [n, d]."""

    def __init__(self, encoder: ModuleEncoder, tokenizer, padding):
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.padding = padding

    def _features(self, texts):
        enc = self.encoder
        tokens = self.tokenizer(list(texts), padding=self.padding, truncation=True, return_tensors="pt")
        tokens = {k: v.to(enc.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return _pooled(enc.model.get_text_features(**tokens))

    def __call__(self, texts):
        self.encoder._prepare()
        with torch.inference_mode(), self.encoder._autocast():
            return self._features(texts).float().cpu().numpy()

    def dim(self) -> int:
        """The text embedding's width, without settling the encoder's speed settings."""
        with torch.inference_mode():
            return int(self._features(["a photo."]).shape[-1])


def _text_dim(base) -> int | None:
    """Width of ``base``'s text embedding (None when it cannot be read without running it)."""
    tower = getattr(base, "encode_text", None)
    if isinstance(tower, TextTower):
        return tower.dim()
    model, tokenizer = getattr(base, "model", None), getattr(base, "tokenizer", None)
    if model is not None and tokenizer is not None and hasattr(model, "encode_text"):  # open_clip
        device = next(model.parameters()).device
        with torch.inference_mode():
            return int(model.encode_text(tokenizer(["a photo."]).to(device)).shape[-1])
    return None


def _attach_own_text(enc: ModuleEncoder, arch: Arch, folder: Path | None, tokenizer=None) -> None:
    """Zero-shot through the model's own text tower, with the tokenizer saved beside it."""
    if not arch.text:
        return
    if tokenizer is None and folder is not None:
        try:
            tokenizer = _transformers().AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception:  # no tokenizer files: the text tower cannot be prompted
            tokenizer = None
    if tokenizer is None:
        enc.details["zero_shot"] = ("not applicable: the checkpoint has a text tower but no tokenizer files beside "
                                    "it (save the tokenizer into the folder)")
        return
    enc.tokenizer = tokenizer
    enc.encode_text = TextTower(enc, tokenizer, arch.padding)
    enc.details["zero_shot"] = "the checkpoint's own text tower"


def attach_base(enc, base) -> None:
    """Make ``base`` the encoder ``enc`` is compared with (an adapter's base, or ``--base``). A
    vision-only tower whose embedding lives in an image-text space of the base's width borrows the
    base's text tower for zero-shot; otherwise zero-shot is not applicable, and the report says why."""
    enc.base = base
    if not isinstance(enc, ModuleEncoder) or callable(getattr(enc, "encode_text", None)):
        return
    reason = _borrow_reason(enc, base)
    if reason is None:
        enc.encode_text = base.encode_text
        enc.details["zero_shot"] = (f"through the base's text tower ({base.spec}): the adapted vision tower kept the "
                                    "projection into the base's image-text space")
    else:
        enc.details["zero_shot"] = f"not applicable: {reason}"


def _borrow_reason(enc: ModuleEncoder, base) -> str | None:
    """Why ``enc`` cannot use ``base``'s text tower, or None when it can."""
    if not getattr(enc, "joint", False):
        return "the checkpoint's embedding has no projection into an image-text space"
    from .protocol import has_text

    if not has_text(base):
        return f"the base ({base.spec}) has no text tower"
    d_text = _text_dim(base)
    d_image = embedding_dim(enc)
    if d_text is not None and d_text != d_image:
        return (f"its embedding ({d_image} wide) does not match the base's text embedding ({d_text} wide): the "
                "projection was not kept")
    return None


# --- preprocessing ---------------------------------------------------------------------------

class ProcessorPreprocess:
    """The checkpoint's own image processor as a preprocess: PIL image -> float tensor [3, H, W]."""

    def __init__(self, processor):
        self.processor = processor
        self.config = {k: v for k, v in processor.to_dict().items() if not k.startswith("_")}

    def __call__(self, img):
        return self.processor(images=img.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"{type(self.processor).__name__}({json.dumps(self.config, sort_keys=True, default=str)})"


def load_preprocess(folder: Path, what: str) -> ProcessorPreprocess:
    """The image processor saved in ``folder`` (offline), with its PIL backend: the reference pixels."""
    if not (folder / PROCESSOR_CONFIG).is_file():
        raise ModelUnavailable(
            f"{what} has no {PROCESSOR_CONFIG}: its image size, crop and normalisation come from it; save the "
            f"processor beside the weights (AutoImageProcessor.from_pretrained(BASE).save_pretrained(FOLDER))")
    try:
        processor = _transformers().AutoImageProcessor.from_pretrained(str(folder), local_files_only=True,
                                                                       backend="pil")
    except Exception as exc:
        raise ModelUnavailable(f"cannot read the image processor of {what} ({error_summary(exc, 160)}); "
                               "re-save it with AutoImageProcessor.save_pretrained") from exc
    return ProcessorPreprocess(processor)


def preprocessing_record(prep: ProcessorPreprocess) -> dict:
    """What the report says about the preprocessing (also in the cache key, via ``repr``)."""
    return {"source": PROCESSOR_CONFIG, "processor": type(prep.processor).__name__, "config": prep.config}


# --- transformers folders --------------------------------------------------------------------

def read_config(folder: Path, what: str):
    """config.json through AutoConfig, offline; custom code is never run."""
    try:
        return _transformers().AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelUnavailable(f"cannot read {what}/config.json as a transformers config "
                               f"({error_summary(exc, 160)}); custom model "
                               "code is never run: audit such a model through a py: plug-in") from exc


def vision_arch(config, what: str) -> tuple[str, Arch]:
    """(architecture name, Arch) of a config, or ModelUnavailable when it is not an image encoder."""
    names = list(getattr(config, "architectures", None) or [])
    for name in names:
        if name in ARCHITECTURES:
            return name, ARCHITECTURES[name]
    model_type = getattr(config, "model_type", "")
    if model_type in BY_MODEL_TYPE:
        name = BY_MODEL_TYPE[model_type]
        return name, ARCHITECTURES[name]
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_MAPPING_NAMES

    if model_type in MODEL_FOR_IMAGE_MAPPING_NAMES:
        return (names[0] if names else model_type), GENERIC
    raise ModelUnavailable(
        f"{what}/config.json describes a '{model_type}' model ({', '.join(names) or 'no architecture named'}), not an "
        "image encoder: pass a vision checkpoint (CLIP, SigLIP, DINOv2, ViT, ...), or a py: plug-in")


def _model_class(arch: Arch):
    tf = _transformers()
    return getattr(tf, arch.cls) if arch.cls else tf.AutoModel


def _arch_config(arch: Arch, config):
    """The config ``arch``'s class takes: a vision tower saved inside a full CLIP/SigLIP config (a
    task fine-tune's classifier) takes its ``vision_config``."""
    if arch.cls is not None and not arch.text and getattr(config, "model_type", "") in ("clip", "siglip"):
        return config.vision_config
    return config


def _build(arch: Arch, config):
    """The architecture with freshly initialised weights (the caller seeds torch)."""
    cls = _model_class(arch)
    if arch.cls is None:
        return cls.from_config(config, trust_remote_code=False)
    return cls(_arch_config(arch, config))


def load_model(arch: Arch, config, folder: Path, what: str):
    """(model, how to pool) from the weights of ``folder``: safetensors through transformers, else a
    pickled ``pytorch_model.bin`` through the no-execution reader. Missing parameters are refused
    (they would be random: a false reading), except an auto-class model's pooler, which is then not
    used (the first token's hidden state is the embedding)."""
    cls = _model_class(arch)
    kwargs = dict(config=_arch_config(arch, config), local_files_only=True, trust_remote_code=False,
                  output_loading_info=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if any((folder / f).is_file() for f in SAFE_WEIGHTS):
            try:
                model, info = cls.from_pretrained(str(folder), use_safetensors=True, **kwargs)
            except Exception as exc:
                raise ModelUnavailable(f"cannot load the weights of {what} ({error_summary(exc, 160)})") from exc
        elif (folder / PICKLED_WEIGHTS).is_file():
            state = load_state_dict(folder / PICKLED_WEIGHTS)  # refuses anything that would run code
            try:
                model, info = cls.from_pretrained(None, state_dict=state, **kwargs)
            except Exception as exc:
                raise ModelUnavailable(f"cannot load {what}/{PICKLED_WEIGHTS} ({error_summary(exc, 160)})") from exc
        else:
            raise ModelUnavailable(f"{what} holds no weights (model.safetensors or {PICKLED_WEIGHTS}); pass a folder "
                                   "saved by save_pretrained")
    missing = sorted(info.get("missing_keys") or [])
    if missing and arch.cls is None and all(k.startswith("pooler.") for k in missing):
        return model, "cls_token"
    if missing:
        raise ModelUnavailable(f"the weights in {what} lack {len(missing)} parameter(s) of {cls.__name__} (e.g. "
                               f"'{missing[0]}'); is the checkpoint for another architecture?")
    return model, arch.pooled


def _floor_factory(arch: Arch, arch_name: str, config, prep, device, pooled: str):
    def build():
        model = seeded(lambda: _build(arch, config))
        floor = ModuleEncoder(model, EMBED[pooled], prep, name=f"{arch_name} random init (seed 0)",
                              spec=f"{arch_name} with random weights (seed 0): the same architecture without "
                                   "its training",
                              fingerprint=fingerprint_state(model.state_dict()), device=device,
                              library="transformers", preprocess_id=repr(prep))
        floor.joint = arch.joint
        return floor

    return build


def from_model_folder(folder: Path, *, device="cpu", spec: str | None = None) -> ModuleEncoder:
    """A transformers ``save_pretrained`` folder -> encoder (its floor: the config, random weights)."""
    what = spec or str(folder)
    config = read_config(folder, what)
    arch_name, arch = vision_arch(config, what)
    prep = load_preprocess(folder, what)
    model, pooled = load_model(arch, config, folder, what)
    enc = ModuleEncoder(model, EMBED[pooled], prep, name=f"{arch_name} ({Path(what).name or what})",
                        spec=spec or str(folder), fingerprint=fingerprint_state(model.state_dict()), device=device,
                        library="transformers", preprocess_id=repr(prep),
                        details={"architecture": arch_name, "preprocessing": preprocessing_record(prep)},
                        floor_factory=_floor_factory(arch, arch_name, config, prep, device, pooled))
    enc.joint = arch.joint
    enc.arch = arch
    if not arch.text:
        enc.details["zero_shot"] = "not applicable: " + (
            "a vision-only tower (audit it with --base MODEL, a model with a text tower, to lend it one)"
            if arch.joint else "the checkpoint's embedding has no projection into an image-text space")
    _attach_own_text(enc, arch, folder)
    return enc


# --- PEFT adapters ---------------------------------------------------------------------------

def _adapter_state(folder: Path, what: str) -> dict:
    for name in (ADAPTER_SAFE, ADAPTER_PICKLED):  # a pickle goes through the no-execution reader
        if (folder / name).is_file():
            return load_state_dict(folder / name)
    raise ModelUnavailable(f"the adapter {what} holds no weights ({ADAPTER_SAFE}); pass a folder saved by PEFT's "
                           "save_pretrained")


def _canonical(config_dict: dict) -> str:
    """The adapter config as stable JSON (paths and versions left out: the base's fingerprint and the
    adapter's weights identify them)."""
    skip = {"base_model_name_or_path", "revision", "peft_version", "inference_mode", "auto_mapping"}
    return json.dumps({k: v for k, v in config_dict.items() if k not in skip}, sort_keys=True,
                      default=lambda o: sorted(map(str, o)) if isinstance(o, (set, frozenset)) else str(o))


def _is_local_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name or not _HUB_ID.fullmatch(name)


def resolve_base(name: str | None, revision: str | None, folder: Path, what: str, device):
    """The adapter's base from ``base_model_name_or_path``: a local folder (as given, or beside the
    adapter), else a Hub repository."""
    fix = "pass the base with --base MODEL (its folder, or hf:ORG/NAME)"
    if not name:
        raise ModelUnavailable(f"the adapter {what} names no base (base_model_name_or_path in adapter_config.json); "
                               f"{fix}")
    path = Path(name).expanduser()
    for candidate in ([path] if path.is_absolute() else [path, folder.parent / path]):
        if candidate.is_dir():
            return from_folder(candidate, device=device)
    if _is_local_path(name):
        raise ModelUnavailable(f"the adapter's base {name} (base_model_name_or_path in {what}/adapter_config.json) is "
                               f"not a folder here; {fix}")
    try:
        return from_hub(f"hf:{name}" + (f"@{revision}" if revision else ""), device=device)
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"the adapter's base {name} (from {what}/adapter_config.json) could not be loaded: "
                               f"{exc}; or {fix}") from None


def from_adapter(folder: Path, *, device="cpu", spec: str | None = None, base=None) -> ModuleEncoder:
    """A PEFT adapter folder -> its base with the adapter merged (LoRA and kin). ``base``: an encoder
    that overrides adapter_config.json's base. The fingerprint covers the base's weights, the
    adapter's weights and its config."""
    what = spec or str(folder)
    try:
        raw = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {what}/adapter_config.json ({error_summary(exc, 160)})") from None
    if base is None:
        base = resolve_base(raw.get("base_model_name_or_path"), raw.get("revision"), folder, what, device)
    if not isinstance(base, ModuleEncoder) or base.library != "transformers":
        raise ModelUnavailable(f"the adapter {what} needs a transformers base (a save_pretrained folder or "
                               "hf:ORG/NAME); "
                               f"{base.spec} is loaded by {getattr(base, 'library', 'a plug-in')}")
    state = _adapter_state(folder, what)
    merged = _merge(base, folder, state, what)
    prep = load_preprocess(folder, what) if (folder / PROCESSOR_CONFIG).is_file() else base.preprocess
    fp = hashlib.sha256("\n".join(["peft", base.fingerprint, fingerprint_state(state), _canonical(raw)]).encode())
    adapter = {"peft_type": str(raw.get("peft_type")), "base_model_name_or_path": raw.get("base_model_name_or_path"),
               "r": raw.get("r"), "target_modules": raw.get("target_modules"), "merged": True}
    if isinstance(adapter["target_modules"], list):
        adapter["target_modules"] = sorted(adapter["target_modules"])
    details = {"architecture": base.details.get("architecture"), "adapter": adapter,
               "preprocessing": preprocessing_record(prep) if isinstance(prep, ProcessorPreprocess) else
               base.details.get("preprocessing")}
    enc = ModuleEncoder(merged, base._embed, prep, name=f"{base.name} + adapter {folder.name}",
                        spec=spec or str(folder),
                        fingerprint="sha256:" + fp.hexdigest(), device=device, library="peft",
                        preprocess_id=repr(prep), details=details, floor_factory=base._floor_factory)
    enc.joint = base.joint
    arch = getattr(base, "arch", GENERIC)
    if arch.text and getattr(base, "tokenizer", None) is not None:
        _attach_own_text(enc, arch, None, tokenizer=base.tokenizer)
    attach_base(enc, base)
    return enc


def _merge(base: ModuleEncoder, folder: Path, state: dict, what: str):
    """A copy of the base's model with the adapter loaded and merged into its weights."""
    from peft import PeftConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = PeftConfig.from_pretrained(str(folder))
            model = get_peft_model(copy.deepcopy(base.model).cpu(), config)
        except Exception as exc:
            raise ModelUnavailable(f"the adapter {what} does not apply to its base {base.spec} "
                                   f"({error_summary(exc, 160)})") from exc
        expected = set(get_peft_model_state_dict(model))
        lacking = sorted(expected - set(state))
        result = set_peft_model_state_dict(model, state)
        unexpected = sorted(getattr(result, "unexpected_keys", []) or [])
        if lacking or unexpected:
            key = (lacking or unexpected)[0]
            raise ModelUnavailable(f"the adapter {what} does not fit its base {base.spec}: "
                                   f"{'it lacks' if lacking else 'unexpected key'} '{key}'; pass the right base with "
                                   "--base MODEL")
        if not hasattr(model, "merge_and_unload"):
            raise ModelUnavailable(f"the adapter {what} ({config.peft_type}) does not merge into the weights; only "
                                   "LoRA-like adapters can be audited")
        return model.merge_and_unload()


# --- entry points ----------------------------------------------------------------------------

def from_folder(folder, *, device="cpu", spec: str | None = None, base=None):
    """A local folder: a PEFT adapter (adapter_config.json) or a transformers checkpoint (config.json).
    ``base``: an encoder to compare with (for an adapter, it replaces the base its config names)."""
    folder = Path(folder)
    what = spec or str(folder)
    if (folder / "adapter_config.json").is_file():
        return from_adapter(folder, device=device, spec=spec, base=base)
    if not (folder / "config.json").is_file():
        raise ModelUnavailable(f"{what} is a folder without config.json or adapter_config.json: pass a folder saved "
                               "by transformers or PEFT save_pretrained")
    enc = from_model_folder(folder, device=device, spec=spec)
    if base is not None:
        attach_base(enc, base)
    return enc


def download(repo: str, revision: str | None, spec: str) -> Path:
    """The repository's configs, safetensors and tokenizer files (pickles only when it has no
    safetensors weights), through huggingface_hub's cache."""
    from huggingface_hub import snapshot_download

    from .openclip import offline_if_unreachable

    offline_if_unreachable()
    try:
        folder = Path(snapshot_download(repo, revision=revision, allow_patterns=HUB_FILES, ignore_patterns=["*/*"]))
        if not any((folder / f).is_file() for f in (*SAFE_WEIGHTS, ADAPTER_SAFE)):
            folder = Path(snapshot_download(repo, revision=revision, allow_patterns=HUB_FILES + HUB_PICKLES,
                                            ignore_patterns=["*/*"]))
    except Exception as exc:  # network, offline mode, missing repository or revision
        raise ModelUnavailable(
            f"could not fetch {spec} from the Hugging Face Hub ({error_summary(exc, 160)}); "
            "offline? download it where there is "
            f"internet (hf download {repo} --local-dir DIR) and pass the folder: creepscan audit DIR") from exc
    return folder


def from_hub(spec: str, *, device="cpu", base=None):
    """``hf:ORG/NAME[@REVISION]``: a transformers checkpoint or PEFT adapter from the Hub."""
    repo, _, revision = spec[len("hf:"):].partition("@")
    if not _HUB_ID.fullmatch(repo):
        raise ModelUnavailable(f"{spec}: give hf:ORG/NAME or hf:ORG/NAME@REVISION (a Hub repository id)")
    return from_folder(download(repo, revision or None, spec), device=device, spec=spec, base=base)
