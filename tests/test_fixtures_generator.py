"""The synthetic generators: deterministic, reused when complete, signal where promised."""
import hashlib

import numpy as np
from conftest import load_fixture_generator
from PIL import Image

from creepscan.data import load_image_set
from creepscan.data.synthetic import make_attribute, make_digits, make_identities

generate_cli = load_fixture_generator().main


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _colour_centroid_accuracy(root) -> float:
    """Leave-one-out nearest class mean on mean colour: a trivial adversary."""
    s = load_image_set(root)
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(0) for p in s.paths])
    labels = sorted(set(s.labels))
    y = np.array([labels.index(label) for label in s.labels])
    hits = 0
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        means = np.stack([x[keep & (y == c)].mean(0) for c in range(len(labels))])
        hits += int(np.argmin(((means - x[i]) ** 2).sum(1)) == y[i])
    return hits / len(y)


def test_same_arguments_same_bytes(tmp_path):
    a = make_identities(tmp_path / "a", n_classes=3, per_class=4, seed=5)
    b = make_identities(tmp_path / "b", n_classes=3, per_class=4, seed=5)
    assert _digest(a) == _digest(b)
    assert _digest(make_identities(tmp_path / "c", n_classes=3, per_class=4, seed=6)) != _digest(a)


def test_complete_set_is_not_rewritten(tmp_path):
    a = make_identities(tmp_path / "a", n_classes=2, per_class=3)
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*.png")}
    make_identities(tmp_path / "a", n_classes=2, per_class=3)
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*.png")} == before


def test_identities_carry_signal_and_shuffled_ones_do_not(tmp_path):
    chance = 1 / 6
    sig = _colour_centroid_accuracy(make_identities(tmp_path / "s", n_classes=6, per_class=12, seed=1))
    noise = _colour_centroid_accuracy(make_identities(tmp_path / "n", n_classes=6, per_class=12, seed=1, signal=False))
    assert sig > 3 * chance and noise < chance + 0.15


def test_attribute_is_weaker_than_identity(tmp_path):
    acc = _colour_centroid_accuracy(make_attribute(tmp_path / "a", n_classes=2, per_class=30, seed=0))
    assert 0.4 <= acc < 0.95


def test_digits_and_cli(tmp_path, capsys):
    s = load_image_set(make_digits(tmp_path / "d", per_class=3))
    assert len(s) == 30 and sorted(set(s.labels)) == [str(i) for i in range(10)]
    generate_cli([str(tmp_path / "cli"), "--kind", "identities", "--classes", "3", "--per-class", "2"])
    assert "6 images, 3 labels" in capsys.readouterr().out
