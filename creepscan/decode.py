"""The fast image path: JPEG files decoded in batches (nvjpeg on a GPU) and open_clip's evaluation
transform run on tensors, on the device that runs the model.

The reference path decodes each file with PIL and runs the encoder's own ``preprocess``: feeding a
GPU in DataLoader worker processes, where at GPU speeds it needs one CPU core per ~500 images/s; on a
CPU in this process's threads, taking turns with the model (``features._threaded_batches``). On the
fast path the workers only read each file's bytes and check that it is a plain JPEG (a header parse,
no decoding); the main process decodes a whole batch with ``torchvision.io.decode_jpeg`` (on the GPU
when the model is there), resizes with torchvision's antialiased bicubic filter (the filter PIL
uses; uint8 arithmetic on a CPU, float32 then rounded on a GPU), crops and normalises. Pixels agree
with the PIL path to within a few levels of 255 (mean well under one level), and embeddings to
cosine > 0.999 per image (tests/test_decode.py).

Anything else — PNG, CMYK, an EXIF rotation, a file that does not end with the JPEG end marker, a
preprocessing pipeline other than open_clip's standard one — takes the reference path for that
file or encoder, with the same skip reasons. Nothing is lost or decoded differently in silence.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import torch
from PIL import Image

from .data import MAX_PIXELS

MODES = ("auto", "pil", "fast")
# Decoded pixels held at once by the fast path (uint8, plus float32 copies while resizing):
# 64 Mpixel is ~0.2 GB as uint8 and ~0.8 GB as float, and 256 images of 500x500 in one go.
DECODE_PIXELS = 1 << 26
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
_ORIENTATION = 0x0112


def _decode_jpeg():
    """torchvision's decode_jpeg, or None where torchvision lacks it (it is deprecated in 0.29)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None
    return lambda data, device: decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


@dataclass(frozen=True)
class TensorTransform:
    """open_clip's evaluation transform on uint8 CHW tensors: resize the shorter side to ``size``
    (bicubic, antialiased), centre-crop to ``crop``, scale to [0, 1], normalise."""

    size: int
    crop: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_preprocess(cls, preprocess) -> "TensorTransform | None":
        """The equivalent tensor transform, or None when ``preprocess`` is not the standard
        Resize(int, bicubic) -> CenterCrop -> to RGB -> ToTensor -> Normalize pipeline."""
        try:
            from torchvision import transforms as T
        except ImportError:
            return None
        steps = list(getattr(preprocess, "transforms", None) or [])
        if len(steps) != 5:
            return None
        resize, crop, rgb, to_tensor, norm = steps
        if not (isinstance(resize, T.Resize) and isinstance(crop, T.CenterCrop) and isinstance(norm, T.Normalize)):
            return None
        size = resize.size
        if isinstance(size, (list, tuple)):
            if len(size) != 1:
                return None  # a fixed (h, w) resize squashes: not this transform
            size = size[0]
        if (not isinstance(size, int) or resize.max_size is not None or resize.antialias is False
                or resize.interpolation != T.InterpolationMode.BICUBIC):
            return None
        rgb_name = getattr(rgb, "__name__", type(rgb).__name__)
        rgb_mode = type(rgb).__name__ == "MaybeConvertMode" and getattr(rgb, "mode", None) == "RGB"
        if not (rgb_name == "_convert_to_rgb" or rgb_mode):
            return None
        if type(to_tensor).__name__ not in ("ToTensor", "MaybeToTensor"):
            return None
        crop_hw = tuple(int(c) for c in crop.size)
        if len(crop_hw) != 2 or len(norm.mean) != 3 or len(norm.std) != 3:
            return None
        return cls(int(size), crop_hw, tuple(float(m) for m in norm.mean), tuple(float(s) for s in norm.std))

    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        """uint8 [3, H, W] tensors (any sizes, one device) -> float32 [n, 3, crop_h, crop_w]."""
        import torchvision.transforms.v2.functional as F

        if not images:
            raise ValueError("no images to transform")
        device = images[0].device
        out = torch.empty((len(images), 3, *self.crop), dtype=torch.float32, device=device)
        by_shape: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            by_shape.setdefault(tuple(im.shape), []).append(i)
        for idx in by_shape.values():  # same-sized images are resized as one batch
            batch = torch.stack([images[i] for i in idx]) if len(idx) > 1 else images[idx[0]][None]
            batch = F.resize(batch, [self.size], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
            batch = F.center_crop(batch, list(self.crop))
            out.index_copy_(0, torch.as_tensor(idx, device=device), batch.to(torch.float32))
        mean = torch.tensor(self.mean, device=device).mul_(255.0).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).mul_(255.0).view(1, 3, 1, 1)
        return out.sub_(mean).div_(std)


