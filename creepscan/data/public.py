"""Public datasets behind the probes, materialised once into the cache as something
``load_image_set`` reads (a folder with one sub-folder per label, or a CSV manifest).

Sources are data: ``SOURCES`` maps a probe file's ``[source] kind`` to a function. A completed
materialisation leaves a marker and is reused without touching the network; a failed fetch raises
``DataUnavailable`` with one line naming what failed and the ``--data`` way around it.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import DataUnavailable
from . import synthetic

MARKER = ".creepscan-complete"
FER_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _fix(probe_id: str | None) -> str:
    pid = probe_id or "PROBE_ID"
    return f"pass --data {pid}=PATH with a local folder (one sub-folder per label) or a CSV manifest path,label"


def _short(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 140 else text[:137] + "..."


def _progress(iterable, total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", file=sys.stderr, leave=False,
                disable=not enabled or not sys.stderr.isatty())


def _write_class_folders(samples, names, out: Path, progress: bool, desc: str) -> Path:
    """samples: iterable of (PIL image or uint8 array, label index or name). Written as PNG files
    to a temporary folder renamed into place when complete."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    counts: dict[str, int] = {}
    for img, label in samples:
        name = names[label] if names is not None and not isinstance(label, str) else str(label)
        name = name.replace("/", "_")
        d = tmp / name
        d.mkdir(parents=True, exist_ok=True)
        i = counts.get(name, 0)
        counts[name] = i + 1
        if not isinstance(img, Image.Image):
            img = Image.fromarray(np.asarray(img, dtype=np.uint8))
        img.convert("RGB").save(d / f"{i:06d}.png")
    if not counts:
        raise DataUnavailable(f"{desc}: no images found")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _lfw(source: dict, root: Path, download: bool, progress: bool, probe_id) -> Path:
    """LFW (funneled) via scikit-learn's downloader; the extracted tree is already one folder per
    person. People with at least ``min_faces_per_person`` images are listed in a CSV manifest."""
    from sklearn.datasets import _lfw

    try:
        _, folder = _lfw._check_fetch_lfw(data_home=str(root), funneled=True, download_if_missing=download)
    except Exception as exc:
        raise DataUnavailable(f"could not fetch LFW into {root} ({_short(exc)}); {_fix(probe_id)}") from exc
    min_faces = int(source.get("min_faces_per_person", 20))
    rows = []
    for person in sorted(Path(folder).iterdir()):
        files = sorted(person.glob("*.jpg")) if person.is_dir() else []
        if len(files) >= min_faces:
            rows += [(f.relative_to(root).as_posix(), person.name) for f in files]
    if not rows:
        raise DataUnavailable(f"LFW in {folder} has nobody with {min_faces} or more images; {_fix(probe_id)}")
    manifest = root / f"lfw_min{min_faces}.csv"
    with open(manifest.with_suffix(".tmp"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    os.replace(manifest.with_suffix(".tmp"), manifest)
    return manifest


def _load_hf_dataset(name, config, split):
    import datasets

    return datasets.load_dataset(name, config, split=split)


def _huggingface(source: dict, root: Path, download: bool, progress: bool, probe_id) -> Path:
    for key in ("name", "label_column"):
        if key not in source:
            raise DataUnavailable(f"probe {probe_id}: a huggingface source needs '{key}'")
    if not download:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        ds = _load_hf_dataset(source["name"], source.get("config"), source.get("split", "validation"))
    except ImportError as exc:
        raise DataUnavailable(
            f"{source['name']} needs the Hugging Face 'datasets' package: pip install \"creepscan[hf]\"; "
            f"or {_fix(probe_id)}") from exc
    except Exception as exc:
        raise DataUnavailable(f"could not fetch {source['name']} from the Hugging Face hub ({_short(exc)}); {_fix(probe_id)}") from exc
    label_col, image_col = source["label_column"], source.get("image_column", "image")
    feature = getattr(ds, "features", {}).get(label_col) if hasattr(ds, "features") else None
    names = list(feature.names) if hasattr(feature, "names") else None
    samples = ((row[image_col], row[label_col]) for row in ds)
    return _write_class_folders(_progress(samples, len(ds), f"writing {source['name']}", progress), names,
                                root / f"{label_col}", progress, source["name"])


def _fer2013(source: dict, root: Path, download: bool, progress: bool, probe_id) -> Path:
    """FER2013 has no open download (Kaggle): put the Kaggle ``fer2013.csv`` (or
    ``icml_face_data.csv``) in ROOT/fer2013/, or its image-folder form in ROOT/fer2013/<split>/."""
    split = source.get("split", "test")
    base = root / "fer2013"
    if (base / split).is_dir() and any((base / split).iterdir()):
        return base / split
    for name in ("fer2013.csv", "icml_face_data.csv"):
        path = base / name
        if path.is_file():
            usage = ("Training",) if split == "train" else ("PublicTest", "PrivateTest")
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                reader.fieldnames = [f.strip() for f in reader.fieldnames or []]
                rows = [r for r in reader if r.get("Usage", "").strip() in usage]
            samples = ((np.array([int(v) for v in r["pixels"].split()], dtype=np.uint8).reshape(48, 48),
                        int(r["emotion"])) for r in rows)
            return _write_class_folders(_progress(samples, len(rows), "writing FER2013", progress), FER_EMOTIONS,
                                        root / f"fer2013-{split}", progress, "FER2013")
    raise DataUnavailable(
        f"FER2013 is not downloadable automatically: put Kaggle's fer2013.csv in {base}/ (or its image folders in "
        f"{base}/{split}/), or {_fix(probe_id)}")


def _country211(source: dict, root: Path, download: bool, progress: bool, probe_id) -> Path:
    from torchvision.datasets import Country211

    split = source.get("split", "test")
    try:
        Country211(str(root), split=split, download=download)
    except Exception as exc:
        raise DataUnavailable(f"could not fetch Country211 into {root} ({_short(exc)}); {_fix(probe_id)}") from exc
    return root / "country211" / split


def _cifar10(source: dict, root: Path, download: bool, progress: bool, probe_id) -> Path:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=bool(source.get("train", False)), download=download)
    except Exception as exc:
        raise DataUnavailable(f"could not fetch CIFAR-10 into {root} ({_short(exc)}); {_fix(probe_id)}") from exc
    samples = ((ds.data[i], int(ds.targets[i])) for i in range(len(ds)))
    return _write_class_folders(_progress(samples, len(ds), "writing CIFAR-10", progress), list(ds.classes),
                                root / "cifar10", progress, "CIFAR-10")


def _digits(source: dict, root: Path, download: bool, progress: bool, probe_id) -> Path:
    return synthetic.make_digits(root / "digits", per_class=source.get("per_class"), size=int(source.get("size", 32)))


_GENERATORS: dict[str, Callable] = {"identities": synthetic.make_identities, "attribute": synthetic.make_attribute}


def _synthetic(source: dict, root: Path, download: bool, progress: bool, probe_id) -> Path:
    gen = source.get("generator", "identities")
    if gen not in _GENERATORS:
        raise DataUnavailable(f"probe {probe_id}: unknown synthetic generator '{gen}'; known: {', '.join(_GENERATORS)}")
    params = {k: v for k, v in source.items() if k not in ("kind", "generator")}
    try:
        return _GENERATORS[gen](root / gen, **params)
    except TypeError as exc:
        raise DataUnavailable(f"probe {probe_id}: bad synthetic source parameters ({exc})") from exc


SOURCES: dict[str, Callable] = {
    "lfw": _lfw, "huggingface": _huggingface, "fer2013": _fer2013, "country211": _country211,
    "cifar10": _cifar10, "digits": _digits, "synthetic": _synthetic,
}

_DESCRIPTIONS: dict[str, Callable[[dict], str]] = {
    "lfw": lambda s: f"LFW funneled (scikit-learn downloader), people with >= {s.get('min_faces_per_person', 20)} images",
    "huggingface": lambda s: f"Hugging Face {s.get('name')} ({s.get('config') or 'default'}, {s.get('split', 'validation')}), "
                             f"label {s.get('label_column')}",
    "fer2013": lambda s: f"FER2013 {s.get('split', 'test')} (Kaggle file placed by hand)",
    "country211": lambda s: f"Country211 {s.get('split', 'test')} (torchvision downloader)",
    "cifar10": lambda s: "CIFAR-10 test (torchvision downloader)",
    "digits": lambda s: "scikit-learn digits (bundled, offline)",
    "synthetic": lambda s: f"synthetic {s.get('generator', 'identities')} (generated here, offline)",
}


def describe(source: dict) -> str:
    kind = source.get("kind")
    return _DESCRIPTIONS[kind](source) if kind in _DESCRIPTIONS else f"unknown source kind '{kind}'"


def materialize(source: dict, root, *, download: bool = True, progress: bool = True, probe_id: str | None = None) -> Path:
    """Fetch (if needed) and lay out one probe's public data under ``root``; returns the folder or
    manifest to read. Reused without network access once complete."""
    root = Path(root)
    kind = source.get("kind")
    if kind not in SOURCES:
        raise DataUnavailable(f"probe {probe_id}: unknown source kind '{kind}'; known: {', '.join(SOURCES)}")
    marker = root / MARKER
    try:
        done = json.loads(marker.read_text())
        if done.get("source") == source and (root / done["path"]).exists():
            return root / done["path"]
    except (OSError, ValueError, KeyError):
        pass
    root.mkdir(parents=True, exist_ok=True)
    path = Path(SOURCES[kind](source, root, download, progress, probe_id))
    marker.write_text(json.dumps({"source": source, "path": path.relative_to(root).as_posix()}, sort_keys=True))
    return path
