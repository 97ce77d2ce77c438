"""Two processes on one embedding cache: the work is shared, and kill -9 of either corrupts nothing.

The processes are real (forked), each running ``extract`` with a pixel encoder that logs every call
to a file and, on request, stalls after a few batches until the test lets it go: that pins down
"in the middle" without timing races.
"""
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_folder

from creepscan import cache as cache_mod
from creepscan import features as features_mod
from creepscan.cache import EmbeddingCache, check_cache_writable, encoder_cache_key
from creepscan.data import load_image_set
from creepscan.encoders.plugin import PixelEncoder
from creepscan.errors import CreepscanError
from creepscan.features import extract

BATCH, CHUNK = 2, 4
N_FULL, N_HALF = 24, 12

fcntl = pytest.importorskip("fcntl", reason="claims need flock")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the sharing protocol is tested with forked processes")


class Logged(PixelEncoder):
    """Appends the size of each batch it embeds to ``log``; from call ``stall_after`` on, waits for
    the file ``go`` to exist first."""

    def __init__(self, log: Path, stall_after=None, go: Path | None = None):
        self.log, self.stall_after, self.go = log, stall_after, go
        self.calls = 0

    def encode_images(self, batch):
        if self.stall_after is not None and self.calls >= self.stall_after:
            while not self.go.exists():
                time.sleep(0.01)
        self.calls += 1
        with open(self.log, "a") as fh:
            fh.write(f"{len(batch)}\n")
        return super().encode_images(batch)


def _child(root, cache_dir, out, log, stall_after, go):
    import torch

    torch.set_num_threads(1)  # a forked child must not rely on the parent's thread pool
    feats = extract(Logged(Path(log), stall_after, Path(go) if go else None), load_image_set(root),
                    cache_dir=cache_dir, num_workers=0, batch_size=BATCH, chunk_size=CHUNK, progress=False)
    np.savez(out, X=feats.X, keep=feats.keep, n_embedded=feats.stats["n_embedded"],
             n_cache_hits=feats.stats["n_cache_hits"])


class Run:
    """One extraction in a forked process, with its call log and result file under ``work``."""

    def __init__(self, work: Path, name: str, root: Path, cache_dir: Path, stall_after=None):
        self.log, self.out, self.go = work / f"{name}.log", work / f"{name}.npz", work / f"{name}.go"
        ctx = multiprocessing.get_context("fork")
        self.proc = ctx.Process(target=_child, args=(str(root), str(cache_dir), str(self.out), str(self.log),
                                                     stall_after, str(self.go)))
        self.proc.start()

    def images(self) -> int:
        """Images this process has passed to its encoder so far."""
        return sum(int(x) for x in self.log.read_text().split()) if self.log.exists() else 0

    def release(self):
        self.go.touch()

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(10)

    def result(self) -> dict:
        self.proc.join(60)
        assert self.proc.exitcode == 0, f"child exited with {self.proc.exitcode}"
        with np.load(self.out) as z:
            return {k: z[k] for k in z.files}


def _blocked_on_flock(pid: int) -> bool:
    """Whether process ``pid`` is waiting for a flock (Linux lists waiters as '->' in /proc/locks);
    elsewhere, a pause stands in."""
    if not Path("/proc/locks").exists():
        time.sleep(0.5)
        return True
    return any("->" in line and f" {pid} " in line for line in Path("/proc/locks").read_text().splitlines())


