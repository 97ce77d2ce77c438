"""The content-addressed on-disk embedding cache, and the claims by which processes share its work.

Cache layout: ``CACHE/embeddings/<encoder key>/<chunk>.npz``. The encoder key hashes the encoder's
fingerprint and preprocessing; each chunk holds the sha256 of each image file's bytes, its
embedding, and a reason where the file could not be decoded. So a rerun over the same files never
calls the encoder (nor decodes an image), a changed file is re-embedded alone (its hash is new), and
a run stopped half-way leaves only whole chunks behind (each is written to a temporary file and
renamed into place), which the next run reuses.

Processes sharing one cache share the work. Before embedding, a process claims the images it lacks
under ``CACHE/embeddings/<key>/claims/``: one file per chunk's worth of content hashes, on which it
holds an exclusive ``fcntl.flock`` while it embeds them, and removes once they are written. Another
process that lacks the same images embeds only what nobody has claimed, then blocks on the claims
of the others and reuses the chunks they write. The kernel drops the flock of a process that exits
in any way (``kill -9`` included), so a claim whose flock can be taken is stale: its images that
are still missing are claimed and embedded again, without any timeout. Claims are scanned and made
under a short exclusive flock on ``.claims.lock`` so that two processes never claim the same image.
A temporary chunk file torn by ``kill -9`` is never read (only ``*.npz`` is) and is removed by the
next process that claims work. Where flock is unavailable (a filesystem without it, or no
``fcntl``) each process embeds what it lacks, as if alone.
"""
from __future__ import annotations

import errno
import hashlib
import os
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: no claims, every process embeds what it lacks
    fcntl = None

from .errors import CreepscanError

__all__ = ["FORMAT_VERSION", "CHUNK_ROWS", "default_cache_dir", "check_cache_writable", "encoder_cache_key",
           "EmbeddingCache", "Claim", "wait_for", "progress_bar"]

FORMAT_VERSION = "1"
CHUNK_ROWS = 2048  # rows per chunk file, whichever engine writes them


def default_cache_dir() -> Path:
    env = os.environ.get("CREEPSCAN_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "creepscan"


def check_cache_writable(path) -> Path:
    """Raise ``CreepscanError`` (one line, naming the fix) unless ``path`` can hold the cache: it is
    created if missing, and a file is created and removed in it. Returns ``path`` as a Path. Meant to
    run before any work, so that a read-only cache fails at once instead of after embedding."""
    path = Path(path).expanduser()
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".creepscan-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CreepscanError(f"--cache-dir {path} is not writable: {reason}; choose another with --cache-dir "
                             f"or set CREEPSCAN_CACHE") from None
    return path


def encoder_cache_key(encoder, decode_tag: str = "") -> str:
    """Weights, preprocessing and precision; ``decode_tag`` names a non-reference image path (the
    fast path's pixels differ from PIL's by a level or two, so its embeddings are kept apart)."""
    ident = (f"{FORMAT_VERSION}\n{encoder.fingerprint}\n{getattr(encoder, 'preprocess_id', '')}"
             f"\n{getattr(encoder, 'precision', '')}")
    if decode_tag:
        ident += f"\ndecode={decode_tag}"
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


