"""The CPU's choices: bf16 or fp32 for --precision auto, and torch's thread count. Every branch is
forced by replacing the detection functions, so no test depends on this machine's flags or load."""
import json

import numpy as np
import pytest
import torch
from conftest import TINY

from creepscan import cpu
from creepscan.encoders import resolve_encoder


@pytest.fixture(autouse=True)
def _fresh_memory(monkeypatch):
    """Each test starts with nothing measured in this process."""
    monkeypatch.setattr(cpu, "_KNOWN", {})


def _force(monkeypatch, *, flags: str, vendor: str = "GenuineIntel", calls: dict | None = None):
    """Pretend the CPU is ``vendor`` with ``flags``; any kernel timing would be counted in ``calls``
    (the choice must need none)."""
    calls = calls if calls is not None else {}
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Test CPU 9000", "vendor_id": vendor,
                                                  "flags": f"fpu avx2 fma {flags}"})
    monkeypatch.setattr(torch, "mm", _counting(torch.mm, calls))
    return calls


def _counting(fn, calls):
    def wrapped(*a, **k):
        calls["mm"] = calls.get("mm", 0) + 1
        return fn(*a, **k)
    return wrapped


AMD_ZEN4 = {"flags": "avx512f avx512_bf16", "vendor": "AuthenticAMD"}
INTEL_AMX = {"flags": "avx512f avx512_bf16 amx_tile amx_bf16", "vendor": "GenuineIntel"}
INTEL_NO_AMX = {"flags": "avx512f avx512_bf16", "vendor": "GenuineIntel"}
NO_BF16 = {"flags": "avx512f", "vendor": "GenuineIntel"}


def _agreement(value, counter):
    def check():
        counter.append(value)
        return cpu.Agreement(min_cosine=value, n_items=12)
    return check


# --- choose_cpu_precision: each branch, from the flags alone ---------------------------------------

def test_without_bf16_instructions_fp32_and_nothing_is_measured(monkeypatch, tmp_path):
    calls, checked = _force(monkeypatch, **NO_BF16), []
    precision, why = cpu.choose_cpu_precision("matmul", _agreement(1.0, checked), fingerprint="w", cache_dir=tmp_path)
    assert precision == "fp32"
    assert "no amx_bf16/avx512_bf16" in why and "emulated" in why
    assert calls == {} and checked == []  # no kernel timing, no model check: nothing to gain


def test_intel_avx512_bf16_without_amx_is_fp32_by_its_flags(monkeypatch, tmp_path):
    calls, checked = _force(monkeypatch, **INTEL_NO_AMX), []
    precision, why = cpu.choose_cpu_precision("matmul", _agreement(1.0, checked), fingerprint="w", cache_dir=tmp_path)
    assert precision == "fp32" and "avx512_bf16 but no amx_bf16" in why and "0.58x" in why
    assert calls == {} and checked == []


@pytest.mark.parametrize("machine, needle", [(AMD_ZEN4, "AMD CPU with avx512_bf16"), (INTEL_AMX, "amx_bf16")])
def test_amx_or_amd_avx512_bf16_chooses_bf16_when_the_model_agrees(monkeypatch, tmp_path, machine, needle):
    calls, checked = _force(monkeypatch, **machine), []
    precision, why = cpu.choose_cpu_precision("matmul", _agreement(0.99995, checked), fingerprint="w",
                                              cache_dir=tmp_path)
    assert precision == "pure_bf16" and needle in why and "0.99995" in why
    assert calls == {} and checked == [0.99995]  # no timing: the flags decide
    # The agreement is on disk, keyed by this (pretended) machine, and a new process reuses it.
    record = json.loads(next((tmp_path / "machine").glob("*.json")).read_text())
    assert record["identity"]["cpu"] == "Test CPU 9000" and "avx512_bf16" in record["identity"]["flags"]
    monkeypatch.setattr(cpu, "_KNOWN", {})
    again = cpu.choose_cpu_precision("matmul", _agreement(0.5, checked), fingerprint="w", cache_dir=tmp_path)
    assert again == (precision, why) and checked == [0.99995]


