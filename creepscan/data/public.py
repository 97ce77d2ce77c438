"""Public probe datasets, materialised into a cache folder that ``load_image_set`` can read.

A probe file's ``[source]`` table names a kind (``lfw``, ``huggingface``, ``fer2013``,
``country211``, ``cifar10``, ``digits``, ``synthetic``) and its settings. ``materialize`` fetches
the data with the library that owns the download (scikit-learn, torchvision, Hugging Face
``datasets``) and returns either an image folder (one sub-folder per label) or a CSV manifest
(``path,label[,group]``, paths relative to the CSV). A finished materialisation is marked by a
``.creepscan-complete`` file holding the source as JSON; while the marker matches, the cached result is
returned without touching the network. Anything that fails on the way (offline, HTTP error, a file
that must be placed by hand) is a ``DataUnavailable`` with one line: what failed, why, and the fix.

Sources are data: ``SOURCES`` maps a kind to the function that materialises it and ``describe``
finds each kind's one-line description in the same registry, so adding a kind is adding a function.
"""
from __future__ import annotations

import csv
import importlib
import io
import json
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import DataUnavailable, error_summary, one_line
from . import synthetic

MARKER = ".creepscan-complete"
FORMAT_VERSION = 1  # bump when a source's output layout changes: cached materialisations are redone
FIX = "pass --data {probe}=PATH with a local folder (one sub-folder per label) or CSV manifest"

FER2013_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # Kaggle's 0..6
FER2013_URL = "https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge"


class _Job:
    """One materialisation: where it goes, whether it may download, and how to word a failure."""

    def __init__(self, kind: str, root: Path, download: bool, progress: bool, probe_id: str | None):
        self.kind, self.root, self.download, self.progress, self.probe_id = kind, root, download, progress, probe_id

    def fail(self, what: str, why: str) -> DataUnavailable:
        who = f"probe {self.probe_id}" if self.probe_id else f"source '{self.kind}'"
        fix = FIX.format(probe=self.probe_id or "PROBE_ID")
        # the reason may be cut short, the fix never is
        return DataUnavailable(f"{who}: could not get {one_line(what, 120)}: {one_line(why, 600)}; {fix}")

    def offline(self, what: str, where: Path) -> DataUnavailable:
        return self.fail(what, f"not in the cache ({where}) and downloads are switched off")

    def log(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr, flush=True)

    def bar(self, iterable, total=None, desc=""):
        from tqdm.auto import tqdm

        enabled = self.progress and _stderr_is_tty()
        return tqdm(iterable, total=total, desc=desc, unit="img", file=sys.stderr, disable=not enabled, leave=False)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

SOURCES: dict[str, Callable[[dict, _Job], Path]] = {}
_DESCRIBE: dict[str, Callable[[dict], str]] = {}


def _source(kind: str, describe: Callable[[dict], str]):
    def register(fn):
        SOURCES[kind] = fn
        _DESCRIBE[kind] = describe
        return fn
    return register


def describe(source: dict) -> str:
    """One line naming a source and its settings, for ``creepscan probes`` and the report."""
    kind = source.get("kind")
    if kind not in _DESCRIBE:
        return f"unknown source kind {kind!r} (known: {', '.join(sorted(SOURCES))})"
    return _DESCRIBE[kind](source)


