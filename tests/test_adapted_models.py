"""Adapted models as people publish them, audited as saved: transformers save_pretrained folders (CLIP,
SigLIP, DINOv2), PEFT LoRA adapters against their base (the ``adaptation`` block), timm with local
weights, zero-shot through a base's text tower, and the refusals (pickles that would run code, a missing
base, a config that is not a vision model, a missing processor config, an offline Hub id). Every
checkpoint is tiny, random and made here."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_folder

from creepscan.cli import main
from creepscan.encoders import resolve_encoder

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
timm = pytest.importorskip("timm")

PROBE = ("--suite", "fixtures", "--probe", "face-identity")


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def _vision_config(**kw):
    return transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, image_size=32, patch_size=16, **kw)


def _processor():
    return transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def _lora(base_dir: Path, out: Path, b_std: float, seed: int) -> Path:
    """A LoRA on the base's q/v projections; B ~ N(0, b_std) (0: PEFT's own init, B = 0)."""
    torch.manual_seed(seed)
    model = transformers.CLIPVisionModelWithProjection.from_pretrained(str(base_dir))
    m = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    if b_std:
        for name, p in m.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, b_std)
    m.save_pretrained(str(out))
    return out


def _tokenizer(out: Path):
    """A word-level tokenizer for the fixture prompts ("a photo of c0.")."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[PAD]", "[UNK]", "a", "photo", "of", ".", "the"] + [f"c{i}" for i in range(10)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                model_max_length=16)
    fast.save_pretrained(str(out))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Every checkpoint the tests audit, and the probe's images (4 people x 10)."""
    w = tmp_path_factory.mktemp("adapted")
    torch.manual_seed(0)
    base = w / "base"
    transformers.CLIPVisionModelWithProjection(_vision_config(projection_dim=16)).save_pretrained(str(base))
    _processor().save_pretrained(str(base))
    out = {"w": w, "base": base, "data": make_folder(w / "faces", n_classes=4, per_class=10, seed=3)}
    out["lora"] = _lora(base, w / "lora", 0.5, 1)
    out["lora2"] = _lora(base, w / "lora2", 0.5, 2)
    out["lora0"] = _lora(base, w / "lora0", 0.0, 3)
    nobase = _lora(base, w / "lora-nobase", 0.5, 4)
    cfg = json.loads((nobase / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(w / "does-not-exist")
    (nobase / "adapter_config.json").write_text(json.dumps(cfg))
    out["nobase"] = nobase

    torch.manual_seed(5)
    sig = w / "siglip"
    transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=16)).save_pretrained(str(sig))
    transformers.SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(sig))
    dino = w / "dinov2"
    transformers.Dinov2Model(transformers.Dinov2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8)).save_pretrained(str(dino))
    transformers.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                                   ).save_pretrained(str(dino))
    out.update(siglip=sig, dinov2=dino)

    # a full CLIP (text tower + tokenizer), a vision tower fine-tuned from it that kept the projection,
    # and one saved without a projection
    clip = w / "clip-full"
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=32,
                max_position_embeddings=16, eos_token_id=2, bos_token_id=1, pad_token_id=0)
    full = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=_vision_config().to_dict(),
                                                          projection_dim=16))
    full.save_pretrained(str(clip))
    _processor().save_pretrained(str(clip))
    _tokenizer(clip)
    tower = transformers.CLIPVisionModelWithProjection(_vision_config(projection_dim=16))
    tower.vision_model.load_state_dict(full.vision_model.state_dict())
    tower.visual_projection.load_state_dict(full.visual_projection.state_dict())
    with torch.no_grad():
        tower.vision_model.post_layernorm.weight.mul_(1.5)  # "fine-tuned"
    tower.save_pretrained(str(w / "clip-ft"))
    _processor().save_pretrained(str(w / "clip-ft"))
    bare = transformers.CLIPVisionModel(_vision_config())
    bare.load_state_dict(full.vision_model.state_dict())
    bare.save_pretrained(str(w / "clip-ft-noproj"))
    _processor().save_pretrained(str(w / "clip-ft-noproj"))
    out.update(clip=clip, clip_ft=w / "clip-ft", clip_noproj=w / "clip-ft-noproj")

    t = timm.create_model("test_vit", pretrained=False)  # with its classifier head: it is left out
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in t.state_dict().items()}, str(w / "test_vit.safetensors"))
    out["timm"] = w / "test_vit.safetensors"
    return out