def test_bf16_that_disagrees_with_fp32_gives_fp32(monkeypatch, tmp_path):
    _force(monkeypatch, **AMD_ZEN4)
    checked = []
    precision, why = cpu.choose_cpu_precision("conv", _agreement(0.998, checked), fingerprint="w", cache_dir=tmp_path)
    assert precision == "fp32" and checked == [0.998] and "cosine 0.99800" in why


def test_the_same_cpu_always_makes_the_same_choice_whatever_the_load(monkeypatch, tmp_path):
    """The choice was a timing race (kernel rates measured at run time, per cache folder): on a busy
    machine, or with a fresh cache, one CPU could choose either way."""
    _force(monkeypatch, **AMD_ZEN4)
    choices = set()
    for n in range(3):
        monkeypatch.setattr(cpu, "_KNOWN", {})
        monkeypatch.setattr(cpu, "busy_cpus", lambda *a, n=n, **k: (float(n), "test"))
        choices.add(cpu.choose_cpu_precision("matmul", _agreement(0.9999, []), fingerprint="w",
                                             cache_dir=tmp_path / f"cache{n}"))
    assert len(choices) == 1 and next(iter(choices))[0] == "pure_bf16"


# --- the encoder: auto on a CPU ------------------------------------------------------------------

def test_encoder_auto_uses_bf16_where_it_wins_and_the_floor_follows(monkeypatch, tiny_weights, tmp_path):
    _force(monkeypatch, **AMD_ZEN4)
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(cache_dir=tmp_path)
    ref = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(precision="fp32")
    assert enc.precision == "pure_bf16" and enc.precision_reason.startswith("pure_bf16: ")
    assert enc.floor.precision == "pure_bf16"  # the control settles auto for its own weights the same way
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = enc.encode_images(x), ref.encode_images(x)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > cpu.COSINE_BOUND and not np.array_equal(a, b)  # bf16 really ran, and agrees
    assert next(enc.model.parameters()).dtype == torch.bfloat16
    assert ref.precision_reason == "fp32: asked for"


def test_encoder_auto_falls_back_to_fp32_when_its_check_disagrees(monkeypatch, tiny_weights, tmp_path):
    from creepscan.encoders.openclip import OpenClipEncoder

    _force(monkeypatch, **AMD_ZEN4)
    monkeypatch.setattr(OpenClipEncoder, "_bf16_agreement", lambda self: cpu.Agreement(0.95, 12))
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(cache_dir=tmp_path)
    assert enc.precision == "fp32" and "cosine 0.95000" in enc.precision_reason
    enc.encode_images(torch.zeros(1, 3, 32, 32))
    assert next(enc.model.parameters()).dtype == torch.float32


def test_encoder_auto_without_bf16_matches_explicit_fp32(monkeypatch, tiny_weights, tmp_path):
    _force(monkeypatch, **NO_BF16)
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(cache_dir=tmp_path)
    ref = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(precision="fp32")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(enc.encode_images(x), ref.encode_images(x))
    assert enc.precision == "fp32" and "emulated" in enc.precision_reason


def test_agreement_check_uses_the_real_model_and_leaves_it_fp32(tiny_weights):
    enc = resolve_encoder(TINY, weights=tiny_weights["safetensors"]).configure(precision="fp32")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    before = enc.model.visual.conv1.weight.clone()
    found = enc._bf16_agreement()
    assert found.n_items == 8 + 4  # check images + prompts (the tiny model has a text tower)
    assert cpu.COSINE_BOUND < found.min_cosine < 1.0  # bf16 rounding is visible but small
    assert torch.equal(enc.model.visual.conv1.weight, before) and before.dtype == torch.float32
    np.testing.assert_array_equal(enc.encode_images(x), resolve_encoder(
        TINY, weights=tiny_weights["safetensors"]).configure(precision="fp32").encode_images(x))


def test_check_images_are_seeded_and_varied():
    a, b = cpu.check_images(5, size=64, seed=3), cpu.check_images(5, size=64, seed=3)
    arrays = [np.asarray(im) for im in a]
    assert all(np.array_equal(x, np.asarray(y)) for x, y in zip(arrays, b))
    assert all(x.shape == (64, 64, 3) and x.std() > 10 for x in arrays)
    assert not np.array_equal(arrays[0], arrays[1])


