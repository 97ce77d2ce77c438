"""The verdict survives an invertible linear map of the embeddings (issue 19, part 1).

Features F of a face-like identity probe (Gaussian identity means, isotropic noise plus a few strong
nuisance directions, as pose and lighting add to real face embeddings) are audited as they are and
multiplied by two invertible matrices an audited party might apply: A1, random with condition
number 1e8, and A2, which shrinks the directions of the audited images' own class means by 1e4.
Features are stored as float32, as the pipeline stores them. Each audit must give F's level."""
import json

import numpy as np
import pytest
from PIL import Image

from creepscan.attacks import evaluate, linear_probe, stratified_split
from creepscan.attacks.preprocess import CANDIDATES, fit_candidates
from creepscan.levels import LEVELS, at_or_above
from creepscan.risk import assess

K, M, D = 16, 20, 64


def identity_features(n_ids=K, per_id=M, dim=D, sep=1.5, nuisance=1.5, seed=0):
    """float64 [n_ids * per_id, dim] features and int labels."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_ids), per_id)
    means = rng.normal(size=(n_ids, dim)) * sep
    nuisance_dirs = rng.normal(size=(4, dim))
    F = means[y] + rng.normal(size=(y.size, dim)) + nuisance * rng.normal(size=(y.size, 4)) @ nuisance_dirs
    return F, y


def ill_conditioned(dim=D, seed=1):
    """U diag(s) V^T with s log-spaced from 1 to 1e-8: condition number 1e8."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    V, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return U @ np.diag(np.logspace(0, -8, dim)) @ V.T


def shrink_class_means(F, y, factor=1e-4):
    """I - P + factor P, P the projection onto the span of the centred class means of F."""
    means = np.stack([F[y == c].mean(0) for c in np.unique(y)])
    _, s, Vt = np.linalg.svd(means - means.mean(0), full_matrices=False)
    Q = Vt[s > 1e-10 * s[0]].T
    P = Q @ Q.T
    return np.eye(F.shape[1]) - P + factor * P


def mapped(F, y):
    """name -> float32 features, the product taken in float64 and then stored as float32."""
    return {"F": F.astype(np.float32), "F@A1": (F @ ill_conditioned(F.shape[1])).astype(np.float32),
            "F@A2": (F @ shrink_class_means(F, y)).astype(np.float32)}


# few-shot's transform choice is the linear probe's machinery per k; the level here is decided by
# verification, so few-shot is left out to keep the test CI-sized
ATTACKS = ("linear_probe", "verification")


@pytest.fixture(scope="module")
def audits():
    F, y = identity_features()
    split = stratified_split(y, seed=0)
    floor = np.random.default_rng(9).normal(size=(y.size, 16)).astype(np.float32)
    fm = evaluate(floor, y, K, split, seed=0, attacks=ATTACKS)
    out = {}
    for name, X in mapped(F, y).items():
        mm = evaluate(X, y, K, split, seed=0, attacks=ATTACKS)
        out[name] = (mm, assess(mm, fm, mm.chance))
    return out, split, y


def test_an_invertible_map_leaves_the_level_and_the_gate_unchanged(audits):
    out, _, _ = audits
    level = out["F"][1].level
    assert level == "critical", out["F"][1].reason
    for name, (mm, a) in out.items():
        assert a.level == level, (name, a.reason)
        for gate in LEVELS:  # --fail-on GATE exits 1 exactly when the level is at or above the gate
            assert at_or_above(a.level, gate) == at_or_above(level, gate)
    # the maps are undone by the unshrunk whitening, which every attack may choose on validation
    for name in ("F@A1", "F@A2"):
        mm = out[name][0]
        assert mm.linear_probe.preprocess == "whiten(shrinkage=0)"
        assert mm.linear_probe.accuracy >= out["F"][0].linear_probe.ci95[0]
        assert mm.to_json()["linear_probe"]["preprocess"] == "whiten(shrinkage=0)"


def test_without_preprocessing_the_shrink_map_hides_the_capability(audits):
    """What the preprocessing buys: on F@A2 the raw L2 probe scores below chance, the whitened one
    as well as on F; raw-cosine verification collapses, the learned metric does not."""
    out, split, y = audits
    X = mapped(*identity_features())["F@A2"]
    raw = linear_probe(X, y, K, split, seed=0)
    assert raw.preprocess == "none" and raw.accuracy < 1.5 / K
    chosen = out["F@A2"][0].linear_probe
    assert chosen.accuracy > 0.9 and chosen.preprocess_search[0] == ["none", pytest.approx(raw.val_accuracy, abs=0.1)]
    assert out["F@A2"][0].verification.tar_at_far["1e-3"] < 0.05
    assert out["F@A2"][0].verification_learned.tar_at_far["1e-3"] > 0.5