def _audit(ckpts, model, out, *extra):
    code, stdout, err = cli("audit", model, *PROBE, "--data", f"face-identity={ckpts['data']}", "--out", out,
                            "--cache-dir", ckpts["w"] / "cache", "-q", *extra)
    assert code <= 1, err
    return json.loads((Path(out) / "report.json").read_text())


@pytest.fixture(scope="module")
def lora_report(ckpts):
    return _audit(ckpts, ckpts["lora"], ckpts["w"] / "r-lora")


# --- transformers folders ----------------------------------------------------------------------

def test_a_clip_vision_folder_is_audited_with_its_own_preprocessing(ckpts):
    report = _audit(ckpts, ckpts["base"], ckpts["w"] / "r-base")
    model = report["model"]
    assert model["library"] == "transformers" and model["architecture"] == "CLIPVisionModelWithProjection"
    assert model["preprocessing"]["config"]["crop_size"] == {"height": 32, "width": 32}
    assert model["zero_shot"].startswith("not applicable")
    probe = report["probes"][0]
    assert probe["metrics"]["zero_shot"] is None and "adaptation" not in probe
    assert probe["control"]["library"] == "transformers" and "random" in probe["control"]["spec"]
    assert "loaded by" in (ckpts["w"] / "r-base" / "report.md").read_text()


def test_preprocessing_is_part_of_the_cache_key(ckpts, tmp_path):
    import shutil

    from creepscan.features import encoder_cache_key

    other = tmp_path / "base-64"
    shutil.copytree(ckpts["base"], other)
    transformers.CLIPImageProcessor(size={"shortest_edge": 48}, crop_size={"height": 32, "width": 32}
                                    ).save_pretrained(str(other))
    a, b = resolve_encoder(str(ckpts["base"])), resolve_encoder(str(other))
    assert a.fingerprint == b.fingerprint
    assert encoder_cache_key(a) != encoder_cache_key(b)


@pytest.mark.parametrize("kind, arch", [("siglip", "SiglipVisionModel"), ("dinov2", "Dinov2Model")])
def test_siglip_and_dinov2_folders_give_pooled_embeddings_and_deterministic_floors(ckpts, kind, arch):
    from PIL import Image

    a, b = resolve_encoder(str(ckpts[kind])), resolve_encoder(str(ckpts[kind]))
    assert a.library == "transformers" and a.details["architecture"] == arch
    images = [Image.fromarray(np.full((40, 40, 3), v, np.uint8)) for v in (30, 200)]
    batch = torch.stack([a.preprocess(im) for im in images])
    emb = a.encode_images(batch)
    assert emb.shape == (2, 32) and np.isfinite(emb).all()
    assert a.floor.fingerprint == b.floor.fingerprint != a.fingerprint
    assert np.array_equal(a.floor.encode_images(batch), b.floor.encode_images(batch))
    assert not np.allclose(a.floor.encode_images(batch), emb)


def test_a_vit_task_fine_tune_saved_without_its_pooler_is_embedded_by_its_first_token(tmp_path):
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=16, num_labels=3))
    model.save_pretrained(str(tmp_path / "vit"))
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(tmp_path / "vit"))
    enc = resolve_encoder(str(tmp_path / "vit"))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model.vit(pixel_values=x).last_hidden_state[:, 0].numpy()
    assert np.allclose(enc.encode_images(x), want, atol=1e-5)


# --- PEFT adapters -----------------------------------------------------------------------------

