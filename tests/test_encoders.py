"""Every MODEL form, fingerprints, and weight files that must be refused."""
import pickle
import textwrap

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

from creepscan.encoders import PixelEncoder, resolve_encoder
from creepscan.encoders.openclip import random_init
from creepscan.errors import ModelUnavailable


def _embed(enc, color=(200, 30, 30)):
    x = enc.preprocess(Image.new("RGB", (48, 40), color))
    return enc.encode_images(torch.as_tensor(x)[None])


def test_local_weights_all_formats_give_the_same_model(tiny_weights):
    encs = [resolve_encoder(TINY, weights=tiny_weights[k]) for k in ("safetensors", "state_dict", "checkpoint")]
    fps = {e.fingerprint for e in encs}
    assert len(fps) == 1 and next(iter(fps)).startswith("sha256:")
    outs = [_embed(e) for e in encs]
    assert outs[0].shape == (1, 64)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_weights_path_is_recorded_the_same_however_typed(tiny_weights, monkeypatch, tmp_path):
    """./w.safetensors, w.safetensors and the absolute path are one file: one spec in the report."""
    folder = tiny_weights["safetensors"].parent
    monkeypatch.chdir(folder.parent)
    typed = [tiny_weights["safetensors"], f"{folder.name}/tiny.safetensors",
             f"./{folder.name}/../{folder.name}/tiny.safetensors"]
    specs = {resolve_encoder(TINY, weights=str(w)).spec for w in typed}
    assert specs == {f"{TINY} --weights {folder.name}/tiny.safetensors"}
    monkeypatch.chdir(tmp_path)  # a folder beside the weights': the absolute path
    assert resolve_encoder(TINY, weights=f"{folder.parent}/{folder.name}/tiny.safetensors").spec.endswith(
        f" --weights {tiny_weights['safetensors']}")


def test_no_random_init_warning_for_floors_and_local_weights(tiny_weights, caplog):
    """open_clip warns "No pretrained weights loaded" for every model built without a tag: the floor
    (random on purpose) and a model whose local weights are loaded next. A sweep's workers printed it
    once per checkpoint."""
    import logging

    with caplog.at_level(logging.WARNING):
        enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
        assert enc.floor is not None
        random_init(TINY)
    assert not [r for r in caplog.records if "No pretrained weights" in r.getMessage()]


def test_fingerprint_is_stable_and_tracks_weights(tiny_weights):
    a = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).fingerprint
    b = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).fingerprint
    assert a == b
    assert random_init(TINY, seed=1).fingerprint != random_init(TINY, seed=2).fingerprint
    assert random_init(TINY, seed=1).fingerprint == random_init(TINY, seed=1).fingerprint


def test_floor_is_a_random_twin_with_the_same_preprocessing(tiny_weights):
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
    floor = enc.floor
    assert floor.fingerprint != enc.fingerprint
    assert floor.preprocess_id == enc.preprocess_id
    assert floor.fingerprint == resolve_encoder(TINY, weights=tiny_weights["checkpoint"]).floor.fingerprint
    assert not np.allclose(_embed(floor), _embed(enc))


def test_text_tower(tiny_weights):
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
    t = enc.encode_text(["a photo of a cat.", "a photo of a dog."])
    assert t.shape == (2, 64) and np.isfinite(t).all() and not np.allclose(t[0], t[1])


def test_mismatched_weights_name_the_first_bad_key(tmp_path, tiny_weights):
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_weights["safetensors"]))
    state["visual.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ModelUnavailable, match=r"visual\.conv1\.weight.*shape"):
        resolve_encoder(TINY, weights=tmp_path / "bad.safetensors")
    with pytest.raises(ModelUnavailable, match="does not fit ViT-B-32: .positional_embedding. has shape"):
        resolve_encoder("ViT-B-32", weights=tiny_weights["safetensors"])


def test_pickle_that_runs_code_is_refused_without_running(tmp_path):
    flag = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(flag), "w"))

    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"state_dict": Evil()}, fh)
    with pytest.raises(ModelUnavailable, match="refused to load"):
        resolve_encoder(TINY, weights=tmp_path / "evil.pt")
    assert not flag.exists()


def test_garbage_and_missing_weight_files(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ModelUnavailable, match="cannot read"):
        resolve_encoder(TINY, weights=tmp_path / "junk.safetensors")
    with pytest.raises(ModelUnavailable, match="not found"):
        resolve_encoder(TINY, weights=tmp_path / "missing.pt")


def test_offline_alias_and_tag_fail_in_one_line_pointing_at_weights():
    for spec in ("clip-vit-b32", "ViT-B-32:laion2b_s34b_b79k"):
        with pytest.raises(ModelUnavailable) as info:
            resolve_encoder(spec)
        msg = str(info.value)
        assert "\n" not in msg and "--weights" in msg
        # and what else an offline first audit will miss: the default suite's data (FER2013 by hand)
        assert "four datasets" in msg and "FER2013" in msg and "by hand" in msg


def test_hf_hub_offline_fails_clearly():
    with pytest.raises(ModelUnavailable, match="hf-hub:nobody/nothing.*--weights"):
        resolve_encoder("hf-hub:nobody/nothing")


