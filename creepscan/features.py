"""Batched embedding extraction: decode, preprocess and encode the images a probe lacks in the
embedding cache (``creepscan.cache``), in batches, sharing one decoding pass between encoders with
the same preprocessing (a model and its random-init floor), and read every row back from the cache.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from . import decode as _decode
from .cache import CHUNK_ROWS, Claim, EmbeddingCache, check_cache_writable, encoder_cache_key, progress_bar, wait_for
from .data import ImageSet, UnusableImage, content_hashes, decode_image
from .decode import choose as choose_decode
from .decode import plain_jpeg
from .errors import error_summary

__all__ = ["Features", "extract", "extract_many", "decode_plan", "split_preprocess", "preprocess_image"]


def _decode_tag(transform, device) -> str:
    return "" if transform is None else f"tensor-{torch.device(device).type}"


@dataclass
class Features:
    """Embeddings of the usable images of an ImageSet.

    ``X`` float32 [m, d]; ``keep`` int64 [m], the index in the ImageSet of each row; ``skipped``
    the files that could not be decoded ({"path", "reason"}); ``stats`` counts and seconds:
    ``n_embedded`` distinct files this process embedded (or found undecodable), ``n_cache_hits``
    distinct files read from the cache (written before, or meanwhile by another process).
    """

    X: np.ndarray
    keep: np.ndarray
    skipped: list[dict]
    stats: dict = field(default_factory=dict)


class _Decode(Dataset):
    def __init__(self, paths, preprocess):
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        tensor, reason = preprocess_image(self.paths[i], self.preprocess)
        return i, tensor, reason


def preprocess_image(path, preprocess):
    """PIL decode + the encoder's own preprocess: (tensor, "") or (None, reason)."""
    try:
        return preprocess(decode_image(path)), ""
    except UnusableImage as exc:
        return None, str(exc)
    except Exception as exc:  # a preprocessing failure on one image must not end the run
        return None, _failed(exc)


def _failed(exc: Exception) -> str:
    return f"preprocessing failed ({error_summary(exc, 120)})"


_TO_TENSOR = ("ToTensor", "MaybeToTensor")


def split_preprocess(preprocess):
    """``(head, tail)``: the steps of a ``Compose`` before its ToTensor (PIL in, PIL out: no torch
    op, so they can run in Python threads) and the rest (torch ops, run on the thread that owns
    torch's thread pool). Applying head then tail is the preprocess itself. None when
    ``preprocess`` is not a Compose with a ToTensor step."""
    steps = list(getattr(preprocess, "transforms", None) or [])
    for k, step in enumerate(steps):
        if type(step).__name__ in _TO_TENSOR:
            return steps[:k], steps[k:]
    return None


def _threaded_batches(paths, split, batch_size: int, threads: int):
    """The reference path (same pixels, same skip reasons) for a CPU-bound model: each batch is
    decoded and taken through the PIL steps by ``threads`` Python threads (PIL releases the GIL),
    the tensor steps run on this thread, and only then does the model run on the same cores.
    Yields what ``_collate`` does.

    Measured against two worker processes decoding beside the model (benchmarks/cpu_decode.py, 2
    cores, ViT-B/32): no difference that shows through the machine's noise (0.88 and 0.90 of the
    model's own speed, medians of 8 rounds; paired by round +0.002, ahead in 4 of 8), bit-identical
    embeddings. It is the CPU default because it needs no worker processes: no fork per call, no
    batches through /dev/shm (64 MB in a default Docker container)."""
    from concurrent.futures import ThreadPoolExecutor

    head, tail = split

    def work(i):
        try:
            img = decode_image(paths[i])
        except UnusableImage as exc:
            return None, str(exc)
        try:
            for step in head:
                img = step(img)
        except Exception as exc:  # one image's failure must not end the run
            return None, _failed(exc)
        return img, ""

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="creepscan-decode") as pool:
        for start in range(0, len(paths), batch_size):
            rows = range(start, min(len(paths), start + batch_size))
            items = []
            for i, (img, reason) in zip(rows, pool.map(work, rows)):
                if img is not None:
                    try:
                        for step in tail:
                            img = step(img)
                    except Exception as exc:  # one image's failure must not end the run
                        img, reason = None, _failed(exc)
                items.append((i, img, reason))
            yield _collate(items)


def _collate(items):
    ok = [(i, t) for i, t, _ in items if t is not None]
    failed = [(i, r) for i, t, r in items if t is None]
    batch = torch.stack([torch.as_tensor(t) for _, t in ok]) if ok else None
    return [i for i, _ in ok], batch, failed


class _ReadJpeg(_Decode):
    """Fast path workers: a plain JPEG's bytes (decoded later, a batch at a time, on the model's
    device); any other file goes through the reference path here."""

    def __getitem__(self, i):
        found = plain_jpeg(self.paths[i])
        if found is not None:
            return i, found, _RAW  # (bytes, pixel count)
        return super().__getitem__(i)


_RAW = "\0raw"