def test_learned_metric_tar_on_the_ill_conditioned_map_is_within_the_ci_of_f(audits):
    out, _, _ = audits
    f = out["F"][0].verification_learned
    lo, hi = f.tar_ci95["1e-3"]
    a1 = out["F@A1"][0].verification_learned
    assert lo <= a1.tar_at_far["1e-3"] <= hi
    assert a1.pair_digest == out["F@A1"][0].verification.pair_digest == f.pair_digest  # the same pairs
    # A2 is undone exactly (up to float32 storage): the same scores as F's
    a2 = out["F@A2"][0].verification_learned
    assert np.allclose(a2.genuine_scores, f.genuine_scores, atol=1e-3)
    os_f, os_a2 = out["F"][0].open_set_learned, out["F@A2"][0].open_set_learned
    assert os_f.design_digest == out["F"][0].open_set.design_digest
    assert abs(os_f.rank1 - os_a2.rank1) < 0.02


def test_transforms_fit_on_training_rows_only_and_are_deterministic(audits):
    _, split, y = audits
    X = mapped(*identity_features())["F@A1"]
    clean = fit_candidates(X, split.train)
    poisoned = X.copy()
    poisoned[np.concatenate([split.val, split.test])] = 1e6
    for a, b in zip(clean, fit_candidates(poisoned, split.train)):
        assert a.name == b.name
        for attr in ("mean", "matrix", "scale"):
            assert (getattr(a, attr) is None) == (getattr(b, attr) is None)
            if getattr(a, attr) is not None:
                assert np.array_equal(getattr(a, attr), getattr(b, attr))
    names = [t.name for t in clean]
    assert names[0] == "none" and "whiten(shrinkage=0)" in names and set(names) <= set(CANDIDATES)
    # features white up to sampling noise skip the whitening (it could only add noise)
    white = np.random.default_rng(0).normal(size=(400, 16))
    assert [t.name for t in fit_candidates(white, np.arange(300))] == ["none"]
    assert len(fit_candidates(white, np.arange(300), skip_white=False)) == len(CANDIDATES)
    F = mapped(*identity_features())["F"]
    again = evaluate(F, y, K, split, seed=0, attacks=ATTACKS).to_json()  # same seed, same numbers
    assert json.dumps(again) == json.dumps(audits[0]["F"][0].to_json())
    assert again["linear_probe"]["preprocess_search"][0][0] == "none"


def _image_folder(root, y):
    """One 8x8 PNG per row of the feature table, its row index in the first two pixels."""
    for i, c in enumerate(y):
        d = root / f"id{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        a = np.zeros((8, 8, 3), np.uint8)
        a[0, 0, 0], a[0, 0, 1] = i // 256, i % 256
        Image.fromarray(a).save(d / f"{i:04d}.png")
    return root


def test_the_cli_gives_f_s_level_and_gate_for_ill_conditioned_features(tmp_path, monkeypatch, audits):
    """F@A1, stored as float32 by the pipeline and its cache, through `creepscan audit` with a plug-in
    encoder: the level of F's own audit and the same --fail-on outcome."""
    from click.testing import CliRunner

    from creepscan.attacks import splits
    from creepscan.cli import main

    F, y = identity_features()
    data = _image_folder(tmp_path / "faces", y)
    np.save(tmp_path / "feats.npy", mapped(F, y)["F@A1"])
    monkeypatch.setenv("CS_TEST_FEATS", str(tmp_path / "feats.npy"))
    root = tmp_path / "probes" / "reparam"
    root.mkdir(parents=True)
    (root / "faces.toml").write_text('id = "faces"\ntitle = "Faces"\ncapability = "x"\npolicy = ["p"]\n'
                                     'attacks = ["linear_probe", "verification"]\n[source]\nkind = "lfw"\n')
    monkeypatch.setenv("CREEPSCAN_PROBES", str(tmp_path / "probes"))
    monkeypatch.setattr(splits, "FOLDS_MAX_IMAGES", 100)  # one split, as the evaluate()-level audits: CI-sized
    res = CliRunner().invoke(main, ["audit", "py:conftest_plugins:lookup", "--suite", "reparam", "--probe", "faces",
                                    "--data", f"faces={data}", "--out", str(tmp_path / "r"),
                                    "--cache-dir", str(tmp_path / "cache"), "--quiet", "--fail-on", "high"],
                             catch_exceptions=False)
    probe = json.loads((tmp_path / "r" / "report.json").read_text())["probes"][0]
    level = audits[0]["F"][1].level
    assert probe["risk_level"] == level == "critical", probe["risk_reason"]
    assert res.exit_code == 1 and at_or_above(level, "high")  # the gate trips, as it does for F
    assert probe["metrics"]["linear_probe"]["preprocess"] == "whiten(shrinkage=0)"
    assert probe["metrics"]["verification_learned"]["tar_at_far"]["1e-3"] > 0.5