def _normalised(source: dict) -> dict:
    return json.loads(json.dumps(source, sort_keys=True, default=str))


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def materialize(source: dict, root, *, download: bool = True, progress: bool = True,
                probe_id: str | None = None) -> Path:
    """Fetch ``source`` into the cache folder ``root``; return a folder or CSV manifest for ``load_image_set``.

    ``source`` is a probe file's ``[source]`` table; ``root`` is a folder reserved for this source.
    With ``download=False`` nothing is fetched: only what is already under ``root`` is used (for
    ``huggingface``, Hugging Face's own local cache, read in offline mode).
    ``progress`` shows progress bars on stderr (only when it is a terminal). ``probe_id`` is named
    in error messages. Raises ``DataUnavailable`` (one line, with the ``--data`` fix) on failure.
    """
    if not isinstance(source, dict) or not isinstance(source.get("kind"), str):
        raise DataUnavailable(f"probe {probe_id or '?'}: the [source] table needs a kind "
                              f"(one of {', '.join(sorted(SOURCES))})")
    kind = source["kind"]
    if kind not in SOURCES:
        raise DataUnavailable(f"probe {probe_id or '?'}: unknown source kind {kind!r}; "
                              f"known: {', '.join(sorted(SOURCES))}; "
                              + FIX.format(probe=probe_id or "PROBE_ID"))
    root = Path(root).expanduser()
    wanted = {"source": _normalised(source), "format": FORMAT_VERSION}
    done = _read_json(root / MARKER)
    if done and {"source": done.get("source"), "format": done.get("format")} == wanted:
        path = root / done.get("path", "")
        if done.get("path") and path.exists():
            return path
    job = _Job(kind, root, download, progress, probe_id)
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).unlink(missing_ok=True)
        path = Path(SOURCES[kind](source, job))
    except DataUnavailable:
        raise
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise job.fail(_TITLES.get(kind, kind), error_summary(exc)) from exc
    _write_json(root / MARKER, {
        **wanted,
        "path": path.relative_to(root).as_posix(),
    })
    return path


_TITLES = {"lfw": "LFW", "huggingface": "the Hugging Face dataset", "fer2013": "FER2013", "country211": "Country211",
           "cifar10": "CIFAR-10", "digits": "the digits set", "synthetic": "the synthetic set"}


# --------------------------------------------------------------------------------------------
# helpers shared by sources
# --------------------------------------------------------------------------------------------

def _fresh_dir(path: Path) -> Path:
    """A clean ``<path>.partial`` folder to write into; ``_publish`` moves it into place when done."""
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _publish(partial: Path, final: Path) -> Path:
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


def _write_manifest(path: Path, rows: list[tuple], header=("path", "label")) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def _safe_label(label: str) -> str:
    """A label as a folder name: path separators and leading dots replaced, never empty."""
    name = str(label).replace("/", "_").replace("\\", "_").strip()
    name = "_" + name[1:] if name.startswith(".") else name
    return name or "_"


# --------------------------------------------------------------------------------------------
# lfw: Labeled Faces in the Wild (scikit-learn's downloader)
# --------------------------------------------------------------------------------------------

def _fetch_lfw_files(data_home: Path, download: bool, min_faces: int) -> None:
    """Make sure ``data_home/lfw_home/lfw_funneled`` exists, downloading it if allowed.

    scikit-learn's private ``_check_fetch_lfw`` downloads and extracts without decoding every face;
    if a future version drops it, the public ``fetch_lfw_people`` does the same (and decodes).
    """
    try:
        from sklearn.datasets._lfw import _check_fetch_lfw
    except ImportError:
        _check_fetch_lfw = None
    if _check_fetch_lfw is not None:
        try:
            _check_fetch_lfw(data_home=str(data_home), funneled=True, download_if_missing=download)
            return
        except TypeError:  # signature changed: use the public function below
            pass
    from sklearn.datasets import fetch_lfw_people

    try:
        fetch_lfw_people(data_home=str(data_home), funneled=True, download_if_missing=download,
                         min_faces_per_person=min_faces, resize=0.1)
    except ValueError:  # "min_faces_per_person is too restrictive": the files are there, we report below
        pass


@_source("lfw", lambda s: f"LFW, Labeled Faces in the Wild (scikit-learn downloader, funneled, ~230 MB), "
                          f"people with >= {s.get('min_faces_per_person', 20)} images")
def _lfw(source: dict, job: _Job) -> Path:
    min_faces = source.get("min_faces_per_person", 20)
    if not (isinstance(min_faces, int) and min_faces >= 1):
        raise job.fail("LFW", f"min_faces_per_person must be a positive integer, got {min_faces!r}")
    lfw_home = job.root / "lfw_home"
    folder = lfw_home / "lfw_funneled"
    if job.download and not folder.is_dir():
        job.log(f"downloading LFW (~230 MB, scikit-learn) into {lfw_home}")
    try:
        _fetch_lfw_files(job.root, job.download, min_faces)
    except OSError as exc:
        if not job.download:
            raise job.offline("LFW", lfw_home) from exc
        raise job.fail("LFW", f"download failed ({error_summary(exc)})") from exc
    if not folder.is_dir():
        raise job.fail("LFW", f"{folder} is missing after the download step")
    rows = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        faces = sorted(f for f in person.iterdir() if f.is_file() and f.suffix.lower() in (".jpg", ".jpeg"))
        if len(faces) >= min_faces:
            rows += [(f.relative_to(job.root).as_posix(), person.name) for f in faces]
    if not rows:
        raise job.fail("LFW", f"no person in {folder} has >= {min_faces} images")
    return _write_manifest(job.root / f"lfw-people-min{min_faces}.csv", rows)


