"""Engines: the in-process engine and the Ray engine give the same report byte for byte outside
``timings``; a missing Ray is one line and exit 2; each model is embedded in its own wave."""
import json
import sys
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from creepscan.cli import main
from creepscan.engines import EncoderRole, EngineError, encoder_roles, get_engine
from creepscan.engines.local import embedding_waves


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_each_model_is_one_wave_with_its_floor_and_shared_weights_are_embedded_once():
    def enc(fp, floor=None):
        return SimpleNamespace(fingerprint=fp, floor=floor, base=None)

    def names(waves):
        return [[f"{r.role}{r.index}" for r in wave] for wave in waves]

    # Three checkpoints of one architecture share one random-init floor; model2 repeats model0.
    floor = enc("f")
    roles = encoder_roles([enc("a", floor), enc("b", floor), enc("a", floor)])
    assert names(embedding_waves(roles)) == [["model0", "floor0"], ["model1"]]
    # An adapted model's base and the base's floor join its wave.
    adapted = SimpleNamespace(fingerprint="c", floor=enc("g"), base=enc("d", enc("h")))
    assert names(embedding_waves(encoder_roles([adapted]))) == [["model0", "floor0", "base0", "basefloor0"]]
    # Roles are ordered by their index, not by the order given: model10 comes after model2.
    roles = [EncoderRole("model", 10, enc("c")), EncoderRole("model", 2, enc("b")), EncoderRole("floor", 2, enc("f"))]
    assert names(embedding_waves(roles)) == [["model2", "floor2"], ["model10"]]
    # A role is a key by (role, index): the lookup needs no encoder; an unknown role is refused.
    assert EncoderRole.of("floor", 2) == roles[2] and {roles[2]: 1}[EncoderRole.of("floor", 2)] == 1
    with pytest.raises(ValueError, match="unknown encoder role"):
        EncoderRole("floor0", 0)


def test_unknown_engine_and_address_without_ray_name_the_fix():
    with pytest.raises(EngineError, match="choose one of local, ray") as err:
        get_engine("dask")
    assert isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match="goes with --engine ray"):
        get_engine("local", address="auto")


def test_missing_ray_is_one_line_and_exit_2(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code, out, err = cli("sweep", "py:conftest_plugins:colour", "py:conftest_plugins:blind", "--engine", "ray",
                         "--out", tmp_path / "r", "-q")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'pip install "creepscan[ray]"' in lines[0] and "Traceback" not in err
    assert not (tmp_path / "r" / "report.json").exists()


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """Two seeded random inits of the tiny open_clip model (it has a text tower: zero-shot runs)."""
    import open_clip
    from safetensors.torch import save_file

    from creepscan.encoders import openclip as oc_backend

    oc_backend._open_clip()  # registers the shipped tiny config
    d = tmp_path_factory.mktemp("engines-weights")
    for seed in (11, 12):
        torch.manual_seed(seed)
        model = open_clip.create_model("creepscan-tiny-vit", pretrained=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / f"ckpt_{seed}.safetensors"))
    return [d / "ckpt_11.safetensors", d / "ckpt_12.safetensors"]


@pytest.fixture(scope="module")
def both_engines(two_checkpoints, tmp_path_factory):
    """The same sweep in process and on a local Ray, each with a fresh cache, so the Ray engine really
    embeds (the only Ray start-up of the suite: it is slow on two cores)."""
    pytest.importorskip("ray", reason='the Ray engine needs Ray: pip install "creepscan[ray]" (CI installs it)')
    tmp = tmp_path_factory.mktemp("engines")
    args = ["sweep", "creepscan-tiny-vit", "--weights", two_checkpoints[0], "--weights", two_checkpoints[1],
            "--suite", "fixtures", "--probe", "face-identity", "--max-per-class", "6", "-q"]
    import os

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        # Each run chooses its thread count from the machine's load unless OMP_NUM_THREADS is set;
        # both runs must have the same. One thread: the test machine's cores are shared.
        mp.setenv("OMP_NUM_THREADS", "1")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        # One CPU for both runs: the local Ray then has one CPU (one embedding actor, the attack tasks
        # one after another: it cannot wait on itself, as the engine counts show), and its processes,
        # which inherit the affinity, leave the other cores to the rest of the suite.
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        if cpus:
            os.sched_setaffinity(0, {max(cpus)})
        try:
            runs = {}
            for engine in ("local", "ray"):
                code, out, err = cli(*args, "--engine", engine, "--cache-dir", tmp / f"cache-{engine}",
                                     "--out", tmp / engine)
                runs[engine] = (code, err, (tmp / engine / "report.json").read_bytes())
        finally:
            torch.set_num_threads(threads)
            if cpus:
                os.sched_setaffinity(0, cpus)
    return runs