def plain_jpeg(path) -> tuple[torch.Tensor, int] | None:
    """The file's bytes as a uint8 tensor, and its pixel count, when it is a JPEG the fast path
    decodes exactly as PIL would (RGB or greyscale, no EXIF rotation, ends with the end-of-image
    marker, within the decompression-bomb limit); None otherwise (the caller uses the reference
    path, which also gives the reason when a file is unusable)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return _plain(data)


def plain_jpeg_bytes(path) -> torch.Tensor | None:
    """``plain_jpeg`` without the pixel count."""
    found = plain_jpeg(path)
    return None if found is None else found[0]


def plain_jpeg_bytes_from(data: bytes) -> torch.Tensor | None:
    """``plain_jpeg_bytes`` for bytes already read."""
    found = _plain(data)
    return None if found is None else found[0]


def _plain(data: bytes) -> tuple[torch.Tensor, int] | None:
    if not data.startswith(_SOI) or not data.rstrip(b"\x00").endswith(_EOI):
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG" or img.mode not in ("RGB", "L"):
                return None
            w, h = img.size
            if w * h > MAX_PIXELS or w == 0 or h == 0:
                return None
            if img.getexif().get(_ORIENTATION, 1) not in (0, 1):
                return None
    except Exception:  # any parse problem: the reference path reports it
        return None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), w * h


def by_pixels(items: list, pixels: list[int], budget: int):
    """Split ``items`` into consecutive runs whose pixel counts sum to at most ``budget`` (a run
    holds at least one item): what is decoded at once, so a batch of large photos cannot fill the
    GPU (1,024 12-Mpixel JPEGs are 37 GB of decoded pixels)."""
    run, total = [], 0
    for item, px in zip(items, pixels):
        if run and total + px > budget:
            yield run
            run, total = [], 0
        run.append(item)
        total += px
    if run:
        yield run


def decode_jpegs(raw: list[torch.Tensor], device) -> list[torch.Tensor | None]:
    """Decode JPEG byte tensors to uint8 RGB [3, H, W] on ``device``: one batched call (nvjpeg on
    a GPU), then one call per image if the batch fails; None for an image that does not decode."""
    dec = _decode_jpeg()
    if dec is None or not raw:
        return [None] * len(raw)
    device = torch.device(device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = dec(raw, device)
        return list(out)
    except (RuntimeError, ValueError):
        pass
    result: list[torch.Tensor | None] = []
    for r in raw:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result.append(dec(r, device))
        except (RuntimeError, ValueError):
            result.append(None)
    return result


def choose(mode: str, preprocess, device) -> TensorTransform | None:
    """The tensor transform to use, or None for the reference (PIL) path.

    ``auto``: the fast path on a GPU when the encoder's preprocessing is open_clip's standard one;
    the reference path on a CPU, where decoding is not the bottleneck. ``fast``: wherever the
    preprocessing allows it. ``pil``: never."""
    if mode not in MODES:
        raise ValueError(f"decode mode must be one of {MODES}, got {mode!r}")
    if mode == "pil" or (mode == "auto" and torch.device(device).type != "cuda"):
        return None  # decided before importing torchvision.io: seconds of a CPU run's start
    if _decode_jpeg() is None:
        return None
    return TensorTransform.from_preprocess(preprocess)