# --------------------------------------------------------------------------------------------
# huggingface: any image-classification dataset on the Hub (optional extra "hf")
# --------------------------------------------------------------------------------------------

def _load_hf_dataset(name: str, config: str | None, split: str):
    """One split as an iterable of row dicts with ``features`` (tests replace this with a fake).

    Online it streams, so only this split's files are fetched (FairFace's validation split is
    ~65 MB of a ~560 MB config). Offline (``_hf_offline``) it reads Hugging Face's local cache.
    """
    import datasets  # the optional extra "hf"; an ImportError here becomes the install hint

    offline = bool(getattr(datasets.config, "HF_HUB_OFFLINE", False)
                   or getattr(datasets.config, "HF_DATASETS_OFFLINE", False))
    return datasets.load_dataset(name, config, split=split, streaming=not offline)


class _hf_offline:
    """Switch the Hugging Face libraries to offline mode for one call, and back afterwards.

    They read their offline flags from the environment when first imported, so the environment
    and, for modules already imported, their config attributes are both set and then restored.
    """

    ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    ATTRS = (("datasets.config", "HF_DATASETS_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE"),
             ("huggingface_hub.constants", "HF_HUB_OFFLINE"))

    def __init__(self, active: bool):
        self.active, self.saved_env, self.saved_attrs = active, {}, []

    def __enter__(self):
        if self.active:
            try:  # imported now, its flags are patched and restored; imported inside, they would stick
                importlib.import_module("datasets")
            except ImportError:
                pass
            for key in self.ENV:
                self.saved_env[key] = os.environ.get(key)
                os.environ[key] = "1"
            for module, attr in self.ATTRS:
                mod = sys.modules.get(module)
                if mod is not None and hasattr(mod, attr):
                    self.saved_attrs.append((mod, attr, getattr(mod, attr)))
                    setattr(mod, attr, True)
        return self

    def __exit__(self, *exc):
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for mod, attr, value in self.saved_attrs:
            setattr(mod, attr, value)
        return False


def _undecoded(ds, image_column: str):
    """Ask a real ``datasets`` object for the image files' bytes, so they are written unchanged."""
    if not hasattr(ds, "cast_column"):
        return ds
    try:
        import datasets

        return ds.cast_column(image_column, datasets.Image(decode=False))
    except (ImportError, ValueError, KeyError, TypeError):
        return ds  # not an Image feature: rows are written as they come


_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"))


def _image_suffix(data: bytes, hint: str | None) -> str:
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    suffix = Path(hint or "").suffix.lower()
    return suffix if suffix and len(suffix) <= 6 else ".img"


def _write_image(value, stem: Path) -> Path | None:
    """Write one dataset image (undecoded bytes, a PIL image or an array) as ``stem.<ext>``."""
    if isinstance(value, dict):
        data, src = value.get("bytes"), value.get("path")
        if data:
            path = stem.with_suffix(_image_suffix(data, src))
            path.write_bytes(data)
            return path
        if src and Path(src).is_file():
            path = stem.with_suffix(Path(src).suffix.lower() or ".img")
            shutil.copyfile(src, path)
            return path
        return None
    if isinstance(value, np.ndarray):
        value = Image.fromarray(value)
    if isinstance(value, Image.Image):
        img = value if value.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16") else value.convert("RGB")
        path = stem.with_suffix(".png")
        img.save(path, format="PNG")
        return path
    return None


def _hf_total(ds, split: str):
    try:
        return ds.info.splits[split].num_examples
    except (AttributeError, KeyError, TypeError):
        try:
            return len(ds)
        except TypeError:
            return None


