"""Small image sets with a known signal, made here: the data of the ``fixtures`` suite and of tests.

Every generator writes a folder with one sub-folder per label (PNG files) and, last, a ``.complete``
marker holding its parameters as JSON. Called again with the same parameters it returns at once;
with other parameters it replaces what it wrote before. The same arguments give byte-identical
files (pixels come from a seeded numpy generator; PNGs carry no timestamps).

* ``make_identities``: synthetic "people". Each label is a fixed face-like drawing (skin, hair and
  eye colours, face shape, eye spacing, mouth width, a striped background of its own frequency and
  angle); each image is that drawing under a random pose (offset, rotation, scale), lighting and
  noise. ``signal=False`` draws the same kind of images but deals the labels out at random, so the
  labels carry nothing an encoder could find: the no-signal control.
* ``make_attribute``: a weaker, attribute-like signal. Every image is a fresh random identity; only
  one trait (hair line height, with a faint hair tint) depends on the label, and noisily.
* ``make_digits``: scikit-learn's bundled 8x8 digits (offline), upscaled: a real, tiny, benign set.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

MARKER = ".complete"
FORMAT_VERSION = 1  # bump when the drawing changes, so cached materialisations are regenerated
SUPERSAMPLE = 2  # drawn at 2x and box-filtered down: smooth edges at no noticeable cost


# --------------------------------------------------------------------------------------------
# marker and output folder
# --------------------------------------------------------------------------------------------

def _read_marker(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(out_dir: Path, params: dict) -> bool:
    done = _read_marker(out_dir)
    return (bool(done) and done.get("params") == params
            and all((out_dir / lab).is_dir() for lab in done.get("labels", [])))


def _prepare(out_dir: Path, labels: list[str]) -> None:
    """Remove what an earlier generation (or an interrupted one) left in the label folders we write."""
    old = _read_marker(out_dir) or {}
    (out_dir / MARKER).unlink(missing_ok=True)
    for label in set(old.get("labels", [])) | set(labels):
        d = out_dir / label
        if d.is_dir():
            shutil.rmtree(d)
    for label in labels:
        (out_dir / label).mkdir(parents=True, exist_ok=True)


def _finish(out_dir: Path, params: dict, labels: list[str], n_files: int) -> Path:
    marker = {"params": params, "labels": sorted(labels), "n_files": n_files}
    (out_dir / MARKER).write_text(json.dumps(marker, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    return out_dir


def _save_png(array: np.ndarray, path: Path) -> None:
    # PIL writes no time or text chunks unless asked, so equal pixels give equal bytes.
    Image.fromarray(array).save(path, format="PNG", optimize=False, compress_level=6)


def _labels(labels, n_classes: int, prefix: str) -> list[str]:
    if labels is None:
        width = max(2, len(str(n_classes - 1)))
        return [f"{prefix}{i:0{width}d}" for i in range(n_classes)]
    labels = [str(x) for x in labels]
    if len(labels) != n_classes or len(set(labels)) != n_classes:
        raise ValueError(f"labels must be {n_classes} distinct names, got {labels}")
    bad = [x for x in labels if not x or x.startswith(".") or "/" in x or "\\" in x]
    if bad:
        raise ValueError(f"labels must be usable as folder names, got {bad}")
    return labels


def _check_counts(n_classes: int, per_class: int, size: int) -> None:
    if not (isinstance(n_classes, int) and n_classes >= 2):
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if not (isinstance(per_class, int) and per_class >= 1):
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    if not (isinstance(size, int) and 16 <= size <= 512):
        raise ValueError(f"size must be an integer in 16..512, got {size!r}")


# --------------------------------------------------------------------------------------------
# the drawing
# --------------------------------------------------------------------------------------------

def _random_identity(rng: np.random.Generator) -> dict:
    """One synthetic person: everything that stays fixed across their photos."""
    return {
        "skin": rng.uniform(60, 235, 3),
        "hair": rng.uniform(10, 200, 3),
        "eyes": rng.uniform(0, 120, 3),
        "bg": rng.uniform(30, 220, 3),
        "stripe": rng.uniform(30, 220, 3),
        "stripe_freq": rng.uniform(2.0, 7.0),       # cycles across the image
        "stripe_angle": rng.uniform(0, np.pi),
        "aspect": rng.uniform(1.1, 1.5),            # face height / width
        "eye_spacing": rng.uniform(0.28, 0.5),      # fraction of the face half-width
        "eye_size": rng.uniform(0.07, 0.13),
        "mouth_width": rng.uniform(0.2, 0.55),
        "hair_line": rng.uniform(0.15, 0.45),       # fraction of the face height covered by hair
    }


def _random_pose(rng: np.random.Generator) -> dict:
    """One photo of a person: what changes from photo to photo."""
    return {
        "dx": rng.uniform(-0.1, 0.1), "dy": rng.uniform(-0.08, 0.08),
        "rot": rng.uniform(-0.3, 0.3),              # radians, about +-17 degrees
        "scale": rng.uniform(0.85, 1.15),
        "gain": rng.uniform(0.7, 1.25),             # overall lighting
        "light_dir": rng.uniform(0, 2 * np.pi), "light_slope": rng.uniform(0.0, 0.3),
        "stripe_phase": rng.uniform(0, 2 * np.pi),
    }


def _ellipse(u, v, cx, cy, a, b):
    return ((u - cx) / a) ** 2 + ((v - cy) / b) ** 2 <= 1.0


def _render(ident: dict, pose: dict, size: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 [size, size, 3] face-like drawing of ``ident`` in ``pose``."""
    n = size * SUPERSAMPLE
    t = (np.arange(n, dtype=np.float64) + 0.5) / n * 2 - 1  # pixel centres in [-1, 1]
    y, x = np.meshgrid(t, t, indexing="ij")

    # background stripes live in image coordinates
    ang = ident["stripe_angle"]
    wave = np.sin(np.pi * ident["stripe_freq"] * (x * np.cos(ang) + y * np.sin(ang)) + pose["stripe_phase"])
    mix = (0.5 + 0.5 * wave)[..., None]
    img = ident["bg"] * (1 - mix) + ident["stripe"] * mix

    # the face lives in its own coordinates: undo offset, rotation and scale
    c, s = np.cos(pose["rot"]), np.sin(pose["rot"])
    xs, ys = x - pose["dx"], y - pose["dy"]
    u = (c * xs + s * ys) / pose["scale"]
    v = (-s * xs + c * ys) / pose["scale"]
    a = 0.42
    b = a * ident["aspect"] * 0.85
    hair = _ellipse(u, v, 0, 0, a * 1.12, b * 1.08) & (v < -b + 2 * b * ident["hair_line"])
    face = _ellipse(u, v, 0, 0, a, b) & ~hair
    img[hair] = ident["hair"]
    img[face] = ident["skin"]
    eye_y = -b * 0.12
    eye_r = ident["eye_size"] * a * 1.6
    for side in (-1, 1):
        eye = _ellipse(u, v, side * ident["eye_spacing"] * a * 1.2, eye_y, eye_r, eye_r * 0.75) & face
        img[eye] = ident["eyes"]
    mouth = _ellipse(u, v, 0, b * 0.5, ident["mouth_width"] * a, 0.045) & face
    img[mouth] = (150.0, 40.0, 50.0)

    # lighting: a gain and a linear gradient across the image
    grad = 1 + pose["light_slope"] * (x * np.cos(pose["light_dir"]) + y * np.sin(pose["light_dir"]))
    img = img * (pose["gain"] * grad)[..., None]
    img = img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    if noise:
        img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# generators