def _collate_raw(items):
    raw = [(i, t) for i, t, r in items if r == _RAW]
    ready = [(i, t) for i, t, r in items if t is not None and r != _RAW]
    failed = [(i, r) for i, t, r in items if t is None]
    return raw, ready, failed


def _fast_batches(loader, paths, transform, preprocess, device):
    """Turn the fast path's worker output into (indices, batch on ``device``, failures). JPEGs are
    decoded and transformed in runs of at most ``decode.DECODE_PIXELS`` decoded pixels."""
    for raw, ready, failed in loader:
        parts, order = [], []
        for run in _decode.by_pixels(raw, [px for _, (_, px) in raw], _decode.DECODE_PIXELS):
            images = []
            for (i, _), img in zip(run, _decode.decode_jpegs([t for _, (t, _) in run], device)):
                if img is None:  # nvjpeg/libjpeg refused it: the reference path decides (and gives the reason)
                    tensor, reason = preprocess_image(paths[i], preprocess)
                    if tensor is None:
                        failed.append((i, reason))
                    else:
                        ready.append((i, tensor))
                else:
                    images.append(img)
                    order.append(i)
            if images:
                parts.append(transform(images))
            del images
        if ready:
            parts.append(torch.stack([torch.as_tensor(t) for _, t in ready]).to(device))
            order += [i for i, _ in ready]
        yield order, (torch.cat(parts) if parts else None), failed


def extract(encoder, image_set: ImageSet, *, cache_dir, hashes=None, batch_size: int | None = None,
            num_workers: int | None = None, chunk_size: int = CHUNK_ROWS, progress: bool = True,
            normalize: bool = False, decode: str = "auto", share: bool = True) -> Features:
    """Embed every image of ``image_set`` with ``encoder``, from the cache where possible.

    Identical files (same bytes) are embedded once. ``normalize`` L2-normalises the rows of ``X``
    (the cache always holds the raw embeddings). ``decode``: ``auto`` (the fast JPEG path on a GPU,
    PIL on a CPU), ``fast`` or ``pil`` (see ``creepscan.decode``). ``num_workers``: None chooses (on a
    CPU, PIL in this process's threads between the model's batches; otherwise worker processes), 0
    decodes here one image at a time, N uses N worker processes. ``share``: see ``extract_many``.
    """
    return extract_many([encoder], image_set, cache_dir=cache_dir, hashes=hashes, batch_size=batch_size,
                        num_workers=num_workers, chunk_size=chunk_size, progress=progress, normalize=normalize,
                        decode=decode, share=share)[0]


def extract_many(encoders, image_set: ImageSet, *, cache_dir, hashes=None, batch_size: int | None = None,
                 num_workers: int | None = None, chunk_size: int = CHUNK_ROWS, progress: bool = True,
                 normalize: bool = False, decode: str = "auto", share: bool = True) -> list[Features]:
    """``extract`` for several encoders over the same images. Encoders with the same preprocessing
    (an open_clip model and its random-init floor) share one decoding pass: each image is decoded
    and preprocessed once and every encoder that lacks it embeds the same batch.

    ``share`` (default) coordinates with other processes using the same cache (see the module
    docstring): an image another process is embedding is waited for, not embedded again; False
    embeds everything missing here. Raises ``CreepscanError`` before any work if something must be
    embedded and ``cache_dir`` is not writable."""
    t0 = time.perf_counter()
    if hashes is None:
        hashes = content_hashes(image_set.paths)
    transforms = [choose_decode(decode, enc.preprocess, _device(enc)) for enc in encoders]
    tags = [_decode_tag(t, _device(enc)) for t, enc in zip(transforms, encoders)]
    caches = [EmbeddingCache(Path(cache_dir), encoder_cache_key(enc, tag), share=share)
              for enc, tag in zip(encoders, tags)]
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
            group = (getattr(enc, "preprocess_id", "") or f"#{i}", tags[i], str(_device(enc)))
            groups.setdefault(group, []).append(i)
    if groups:
        check_cache_writable(cache_dir)  # before any embedding, not at the first chunk write
    embedded = [0] * len(encoders)
    for members in groups.values():
        _embed_shared(encoders, caches, todos, members, embedded, transforms, batch_size=batch_size,
                      num_workers=num_workers, chunk_size=chunk_size, progress=progress)
    seconds = round(time.perf_counter() - t0, 3)
    return [_assemble(image_set, hashes, cache, n_done, n_cached + len(todo) - n_done, normalize, seconds)
            for cache, todo, n_done, n_cached in zip(caches, todos, embedded, hits)]