def _label_text(value, names: list[str] | None) -> str | None:
    if value is None:
        return None
    if names and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    return str(value).strip() or None


def _describe_hf(s: dict) -> str:
    cfg = f" ({s['config']})" if s.get("config") else ""
    return (f"Hugging Face dataset {s.get('name', '?')}{cfg}, split {s.get('split', 'validation')}, "
            f"label '{s.get('label_column', '?')}' (needs pip install \"creepscan[hf]\")")


@_source("huggingface", _describe_hf)
def _huggingface(source: dict, job: _Job) -> Path:
    """Rows of a Hugging Face dataset written as image files (original bytes when the dataset keeps
    them) plus a manifest ``path,label[,group]``; ClassLabel integers become their names."""
    name, label_column = source.get("name"), source.get("label_column")
    if not isinstance(name, str) or not isinstance(label_column, str):
        raise job.fail("the Hugging Face dataset", "its [source] table needs name and label_column")
    config, split = source.get("config"), source.get("split", "validation")
    image_column, group_column = source.get("image_column", "image"), source.get("group_column")
    what = f"Hugging Face dataset {name}" + (f" ({config})" if config else "") + f", split {split}"
    job.log(f"fetching {what} into {job.root}" if job.download else f"reading {what} from the local Hugging Face cache")
    try:
        with _hf_offline(not job.download):
            ds = _undecoded(_load_hf_dataset(name, config, split), image_column)
    except ImportError as exc:
        raise job.fail(what, 'the optional package "datasets" is not installed: pip install "creepscan[hf]"') from exc
    except Exception as exc:  # datasets / huggingface_hub raise many types: HTTP, not found, gated, offline
        if not job.download:
            raise job.fail(what, "not in the local cache and downloads are switched off "
                                 f"({error_summary(exc)})") from exc
        raise job.fail(what, error_summary(exc)) from exc
    features = dict(getattr(ds, "features", None) or {})
    if features and label_column not in features:
        raise job.fail(what, f"no column {label_column!r} (columns: {', '.join(features)}); "
                             "set label_column in [source]")
    names = list(getattr(features.get(label_column), "names", None) or []) or None
    group_names = list(getattr(features.get(group_column), "names", None) or []) or None if group_column else None
    images = _fresh_dir(job.root / "images")
    rows, unusable = [], 0
    try:
        with _hf_offline(not job.download):
            for i, row in enumerate(job.bar(ds, total=_hf_total(ds, split), desc=f"writing {name}")):
                if image_column not in row or label_column not in row:
                    raise job.fail(what, f"rows lack column {image_column!r} or {label_column!r} "
                                         f"(columns: {', '.join(row)}); set image_column / label_column in [source]")
                label = _label_text(row[label_column], names)
                written = _write_image(row[image_column], images / f"{i:06d}") if label else None
                if written is None:
                    unusable += 1
                    continue
                item = (f"images/{written.name}", label)
                if group_column:
                    item += (_label_text(row.get(group_column), group_names) or "",)
                rows.append(item)
    except DataUnavailable:
        raise
    except Exception as exc:  # a stream can fail half way (network, a corrupt shard)
        raise job.fail(what, error_summary(exc)) from exc
    if not rows:
        raise job.fail(what, f"no rows with both an image in {image_column!r} and a label in {label_column!r}")
    _publish(images, job.root / "images")
    header = ("path", "label", "group") if group_column else ("path", "label")
    return _write_manifest(job.root / f"{_safe_label(label_column)}.csv", rows, header)


# --------------------------------------------------------------------------------------------
# fer2013: facial expressions (torchvision's reader; the Kaggle file is placed by hand)
# --------------------------------------------------------------------------------------------