# --------------------------------------------------------------------------------------------

def make_identities(out_dir, n_classes: int = 8, per_class: int = 20, seed: int = 0, size: int = 64,
                    signal: bool = True, noise: float = 6.0, labels=None) -> Path:
    """Synthetic identities: ``n_classes`` fixed face-like drawings, ``per_class`` photos of each.

    With ``signal=False`` the images are made the same way but each one's label is dealt at random
    (balanced: still ``per_class`` per label), so labels carry no information about the image.
    ``labels`` names the label folders (default ``id00``, ``id01``, ...). Returns ``out_dir``.
    """
    _check_counts(n_classes, per_class, size)
    names = _labels(labels, n_classes, "id")
    params = {"generator": "identities", "version": FORMAT_VERSION, "n_classes": n_classes, "per_class": per_class,
              "seed": seed, "size": size, "signal": bool(signal), "noise": float(noise), "labels": names}
    out_dir = Path(out_dir)
    if _is_complete(out_dir, params):
        return out_dir
    rng = np.random.default_rng([seed, 101])
    identities = [_random_identity(rng) for _ in range(n_classes)]
    true = np.repeat(np.arange(n_classes), per_class)
    assigned = true if signal else rng.permutation(true)
    _prepare(out_dir, names)
    for i, (t, lab) in enumerate(zip(true, assigned)):
        img = _render(identities[t], _random_pose(rng), size, noise, rng)
        _save_png(img, out_dir / names[lab] / f"{names[lab]}_{i:04d}.png")
    return _finish(out_dir, params, names, len(true))


