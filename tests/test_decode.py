"""The fast image path (creepscan.decode) against the reference PIL path.

Tolerances stated here, measured on these images: after open_clip's transform, pixels differ from
the PIL path by at most a few levels of 255 and on average by well under one level; embeddings
agree to cosine > 0.999 per image. On a GPU the same code decodes with nvjpeg (run by
benchmarks/extract.py --device cuda, which checks the same cosine bound)."""
from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

from creepscan import decode
from creepscan.data import load_image_set
from creepscan.encoders import resolve_encoder
from creepscan.features import extract

pytest.importorskip("torchvision.io")


def _photo(w, h, seed=0, mode="RGB"):
    """Smooth structure plus sensor-like noise: what resizing filters are sensitive to."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([np.sin(xx / (9 + c + seed) + c) * np.cos(yy / (13 - c) - c) for c in range(3)], -1) * 100 + 128
    a += rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(a.clip(0, 255).astype(np.uint8)).convert(mode)


def _jpeg_bytes(img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def _preprocess(arch):
    """open_clip's evaluation transform for ``arch`` (built once: it comes with a whole random-init model)."""
    from creepscan.encoders.openclip import _open_clip

    return _open_clip().create_model_and_transforms(arch, pretrained=None)[2]


def test_recognises_open_clip_eval_transform_and_nothing_else():
    from torchvision import transforms as T

    pre = _preprocess("ViT-B-32")
    t = decode.TensorTransform.from_preprocess(pre)
    assert t is not None and t.size == 224 and t.crop == (224, 224)
    assert t.mean == tuple(float(m) for m in pre.transforms[-1].mean)
    squash = T.Compose([T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC), *pre.transforms[1:]])
    bilinear = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BILINEAR), *pre.transforms[1:]])
    extra = T.Compose([*pre.transforms[:2], T.Grayscale(3), *pre.transforms[2:]])
    for other in (squash, bilinear, extra, lambda im: im, None):
        assert decode.TensorTransform.from_preprocess(other) is None


@pytest.mark.parametrize("size", [(250, 250), (640, 480), (100, 60), (224, 224), (300, 1000), (225, 224)])
def test_tensor_transform_matches_pil_pixels(size):
    """Downscale, upscale, exact and off-by-one sizes: the same crop, pixels within a few levels."""
    pre = _preprocess("ViT-B-32")
    t = decode.TensorTransform.from_preprocess(pre)
    data = _jpeg_bytes(_photo(*size))
    ref = pre(Image.open(io.BytesIO(data)).convert("RGB"))
    raw = decode.plain_jpeg_bytes_from(data)
    fast = t(decode.decode_jpegs([raw], "cpu"))[0]
    assert fast.shape == ref.shape
    std = torch.tensor(t.std).view(3, 1, 1) * 255
    levels = ((fast - ref) * std).abs()
    assert levels.mean() < 0.5 and levels.max() <= 6.0, (levels.mean(), levels.max())