def test_an_adapters_report_names_its_base_and_what_the_adaptation_changed(ckpts, lora_report):
    model = lora_report["model"]
    assert model["library"] == "peft" and model["adapter"]["peft_type"] == "LORA"
    assert model["base"]["spec"] == str(ckpts["base"]) and model["base"]["library"] == "transformers"
    adaptation = lora_report["probes"][0]["adaptation"]
    assert adaptation["base"]["spec"] == str(ckpts["base"])
    assert adaptation["change"] in ("raised", "kept", "lowered")
    assert adaptation["base_level"] and adaptation["level"] == lora_report["probes"][0]["risk_level"]
    assert set(adaptation["tests"]) >= {"linear_probe", "few_shot"}
    assert 0 <= adaptation["p_value"] <= adaptation["p_adjusted"] <= 1
    text = (ckpts["w"] / "r-lora" / "report.md").read_text()
    assert "What the adaptation changed" in text and f"{adaptation['change']} the level" in text


def test_a_non_zero_lora_changes_the_embeddings_and_the_fingerprint_covers_base_and_adapter(ckpts):
    base, lora = resolve_encoder(str(ckpts["base"])), resolve_encoder(str(ckpts["lora"]))
    batch = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert not np.allclose(base.encode_images(batch), lora.encode_images(batch), atol=1e-4)
    assert lora.fingerprint != base.fingerprint
    assert lora.floor.fingerprint == base.floor.fingerprint  # the base architecture, random
    assert resolve_encoder(str(ckpts["lora2"])).fingerprint != lora.fingerprint


def test_a_lora_with_zero_b_changes_nothing(ckpts):
    base, lora0 = resolve_encoder(str(ckpts["base"])), resolve_encoder(str(ckpts["lora0"]))
    batch = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(base.encode_images(batch), lora0.encode_images(batch))
    report = _audit(ckpts, ckpts["lora0"], ckpts["w"] / "r-lora0")
    a = report["probes"][0]["adaptation"]
    assert a["change"] == "kept" and a["level"] == a["base_level"]
    assert a["significant"] is False and a["p_adjusted"] == 1.0
    assert a["delta"]["linear_probe"] == 0 and all(v == 0 for v in a["delta"]["few_shot"].values())


def test_base_flag_overrides_the_adapters_base(ckpts):
    enc = resolve_encoder(str(ckpts["nobase"]), base=str(ckpts["base"]))
    assert enc.base.spec == str(ckpts["base"]) and enc.library == "peft"


def test_compare_base_vs_adapter_and_a_sweep_over_base_and_two_adapters(ckpts):
    w = ckpts["w"]
    common = [*PROBE, "--data", f"face-identity={ckpts['data']}", "--cache-dir", w / "cache", "-q"]
    code, _, err = cli("compare", ckpts["base"], ckpts["lora"], *common, "--out", w / "r-cmp")
    assert code <= 1, err
    cmp = json.loads((w / "r-cmp" / "report.json").read_text())
    assert cmp["model_a"]["library"] == "transformers" and cmp["model_b"]["library"] == "peft"
    assert "p_value" in cmp["probes"][0]
    code, _, err = cli("sweep", ckpts["base"], ckpts["lora"], ckpts["lora2"], *common, "--out", w / "r-sweep")
    assert code <= 1, err
    sweep = json.loads((w / "r-sweep" / "report.json").read_text())
    assert [m["library"] for m in sweep["models"]] == ["transformers", "peft", "peft"]
    per_model = sweep["probes"][0]["per_model"]
    assert "adaptation" not in per_model[0]
    assert all(p["adaptation"]["base"]["spec"] == str(ckpts["base"]) for p in per_model[1:])
    # the base swept as model 0 and the adapters' base are one set of weights: the same level
    assert per_model[1]["adaptation"]["base_level"] == per_model[0]["risk_level"]
    assert "What each adaptation changed" in (w / "r-sweep" / "report.md").read_text()


# --- zero-shot through a base's text tower -----------------------------------------------------