def _embed_shared(encoders, caches, todos, members, embedded, transforms, *, batch_size, num_workers,
                  chunk_size, progress) -> None:
    """Embed the ``todos`` of the encoders ``members`` (one decoding group) together with any other
    process working on the same cache: claim what nobody claimed, embed it, wait for the claims of
    the others, and repeat until every image is cached (a dead owner's images come back as free).
    Adds to ``embedded[i]`` the images this process embedded for encoder ``i``."""
    remaining = {i: list(todos[i]) for i in members}
    while remaining:
        claimed: dict[int, dict[str, Path]] = {}
        waits: list[Claim] = []
        try:
            for i, wanted in remaining.items():
                mine, others = caches[i].claim(wanted, chunk_size)
                waits += others
                if mine:
                    claimed[i] = {d: todos[i][d] for d in mine}
            if claimed:
                lead = next(iter(claimed))
                merged = {d: p for todo in claimed.values() for d, p in todo.items()}
                _embed_missing([(encoders[i], caches[i], todo) for i, todo in claimed.items()], merged,
                               batch_size=batch_size, num_workers=num_workers, chunk_size=chunk_size,
                               progress=progress, transform=transforms[lead])
                for i, todo in claimed.items():
                    embedded[i] += len(todo)
        finally:
            for i in remaining:
                caches[i].release_claims()  # after a failure too: other processes take the rest over
        try:
            wait_for(waits, progress)
        finally:
            for c in waits:
                c.close()
        for i in list(remaining):
            caches[i].refresh()
            remaining[i] = [d for d in remaining[i] if caches[i].get(d) is None]
            if not remaining[i]:
                del remaining[i]


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
            self.cache.put_rows(self.hashes, self.rows, self.reasons, self.dim)
        self.hashes, self.rows, self.reasons = [], [], []


def _device(encoder) -> torch.device:
    return torch.device(getattr(encoder, "device", None) or "cpu")


def _usable_cpus() -> int:
    from .cpu import usable_cpus

    return max(1, len(usable_cpus()))


def _workers(n_paths: int, batch_size: int, device: torch.device) -> int:
    """Decoding worker processes, from the CPUs this process may use (its affinity mask, not the
    machine's core count): none for a few batches; feeding a GPU, one per CPU up to 16; on a CPU
    (only for a plug-in whose preprocess cannot be split, see ``split_preprocess``) two (one where
    there is one CPU), or one per four CPUs up to 8 on larger machines, because there the model
    needs the cores and more workers only take them from torch's threads."""
    if n_paths < 4 * batch_size:
        return 0
    cpus = _usable_cpus()
    return min(16, cpus) if device.type == "cuda" else max(min(2, cpus), min(8, cpus // 4))


def _decode_threads(encoder, transform, num_workers) -> int:
    """Threads for the turn-taking CPU path (``_threaded_batches``), or 0 where another path runs:
    a GPU, the fast path, a preprocess that cannot be split, or worker processes asked for."""
    if transform is not None or num_workers is not None or _device(encoder).type != "cpu":
        return 0
    if split_preprocess(getattr(encoder, "preprocess", None)) is None:
        return 0
    return max(1, min(torch.get_num_threads(), _usable_cpus()))


def decode_plan(encoder, decode: str = "auto", num_workers: int | None = None) -> str:
    """How ``extract`` will decode images for ``encoder`` (reported with the run's timings)."""
    preprocess = getattr(encoder, "preprocess", None)
    transform = choose_decode(decode, preprocess, _device(encoder))
    if transform is not None:
        return (f"fast: batched JPEG decode and tensor transform on {_device(encoder).type}, "
                "files read by worker processes")
    threads = _decode_threads(encoder, transform, num_workers)
    if threads:
        return f"pil: {threads} thread{'s' * (threads != 1)} in this process, taking turns with the model"
    if num_workers == 0:
        return "pil: in this process, one image at a time"
    return "pil: worker processes beside the model"


def _embed_missing(targets, todo: dict[str, Path], *, batch_size, num_workers, chunk_size, progress,
                   transform=None) -> None:
    """Decode ``todo`` once; each (encoder, cache, its own todo) embeds the images it lacks.
    ``transform`` (a ``decode.TensorTransform``) selects the fast JPEG path on the lead's device."""
    digests = list(todo)
    paths = [todo[d] for d in digests]
    lead = targets[0][0]
    device = _device(lead)
    batch_size = batch_size or min(getattr(enc, "batch_size", None) or 64 for enc, _, _ in targets)
    threads = _decode_threads(lead, transform, num_workers)
    if not threads and num_workers is None:
        num_workers = _workers(len(paths), batch_size, device)
    if threads:
        loader = _threaded_batches(paths, split_preprocess(lead.preprocess), batch_size, threads)
    elif transform is None:
        loader = DataLoader(
            _Decode(paths, lead.preprocess), batch_size=batch_size, shuffle=False, num_workers=num_workers,
            collate_fn=_collate, pin_memory=device.type == "cuda" and torch.cuda.is_available(),
        )
    else:
        loader = _fast_batches(
            DataLoader(_ReadJpeg(paths, lead.preprocess), batch_size=batch_size, shuffle=False,
                       num_workers=num_workers, collate_fn=_collate_raw),
            paths, transform, lead.preprocess, device)
    pending = [_Pending(*t) for t in targets]
    names = " + ".join(enc.name for enc, _, _ in targets)
    with progress_bar(len(paths), f"embedding with {names}", progress) as bar:
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