@pytest.mark.parametrize("size", [(250, 250), (100, 60), (300, 1000)])
def test_the_gpus_float_resize_also_matches_pil_pixels(size):
    """On a GPU torchvision resizes uint8 images in float32, then clamps and rounds (its CPU has a
    uint8 kernel). That algorithm, run here on the CPU, is within the same tolerance."""
    import torchvision.transforms.v2.functional as F

    pre = _preprocess("ViT-B-32")
    t = decode.TensorTransform.from_preprocess(pre)
    data = _jpeg_bytes(_photo(*size))
    ref = pre(Image.open(io.BytesIO(data)).convert("RGB"))
    img = decode.decode_jpegs([decode.plain_jpeg_bytes_from(data)], "cpu")[0]
    out = F.resize(img.float()[None], [t.size], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
    out = F.center_crop(out.clamp_(0, 255).round_(), list(t.crop))[0]
    mean, std = (torch.tensor(v).view(3, 1, 1) * 255 for v in (t.mean, t.std))
    levels = ((out - mean) / std - ref).mul(std).abs()
    assert levels.mean() < 0.5 and levels.max() <= 6.0, (levels.mean(), levels.max())


def test_mixed_sizes_in_one_batch_keep_their_order():
    pre = _preprocess("ViT-B-32")
    t = decode.TensorTransform.from_preprocess(pre)
    sizes = [(250, 250), (640, 480), (250, 250), (100, 60)]
    datas = [_jpeg_bytes(_photo(*s, seed=i)) for i, s in enumerate(sizes)]
    batch = t(decode.decode_jpegs([decode.plain_jpeg_bytes_from(d) for d in datas], "cpu"))
    for row, d in zip(batch, datas):
        ref = pre(Image.open(io.BytesIO(d)).convert("RGB"))
        assert (row - ref).abs().mean() < 0.01  # its own image, not a neighbour's


def test_only_plain_jpegs_take_the_fast_path(tmp_path):
    cases = {
        "plain.jpg": _jpeg_bytes(_photo(64, 48)),
        "grey.jpg": _jpeg_bytes(_photo(64, 48, mode="L")),
        "cmyk.jpg": _jpeg_bytes(_photo(64, 48, mode="CMYK")),
        "png.jpg": b"",
        "rotated.jpg": b"",
        "truncated.jpg": _jpeg_bytes(_photo(64, 48))[:400],
        "empty.jpg": b"",
    }
    buf = io.BytesIO()
    _photo(64, 48).save(buf, "PNG")
    cases["png.jpg"] = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    cases["rotated.jpg"] = _jpeg_bytes(_photo(64, 48), exif=exif.tobytes())
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    fast = {name for name in cases if decode.plain_jpeg_bytes(tmp_path / name) is not None}
    assert fast == {"plain.jpg", "grey.jpg"}
    assert decode.plain_jpeg_bytes(tmp_path / "missing.jpg") is None


def test_choose(monkeypatch):
    pre = _preprocess("ViT-B-32")
    assert decode.choose("auto", pre, "cpu") is None  # the CPU keeps the reference path
    assert decode.choose("pil", pre, "cpu") is None
    assert decode.choose("fast", pre, "cpu") is not None
    assert decode.choose("fast", lambda im: im, "cpu") is None  # a plug-in's own preprocessing
    with pytest.raises(ValueError, match="decode mode"):
        decode.choose("nvjpeg", pre, "cpu")
    monkeypatch.setattr(decode, "_decode_jpeg", lambda: None)  # a torchvision without decode_jpeg
    assert decode.choose("fast", pre, "cpu") is None


def _awkward_folder(root):
    """Plain, greyscale and odd-sized JPEGs, plus every kind of file that must leave the fast path."""
    for label in ("a", "b"):
        d = root / label
        d.mkdir(parents=True)
        for j, size in enumerate([(250, 250), (640, 480), (100, 60), (333, 500), (250, 250)]):
            (d / f"{j}.jpg").write_bytes(_jpeg_bytes(_photo(*size, seed=j + (label == "b") * 10)))
        (d / "grey.jpg").write_bytes(_jpeg_bytes(_photo(80, 90, seed=3, mode="L")))
        (d / "cmyk.jpg").write_bytes(_jpeg_bytes(_photo(80, 90, seed=4, mode="CMYK")))
        exif = Image.Exif()
        exif[0x0112] = 6
        (d / "rotated.jpg").write_bytes(_jpeg_bytes(_photo(120, 60, seed=5), exif=exif.tobytes()))
        _photo(50, 50, seed=6).save(d / "p.png")
        (d / "truncated.jpg").write_bytes(_jpeg_bytes(_photo(200, 200, seed=7))[:1500])
        (d / "empty.jpg").write_bytes(b"")
        good = _jpeg_bytes(_photo(64, 64, seed=8))
        # starts and ends like a JPEG, garbage between: passes the cheap checks, fails to decode
        (d / "garbled.jpg").write_bytes(good[:2] + b"\x00" * 200 + good[-2:])
        # scan data cut short but properly terminated: both decoders fill in the rest, as PIL does
        sos = good.index(b"\xff\xda")
        (d / "short_scan.jpg").write_bytes(good[:sos + 300] + b"\xff\xd9")
    return root


def test_fast_extract_agrees_with_pil_and_skips_the_same_files(tiny_weights, tmp_path):
    images = load_image_set(_awkward_folder(tmp_path / "d"))
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
    ref = extract(enc, images, cache_dir=tmp_path / "c", decode="pil", num_workers=0)
    fast = extract(enc, images, cache_dir=tmp_path / "c", decode="fast", num_workers=0)
    assert fast.stats["n_embedded"] == ref.stats["n_embedded"] > 0  # separate cache entries
    assert fast.skipped == ref.skipped
    assert {s["path"].split("/")[1] for s in ref.skipped} == {"truncated.jpg", "empty.jpg", "garbled.jpg"}
    assert np.array_equal(fast.keep, ref.keep)
    cos = (fast.X * ref.X).sum(1) / np.linalg.norm(fast.X, axis=1) / np.linalg.norm(ref.X, axis=1)
    assert cos.min() > 0.999
    # files that leave the fast path get exactly the reference embedding
    names = [images.paths[i].name for i in ref.keep]
    for name in ("cmyk.jpg", "rotated.jpg", "p.png"):
        rows = [j for j, n in enumerate(names) if n == name]
        assert rows and np.array_equal(fast.X[rows], ref.X[rows])
    again = extract(enc, images, cache_dir=tmp_path / "c", decode="fast", num_workers=0)
    assert again.stats["n_embedded"] == 0 and np.array_equal(again.X, fast.X)


def test_fast_path_with_workers_matches_in_process(tiny_weights, tmp_path):
    images = load_image_set(_awkward_folder(tmp_path / "d"))
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
    a = extract(enc, images, cache_dir=tmp_path / "c1", decode="fast", num_workers=0, batch_size=4)
    b = extract(enc, images, cache_dir=tmp_path / "c2", decode="fast", num_workers=2, batch_size=4)
    assert a.skipped == b.skipped and np.array_equal(a.keep, b.keep)
    np.testing.assert_allclose(a.X, b.X, rtol=1e-5, atol=1e-6)


def test_an_image_the_batch_decoder_refuses_takes_the_reference_path(tiny_weights, tmp_path, monkeypatch):
    """nvjpeg refuses some files libjpeg/PIL accept: the batch is retried one image at a time and
    a refused image goes through PIL, so it is embedded (exactly as the reference) or skipped with
    PIL's reason, never dropped."""
    images = load_image_set(_awkward_folder(tmp_path / "d"))
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
    real = decode._decode_jpeg()
    refused = {}

    def picky(data, device):
        if isinstance(data, list):
            raise RuntimeError("batched decode failed")
        if data.numel() % 3 == 0:  # an arbitrary but fixed subset of files
            refused[data.numel()] = True
            raise RuntimeError("nvjpeg: unsupported")
        return real(data, device)

    ref = extract(enc, images, cache_dir=tmp_path / "c1", decode="pil", num_workers=0)
    monkeypatch.setattr(decode, "_decode_jpeg", lambda: picky)
    fast = extract(enc, images, cache_dir=tmp_path / "c2", decode="fast", num_workers=0)
    assert refused  # the fallback really ran
    assert fast.skipped == ref.skipped and np.array_equal(fast.keep, ref.keep)
    cos = (fast.X * ref.X).sum(1) / np.linalg.norm(fast.X, axis=1) / np.linalg.norm(ref.X, axis=1)
    assert cos.min() > 0.999
    exact = [j for j, i in enumerate(ref.keep) if images.paths[i].stat().st_size % 3 == 0]
    assert exact and np.array_equal(fast.X[exact], ref.X[exact])


def test_by_pixels_bounds_what_is_decoded_at_once():
    runs = list(decode.by_pixels(list("abcdef"), [40, 40, 30, 100, 10, 10], budget=80))
    assert runs == [["a", "b"], ["c"], ["d"], ["e", "f"]]  # an oversized item still gets its own run
    assert list(decode.by_pixels([], [], budget=1)) == []


def test_a_small_pixel_budget_changes_nothing_but_the_runs(tiny_weights, tmp_path, monkeypatch):
    images = load_image_set(_awkward_folder(tmp_path / "d"))
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
    whole = extract(enc, images, cache_dir=tmp_path / "c1", decode="fast", num_workers=0)
    calls = []
    real = decode.decode_jpegs
    monkeypatch.setattr(decode, "decode_jpegs", lambda raw, device: calls.append(len(raw)) or real(raw, device))
    monkeypatch.setattr(decode, "DECODE_PIXELS", 300_000)  # about one 640x480 photo
    runs = extract(enc, images, cache_dir=tmp_path / "c2", decode="fast", num_workers=0)
    assert len(calls) > 2 and max(calls) < sum(calls)  # really split into runs
    assert runs.skipped == whole.skipped and np.array_equal(runs.keep, whole.keep)
    np.testing.assert_allclose(runs.X, whole.X, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# The CPU's turn-taking reference path (features._threaded_batches): PIL in threads, then the model
# ------------------------------------------------------------------------------------------------

def test_cpu_default_decodes_in_threads_with_the_reference_pixels_and_reasons(tiny_weights, tmp_path):
    """On a CPU the default (no worker count given) decodes each batch in this process's threads,
    then runs the model: the same embeddings, bit for bit, and the same skips as one image at a
    time, across batch boundaries (batch 3)."""
    from creepscan.features import decode_plan

    images = load_image_set(_awkward_folder(tmp_path / "d"))
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
    assert decode_plan(enc).startswith("pil: ") and "taking turns with the model" in decode_plan(enc)
    assert "worker processes" in decode_plan(enc, num_workers=2)
    one = extract(enc, images, cache_dir=tmp_path / "c1", decode="pil", num_workers=0, batch_size=3)
    threaded = extract(enc, images, cache_dir=tmp_path / "c2", batch_size=3)
    workers = extract(enc, images, cache_dir=tmp_path / "c3", decode="pil", num_workers=2, batch_size=3)
    assert one.stats["n_embedded"] > 3 * 3  # several batches of distinct files
    for other in (threaded, workers):
        assert other.skipped == one.skipped and np.array_equal(other.keep, one.keep)
        assert np.array_equal(other.X, one.X)
    assert {s["path"].split("/")[1] for s in one.skipped} == {"truncated.jpg", "empty.jpg", "garbled.jpg"}
    # same pixels, so the same cache entries: a rerun on either path embeds nothing
    again = extract(enc, images, cache_dir=tmp_path / "c1", batch_size=3)
    assert again.stats["n_embedded"] == 0 and np.array_equal(again.X, one.X)


def test_threads_run_the_pil_steps_and_this_thread_the_tensor_steps(tmp_path):
    """The PIL steps run in the decode threads (PIL releases the GIL there); ToTensor and Normalize
    run on the calling thread, whose torch thread pool the model uses, never in a pool thread that
    would start a second one. A step that fails on one image skips that image with the reason."""
    import threading

    from torchvision import transforms as T

    from creepscan.features import extract as _extract
    from creepscan.features import split_preprocess

    seen = {"head": set(), "tail": set()}

    def head(img):
        seen["head"].add(threading.current_thread().name)
        if img.size[0] == 33:
            raise ValueError("odd width")
        return img.resize((8, 8))

    def tail(t):
        seen["tail"].add(threading.current_thread().name)
        return t

    pre = T.Compose([T.Lambda(head), T.ToTensor(), T.Lambda(tail)])
    assert [len(p) for p in split_preprocess(pre)] == [1, 2]
    assert split_preprocess(lambda im: im) is None and split_preprocess(T.Compose([T.Lambda(head)])) is None

    class Flat:
        name, fingerprint, preprocess_id, batch_size, device, preprocess = "flat", "flat-v1", "p", 4, "cpu", pre

        def encode_images(self, batch):
            return batch.flatten(1)

    d = tmp_path / "d" / "a"
    d.mkdir(parents=True)
    for i in range(9):
        _photo(33 if i == 4 else 40 + i, 30, seed=i).save(d / f"{i}.jpg")
    images = load_image_set(tmp_path / "d")
    out = _extract(Flat(), images, cache_dir=tmp_path / "c")
    assert seen["head"] and all(n.startswith("creepscan-decode") for n in seen["head"])
    assert seen["tail"] == {threading.current_thread().name}
    assert [s["path"].split("/")[1] for s in out.skipped] == ["4.jpg"]
    assert "preprocessing failed (ValueError: odd width)" in out.skipped[0]["reason"]
    assert len(out.keep) == 8 and out.X.shape == (8, 3 * 8 * 8)


def test_the_report_says_which_decode_path_ran(tiny_weights):
    from creepscan.options import Options, RunState

    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
    assert "taking turns with the model" in RunState(Options(), None).execution(enc)["decode_path"]
    assert (RunState(Options(num_workers=2), None).execution(enc)["decode_path"]
            == "pil: worker processes beside the model")
    assert RunState(Options(decode="fast"), None).execution(enc)["decode_path"].startswith("fast: ")


def test_threads_are_for_a_cpu_model_only():
    """Feeding a GPU, decoding runs beside the model in worker processes (the GPU works while the
    CPU decodes); a preprocess that is not a Compose with ToTensor cannot be split, so it keeps them."""
    from torchvision import transforms as T

    from creepscan.features import decode_plan

    class Enc:
        preprocess = T.Compose([T.Lambda(lambda im: im), T.ToTensor()])
        device = "cuda"

    assert decode_plan(Enc(), decode="pil") == "pil: worker processes beside the model"
    Enc.device = "cpu"
    assert "taking turns with the model" in decode_plan(Enc(), decode="pil")
    Enc.preprocess = staticmethod(lambda im: im)
    assert decode_plan(Enc(), decode="pil") == "pil: worker processes beside the model"
