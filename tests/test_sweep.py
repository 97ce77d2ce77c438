"""`creepscan sweep`: four checkpoints between the demo's base and adapted weights on the fixtures
suite, a sweep killed after the second model and resumed, the checkpoint order from file names or a
models file, and the report the renderer reads."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from creepscan.attacks.stats import holm
from creepscan.cli import main
from creepscan.levels import level_rose
from creepscan.sweep import ModelEntry, SweepInputError, model_entries, order_entries, read_models_file, step_from_name

ROOT = Path(__file__).resolve().parent.parent
STEPS = (0, 40, 80, 120)  # base, two interpolations, adapted: the file names carry the step


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


# --- checkpoint order ------------------------------------------------------------------------

def test_step_is_the_first_number_of_the_weights_file_name_else_of_the_spec():
    assert step_from_name("ViT-B-32", "runs/7/ckpt_1200.safetensors") == 1200  # the folder's 7 is not read
    assert step_from_name("ViT-B-32", "epoch-3-step-900.pt") == 3
    assert step_from_name("py:plugins:blind") is None
    assert step_from_name("hf-hub:org/model-step500") == 500


def test_models_file_gives_weights_relative_to_it_and_steps(tmp_path):
    f = tmp_path / "runs" / "models.csv"
    f.parent.mkdir()
    f.write_text("model,weights,step\nViT-B-32,a/ckpt_9.pt,300\n\nViT-B-32,/abs/ckpt_100.pt,\nclip-rn50,,\n")
    entries = read_models_file(f)
    assert entries == [ModelEntry("ViT-B-32", str(f.parent / "a" / "ckpt_9.pt"), 300),
                       ModelEntry("ViT-B-32", "/abs/ckpt_100.pt", 100), ModelEntry("clip-rn50", None, 50)]
    assert [e.step for e in order_entries(entries, "step")] == [50, 100, 300]
    assert order_entries(entries, "given") == entries


@pytest.mark.parametrize("text, fix", [
    ("name,path\nx,y\n", "must be model"),
    ("model,step\nViT-B-32,early\n", "'early' is not an integer"),
    ("model,weights\n,ckpt.pt\n", "'model' column is empty"),
    ("model\n", "no models listed"),
])
def test_bad_models_file_is_a_value_error_naming_the_fix(tmp_path, text, fix):
    f = tmp_path / "m.csv"
    f.write_text(text)
    with pytest.raises(SweepInputError, match=fix) as err:
        read_models_file(f)
    assert isinstance(err.value, ValueError)


def test_weights_pair_with_models_and_order_step_needs_every_step():
    one_arch = model_entries(["ViT-B-32"], ["a/ckpt_2.pt", "a/ckpt_1.pt"])
    assert [(e.spec, e.step) for e in one_arch] == [("ViT-B-32", 2), ("ViT-B-32", 1)]
    paired = model_entries(["RN50", "ViT-B-32"], ["r.pt", "v_5.pt"])
    assert [(e.spec, e.weights) for e in paired] == [("RN50", "r.pt"), ("ViT-B-32", "v_5.pt")]
    with pytest.raises(SweepInputError, match="3 --weights for 2 MODELs"):
        model_entries(["RN50", "ViT-B-32"], ["a.pt", "b.pt", "c.pt"])
    with pytest.raises(SweepInputError, match="two or more models"):
        model_entries(["clip-vit-b32"])
    with pytest.raises(SweepInputError, match="no step for RN50 r.pt"):
        order_entries(paired, "step")


def test_sweep_of_one_model_is_exit_2_in_one_line(tmp_path):
    code, _, err = cli("sweep", "py:conftest_plugins:colour", "--out", tmp_path / "r", "-q")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "creepscan audit" in err


# --- a sweep of four checkpoints, killed after the second model and resumed ---------------------

@pytest.fixture(scope="module")
def checkpoints(identity_checkpoints, tmp_path_factory):
    """ckpt_0 (the demo's base weights), ckpt_40 and ckpt_80 (1/3 and 2/3 of the way in weight space)
    and ckpt_120 (the adapted weights: the session's, also audited by test_audit_fixtures.py)."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("sweep-ckpt")
    base = load_file(str(identity_checkpoints / "base.safetensors"))
    adapted = load_file(str(identity_checkpoints / "adapted.safetensors"))
    for step in STEPS:
        w = step / STEPS[-1]
        save_file({k: (base[k] * (1 - w) + adapted[k] * w).contiguous() if base[k].is_floating_point() else base[k]
                   for k in base}, str(out / f"ckpt_{step}.safetensors"))
    return {step: out / f"ckpt_{step}.safetensors" for step in STEPS}


def _cached_keys(cache: Path) -> set[str]:
    root = cache / "embeddings"
    return {d.name for d in root.iterdir() if any(d.glob("*.npz"))} if root.is_dir() else set()


@pytest.fixture(scope="module")
def swept(checkpoints, tmp_path_factory):
    """A sweep (models file, --order step; 12 images per person keep it quick) killed once three
    embedding caches exist (model 0, the shared floor, model 1), then the sweep run again on the same cache (the
    checkpoints given out of order with --weights) with --fail-on high."""
    tmp = tmp_path_factory.mktemp("sweep")
    cache = tmp / "cache"
    models_file = tmp / "models.csv"
    models_file.write_text("model,weights,step\n" + "".join(f"creepscan-tiny-vit,{checkpoints[s]},{s}\n"
                                                              for s in reversed(STEPS)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CREEPSCAN_CACHE": str(tmp / "default-cache"), "OMP_NUM_THREADS": "1"}
    # Small batches: each model's embedding takes long enough for the kill to land between models.
    proc = subprocess.Popen([sys.executable, "-m", "creepscan", "sweep", "--models-file", models_file,
                             "--order", "step",
                             "--suite", "fixtures", "--probe", "face-identity", "--max-per-class", "12",
                             "--cache-dir", cache, "--out", tmp / "killed", "--batch-size", "4", "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while len(_cached_keys(cache)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed_keys = _cached_keys(cache)

    with pytest.MonkeyPatch.context() as mp:
        for k in ("HF_HUB_OFFLINE", "CREEPSCAN_CACHE", "OMP_NUM_THREADS"):
            mp.setenv(k, env[k])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            weights = [a for s in (80, 0, 120, 40) for a in ("--weights", checkpoints[s])]
            code, out, err = cli("sweep", "creepscan-tiny-vit", *weights, "--order", "step", "--suite", "fixtures",
                                 "--probe", "face-identity", "--max-per-class", "12", "--cache-dir", cache,
                                 "--out", tmp / "resumed", "-q", "--fail-on", "high")
            keys = _encoder_keys(checkpoints)
        finally:
            torch.set_num_threads(threads)
    report = json.loads((tmp / "resumed" / "report.json").read_text())
    return {"code": code, "out": out, "err": err, "report": report, "killed_keys": killed_keys, "keys": keys,
            "dir": tmp / "resumed"}


def _encoder_keys(checkpoints) -> dict:
    """The cache key of each checkpoint and of the shared floor (as the pipeline computes them)."""
    from creepscan.cache import encoder_cache_key
    from creepscan.engines import get_engine
    from creepscan.options import Options

    engine, settings = get_engine("local"), Options()
    encoders = {s: engine.load_encoder("creepscan-tiny-vit", str(checkpoints[s]), settings) for s in STEPS}
    keys = {s: encoder_cache_key(e, "") for s, e in encoders.items()}
    keys["floor"] = encoder_cache_key(encoders[0].floor, "")
    return keys


def test_checkpoints_are_ordered_by_step_and_identity_gets_cheaper_along_them(swept):
    rep = swept["report"]
    assert [m["step"] for m in rep["models"]] == list(STEPS) and [m["order"] for m in rep["models"]] == [0, 1, 2, 3]
    weight_names = [Path(m["spec"].split(" --weights ")[1]).name for m in rep["models"]]
    assert weight_names == [f"ckpt_{s}.safetensors" for s in STEPS]
    (probe,) = rep["probes"]
    per_model = probe["per_model"]
    # Matching raw embeddings (no training at all) accepts more genuine pairs at every step of the way.
    tar = [p["metrics"]["verification"]["tar_at_far"]["1e-2"] for p in per_model]
    assert all(a < b for a, b in zip(tar, tar[1:])), tar
    # One labelled photo per person: the base weights are the worst adversary's tool.
    k1 = [next(f["accuracy"] for f in p["metrics"]["few_shot"] if f["k"] == 1) for p in per_model]
    assert k1[0] == min(k1) and k1[-1] > k1[0]
    # Every model saw the same images and splits.
    assert len({json.dumps([p["n_images"], p["split"], p["data"]], sort_keys=True) for p in per_model}) == 1


def test_the_step_where_the_level_rose_is_flagged_with_its_paired_test(swept):
    (probe,) = swept["report"]["probes"]
    steps, per_model = probe["steps"], probe["per_model"]
    assert [(s["from"], s["to"]) for s in steps] == [(0, 1), (1, 2), (2, 3)]
    for s in steps:
        levels = (per_model[s["from"]]["risk_level"], per_model[s["to"]]["risk_level"])
        assert (s["level_from"], s["level_to"]) == levels and s["level_rose"] == level_rose(*levels)
    assert [s["p_adjusted"] for s in steps] == pytest.approx(holm([s["p_value"] for s in steps]))
    rose = [s for s in steps if s["level_rose"]]
    assert rose, [p["risk_level"] for p in per_model]
    # The largest gain in identification skill is a step where the level rose, and significantly so.
    biggest = max(steps, key=lambda s: s["delta"])
    assert biggest in rose and biggest["p_adjusted"] < swept["report"]["settings"]["alpha"] and biggest["delta"] > 0
    assert swept["report"]["summary"]["rose"] == [{"probe": "face-identity", "from": s["from"], "to": s["to"]}
                                                  for s in rose]


def test_killed_sweep_resumes_without_re_embedding_what_was_cached(swept):
    keys, killed = swept["keys"], swept["killed_keys"]
    # The kill came after the second model and before the last.
    assert {keys[0], keys["floor"], keys[40]} <= killed and keys[120] not in killed
    timings = swept["report"]["timings"]["probes"]["face-identity"]
    n_images = swept["report"]["probes"][0]["per_model"][0]["n_images"]
    for step, t in zip(STEPS, timings):
        cached = keys[step] in killed
        assert t["cache"]["model"] == {"n_embedded": 0 if cached else n_images,
                                       "n_cache_hits": n_images if cached else 0}, step
        assert t["cache"]["floor"] == {"n_embedded": 0, "n_cache_hits": n_images}


def test_fail_on_gates_any_model_on_any_probe(swept):
    assert swept["code"] == 1
    last = swept["report"]["probes"][0]["per_model"][-1]["risk_level"]
    assert last in ("high", "critical") and "face-identity (creepscan-tiny-vit (ckpt_120.safetensors))" in swept["err"]


def test_report_has_the_shape_the_renderer_reads(swept):
    rep = swept["report"]
    sample = json.loads((ROOT / "tests" / "data" / "sample_sweep.json").read_text())
    assert rep["kind"] == "sweep" and set(sample) <= set(rep)
    assert set(sample["models"][0]) <= set(rep["models"][0])
    assert set(sample["probes"][0]) <= set(rep["probes"][0])
    assert set(sample["probes"][0]["steps"][0]) | {"p_adjusted", "headline"} <= set(rep["probes"][0]["steps"][0])
    # The only machine-dependent numbers live under the top-level timings.
    assert all("timings" not in p for p in rep["probes"][0]["per_model"])
    html = (swept["dir"] / "report.html").read_text()
    assert "trajectory" in html and "<svg" in html
    assert "ckpt_120" in (swept["dir"] / "report.md").read_text()
