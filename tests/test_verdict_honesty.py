"""Verdicts the audited party cannot steer: label names, a text tower that knows nothing, a floor or
an attack below chance. (The invariance to linear maps of the embeddings is tested with the
attacks' preprocessing.)"""
import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_folder
from conftest_plugins import Blind, Colour

from creepscan.attacks import evaluate
from creepscan.attacks.splits import stratified_split
from creepscan.attacks.zero_shot import label_permutation_test
from creepscan.cli import main
from creepscan.risk import assess


def _random_text(texts, salt: str, dim: int):
    """A text tower that knows nothing: each prompt's embedding is noise seeded by its own words."""
    out = []
    for t in texts:
        seed = int.from_bytes(hashlib.sha256((salt + t).encode()).digest()[:8], "little")
        out.append(np.random.default_rng(seed).standard_normal(dim))
    return np.asarray(out, dtype=np.float32)


class TalkingColour(Colour):
    """The colour plug-in (hue-coded labels are all it sees) with a text tower of noise."""

    name = "test-colour-random-text"
    fingerprint = "test-colour-random-text-v1"

    def encode_text(self, texts):
        return _random_text(texts, "model", 15)


def talking_colour():
    enc = TalkingColour()
    enc.floor = Blind()
    return enc


NAMINGS = [("red", "blue"), ("blue", "red"), ("class_a", "class_b"), ("class_b", "class_a")]


def test_renaming_a_probes_labels_four_ways_gives_one_level(tmp_path):
    levels, zero_shot = [], []
    for i, names in enumerate(NAMINGS):
        root = make_folder(tmp_path / f"d{i}", n_classes=2, per_class=16, seed=3)
        for c, name in enumerate(names):
            (root / f"c{c}").rename(root / name)
        out = tmp_path / f"r{i}"
        result = CliRunner().invoke(main, ["audit", "py:test_verdict_honesty:talking_colour", "--probe",
                                           "face-identity", "--data", f"face-identity={root}", "--out", str(out),
                                           "--cache-dir", str(tmp_path / "cache"), "--quiet"], catch_exceptions=False)
        assert result.exit_code in (0, 1), result.stderr
        p = json.loads((out / "report.json").read_text())["probes"][0]
        levels.append(p["risk_level"])
        zero_shot.append(p["metrics"]["zero_shot"])
        assert p["metrics"]["zero_shot"]["label_permutation"]["p_value"] >= 0.5  # two names: never below 1/2
        assert "zero_shot" not in p["risk_rule"]
        assert all(t["skill_gain"] <= 1.0 and t["ci95"][1] <= 1.0 for t in p["uplift"]["tests"])
    assert len(set(levels)) == 1, list(zip(NAMINGS, levels))
    # the names did matter to zero-shot (right by luck one way, wrong the other): the level did not follow
    accs = [z["accuracy"] for z in zero_shot]
    assert max(accs) - min(accs) > 0.2, accs


def _two_clusters(seed=0, per_class=60):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], per_class)
    centres = np.array([[3.0, 0, 0, 0], [-3.0, 0, 0, 0]])
    X = (centres[y] + rng.standard_normal((y.size, 4))).astype(np.float32)
    return X, y, centres


def test_two_label_zero_shot_with_a_random_text_tower_never_decides_the_level():
    X, y, centres = _two_clusters()
    split = stratified_split(y, seed=0)
    floor = evaluate(np.random.default_rng(9).standard_normal(X.shape).astype(np.float32), y, 2, split, seed=0,
                     attacks=("linear_probe", "few_shot"))
    levels = []
    for order in ([0, 1], [1, 0]):  # the text tower "right" by luck, then wrong
        T = centres[order] / 3.0
        model = evaluate(X, y, 2, split, seed=0, attacks=("linear_probe", "few_shot", "zero_shot"),
                         text_embeddings=T.astype(np.float32))
        assert model.zero_shot.label_permutation["min_p"] == 0.5
        a = assess(model, floor, chance=model.chance)
        assert "zero_shot" not in a.rule and a.level != "critical"
        levels.append(a.level)
    assert levels[0] == levels[1]
    # the same with the names known to a text tower, but only two of them: p can never go below 1/2
    assert label_permutation_test(y, y, [0, 1], seed=0)["p_value"] == 0.5


def test_no_gain_exceeds_one_when_the_floor_is_below_chance():
    X, y, centres = _two_clusters(seed=1)
    split = stratified_split(y, seed=0)
    attacks = ("linear_probe", "few_shot", "zero_shot")
    model = evaluate(X, y, 2, split, seed=0, attacks=attacks, text_embeddings=(centres / 3.0).astype(np.float32))
    floor = evaluate(X, y, 2, split, seed=0, attacks=attacks,
                     text_embeddings=(centres[[1, 0]] / 3.0).astype(np.float32))
    assert model.zero_shot.skill > 0.9 and floor.zero_shot.skill < -0.9     # +1 against -1
    a = assess(model, floor, chance=model.chance)
    zs = next(t for t in a.uplift.tests if t.attack == "zero_shot")
    assert zs.skill_gain <= 1.0 and zs.floor_clipped_to_chance and zs.ci95[1] <= 1.0
    assert zs.skill_gain == pytest.approx(model.zero_shot.skill, abs=1e-6)  # the floor read at chance
    assert all(t.skill_gain <= 1.0 for t in a.uplift.tests)
    assert zs.p_value >= 0.5  # two names: the label-name null holds the zero-shot test back
    assert "+2.00" not in a.reason and a.level != "critical"
    # the floor's own below-chance zero-shot is flagged in its JSON
    assert floor.to_json()["zero_shot"]["below_chance"] is True