def test_ray_report_is_the_local_report_outside_timings(both_engines):
    (code_l, err_l, raw_l), (code_r, err_r, raw_r) = both_engines["local"], both_engines["ray"]
    assert code_l == 0 and code_r == 0, (err_l, err_r)
    local, ray = json.loads(raw_l), json.loads(raw_r)
    assert local["timings"]["engine"]["name"] == "local" and ray["timings"]["engine"]["name"] == "ray"
    strip = lambda d: json.dumps({k: v for k, v in d.items() if k != "timings"}, sort_keys=True)  # noqa: E731
    assert strip(local) == strip(ray)
    # Every attack ran, zero-shot through the replayed text tower included.
    metrics = ray["probes"][0]["per_model"][0]["metrics"]
    assert metrics["zero_shot"] is not None and metrics["few_shot"] and metrics["verification"] is not None


def test_ray_engine_embedded_and_attacked_on_ray(both_engines):
    local, ray = (json.loads(both_engines[e][2]) for e in ("local", "ray"))
    n_images = ray["probes"][0]["per_model"][0]["n_images"]
    eng = ray["timings"]["engine"]
    # Two checkpoints and one shared random-init floor: three distinct weights, each embedded and
    # attacked once, on Ray; the pipeline then read every embedding from the cache the actors filled.
    assert eng["images_embedded"] == 3 * n_images and eng["attack_tasks"] == 3 and eng["embed_actors"] >= 1
    for timings in (local["timings"]["probes"]["face-identity"], ray["timings"]["probes"]["face-identity"]):
        assert [t["cache"]["model"]["n_embedded"] for t in timings] == [n_images, n_images]
        assert all(t["cache"]["model"]["n_cache_hits"] == 0 for t in timings)


# ---------------------------------------------------------------------------------------------
# --ray-address: a cluster that cannot be joined is exit 2 within seconds (issue 23)
# ---------------------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep_on(address, tmp_path):
    import time

    t0 = time.monotonic()
    code, _, err = cli("sweep", "py:conftest_plugins:colour", "py:conftest_plugins:blind", "--engine", "ray",
                       "--ray-address", address,
                       "--out", tmp_path / "r", "--cache-dir", tmp_path / "c", "-q")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return code, lines[0], time.monotonic() - t0


def test_an_address_nothing_listens_on_is_exit_2_at_once(tmp_path):
    """It was exit 3, or a hang past 200 s while Ray retried."""
    pytest.importorskip("ray")
    port = _free_port()
    code, line, seconds = _sweep_on(f"127.0.0.1:{port}", tmp_path)
    assert code == 2 and f"nothing answers at 127.0.0.1:{port}" in line and "ray start --head" in line
    assert seconds < 30 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("address, needle", [
    ("not an address", "is not a Ray cluster address"),
    ("127.0.0.1:99999", "is not a Ray cluster address"),
    ("http://127.0.0.1:8265", 'ray job submit needs pip install "ray[default]"'),
])
def test_bogus_addresses_name_the_forms_and_the_fix(tmp_path, address, needle):
    pytest.importorskip("ray")
    code, line, seconds = _sweep_on(address, tmp_path)
    assert code == 2 and needle in line and seconds < 30


def test_ray_client_address_without_ray_client_names_the_extra(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setitem(sys.modules, "grpc", None)  # `import grpc` now fails, as without ray[client]
    code, line, _ = _sweep_on(f"ray://127.0.0.1:{_free_port()}", tmp_path)
    assert code == 2 and 'pip install "ray[client]"' in line


def test_a_port_that_answers_but_is_not_ray_is_exit_2_within_the_join_limit(tmp_path, monkeypatch):
    """A listening socket that never speaks Ray: Ray's own retries ran for minutes."""
    import socket
    import threading

    pytest.importorskip("ray")
    from creepscan.engines import ray as ray_engine

    monkeypatch.setattr(ray_engine, "JOIN_TIMEOUT_S", 2.0)  # the child is killed here; 20 s in real runs
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        code, line, seconds = _sweep_on(f"127.0.0.1:{server.getsockname()[1]}", tmp_path)
    finally:
        server.close()
    assert code == 2 and "Ray could not join it within 2 s" in line and "RAY_AUTH_TOKEN" in line
    assert seconds < 30


def test_attack_tasks_are_named_by_probe_and_model():
    from creepscan.engines.ray import task_name

    job = SimpleNamespace(probe=SimpleNamespace(id="face-identity"), encoder=SimpleNamespace(name="ViT-B-32 (a.pt)"))
    assert task_name(job) == "attacks face-identity ViT-B-32 (a.pt)"