def _read_fer_csv(base: Path, split: str) -> list[tuple[np.ndarray, int | None]]:
    """torchvision's FER2013 layout read without its md5 check (re-saved copies of the Kaggle file)."""
    for name, usage in (("fer2013.csv", True), ("icml_face_data.csv", True), (f"{split}.csv", False)):
        path = base / name
        if path.is_file():
            break
    else:
        raise FileNotFoundError(f"no FER2013 csv in {base}")
    keep = ("Training",) if split == "train" else ("PublicTest", "PrivateTest")
    samples = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if usage and row.get("Usage") not in keep:
                continue
            pixels = np.array([int(p) for p in row["pixels"].split()], dtype=np.uint8)
            if pixels.size != 48 * 48:
                raise ValueError(f"{path.name}: a row with {pixels.size} pixels, expected 48x48")
            label = int(row["emotion"]) if row.get("emotion", "") != "" else None
            samples.append((pixels.reshape(48, 48), label))
    return samples


def _fer2013_samples(root: Path, split: str) -> list[tuple[np.ndarray, int | None]]:
    from torchvision.datasets import FER2013

    try:
        ds = FER2013(str(root), split=split)
    except RuntimeError:  # md5 differs from Kaggle's original: read the same layout ourselves
        return _read_fer_csv(root / "fer2013", split)
    return [(np.asarray(img, dtype=np.uint8), label) for img, label in ds]


@_source("fer2013", lambda s: f"FER2013 facial expressions (Kaggle file placed by hand; torchvision layout), "
                              f"split {s.get('split', 'test')}")
def _fer2013(source: dict, job: _Job) -> Path:
    split = source.get("split", "test")
    if split not in ("train", "test"):
        raise job.fail("FER2013", f"split must be 'train' or 'test', got {split!r}")
    base = job.root / "fer2013"
    folder = base / split
    if folder.is_dir() and any(d.is_dir() and not d.name.startswith(".") for d in folder.iterdir()):
        return folder  # the common image-folder form: fer2013/<split>/<emotion>/*.jpg
    if not any((base / n).is_file() for n in ("fer2013.csv", "icml_face_data.csv", f"{split}.csv")):
        raise job.fail("FER2013", f"it has no public download: put fer2013.csv (from {FER2013_URL}) in {base}/ "
                                  f"(or its image-folder form as {folder}/<emotion>/*.jpg)")
    samples = _fer2013_samples(job.root, split)
    if any(label is None for _, label in samples):
        raise job.fail("FER2013", f"{split}.csv has no labels; put fer2013.csv (it has the test labels) in {base}/")
    if not samples:
        raise job.fail("FER2013", f"no {split} rows in the csv in {base}")
    images = _fresh_dir(job.root / "images")
    for name in FER2013_EMOTIONS:
        (images / name).mkdir()
    for i, (pixels, label) in enumerate(job.bar(samples, desc="writing FER2013")):
        if not 0 <= label < len(FER2013_EMOTIONS):
            raise job.fail("FER2013", f"emotion {label} is not in 0..6")
        name = FER2013_EMOTIONS[label]
        Image.fromarray(pixels).save(images / name / f"fer_{i:05d}.png", format="PNG")
    return _publish(images, job.root / "images")


# --------------------------------------------------------------------------------------------
# country211: photos labelled with the country they were taken in (torchvision's downloader)
# --------------------------------------------------------------------------------------------

@_source("country211", lambda s: f"Country211, YFCC100M photos by country (torchvision downloader, ~11 GB), "
                                 f"split {s.get('split', 'test')}")
def _country211(source: dict, job: _Job) -> Path:
    from torchvision.datasets import Country211

    split = source.get("split", "test")
    if split not in ("train", "valid", "test"):
        raise job.fail("Country211", f"split must be train, valid or test, got {split!r}")
    base = job.root / "country211"
    if job.download and not base.is_dir():
        job.log(f"downloading Country211 (~11 GB, torchvision) into {job.root}")
    try:
        Country211(str(job.root), split=split, download=job.download)
    except RuntimeError as exc:  # "Dataset not found"
        if not job.download:
            raise job.offline("Country211", base) from exc
        raise
    except FileNotFoundError as exc:  # base there, split folder missing or empty
        raise job.fail("Country211", f"{base / split} is missing or has no images ({error_summary(exc)})") from exc
    return base / split


# --------------------------------------------------------------------------------------------
# cifar10: the benign reference (torchvision's downloader)
# --------------------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python batches (dicts, lists, numpy arrays) and refuses any other code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} from a CIFAR batch")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core is numpy._core's alias in numpy 2
            return getattr(importlib.import_module(module), name)