def test_a_vision_tower_that_kept_the_projection_uses_the_bases_text_tower(ckpts):
    report = _audit(ckpts, ckpts["clip_ft"], ckpts["w"] / "r-zs", "--base", ckpts["clip"])
    assert "base's text tower" in report["model"]["zero_shot"]
    probe = report["probes"][0]
    assert probe["metrics"]["zero_shot"] is not None
    assert probe["adaptation"]["base"]["spec"] == str(ckpts["clip"]) and "zero_shot" in probe["adaptation"]["tests"]


def test_without_a_projection_zero_shot_is_not_applicable_with_the_reason(ckpts):
    enc = resolve_encoder(str(ckpts["clip_noproj"]), base=str(ckpts["clip"]))
    assert not callable(getattr(enc, "encode_text", None))
    assert enc.details["zero_shot"].startswith("not applicable: ") and "projection" in enc.details["zero_shot"]


# --- timm --------------------------------------------------------------------------------------

def test_timm_with_local_weights(ckpts):
    report = _audit(ckpts, "timm:test_vit", ckpts["w"] / "r-timm", "--weights", ckpts["timm"])
    assert report["model"]["library"] == "timm" and report["model"]["preprocessing"]["source"] == "timm data config"
    a, b = (resolve_encoder("timm:test_vit", weights=str(ckpts["timm"])) for _ in range(2))
    assert a.floor.fingerprint == b.floor.fingerprint != a.fingerprint


# --- refusals: one line, exit 2 ----------------------------------------------------------------

def _refused(ckpts, model, *extra) -> str:
    code, _, err = cli("audit", model, *PROBE, "--data", f"face-identity={ckpts['data']}",
                       "--out", ckpts["w"] / "r-refused", "--cache-dir", ckpts["w"] / "cache", "-q", *extra)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def test_a_pickled_pytorch_model_bin_never_executes(ckpts, tmp_path):
    marker = tmp_path / "MARKER"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    folder = tmp_path / "pickled"
    _vision_config(projection_dim=16).save_pretrained(str(folder))
    _processor().save_pretrained(str(folder))
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": Boom()}, f)
    assert "refused" in _refused(ckpts, folder)
    assert not marker.exists()


def test_a_plain_pickled_state_dict_loads_through_the_no_execution_reader(ckpts, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((ckpts["base"] / name).read_bytes())
    torch.save(load_file(str(ckpts["base"] / "model.safetensors")), folder / "pytorch_model.bin")
    assert resolve_encoder(str(folder)).fingerprint == resolve_encoder(str(ckpts["base"])).fingerprint


def test_an_adapter_whose_base_is_missing_is_refused(ckpts):
    line = _refused(ckpts, ckpts["nobase"])
    assert "does-not-exist" in line and "--base" in line


def test_a_config_that_is_not_a_vision_model_is_refused(ckpts, tmp_path):
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                            intermediate_size=64).save_pretrained(str(tmp_path / "bert"))
    assert "not an image encoder" in _refused(ckpts, tmp_path / "bert")


def test_a_missing_processor_config_is_refused_saying_what_to_pass(ckpts, tmp_path):
    folder = tmp_path / "noproc"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((ckpts["base"] / name).read_bytes())
    assert "preprocessor_config.json" in _refused(ckpts, folder)


def test_offline_hub_ids_are_refused_naming_the_local_form(ckpts):
    assert "pass the folder" in _refused(ckpts, "hf:creepscan-test/no-such-model")
    assert "--weights" in _refused(ckpts, "timm:test_vit")
    assert "no architecture" in _refused(ckpts, "timm:no_such_vit")
    assert "--weights goes with" in _refused(ckpts, ckpts["base"], "--weights", ckpts["timm"])


def test_listing_models_and_open_clip_models_import_no_adapted_model_library():
    code = ("import sys; from click.testing import CliRunner; from creepscan.cli import main; "
            "from creepscan.encoders import resolve_encoder; r = CliRunner().invoke(main, ['models']); "
            "assert r.exit_code == 0; print(sorted(m for m in ('transformers', 'peft', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
