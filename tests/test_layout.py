"""The repository's own shape: it stands alone (no file cites documents outside it)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Documents that lived outside the repository while it was written: the project must not point at them.
OUTSIDE = re.compile(r"\.\./shared|/work/shared|\bCONTRACT(\.md)?\b|\bDESIGN\.md\b")


def tracked_text_files() -> list[Path]:
    """Every file git tracks, except third-party data kept verbatim under tests/data/."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = [ROOT / p for p in out.decode().split("\0") if p and not p.startswith("tests/data/")]
    return [p for p in paths if p.is_file() and p.suffix not in {".safetensors", ".png", ".jpg"}]


def test_nothing_cites_documents_outside_the_repository():
    here = Path(__file__).resolve()
    hits = []
    for path in tracked_text_files():
        if path == here:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits += [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
                 for i, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "cites a document outside the repository:\n" + "\n".join(hits)


def test_the_documents_the_code_points_to_exist():
    for doc in ("docs/design.md", "docs/report-format.md", "docs/INTERFACES.md"):
        assert (ROOT / doc).is_file(), doc


def test_fixtures_is_a_folder_not_a_package_that_shadows_the_pypi_one():
    assert (ROOT / "fixtures" / "generate.py").is_file()
    assert not (ROOT / "fixtures" / "__init__.py").exists()


def test_ci_lints_before_it_tests():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "ruff check ." in lines and lines.index("ruff check .") < lines.index('pip install -e ".[dev]" && pytest -q')
    assert "[tool.ruff]" in (ROOT / "pyproject.toml").read_text()