@pytest.mark.parametrize("spec,match", [
    ("ViT-B-32:no-such-tag", "no pretrained tag 'no-such-tag'"),
    ("ViT-B-99:openai", "unknown open_clip architecture"),
    ("clip-vit-b33", "Did you mean clip-vit-b32"),
    ("ViT-B-32", "architecture without weights"),
    ("py:nomodule_xyz:build", "cannot import plug-in module"),
    ("py:nothing", "py:MODULE:CALLABLE"),
])
def test_bad_specs(spec, match):
    with pytest.raises(ModelUnavailable, match=match):
        resolve_encoder(spec)


PLUGIN = textwrap.dedent('''
    import numpy as np, torch
    class Enc:
        name = "mean-colour"
        fingerprint = "mean-colour-v1"
        def preprocess(self, img):
            return torch.tensor(np.asarray(img.resize((8, 8)), dtype=np.float32)).permute(2, 0, 1) / 255
        def encode_images(self, batch):
            return torch.as_tensor(batch).mean((2, 3))
    def build():
        return Enc()
    class NoFp(Enc):
        fingerprint = None
    def nofp():
        return NoFp()
''')


def test_plugin_by_module_and_by_path(tmp_path, monkeypatch):
    (tmp_path / "myplug.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    by_module = resolve_encoder("py:myplug:build")
    by_path = resolve_encoder(f"py:{tmp_path / 'myplug.py'}:build")
    for enc in (by_module, by_path):
        out = _embed(enc, (255, 0, 0))
        assert out.dtype == np.float32 and out.shape == (1, 3)
        np.testing.assert_allclose(out[0], [1.0, 0.0, 0.0], atol=1e-6)
        assert isinstance(enc.floor, PixelEncoder)  # no declared floor: the pixel baseline
    with pytest.raises(ModelUnavailable, match="fingerprint"):
        resolve_encoder("py:myplug:nofp")


@pytest.mark.parametrize("settings", [
    dict(precision="amp_bf16"), dict(precision="pure_bf16"), dict(precision="amp_fp16"),
    dict(precision="fp32", channels_last=True), dict(precision="pure_bf16", channels_last=True),
])
def test_fast_arithmetic_agrees_with_fp32(tiny_weights, tmp_path, settings):
    """The GPU's arithmetic choices, run here on the CPU, against the fp32 reference: cosine >
    0.999 per image, and never served from each other's cache entries."""
    from conftest import make_folder

    from creepscan.cache import encoder_cache_key
    from creepscan.data import load_image_set
    from creepscan.features import extract

    images = load_image_set(make_folder(tmp_path / "d", n_classes=3, per_class=5))
    ref = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(precision="fp32")
    fast = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(**settings)
    assert ref.precision == "fp32" and fast.precision == settings["precision"]
    if settings["precision"] != "fp32":
        assert encoder_cache_key(ref) != encoder_cache_key(fast)  # never served each other's embeddings
    a = extract(ref, images, cache_dir=tmp_path / "c1", num_workers=0, normalize=True).X
    b = extract(fast, images, cache_dir=tmp_path / "c2", num_workers=0, normalize=True).X
    cos = (a * b).sum(1)
    assert cos.min() > 0.999
    if settings["precision"] != "fp32":
        assert not np.array_equal(a, b)  # the other arithmetic really ran
    texts = ["a photo of a face", "a photo of a cat", "an old man smiling"]
    ta, tb = ref.encode_text(texts), fast.encode_text(texts)  # zero-shot's tower runs the same arithmetic
    tcos = (ta * tb).sum(1) / np.linalg.norm(ta, axis=1) / np.linalg.norm(tb, axis=1)
    assert tcos.min() > 0.999
    assert ref.fingerprint == fast.fingerprint  # same weights whatever the arithmetic
    assert fast.floor.precision == fast.precision  # the control runs the same arithmetic


def test_auto_precision_on_a_cpu_without_bf16_is_fp32_and_configure_is_refused_after_use(tiny_weights,
                                                                                       monkeypatch):
    from creepscan import cpu
    from creepscan.encoders.openclip import resolve_precision

    # a CPU without bf16 instructions, whatever this machine has (tests/test_cpu_choice.py forces the others)
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Test CPU", "flags": "avx2 fma"})
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"])
    assert enc.precision == "fp32" and not enc.channels_last
    assert enc.precision_reason.startswith("fp32: the CPU has no amx_bf16/avx512_bf16")
    enc.encode_images(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(RuntimeError, match="before its first encode"):
        enc.configure(precision="pure_bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")
    assert resolve_precision("auto", "cpu") == "auto"  # settled per machine and model by the encoder
    assert resolve_precision("amp_bf16", "cpu") == "amp_bf16"


def test_compiled_tower_agrees_and_compiles_once(tiny_weights, monkeypatch):
    """torch.compile of the image tower: same embeddings, and a short last batch is padded to the first
    batch's shape rather than compiled again. Dynamo captures the graph and guards its shapes as with the
    default backend, but the ``eager`` backend runs it instead of inductor: what creepscan decides (what
    is compiled, one input shape, no_grad) shows the same, and inductor's code generation (~30-60 s on a
    CPU, nearly all of this test's time) tests torch, not creepscan."""
    torch = pytest.importorskip("torch")
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, **{**kw, "backend": "eager"}))
    ref = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(precision="fp32")
    comp = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(precision="fp32", compile=True)
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    import torch._dynamo as dynamo

    dynamo.reset()
    with dynamo.config.patch(error_on_recompile=True):
        full = comp.encode_images(x[:4])
        short = comp.encode_images(x[4:])
    np.testing.assert_allclose(np.concatenate([full, short]), ref.encode_images(x), rtol=1e-4, atol=1e-5)