# --- threads ---------------------------------------------------------------------------------------

def test_busy_cpus_reads_proc_stat_of_our_cpus_only(monkeypatch):
    samples = iter([{0: (100.0, 1000.0), 1: (0.0, 1000.0)}, {0: (190.0, 1100.0), 1: (50.0, 1100.0)}])
    monkeypatch.setattr(cpu, "_cpu_times", lambda cpus: next(samples))
    monkeypatch.setattr(cpu.time, "sleep", lambda s: None)
    busy, how = cpu.busy_cpus([0, 1], sample_s=0.1)
    assert busy == pytest.approx(0.9 + 0.5) and "/proc/stat" in how


def test_proc_stat_parsing_counts_niced_time_only_when_asked():
    text = ("cpu  9 9 9 9 0 0 0 0 0 0\n"
            "cpu0 100 50 50 800 0 0 0 0 0 0\n"   # user 100, nice 50, system 50, idle 800
            "cpu1 0 0 0 1000 0 0 0 0 0 0\n"
            "cpu2 500 0 0 500 0 0 0 0 0 0\n"     # not ours: left out
            "intr 1 2 3\n")
    assert cpu._parse_stat(text, [0, 1], count_nice=True) == {0: (200.0, 1000.0), 1: (0.0, 1000.0)}
    assert cpu._parse_stat(text, [0, 1], count_nice=False) == {0: (150.0, 1000.0), 1: (0.0, 1000.0)}


def test_busy_cpus_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(cpu, "_cpu_times", lambda cpus: None)
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (7.0, 1.0, 1.0))
    assert cpu.busy_cpus([0, 1, 2]) == (3.0, "1-minute load average")


@pytest.fixture
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_apply_threads_is_one_per_usable_cpu_whatever_the_load(monkeypatch, _keep_threads):
    """The count followed the load, and with it the figures' rounding: same command, same machine,
    another report."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "usable_cpus", lambda: [0, 1])
    for busy in (0.0, 1.9):
        monkeypatch.setattr(cpu, "busy_cpus", lambda *a, busy=busy, **k: (busy, "test"))
        n, why = cpu.apply_threads()
        assert n == 2 == torch.get_num_threads() and why.startswith("2 threads: one per usable CPU")


def test_apply_threads_respects_the_user(monkeypatch, _keep_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    assert cpu.apply_threads() == (1, "1 thread: OMP_NUM_THREADS=1")
    assert cpu.apply_threads(threads=2) == (2, "2 threads: asked for") and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        cpu.apply_threads(threads=0)


# --- decoding workers ------------------------------------------------------------------------------

@pytest.mark.parametrize("cpus,device,expected", [
    (2, "cpu", 2), (8, "cpu", 2), (16, "cpu", 4), (128, "cpu", 8), (1, "cpu", 1), (16, "cuda", 16), (64, "cuda", 16),
])
def test_decode_workers_follow_the_usable_cpus(monkeypatch, cpus, device, expected):
    from creepscan.features import _workers

    monkeypatch.setattr(cpu, "usable_cpus", lambda: list(range(cpus)))
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 1000)  # the machine's count must not matter
    assert _workers(10_000, 64, torch.device(device)) == expected
    assert _workers(100, 64, torch.device(device)) == 0  # a few batches: decoding in-process is cheaper


def test_settings_keep_the_machine_record_in_the_runs_cache(monkeypatch, tiny_weights, tmp_path):
    """`--cache-dir` decides where the measured choice is kept: the audit's Options pass it on."""
    from creepscan.options import Options, configure_encoder

    _force(monkeypatch, **AMD_ZEN4)
    monkeypatch.setenv("CREEPSCAN_CACHE", str(tmp_path / "elsewhere"))
    enc = configure_encoder(resolve_encoder(TINY, weights=tiny_weights["safetensors"]),
                            Options(cache_dir=tmp_path / "run-cache"))
    enc.encode_images(torch.zeros(1, 3, 32, 32))
    kept = list((tmp_path / "run-cache" / "machine").glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["agreement"]
    assert not (tmp_path / "elsewhere").exists()