def _load_batch(path: Path) -> dict:
    with open(path, "rb") as fh:
        return _ArrayUnpickler(io.BufferedReader(fh), encoding="latin1").load()


def _cifar10_arrays(root: Path, download: bool) -> tuple[np.ndarray, list[int], list[str]]:
    """The test set as (uint8 [n, 32, 32, 3], labels, class names).

    torchvision downloads and checks the md5s. Offline, batches that fail its check (a partial or
    re-packed copy) are still read, by a loader that refuses anything but plain arrays.
    """
    from torchvision.datasets import CIFAR10

    base = root / "cifar-10-batches-py"
    try:
        ds = CIFAR10(str(root), train=False, download=download)
        return np.asarray(ds.data, dtype=np.uint8), [int(t) for t in ds.targets], list(ds.classes)
    except RuntimeError:  # "Dataset not found or corrupted"
        if download or not (base / "test_batch").is_file() or not (base / "batches.meta").is_file():
            raise
    names = list(_load_batch(base / "batches.meta")["label_names"])
    batch = _load_batch(base / "test_batch")
    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return data, [int(t) for t in batch["labels"]], names


@_source("cifar10", lambda s: "CIFAR-10 test set, 10 everyday object classes (torchvision downloader, ~170 MB)")
def _cifar10(source: dict, job: _Job) -> Path:
    base = job.root / "cifar-10-batches-py"
    if job.download and not base.is_dir():
        job.log(f"downloading CIFAR-10 (~170 MB, torchvision) into {job.root}")
    try:
        data, labels, names = _cifar10_arrays(job.root, job.download)
    except RuntimeError as exc:
        if not job.download:
            raise job.offline("CIFAR-10", base) from exc
        raise
    if len(labels) != len(data) or not labels:
        raise job.fail("CIFAR-10", f"the test batch has {len(data)} images and {len(labels)} labels")
    images = _fresh_dir(job.root / "images")
    folders = [_safe_label(n) for n in names]
    for name in folders:
        (images / name).mkdir(exist_ok=True)
    for i, (pixels, label) in enumerate(job.bar(zip(data, labels), total=len(labels), desc="writing CIFAR-10")):
        Image.fromarray(np.ascontiguousarray(pixels)).save(images / folders[label] / f"test_{i:05d}.png", format="PNG")
    return _publish(images, job.root / "images")


# --------------------------------------------------------------------------------------------
# digits and synthetic: made here, offline
# --------------------------------------------------------------------------------------------

@_source("digits", lambda s: f"scikit-learn handwritten digits (bundled, offline), "
                             f"{s.get('per_class') or 'all (~180)'} per class")
def _digits(source: dict, job: _Job) -> Path:
    return synthetic.make_digits(job.root / "images", per_class=source.get("per_class"), size=source.get("size", 32))


def _describe_synthetic(s: dict) -> str:
    gen = s.get("generator", "identities")
    n, k = s.get("n_classes", 8 if gen == "identities" else 2), s.get("per_class", 20 if gen == "identities" else 30)
    signal = "no signal: labels dealt at random" if s.get("signal", True) is False else "with signal"
    if gen == "attribute":
        signal = f"attribute signal, strength {s.get('strength', 1.0)}"
    return f"synthetic {gen} ({n} classes x {k}, seed {s.get('seed', 0)}, {signal}; generated offline)"


_GENERATORS: dict[str, Callable] = {"identities": synthetic.make_identities, "attribute": synthetic.make_attribute}


@_source("synthetic", _describe_synthetic)
def _synthetic(source: dict, job: _Job) -> Path:
    gen = source.get("generator", "identities")
    if gen not in _GENERATORS:
        raise job.fail("the synthetic set", f"unknown generator {gen!r}; known: {', '.join(_GENERATORS)}")
    kwargs = {k: v for k, v in source.items() if k not in ("kind", "generator")}
    try:
        return _GENERATORS[gen](job.root / gen, **kwargs)
    except TypeError as exc:
        raise job.fail("the synthetic set", f"bad [source] keys for generator {gen!r} ({exc})") from exc
