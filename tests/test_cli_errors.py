"""A new user's first ten minutes (issue 14): the README's commands, and every bad option or input
answered with one line and the right exit code before any work is done."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_folder

from creepscan.cli import main

REPO = Path(__file__).resolve().parent.parent


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def readme_test_command() -> str:
    """The README's test command: the first shell line in a code block that runs pytest."""
    lines = [ln.strip() for ln in (REPO / "README.md").read_text().splitlines()]
    return next(ln for ln in lines if "pytest" in ln and ln.startswith("pip install"))


def test_ci_runs_the_readme_test_command_literally():
    cmd = readme_test_command()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert cmd in [ln.strip() for ln in ci], f".ci/run must run the README's test command: {cmd}"


def test_the_readme_test_command_collects_every_test_when_typed_bare():
    """`pytest -q` typed as the README shows (not `python -m pytest`, which adds the working folder to
    sys.path): every test file must import. The install half already ran to get here; the pytest half
    runs as a subprocess, collecting only (running the suite inside itself would recurse), in one process
    (``-n 0`` after the README's options: the same imports, without each xdist worker collecting again)."""
    cmd = readme_test_command()
    pytest_part = cmd.split("&&")[-1].strip()
    assert shlex.split(pytest_part)[0] == "pytest"
    exe = Path(sys.executable).with_name("pytest")
    argv = [str(exe)] + shlex.split(pytest_part)[1:] + ["--collect-only", "-p", "no:cacheprovider", "-n", "0"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "error" not in proc.stdout.lower().split("collected")[-1]
    n = int(re.search(r"(\d+) tests? collected", proc.stdout).group(1))
    assert n > 100
    # and a test that imports fixtures/ runs under the bare command
    proc = subprocess.run([str(exe), "-q", "-p", "no:cacheprovider", "-n", "0",
                           "tests/test_fixtures_generator.py::test_same_arguments_same_bytes"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]


@pytest.fixture
def data(tmp_path):
    return make_folder(tmp_path / "d", n_classes=3, per_class=8, seed=1)


def _audit(tmp_path, data, *extra, out=None, cache=None):
    return run("audit", "py:conftest_plugins:colour", "--probe", "face-identity", "--data", f"face-identity={data}",
               "--out", out or tmp_path / "o", "--cache-dir", cache or tmp_path / "c", "--quiet", *extra)


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unwritable_out_is_refused_before_any_work(tmp_path, data):
    # /proc refuses new files even to root (tests here may run as root, where chmod does not bind)
    code, _, err = _audit(tmp_path, data, out="/proc/creepscan-test-out")
    assert code == 2 and "--out /proc/creepscan-test-out is not writable" in _one_line(err)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.npz"))  # nothing was embedded


def test_out_that_is_a_file_is_refused(tmp_path, data):
    (tmp_path / "taken").write_text("x")
    code, _, err = _audit(tmp_path, data, out=tmp_path / "taken")
    assert code == 2 and "is a file" in _one_line(err)


def test_unwritable_cache_dir_is_refused_before_any_work(tmp_path, data):
    (tmp_path / "file").write_text("x")
    code, _, err = _audit(tmp_path, data, cache=tmp_path / "file" / "cache")
    assert code == 2 and "--cache-dir" in _one_line(err) and "CREEPSCAN_CACHE" in err
    assert not (tmp_path / "o" / "report.json").exists()


def test_negative_seed_is_refused(tmp_path, data):
    code, _, err = _audit(tmp_path, data, "--seed", "-1")
    assert code == 2 and "-1" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_probe_file_that_is_not_utf8_is_one_line(tmp_path, data):
    bad = tmp_path / "p.toml"
    bad.write_bytes('id = "p"\ntitle = "caf\xe9"\n'.encode("latin-1"))
    code, _, err = run("audit", "py:conftest_plugins:colour", "--probe", bad, "--out", tmp_path / "o",
                       "--cache-dir", tmp_path / "c")
    assert code == 2 and "not UTF-8" in _one_line(err)


@pytest.mark.parametrize("debug", [False, True])
def test_internal_errors_exit_3_with_and_without_debug(tmp_path, data, monkeypatch, debug):
    import creepscan.audit

    def broken(*a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(creepscan.audit, "run_audit", broken)
    code, _, err = _audit(tmp_path, data, *(["--debug"] if debug else []))
    assert code == 3 and "internal error: RuntimeError: a bug" in err
    assert ("Traceback" in err) == debug


def _disk_full_under(monkeypatch, *full):
    """Make every file under the folders ``full`` fail as on a full disk: its data is written up to
    half, then syncing it raises OSError(ENOSPC), as the kernel reports a full disk at the latest."""
    import errno
    import os

    real_fsync = os.fsync
    roots = [str(f) for f in full]

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if any(path == r or path.startswith(r + os.sep) for r in roots):
            size = os.fstat(fd).st_size
            os.ftruncate(fd, size // 2)
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.startswith(".creepscan")
                  or p.name.endswith(".tmp"))


def test_a_full_disk_under_out_leaves_nothing_half_written_and_names_a_complete_copy(tmp_path, data, monkeypatch):
    """--out inside a full filesystem: exit 2 (it was 3), no hidden staging folder or temp file left
    on the full disk, no partial report in --out, and a complete copy in the system temp folder."""
    import tempfile

    full, systmp = tmp_path / "full", tmp_path / "systmp"
    full.mkdir()
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    _disk_full_under(monkeypatch, full)
    code, _, err = _audit(tmp_path, data, out=full / "rep")
    line = _one_line(err)
    assert code == 2 and "No space left on device" in line and f"into {full / 'rep'}" in line
    copy = Path(re.search(r"a complete copy is in (\S+):", line).group(1))
    assert copy.parent == systmp
    assert sorted(p.name for p in copy.iterdir()) == ["report.html", "report.json", "report.md"]
    assert json.loads((copy / "report.json").read_text())["probes"][0]["id"] == "face-identity"
    assert "</html>" in (copy / "report.html").read_text()
    assert _leftovers(full) == [] and not (full / "rep").exists()


def test_a_full_disk_at_out_keeps_the_old_report_whole(tmp_path, data, monkeypatch):
    """--out at the full mount point, holding an earlier report: the earlier files stay whole (not
    truncated), and when the temp folder is full too the line says nothing was saved."""
    import tempfile

    full, systmp = tmp_path / "full", tmp_path / "systmp"
    full.mkdir()
    systmp.mkdir()
    (full / "report.html").write_text("<html>earlier run</html>")
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    _disk_full_under(monkeypatch, full, systmp)
    code, _, err = _audit(tmp_path, data, out=full)
    line = _one_line(err)
    assert code == 2 and f"could not write the report into {full}" in line and "no copy could be saved" in line
    assert (full / "report.html").read_text() == "<html>earlier run</html>"
    assert sorted(p.name for p in full.iterdir()) == ["report.html"]
    assert list(systmp.iterdir()) == []


def test_too_small_classes_are_counted_before_anything_is_embedded(tmp_path, monkeypatch):
    """One class of 8 images and one of 2 (min_images_per_class 6): the image list says the probe
    cannot run, so nothing may be embedded first (it was: 10,002 images, 201 s, then the error)."""
    import creepscan.pipeline

    def no_embedding(*a, **k):
        raise AssertionError("embedded before the class counts were checked")

    monkeypatch.setattr(creepscan.pipeline, "embed", no_embedding)
    data = make_folder(tmp_path / "d", n_classes=2, per_class=8, seed=1)
    for extra in sorted((data / "c1").iterdir())[2:]:
        extra.unlink()
    code, _, err = _audit(tmp_path, data)
    line = _one_line(err)
    assert code == 2 and "only 1 class(es) list at least 6 images" in line and "c1 (2)" in line


def test_max_per_class_below_the_probes_minimum_says_to_raise_it(tmp_path, data):
    code, _, err = _audit(tmp_path, data, "--max-per-class", "3")
    line = _one_line(err)
    assert code == 2 and "raise --max-per-class to at least 6" in line
    assert "lower min_images_per_class" not in line


def test_a_run_refused_on_its_inputs_leaves_no_empty_out_folder(tmp_path, monkeypatch):
    """The README's sweep example without the user's checkpoints: exit 2 naming the missing file,
    and no empty sweep-report/ left behind (--out was created before the inputs were checked)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run("sweep", "ViT-B-32", "--weights", "ckpt_1000.pt", "--weights", "ckpt_2000.pt", "--order",
                       "step", "--out", "sweep-report/", "--cache-dir", tmp_path / "c", "-q")
    assert code == 2 and "ckpt_1000.pt" in _one_line(err)
    assert not (tmp_path / "sweep-report").exists()