def _until(condition, what, limit=30.0):
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def folders(tmp_path):
    """``full``: 24 images; ``half``: byte-identical copies of 12 of them (same content hashes)."""
    full = make_folder(tmp_path / "full", n_classes=3, per_class=N_FULL // 3)
    half = tmp_path / "half"
    for path in sorted(full.rglob("*.png"))[:N_HALF]:
        (half / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, half / path.parent.name / path.name)
    return full, half


def _cache(cache_dir) -> EmbeddingCache:
    return EmbeddingCache(cache_dir, encoder_cache_key(PixelEncoder()))


def _chunk_hashes(cache_dir) -> list[set[str]]:
    """The hashes in each chunk on disk; fails if any chunk does not load."""
    chunks = []
    for chunk in sorted(_cache(cache_dir).dir.glob("*.npz")):
        with np.load(chunk, allow_pickle=False) as z:
            assert len(z["hashes"]) == len(z["emb"]) == len(z["reason"])
            chunks.append(set(z["hashes"].tolist()))
    return chunks


def _reference(root, tmp_path):
    """A solo run on its own cache. Run before forking: it also pays the lazy imports (torchvision)
    once in the parent, instead of seconds in each child."""
    return extract(PixelEncoder(), load_image_set(root), cache_dir=tmp_path / "solo-cache", num_workers=0,
                   progress=False)


def test_two_processes_embed_each_image_once_and_agree(folders, tmp_path, cache_dir):
    full, half = folders
    solo, solo_half = _reference(full, tmp_path), _reference(half, tmp_path)
    # A stalls after two batches; B (a superset of A's images) embeds the half nobody claimed, then
    # must wait for A's claimed half rather than embed it again.
    a = Run(tmp_path, "a", half, cache_dir, stall_after=2)
    _until(lambda: a.images() == 2 * BATCH, "A's first batches")
    b = Run(tmp_path, "b", full, cache_dir)
    _until(lambda: b.images() == N_FULL - N_HALF, "B embedding the images A did not claim")
    _until(lambda: _blocked_on_flock(b.proc.pid), "B waiting on A's claims")
    assert b.proc.is_alive() and b.images() == N_FULL - N_HALF
    a.release()
    ra, rb = a.result(), b.result()
    assert (int(ra["n_embedded"]), int(rb["n_embedded"])) == (N_HALF, N_FULL - N_HALF)
    assert int(rb["n_cache_hits"]) == N_HALF
    assert a.images() + b.images() == N_FULL  # every image reached an encoder exactly once
    np.testing.assert_array_equal(rb["X"], solo.X)
    np.testing.assert_array_equal(rb["keep"], solo.keep)
    np.testing.assert_array_equal(ra["X"], solo_half.X)
    chunks = _chunk_hashes(cache_dir)
    assert sum(map(len, chunks)) == len(set().union(*chunks)) == N_FULL  # no image written twice
    assert not list(_cache(cache_dir).claims_dir.glob("*.claim"))


def test_kill_9_of_the_first_the_second_reembeds_only_what_was_not_written(folders, tmp_path, cache_dir):
    full, half = folders
    solo_half = _reference(half, tmp_path)
    a = Run(tmp_path, "a", full, cache_dir, stall_after=4)  # claims all 24, writes 2 chunks of 4, stalls
    _until(lambda: len(_chunk_hashes(cache_dir)) == 2 and a.images() == 4 * BATCH, "A's first two chunks")
    b = Run(tmp_path, "b", half, cache_dir)  # needs 12 of A's images, 8 of them already written
    lock = open(_cache(cache_dir).claims_lock, "a+b")
    try:
        _until(lambda: _blocked_on_flock(b.proc.pid), "B waiting on A's claims")
        # Holding the claims lock keeps B from reclaiming while the chunks A left are counted.
        fcntl.flock(lock, fcntl.LOCK_EX)
        a.kill()
        assert a.proc.exitcode == -signal.SIGKILL
        (_cache(cache_dir).dir / ".tmp-torn").write_bytes(b"PK\x03\x04 half a chunk")  # as a kill mid-write leaves
        written = set().union(*_chunk_hashes(cache_dir))
    finally:
        lock.close()
    rb = b.result()
    half_hashes = set(features_mod.content_hashes(load_image_set(half).paths))
    assert 0 < len(written & half_hashes) < N_HALF
    assert int(rb["n_embedded"]) == b.images() == len(half_hashes - written)
    assert int(rb["n_cache_hits"]) == len(half_hashes & written)
    np.testing.assert_array_equal(rb["X"], solo_half.X)
    assert not list(_cache(cache_dir).dir.glob(".tmp-*"))  # the torn file was removed, never read
    assert half_hashes <= set().union(*_chunk_hashes(cache_dir))  # and every chunk loads


def test_kill_9_of_the_second_leaves_the_first_unaffected(folders, tmp_path, cache_dir):
    full, half = folders
    solo_half = _reference(half, tmp_path)
    a = Run(tmp_path, "a", half, cache_dir, stall_after=2)
    _until(lambda: a.images() == 2 * BATCH, "A's first batches")
    b = Run(tmp_path, "b", full, cache_dir)
    _until(lambda: b.images() >= BATCH, "B embedding")
    b.kill()
    assert b.proc.exitcode == -signal.SIGKILL
    a.release()
    ra = a.result()
    assert int(ra["n_embedded"]) == a.images() == N_HALF
    np.testing.assert_array_equal(ra["X"], solo_half.X)
    _chunk_hashes(cache_dir)  # every chunk on disk loads
    # A later run reuses what both wrote and embeds only the rest: B's stale claim is taken over.
    again = Run(tmp_path, "c", full, cache_dir)
    rc = again.result()
    assert int(rc["n_embedded"]) == again.images() < N_FULL
    assert int(rc["n_embedded"]) + int(rc["n_cache_hits"]) == N_FULL
    assert not list(_cache(cache_dir).claims_dir.glob("*.claim"))


def test_without_flock_each_process_embeds_alone(folders, cache_dir, monkeypatch):
    full, _ = folders

    class NoFlock:
        LOCK_EX, LOCK_SH, LOCK_NB = 2, 1, 4

        @staticmethod
        def flock(fh, op):
            raise OSError(37, "No locks available")

    monkeypatch.setattr(cache_mod, "fcntl", NoFlock)
    out = extract(PixelEncoder(), load_image_set(full), cache_dir=cache_dir, num_workers=0, progress=False)
    assert out.stats["n_embedded"] == N_FULL and len(out.X) == N_FULL
    assert not list(_cache(cache_dir).claims_dir.glob("*.claim"))


def test_unwritable_cache_is_one_line_before_any_work(tmp_path, folders):
    full, _ = folders
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for bad in (blocker, blocker / "cache"):
        with pytest.raises(CreepscanError) as err:
            check_cache_writable(bad)
        msg = str(err.value)
        assert msg.startswith(f"--cache-dir {bad} is not writable: ") and "\n" not in msg
        assert msg.endswith("choose another with --cache-dir or set CREEPSCAN_CACHE")
    enc = Logged(tmp_path / "never.log")
    with pytest.raises(CreepscanError):
        extract(enc, load_image_set(full), cache_dir=blocker / "cache", num_workers=0, progress=False)
    assert enc.calls == 0
    assert check_cache_writable(tmp_path / "new" / "cache").is_dir()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_cache_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(CreepscanError, match="Permission denied"):
            check_cache_writable(ro)
    finally:
        ro.chmod(0o700)
