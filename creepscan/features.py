"""Batched embedding extraction with a content-addressed on-disk cache.

Cache layout: ``CACHE/embeddings/<encoder key>/<chunk>.npz``. The encoder key hashes the encoder's
fingerprint and preprocessing; each chunk holds the sha256 of each image file's bytes, its
embedding, and a reason where the file could not be decoded. So a rerun over the same files never
calls the encoder (nor decodes an image), a changed file is re-embedded alone (its hash is new), and
a run stopped half-way leaves only whole chunks behind (each is written to a temporary file and
renamed into place), which the next run reuses.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .data import ImageSet, UnusableImage, content_hashes, decode_image

FORMAT_VERSION = "1"


def default_cache_dir() -> Path:
    env = os.environ.get("CREEPSCAN_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "creepscan"


def encoder_cache_key(encoder) -> str:
    ident = (f"{FORMAT_VERSION}\n{encoder.fingerprint}\n{getattr(encoder, 'preprocess_id', '')}"
             f"\n{getattr(encoder, 'precision', '')}")
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


@dataclass
class Features:
    """Embeddings of the usable images of an ImageSet.

    ``X`` float32 [m, d]; ``keep`` int64 [m], the index in the ImageSet of each row; ``skipped``
    the files that could not be decoded ({"path", "reason"}); ``stats`` counts and seconds.
    """

    X: np.ndarray
    keep: np.ndarray
    skipped: list[dict]
    stats: dict = field(default_factory=dict)


class EmbeddingCache:
    """The chunks of one encoder key."""

    def __init__(self, cache_dir: Path, key: str):
        self.dir = Path(cache_dir) / "embeddings" / key
        self._rows: dict[str, tuple[np.ndarray | None, str]] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.dir.is_dir():
            return
        for chunk in sorted(self.dir.glob("*.npz")):
            try:
                with np.load(chunk, allow_pickle=False) as z:
                    hashes, emb, reasons = z["hashes"], z["emb"], z["reason"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                continue  # an unreadable chunk is ignored; its images are embedded again
            for h, row, reason in zip(hashes.tolist(), emb, reasons.tolist()):
                self._rows[h] = (None, reason) if reason else (row, "")

    def get(self, digest: str):
        self._load()
        return self._rows.get(digest)

    def put_chunk(self, hashes: list[str], emb: np.ndarray, reasons: list[str]) -> None:
        """Write one chunk atomically (temporary file, then rename)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:24]
        tmp = self.dir / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, hashes=np.asarray(hashes, dtype="U64"), emb=emb.astype(np.float32),
                         reason=np.asarray(reasons, dtype=str))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / f"{name}.npz")
        finally:
            if tmp.exists():
                tmp.unlink()
        for h, row, reason in zip(hashes, emb, reasons):
            self._rows[h] = (None, reason) if reason else (row, "")


class _Decode(Dataset):
    def __init__(self, paths, preprocess):
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            img = decode_image(self.paths[i])
            return i, self.preprocess(img), ""
        except UnusableImage as exc:
            return i, None, str(exc)
        except Exception as exc:  # a preprocessing failure on one image must not end the run
            return i, None, f"preprocessing failed ({type(exc).__name__}: {str(exc)[:100]})"


def _collate(items):
    ok = [(i, t) for i, t, _ in items if t is not None]
    failed = [(i, r) for i, t, r in items if t is None]
    batch = torch.stack([torch.as_tensor(t) for _, t in ok]) if ok else None
    return [i for i, _ in ok], batch, failed


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False,
                disable=not enabled or not sys.stderr.isatty() or total == 0)


def extract(encoder, image_set: ImageSet, *, cache_dir, hashes=None, batch_size: int | None = None,
            num_workers: int | None = None, chunk_size: int = 2048, progress: bool = True,
            normalize: bool = False) -> Features:
    """Embed every image of ``image_set`` with ``encoder``, from the cache where possible.

    Identical files (same bytes) are embedded once. ``normalize`` L2-normalises the rows of ``X``
    (the cache always holds the raw embeddings).
    """
    return extract_many([encoder], image_set, cache_dir=cache_dir, hashes=hashes, batch_size=batch_size,
                        num_workers=num_workers, chunk_size=chunk_size, progress=progress, normalize=normalize)[0]