class EmbeddingCache:
    """The chunks of one encoder key, and this process's claims on images it is embedding into them.

    ``share`` False skips the claims: the process embeds everything it lacks, as if alone."""

    def __init__(self, cache_dir: Path, key: str, *, share: bool = True):
        self.dir = Path(cache_dir) / "embeddings" / key
        self.claims_dir = self.dir / "claims"
        self.claims_lock = self.dir / ".claims.lock"
        self.share = share and fcntl is not None
        self._rows: dict[str, tuple[np.ndarray | None, str]] = {}
        self._seen: set[tuple] = set()  # (name, mtime_ns, size) of each chunk file already read
        self._loaded = False
        self._claims: list[Claim] = []

    def _load(self) -> None:
        if not self._loaded:
            self.refresh()

    def refresh(self) -> int:
        """Read the chunks written since the last look, by this process or another; returns how many."""
        self._loaded = True
        if not self.dir.is_dir():
            return 0
        n_new = 0
        for chunk in sorted(self.dir.glob("*.npz")):
            try:
                st = chunk.stat()
            except FileNotFoundError:
                continue
            ident = (chunk.name, st.st_mtime_ns, st.st_size)
            if ident in self._seen:
                continue
            self._seen.add(ident)
            try:
                with np.load(chunk, allow_pickle=False) as z:
                    hashes, emb, reasons = z["hashes"], z["emb"], z["reason"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                continue  # an unreadable chunk is ignored; its images are embedded again
            n_new += 1
            for h, row, reason in zip(hashes.tolist(), emb, reasons.tolist()):
                self._rows[h] = (None, reason) if reason else (row, "")
        return n_new

    def get(self, digest: str):
        self._load()
        return self._rows.get(digest)

    def put_chunk(self, hashes: list[str], emb: np.ndarray, reasons: list[str]) -> None:
        """Write one chunk atomically (temporary file, then rename); release the claims it completes."""
        self.dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:24]
        final = self.dir / f"{name}.npz"
        for attempt in range(3):
            tmp = self.dir / f".tmp-{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as fh:
                    # Held while writing, so that another process cleaning up torn files leaves it alone.
                    try_flock(fh, "LOCK_EX")
                    np.savez(fh, hashes=np.asarray(hashes, dtype="U64"), emb=emb.astype(np.float32),
                             reason=np.asarray(reasons, dtype=str))
                    fh.flush()
                    os.fsync(fh.fileno())
                    os.replace(tmp, final)
                break
            except FileNotFoundError:
                # A cleaner saw the file in the instant between its creation and our flock and removed
                # it as torn: write it again.
                if attempt == 2:
                    raise
            finally:
                if tmp.exists():
                    tmp.unlink()
        try:
            st = final.stat()
            self._seen.add((final.name, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            pass
        for h, row, reason in zip(hashes, emb, reasons):
            self._rows[h] = (None, reason) if reason else (row, "")
        self._release_written(hashes)

    def put_rows(self, hashes: list[str], rows: list, reasons: list[str], dim: int | None = None) -> None:
        """Write rows as one chunk: each float32 [dim], or None for an image that failed (its reason
        says why), stored as a zero placeholder of width ``dim`` (1 when every row failed: reruns then
        skip decoding them without knowing the width)."""
        d = dim or 1
        emb = np.stack([r if r is not None else np.zeros(d, np.float32) for r in rows])
        self.put_chunk(list(hashes), emb, list(reasons))

    # -- claims ---------------------------------------------------------------------------------

    def claim(self, digests: list[str], size: int) -> tuple[list[str], list["Claim"]]:
        """Of ``digests`` (images this process wants), claim those neither cached nor claimed by a
        live process, in groups of ``size`` (each released once its rows are written).

        Returns (mine, others): ``mine`` the digests this process must embed now, in the order
        given; ``others`` the live claims of other processes on the rest, to wait for (``wait_for``).
        Stale claims (their owner exited) are removed here, so their images come back as ``mine``.
        """
        if not self.share:
            self.refresh()
            return [d for d in digests if d not in self._rows], []
        try:
            self.claims_dir.mkdir(parents=True, exist_ok=True)
            mutex = open(self.claims_lock, "a+b")  # append: opening must not truncate a lock in use
        except OSError:
            self.share = False
            return self.claim(digests, size)
        try:
            try:
                fcntl.flock(mutex, fcntl.LOCK_EX)
            except OSError:  # this filesystem has no flock: work alone
                self.share = False
                return self.claim(digests, size)
            self._remove_torn_temps()
            others = self._live_claims()
            # After the scan: an owner writes its rows before it releases its claim, so whatever a
            # claim seen as finished covered is in the chunks read now.
            self.refresh()
            missing = [d for d in digests if d not in self._rows]
            busy = set().union(*(c.hashes for c in others)) if others else set()
            mine = [d for d in missing if d not in busy]
            wanted = set(missing)
            waits = []
            for c in others:
                if c.hashes & wanted:
                    c.hashes &= wanted
                    waits.append(c)
                else:
                    c.close()
            for start in range(0, len(mine), max(1, size)):
                self._claims.append(Claim.create(self.claims_dir, mine[start:start + size]))
            return mine, waits
        finally:
            mutex.close()  # closing drops the flock

    def _live_claims(self) -> list["Claim"]:
        """Claims whose owner still holds its flock; stale ones are removed."""
        live = []
        for path in sorted(self.claims_dir.glob("*.claim")):
            try:
                fh = open(path, "rb")
            except FileNotFoundError:
                continue  # released while we looked
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                live.append(Claim(path, fh, set(fh.read().decode().split()), owned=False))
                continue
            except OSError:
                pass
            path.unlink(missing_ok=True)
            fh.close()
        return live

    def _remove_torn_temps(self) -> None:
        """Delete temporary chunk files nobody is writing (left by a process killed mid-write)."""
        for tmp in self.dir.glob(".tmp-*"):
            try:
                with open(tmp, "rb") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    tmp.unlink(missing_ok=True)
            except OSError:
                continue  # being written (flock held), or gone already

    def _release_written(self, hashes) -> None:
        if not self._claims:
            return
        written = set(hashes)
        for c in list(self._claims):
            c.hashes -= written
            if not c.hashes:
                c.release()
                self._claims.remove(c)

    def release_claims(self) -> None:
        """Give up every claim this process holds (done, or failed: others take the rest over)."""
        for c in self._claims:
            c.release()
        self._claims = []


class Claim:
    """A claim file: the content hashes one process is embedding, under its exclusive flock."""

    def __init__(self, path: Path, fh, hashes: set[str], owned: bool):
        self.path, self.fh, self.hashes, self.owned = path, fh, hashes, owned

    @classmethod
    def create(cls, claims_dir: Path, digests: list[str]) -> "Claim":
        path = claims_dir / f"{uuid.uuid4().hex}.claim"
        fh = open(path, "w+b")
        # Locked before the claims mutex is released, so no scanner can see it unlocked.
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write("\n".join(digests).encode())
        fh.flush()
        return cls(path, fh, set(digests), owned=True)

    def release(self) -> None:
        # Removed before the flock drops: a waiter that wakes up finds it gone, not stale.
        if self.owned:
            self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()


def try_flock(fh, op: str) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(fh, getattr(fcntl, op))
    except OSError:
        pass  # no flock here: the file is only protected by its temporary name


def wait_for(claims: list[Claim], progress: bool = False) -> None:
    """Block until each of ``claims`` (other processes' live claims) is released or its owner
    exits; the caller then re-reads the cache and claims what is still missing."""
    if not claims:
        return
    total = sum(len(c.hashes) for c in claims)
    try:
        with progress_bar(total, "waiting for another process embedding into this cache", progress) as bar:
            for c in claims:
                try:
                    fcntl.flock(c.fh, fcntl.LOCK_SH)
                except OSError:
                    pass
                c.close()
                bar.update(len(c.hashes))
    finally:
        for c in claims:
            c.close()


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr counting images, shown only when ``enabled`` and stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False,
                disable=not enabled or not sys.stderr.isatty() or total == 0)
