"""open_clip models behind the encoder protocol: pretrained tags, hf-hub, local weights, and the
random-init twin used as the floor."""
from __future__ import annotations

import contextlib
import difflib
import os
from pathlib import Path

import torch

from .. import cpu
from ..errors import ModelUnavailable, error_summary
from .weights import check_fits, fingerprint_state, load_state_dict

FLOOR_SEED = 0
# Prompts of the bf16 agreement check: the kinds of text a zero-shot probe sends to the text tower.
_CHECK_PROMPTS = ("a photo of a face.", "a photo of a young woman smiling.", "a street in an old city.",
                  "a close-up photo of a dog.")
_CONFIGS = Path(__file__).parent / "configs"
_CONFIG_NAMES = tuple(sorted(p.stem for p in _CONFIGS.glob("*.json")))  # the architectures they add


@contextlib.contextmanager
def _no_random_init_warning():
    """open_clip logs "No pretrained weights loaded ... initialized randomly" (on the root logger)
    whenever it builds a model without a pretrained tag: for the floor, which is random on purpose,
    and before loading local weights, which it then does. Those lines only alarm, so drop them."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def precision_autocast(precision: str, device):
    """The autocast context of an ``amp_*`` precision on ``device`` (a no-op for fp32 and pure_bf16,
    whose weights carry the dtype): one place for every backend's forward pass."""
    if precision.startswith("amp_"):
        dtype = torch.bfloat16 if precision == "amp_bf16" else torch.float16
        return torch.autocast(torch.device(device).type, dtype=dtype)
    return contextlib.nullcontext()


def _open_clip():
    import open_clip

    if not set(_CONFIG_NAMES) <= set(open_clip.list_models()):  # registered once, through the public API
        open_clip.add_model_config(_CONFIGS)
    return open_clip


PRECISIONS = ("auto", "fp32", "amp_bf16", "amp_fp16", "pure_bf16")


def resolve_precision(precision: str, device) -> str:
    """The arithmetic that does not depend on the model: an explicit choice is kept; ``auto`` on a
    GPU is bf16 weights and activations where it has bf16 (else fp16 autocast). ``auto`` on a CPU
    stays ``"auto"`` here: the encoder settles it per machine and per model
    (``creepscan.cpu.choose_cpu_precision``). Every choice agrees with fp32 to cosine > 0.999 per
    image (tests/test_encoders.py)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type != "cuda":
        return "auto"
    return "pure_bf16" if torch.cuda.is_bf16_supported() else "amp_fp16"


class _Method(torch.nn.Module):
    """``model.<method>`` as a module's forward, so that ``torch.func.functional_call`` can run it
    with other tensors (bf16 copies) in place of the model's own."""

    def __init__(self, model, method: str):
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, *args):
        return getattr(self.model, self.method)(*args)


def _min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1).min())


class LazyFloor:
    """The floor and the autocast context shared by the torch-module encoders (open_clip here, and
    transformers/timm in ``module.py``): ``_floor_factory`` builds the same architecture with seeded
    random weights once, when first asked for, configured like the model (``_settings``)."""

    _floor = None
    _floor_factory = None
    _settings: dict

    @property
    def floor(self):
        if self._floor is None and self._floor_factory is not None:
            self._floor = self._floor_factory().configure(**self._settings)
        return self._floor

    def _autocast(self):
        return precision_autocast(self.precision, self.device)