def extract_many(encoders, image_set: ImageSet, *, cache_dir, hashes=None, batch_size: int | None = None,
                 num_workers: int | None = None, chunk_size: int = 2048, progress: bool = True,
                 normalize: bool = False) -> list[Features]:
    """``extract`` for several encoders over the same images. Encoders with the same preprocessing
    (an open_clip model and its random-init floor) share one decoding pass: each image is decoded
    and preprocessed once and every encoder that lacks it embeds the same batch."""
    t0 = time.perf_counter()
    if hashes is None:
        hashes = content_hashes(image_set.paths)
    caches = [EmbeddingCache(Path(cache_dir), encoder_cache_key(enc)) for enc in encoders]
    todos: list[dict[str, Path]] = []
    hits: list[int] = []
    for cache in caches:
        todo: dict[str, Path] = {}
        n_cached = 0
        for path, digest in zip(image_set.paths, hashes):
            if digest is None or digest in todo:
                continue
            if cache.get(digest) is None:
                todo[digest] = path
            else:
                n_cached += 1
        todos.append(todo)
        hits.append(n_cached)
    groups: dict[str, list[int]] = {}
    for i, enc in enumerate(encoders):
        if todos[i]:
            groups.setdefault(getattr(enc, "preprocess_id", "") or f"#{i}", []).append(i)
    for members in groups.values():
        merged = {d: p for i in members for d, p in todos[i].items()}
        _embed_missing([(encoders[i], caches[i], todos[i]) for i in members], merged, batch_size=batch_size,
                       num_workers=num_workers, chunk_size=chunk_size, progress=progress)
    seconds = round(time.perf_counter() - t0, 3)
    return [_assemble(image_set, hashes, cache, len(todo), n_cached, normalize, seconds)
            for cache, todo, n_cached in zip(caches, todos, hits)]


def _assemble(image_set, hashes, cache, n_embedded, n_cached, normalize, seconds) -> Features:
    rows, keep, skipped = [], [], []
    for i, (path, digest) in enumerate(zip(image_set.paths, hashes)):
        rel = image_set.relpath(path)
        if digest is None:
            skipped.append({"path": rel, "reason": "cannot read file"})
            continue
        row, reason = cache.get(digest)
        if row is None:
            skipped.append({"path": rel, "reason": reason})
            continue
        rows.append(row)
        keep.append(i)
    X = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    if normalize and len(X):
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    stats = {"n_images": len(image_set), "n_embedded": n_embedded, "n_cache_hits": n_cached,
             "n_skipped": len(skipped), "dim": int(X.shape[1]) if X.ndim == 2 and len(X) else 0,
             "seconds": seconds}
    return Features(X=X, keep=np.asarray(keep, dtype=np.int64), skipped=skipped, stats=stats)


class _Pending:
    """One encoder's finished rows waiting to be written as a chunk."""

    def __init__(self, encoder, cache, todo):
        self.encoder, self.cache, self.todo = encoder, cache, todo
        self.hashes, self.rows, self.reasons = [], [], []
        self.dim = None

    def add(self, digest, row, reason=""):
        self.hashes.append(digest)
        self.rows.append(row)
        self.reasons.append(reason)

    def flush(self):
        if self.hashes:
            d = self.dim or 1  # only failures so far: a 1-d placeholder lets reruns skip decoding them
            emb = np.stack([r if r is not None else np.zeros(d, np.float32) for r in self.rows])
            self.cache.put_chunk(self.hashes, emb, self.reasons)
        self.hashes, self.rows, self.reasons = [], [], []


def _embed_missing(targets, todo: dict[str, Path], *, batch_size, num_workers, chunk_size, progress) -> None:
    """Decode ``todo`` once; each (encoder, cache, its own todo) embeds the images it lacks."""
    digests = list(todo)
    paths = [todo[d] for d in digests]
    lead = targets[0][0]
    batch_size = batch_size or min(getattr(enc, "batch_size", None) or 64 for enc, _, _ in targets)
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1) if len(paths) >= 4 * batch_size else 0
    loader = DataLoader(
        _Decode(paths, lead.preprocess), batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=_collate, pin_memory=torch.cuda.is_available() and str(getattr(lead, "device", "cpu")).startswith("cuda"),
        persistent_workers=False,
    )
    pending = [_Pending(*t) for t in targets]
    names = " + ".join(enc.name for enc, _, _ in targets)
    with _progress(len(paths), f"embedding with {names}", progress) as bar:
        for ok_idx, batch, failed in loader:
            for p in pending:
                mine = [j for j, i in enumerate(ok_idx) if digests[i] in p.todo]
                if mine:
                    sub = batch if len(mine) == len(ok_idx) else batch[mine]
                    feats = np.asarray(p.encoder.encode_images(sub), dtype=np.float32)
                    p.dim = feats.shape[1]
                    for j, row in zip(mine, feats):
                        p.add(digests[ok_idx[j]], row)
                for i, reason in failed:
                    if digests[i] in p.todo:
                        p.add(digests[i], None, reason)
                if len(p.hashes) >= chunk_size and p.dim is not None:
                    p.flush()
            bar.update(len(ok_idx) + len(failed))
    for p in pending:
        p.flush()