def make_attribute(out_dir, n_classes: int = 2, per_class: int = 30, seed: int = 0, size: int = 64,
                   strength: float = 1.0, noise: float = 6.0, labels=None) -> Path:
    """A weak, attribute-like signal: every image a new random person; only one trait follows the label.

    The trait is the hair line (how far the hair comes down the face) plus a faint hair tint. Its
    per-label mean is spread by ``strength`` (0: no signal; 1: default; larger: easier) and every image
    adds its own jitter, so classes overlap and probes on it are harder than on identities.
    ``labels`` names the label folders (default ``attr0``, ``attr1``, ...). Returns ``out_dir``.
    """
    _check_counts(n_classes, per_class, size)
    names = _labels(labels, n_classes, "attr")
    params = {"generator": "attribute", "version": FORMAT_VERSION, "n_classes": n_classes, "per_class": per_class,
              "seed": seed, "size": size, "strength": float(strength), "noise": float(noise), "labels": names}
    out_dir = Path(out_dir)
    if _is_complete(out_dir, params):
        return out_dir
    rng = np.random.default_rng([seed, 202])
    centres = 0.3 + strength * np.linspace(-0.1, 0.1, n_classes)
    tints = strength * np.linspace(-12.0, 12.0, n_classes)
    labels_of = np.repeat(np.arange(n_classes), per_class)
    _prepare(out_dir, names)
    for i, lab in enumerate(labels_of):
        ident = _random_identity(rng)
        ident["hair_line"] = float(np.clip(centres[lab] + rng.normal(0, 0.06), 0.05, 0.6))
        ident["hair"] = np.clip(ident["hair"] + tints[lab], 0, 255)
        img = _render(ident, _random_pose(rng), size, noise, rng)
        _save_png(img, out_dir / names[lab] / f"{names[lab]}_{i:04d}.png")
    return _finish(out_dir, params, names, len(labels_of))


def make_digits(out_dir, per_class: int | None = None, size: int = 32) -> Path:
    """scikit-learn's bundled handwritten digits (1797 images, 8x8), upscaled to ``size``.

    Dark ink on white, labels ``"0"`` .. ``"9"``; ``per_class`` keeps the first N of each digit in
    the dataset's order (None: all, about 180 each). Nothing is downloaded. Returns ``out_dir``.
    """
    from sklearn.datasets import load_digits

    if per_class is not None and not (isinstance(per_class, int) and per_class >= 1):
        raise ValueError(f"per_class must be None or an integer >= 1, got {per_class!r}")
    if not (isinstance(size, int) and 8 <= size <= 512):
        raise ValueError(f"size must be an integer in 8..512, got {size!r}")
    names = [str(d) for d in range(10)]
    params = {"generator": "digits", "version": FORMAT_VERSION, "per_class": per_class, "size": size}
    out_dir = Path(out_dir)
    if _is_complete(out_dir, params):
        return out_dir
    digits = load_digits()
    _prepare(out_dir, names)
    seen = dict.fromkeys(range(10), 0)
    n = 0
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        target = int(target)
        if per_class is not None and seen[target] >= per_class:
            continue
        seen[target] += 1
        ink = np.clip(255 - pixels * (255.0 / 16.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(ink, mode="L").resize((size, size), Image.Resampling.BILINEAR)
        img.save(out_dir / names[target] / f"digit_{i:04d}.png", format="PNG", optimize=False, compress_level=6)
        n += 1
    return _finish(out_dir, params, names, n)


GENERATORS = {"identities": make_identities, "attribute": make_attribute, "digits": make_digits}