class OpenClipEncoder(LazyFloor):
    """A frozen open_clip model: image tower for the attacks, text tower for zero-shot.

    Speed settings (``configure``): ``precision`` (see ``resolve_precision``; on a CPU ``auto`` is
    settled at first use by ``creepscan.cpu.choose_cpu_precision``, and ``precision_reason`` says
    why), ``channels_last`` memory format for the image tower's convolutions (on by default on a
    GPU), and ``compile`` (``torch.compile`` of the image tower; batches are padded to one shape so
    it compiles once). The floor gets the same settings and settles ``auto`` for its own weights."""

    library = "open_clip"  # who loaded the weights (the report's model block)

    def __init__(self, model, preprocess, tokenizer, *, name, spec, fingerprint, device, arch, floor_factory=None):
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.spec = spec
        self.fingerprint = fingerprint
        self.arch = arch
        self.device = torch.device(device)
        self.preprocess_id = repr(preprocess)
        self._floor_factory = floor_factory
        self._floor = None
        self._encode = None  # built by _prepare() on first use
        self._shape = None
        self.configure()

    def configure(self, precision: str = "auto", channels_last: bool | None = None, compile: bool = False,
                  cache_dir=None):
        """Choose the speed settings; they take effect at the first encode (the weights'
        fingerprint is that of the loaded weights whatever is chosen here). ``cache_dir``: where
        a CPU's per-machine timings and agreement checks are kept (default: the embedding cache's
        default folder)."""
        if self._encode is not None:
            raise RuntimeError("configure() an encoder before its first encode call")
        resolved = resolve_precision(precision, self.device)
        self._precision = None if resolved == "auto" else resolved
        self._precision_reason = None if resolved == "auto" else (
            f"{resolved}: asked for" if precision != "auto" else
            f"{resolved}: auto on a GPU" + (" with bf16" if resolved == "pure_bf16" else " without bf16"))
        self._cache_dir = cache_dir
        self.channels_last = self.device.type == "cuda" if channels_last is None else bool(channels_last)
        self.compiled = bool(compile)
        self._settings = dict(precision=precision, channels_last=channels_last, compile=compile, cache_dir=cache_dir)
        if self._floor is not None:
            self._floor.configure(**self._settings)
        return self

    @property
    def precision(self) -> str:
        """The arithmetic the image and text towers run: ``fp32``, ``pure_bf16``, ``amp_bf16`` or
        ``amp_fp16``. Reading it settles a CPU's ``auto`` (a cached kernel timing, and on a CPU with
        fast bf16 a one-off agreement check of this model: ~1 s for a ViT-B)."""
        if self._precision is None:
            self._precision, self._precision_reason = cpu.choose_cpu_precision(
                self._hot_kernel(), self._bf16_agreement, fingerprint=self.fingerprint, cache_dir=self._cache_dir)
        return self._precision

    @property
    def precision_reason(self) -> str:
        """One line: why ``precision`` is what it is (for the report's ``timings``)."""
        self.precision
        return self._precision_reason

    def _hot_kernel(self) -> str:
        """The kernel the image tower spends its time in: convolutions in a ResNet, matmuls in a
        transformer."""
        visual = self.model.visual
        convs = sum(m.weight.numel() for m in visual.modules() if isinstance(m, torch.nn.Conv2d))
        total = sum(p.numel() for p in visual.parameters())
        return "conv" if convs > total / 2 else "matmul"

    def _bf16_agreement(self, n_images: int = 8) -> cpu.Agreement:
        """The smallest per-item cosine between this model's fp32 and bf16-weight embeddings of
        ``n_images`` seeded check images (through the model's own preprocess) and, with a text
        tower, of a few prompts. The bf16 weights are a temporary copy: the model stays fp32."""
        images = torch.stack([torch.as_tensor(self.preprocess(im)) for im in cpu.check_images(n_images)])
        # floating tensors only: integer buffers (token ids, position ids) keep their dtype
        bf16 = {f"model.{k}": (v.to(torch.bfloat16) if v.is_floating_point() else v)
                for k, v in {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}.items()}
        with torch.inference_mode():
            run = _Method(self.model, "encode_image")
            worst = _min_cosine(run(images), torch.func.functional_call(run, bf16, (images.to(torch.bfloat16),)))
            n = n_images
            if hasattr(self.model, "encode_text") and self.tokenizer is not None:
                tokens = self.tokenizer(list(_CHECK_PROMPTS))
                run = _Method(self.model, "encode_text")
                worst = min(worst, _min_cosine(run(tokens), torch.func.functional_call(run, bf16, (tokens,))))
                n += len(_CHECK_PROMPTS)
        return cpu.Agreement(min_cosine=worst, n_items=n)

    def _prepare(self):
        if self._encode is None:
            if self.precision == "pure_bf16":
                self.model.to(dtype=torch.bfloat16)
            if self.channels_last:
                self.model.visual.to(memory_format=torch.channels_last)
            self._encode = self.model.encode_image
            if self.compiled:
                self._encode = torch.compile(self.model.encode_image, dynamic=False)
        return self._encode

    @property
    def batch_size(self) -> int:
        """Images per forward pass: on a CPU 16, whose activations stay in the caches (ViT-B/32 fp32
        on 2 AVX-512 cores, best of 3 alternating rounds: batch 8-32 ran 26 images/s, 64 ran 22.4,
        128 ran 21.1; benchmarks/cpu_batch.py); on a GPU sized from free memory."""
        if self.device.type != "cuda":
            return 16
        free, _ = torch.cuda.mem_get_info(self.device)
        params = sum(p.numel() for p in self.model.visual.parameters())
        # Activations of a ViT/ResNet image tower at bf16 are of the order of 40x its weights per
        # 1,000 images; keep well inside what is free.
        per_image = max(params * 2 * 40 / 1000, 1 << 20)
        return int(max(64, min(1024, free * 0.5 // per_image)))

    def encode_images(self, batch):
        # A compiled tower runs under no_grad: inference tensors would make it compile twice
        # (their dispatch keys differ from the first batch's).
        with (torch.no_grad() if self.compiled else torch.inference_mode()), self._autocast():
            batch = torch.as_tensor(batch).to(self.device, non_blocking=True)
            if self.precision == "pure_bf16":
                batch = batch.to(torch.bfloat16)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            n = batch.shape[0]
            encode = self._prepare()
            if self.compiled:  # one input shape, so the compiled tower is built once
                if self._shape is None:
                    self._shape = tuple(batch.shape)
                elif tuple(batch.shape[1:]) == self._shape[1:] and n < self._shape[0]:
                    batch = torch.cat([batch, batch.new_zeros((self._shape[0] - n, *batch.shape[1:]))])
            feats = encode(batch)[:n]
        return feats.float().cpu().numpy()

    def encode_text(self, texts):
        self._prepare()
        with torch.inference_mode(), self._autocast():
            tokens = self.tokenizer(list(texts)).to(self.device)
            feats = self.model.encode_text(tokens)
        return feats.float().cpu().numpy()


def known_architecture(arch: str) -> bool:
    return arch in _open_clip().list_models()


def _check_arch(arch: str) -> None:
    if not known_architecture(arch):
        close = difflib.get_close_matches(arch, _open_clip().list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " See `creepscan models`."
        raise ModelUnavailable(f"unknown open_clip architecture '{arch}'.{hint}")


def _download_error(what: str, exc: BaseException, arch: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"could not fetch the weights of {what} ({error_summary(exc, 160)}); offline? download them on a machine with "
        f"internet and pass them as a local file: creepscan audit {arch} --weights FILE.safetensors (the default "
        "suite also uses four datasets: LFW, FairFace and CIFAR-10 are downloaded on first use, FER2013's "
        "fer2013.csv must be placed by hand or given with --data emotion=PATH; the README's offline demo needs "
        "no download)"
    )


def _floor_factory(arch: str, preprocess, tokenizer, device, model_name: str | None = None):
    def build():
        oc = _open_clip()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(FLOOR_SEED)
            with _no_random_init_warning():
                if model_name:  # hf-hub: the config comes with the hub entry, the weights stay unloaded
                    model = oc.create_model(model_name, load_weights=False)
                else:
                    model = oc.create_model(arch, pretrained=None)
        model = model.to(device)
        return OpenClipEncoder(
            model, preprocess, tokenizer, name=f"{arch} random init (seed {FLOOR_SEED})",
            spec=f"{arch} with random weights (seed {FLOOR_SEED}): the same architecture without its training",
            fingerprint=fingerprint_state(model.state_dict()), device=device, arch=arch,
        )

    return build


def offline_if_unreachable(host: str = "huggingface.co") -> None:
    """Without a network, huggingface_hub retries each request for about a minute before giving up.
    If the hub's name does not even resolve, switch it to offline mode: weights already in the local
    cache still load, and missing ones fail at once."""
    import socket

    try:
        import huggingface_hub.constants as hf_constants
    except ImportError:
        return
    if hf_constants.HF_HUB_OFFLINE:
        return
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        hf_constants.HF_HUB_OFFLINE = True


def from_pretrained(arch: str, tag: str | None, *, device="cpu", spec=None, cache_dir=None) -> OpenClipEncoder:
    """``ARCH:TAG`` or an alias: open_clip downloads (or finds in its cache) the pretrained weights."""
    oc = _open_clip()
    _check_arch(arch)
    if tag is not None:
        tags = oc.list_pretrained_tags_by_model(arch)
        if tag not in tags:
            close = difflib.get_close_matches(tag, tags, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"known tags: {', '.join(tags) or 'none'}"
            raise ModelUnavailable(f"open_clip has no pretrained tag '{tag}' for {arch}; {hint}")
    offline_if_unreachable()
    try:
        model, _, preprocess = oc.create_model_and_transforms(arch, pretrained=tag, cache_dir=cache_dir)
    except Exception as exc:  # network, hub and file errors come in many types
        raise _download_error(f"{arch}:{tag}", exc, arch) from exc
    return _wrap(oc, model, preprocess, arch=arch, spec=spec or f"{arch}:{tag}", name=f"{arch} ({tag})", device=device)


def from_hf_hub(spec: str, *, device="cpu") -> OpenClipEncoder:
    oc = _open_clip()
    offline_if_unreachable()
    try:
        model, _, preprocess = oc.create_model_and_transforms(spec)
    except Exception as exc:
        raise ModelUnavailable(
            f"could not fetch {spec} from the Hugging Face hub ({error_summary(exc, 160)}); offline? pass the model's "
            "architecture with local weights instead: creepscan audit ARCH --weights FILE.safetensors"
        ) from exc
    arch = spec
    return _wrap(oc, model, preprocess, arch=arch, spec=spec, name=spec, device=device, floor_model_name=spec)


def from_local_weights(arch: str, weights: str | os.PathLike, *, device="cpu", spec=None) -> OpenClipEncoder:
    """An open_clip architecture with a local weights file (safetensors, state dict, checkpoint)."""
    oc = _open_clip()
    _check_arch(arch)
    state = load_state_dict(weights)
    with _no_random_init_warning():
        model, _, preprocess = oc.create_model_and_transforms(arch, pretrained=None)
    check_fits(state, model, arch, weights)
    model.load_state_dict(state, strict=True)
    return _wrap(oc, model, preprocess, arch=arch, spec=spec or f"{arch} --weights {weights}",
                 name=f"{arch} ({Path(weights).name})", device=device)


def random_init(arch: str, *, device="cpu", seed: int = FLOOR_SEED) -> OpenClipEncoder:
    """An architecture with seeded random weights (tests, benchmarks, and the floor itself)."""
    oc = _open_clip()
    _check_arch(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with _no_random_init_warning():
            model, _, preprocess = oc.create_model_and_transforms(arch, pretrained=None)
    return _wrap(oc, model, preprocess, arch=arch, spec=f"{arch} random init (seed {seed})",
                 name=f"{arch} random init", device=device)


def _wrap(oc, model, preprocess, *, arch, spec, name, device, floor_model_name=None) -> OpenClipEncoder:
    tokenizer = oc.get_tokenizer(arch)
    model = model.to(device)
    return OpenClipEncoder(
        model, preprocess, tokenizer, name=name, spec=spec, fingerprint=fingerprint_state(model.state_dict()),
        device=device, arch=arch, floor_factory=_floor_factory(arch, preprocess, tokenizer, device, floor_model_name),
    )

