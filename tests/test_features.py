"""The embedding cache: hits, partial re-embedding, resume after interruption, skips."""
import numpy as np
import pytest
from conftest import make_folder
from PIL import Image

from creepscan.cache import EmbeddingCache, encoder_cache_key
from creepscan.data import load_image_set
from creepscan.encoders.plugin import PixelEncoder
from creepscan.features import extract


class Counting(PixelEncoder):
    """Pixel encoder that counts images it is asked to embed and can fail after N batches."""

    def __init__(self, fail_after=None):
        self.calls = 0
        self.images = 0
        self.fail_after = fail_after

    def encode_images(self, batch):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.images += len(batch)
        return super().encode_images(batch)


@pytest.fixture
def dataset(tmp_path):
    root = make_folder(tmp_path / "d", n_classes=3, per_class=6)
    (root / "c0" / "zero.jpg").write_bytes(b"")
    (root / "c1" / "text.png").write_text("hello")
    return load_image_set(root)


def test_second_run_does_not_call_the_encoder(dataset, cache_dir):
    enc = Counting()
    first = extract(enc, dataset, cache_dir=cache_dir, num_workers=0, batch_size=4)
    assert enc.images == 18 and first.stats["n_embedded"] == 20
    assert sorted(s["reason"].split(" ")[0] for s in first.skipped) == ["empty", "not"]
    again = Counting()
    second = extract(again, dataset, cache_dir=cache_dir, num_workers=0)
    assert again.calls == 0 and second.stats["n_cache_hits"] == 20
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.keep, second.keep)
    assert second.skipped == first.skipped


def test_changed_image_is_the_only_one_reembedded(dataset, cache_dir):
    extract(Counting(), dataset, cache_dir=cache_dir, num_workers=0)
    Image.new("RGB", (40, 40), (5, 250, 5)).save(dataset.paths[3], format="PNG")
    enc = Counting()
    out = extract(enc, dataset, cache_dir=cache_dir, num_workers=0)
    assert enc.images == 1 and out.stats["n_embedded"] == 1


def test_interrupted_run_resumes_from_finished_chunks(dataset, cache_dir):
    with pytest.raises(KeyboardInterrupt):
        extract(Counting(fail_after=2), dataset, cache_dir=cache_dir, num_workers=0, batch_size=4, chunk_size=4)
    cache = EmbeddingCache(cache_dir, encoder_cache_key(PixelEncoder()))
    chunks = list(cache.dir.glob("*.npz"))
    assert chunks and not list(cache.dir.glob(".tmp-*"))
    enc = Counting()
    resumed = extract(enc, dataset, cache_dir=cache_dir, num_workers=0, batch_size=4)
    assert 0 < enc.images < 18
    fresh = extract(Counting(), dataset, cache_dir=cache_dir / "other", num_workers=0)
    np.testing.assert_array_equal(resumed.X, fresh.X)


def test_corrupt_chunk_is_ignored_and_rebuilt(dataset, cache_dir):
    extract(Counting(), dataset, cache_dir=cache_dir, num_workers=0)
    cache = EmbeddingCache(cache_dir, encoder_cache_key(PixelEncoder()))
    for chunk in cache.dir.glob("*.npz"):
        chunk.write_bytes(b"garbage")
    enc = Counting()
    extract(enc, dataset, cache_dir=cache_dir, num_workers=0)
    assert enc.images == 18


def test_workers_give_the_same_embeddings_and_normalisation(dataset, tmp_path):
    a = extract(PixelEncoder(), dataset, cache_dir=tmp_path / "c1", num_workers=0, batch_size=5)
    b = extract(PixelEncoder(), dataset, cache_dir=tmp_path / "c2", num_workers=2, batch_size=3, normalize=True)
    np.testing.assert_allclose(a.X / np.linalg.norm(a.X, axis=1, keepdims=True), b.X, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(b.X, axis=1), 1.0, rtol=1e-5)


def test_duplicate_files_are_embedded_once(tmp_path, cache_dir):
    root = make_folder(tmp_path / "d", n_classes=2, per_class=2)
    src = sorted(root.rglob("*.png"))[0]
    (root / "c1" / "copy.png").write_bytes(src.read_bytes())
    enc = Counting()
    out = extract(enc, load_image_set(root), cache_dir=cache_dir, num_workers=0)
    assert enc.images == 4 and len(out.X) == 5


def test_encoders_with_the_same_preprocessing_share_one_decoding_pass(dataset, cache_dir):
    from creepscan.features import extract_many

    class Twin(Counting):
        fingerprint = "pixels-twin"

        def encode_images(self, batch):
            return -super().encode_images(batch)

    decoded = []
    model, twin = Counting(), Twin()
    original = PixelEncoder.preprocess

    def counting_preprocess(self, img):
        decoded.append(1)
        return original(self, img)

    PixelEncoder.preprocess = counting_preprocess
    try:
        a, b = extract_many([model, twin], dataset, cache_dir=cache_dir, num_workers=0, batch_size=4)
    finally:
        PixelEncoder.preprocess = original
    assert len(decoded) == 18 and model.images == 18 and twin.images == 18
    np.testing.assert_array_equal(a.X, -b.X)
    single = extract(Twin(), dataset, cache_dir=cache_dir / "solo", num_workers=0)
    np.testing.assert_array_equal(single.X, b.X)


def test_claims_split_the_missing_images_and_are_released_as_chunks_are_written(cache_dir):
    """Two cache objects on one folder stand in for two processes (flocks on separate opens conflict)."""
    from creepscan.cache import wait_for

    digests = [f"{i:064x}" for i in range(5)]
    first, second = EmbeddingCache(cache_dir, "k"), EmbeddingCache(cache_dir, "k")
    mine, others = first.claim(digests, 2)
    assert mine == digests and others == [] and len(list(first.claims_dir.glob("*.claim"))) == 3
    mine2, others2 = second.claim(digests + ["f" * 64], 2)
    assert mine2 == ["f" * 64] and set().union(*(c.hashes for c in others2)) == set(digests)
    second.release_claims()
    first.put_chunk(digests[:2], np.ones((2, 3), np.float32), ["", ""])
    assert len(list(first.claims_dir.glob("*.claim"))) == 2  # the written chunk's claim is gone
    first.release_claims()  # as a failed run does: the rest is free again
    wait_for(others2)  # returns at once: every claim waited on is released
    mine3, others3 = second.claim(digests, 2)
    assert mine3 == digests[2:] and others3 == []
    np.testing.assert_array_equal(second.get(digests[0])[0], np.ones(3, np.float32))
    second.release_claims()
    assert not list(first.claims_dir.glob("*.claim"))
