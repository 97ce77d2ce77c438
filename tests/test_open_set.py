import json

import numpy as np
import pytest

from creepscan.attacks.open_set import (
    FPIR_LEVELS,
    MIN_IDENTITIES,
    OpenSetResult,
    open_set_identification,
    paired_open_set_test,
)


def clusters(n_ids, per_id, dim=32, sep=1.0, seed=0):
    """Identity centres * sep plus unit noise; per_id an int or one count per identity."""
    rng = np.random.default_rng(seed)
    counts = np.full(n_ids, per_id) if np.isscalar(per_id) else np.asarray(per_id)
    y = rng.permutation(np.repeat(np.arange(n_ids), counts))
    centres = rng.standard_normal((n_ids, dim)) * sep
    return (centres[y] + rng.standard_normal((y.size, dim))).astype(np.float32), y


def test_perfect_separation_identifies_everyone():
    X, y = clusters(60, 40, sep=50.0, seed=1)
    res = open_set_identification(X, y, seed=0)
    assert res.measurable and res.reason is None
    assert res.rank1 == 1.0 and res.fnir_at_fpir == {"1e-1": 0.0, "1e-2": 0.0}
    assert res.n_gallery_identities == 30 and res.n_nonmated_identities == 30
    assert res.n_mated_searches == 30 * 39 and res.n_nonmated_searches == 30 * 40
    lo, hi = res.rank1_ci95
    assert hi == 1.0 and lo <= 0.025 ** (1 / 30) < 1.0  # CI does not collapse at the ceiling
    assert res.fnir_ci95["1e-1"][0] == 0.0 and res.fnir_ci95["1e-1"][1] > 0.0
    out = res.to_json()
    json.dumps(out, allow_nan=False)
    assert out["fnir_at_fpir"] == {"1e-1": 0.0, "1e-2": 0.0} and out["not_measurable"] == []
    det = np.array(out["det"])
    assert det[-1, 0] == 1.0 and np.all(np.diff(det[:, 0]) >= 0) and np.all(np.diff(det[:, 1]) <= 0)


def test_random_features_miss_almost_every_search():
    """With features that carry no identity, a mated search is a hit only when its true template
    happens to be the top candidate (1 in N) and clears the threshold (which the top non-mated
    score does with probability FPIR): FNIR = 1 - FPIR / N, at least 1 - FPIR."""
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(60), 40)
    X = rng.standard_normal((y.size, 64)).astype(np.float32)
    res = open_set_identification(X, y, seed=0)
    n = res.n_gallery_identities
    assert res.rank1 == pytest.approx(1 / n, abs=0.02)
    for name, fpir in FPIR_LEVELS.items():
        assert 1 - fpir <= res.fnir_at_fpir[name] <= 1.0
        assert res.fnir_at_fpir[name] == pytest.approx(1 - fpir / n, abs=0.01)
        lo, hi = res.fnir_ci95[name]
        assert lo <= 1 - fpir / n <= hi


def test_split_keeps_enrolled_and_never_enrolled_apart_and_depends_on_labels_and_seed():
    X, y = clusters(21, [1, 2, 3] * 7, seed=3)  # identities with one image cannot be enrolled
    noise = np.random.default_rng(0).standard_normal(X.shape).astype(np.float32)
    a = open_set_identification(X, y, seed=4)
    b = open_set_identification(noise, y, seed=4)
    assert not set(a.gallery_labels) & set(a.nonmated_labels)
    assert set(a.gallery_labels) | set(a.nonmated_labels) == set(range(21))
    counts = np.bincount(y)
    assert np.all(counts[a.gallery_labels] >= 2)  # one image to enrol, one to search
    assert a.n_nonmated_searches == counts[a.nonmated_labels].sum()
    assert a.n_mated_searches == counts[a.gallery_labels].sum() - a.n_gallery_identities
    assert a.design_digest == b.design_digest
    assert np.array_equal(a.gallery_labels, b.gallery_labels)
    c = open_set_identification(X, y, seed=5)
    assert c.design_digest != a.design_digest
    assert json.dumps(a.to_json()) == json.dumps(open_set_identification(X, y, seed=4).to_json())


def test_rates_match_the_protocol_written_out():
    X, y = clusters(12, 6, dim=8, sep=0.8, seed=5)
    res = open_set_identification(X, y, seed=1, n_enrol=2)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    # rebuild the templates from the enrolment images the design chose (the gallery images that are
    # not mated searches), then score every search by hand
    from creepscan.attacks.open_set import _design
    gallery, nonmated, enrol, mated, mated_pos, nm_rows, nm_pos = _design(y, [1], 2, 0.5)
    assert np.array_equal(gallery, res.gallery_labels)
    T = np.stack([Xn[e].mean(0) / np.linalg.norm(Xn[e].mean(0)) for e in enrol])
    top = np.array([max(Xn[i] @ T.T) for i in nm_rows])
    per_id = np.bincount(nm_pos)
    w_nm = 1.0 / (per_id.size * per_id[nm_pos])
    hits, r1 = [], []
    for i, p in zip(mated, mated_pos):
        s = Xn[i] @ T.T
        first = s[p] > np.max(np.delete(s, p))
        r1.append(first)
        hits.append(s[p] if first else -np.inf)
    hits, r1 = np.array(hits), np.array(r1)
    per_g = np.bincount(mated_pos)
    w_m = 1.0 / (per_g.size * per_g[mated_pos])
    assert res.rank1 == pytest.approx(np.sum(w_m * r1))
    for name, fpir in FPIR_LEVELS.items():
        if res.fnir_at_fpir[name] is None:
            assert res.n_eff_nonmated < 10 / fpir
            continue
        # strictest threshold among non-mated top scores with weighted FPIR <= target
        best = None
        for t in np.concatenate([[-np.inf], np.sort(top)]):
            if np.sum(w_nm[top > t]) <= fpir + 1e-12:
                best = t
                break
        assert res.threshold_at_fpir[name] == pytest.approx(best)
        assert res.fnir_at_fpir[name] == pytest.approx(1 - np.sum(w_m * (hits > best)))


def test_too_few_identities_or_images_is_not_measurable():
    X, y = clusters(3, 5)
    res = open_set_identification(X, y, seed=0)
    assert not res.measurable and f">= {MIN_IDENTITIES} identities" in res.reason
    assert res.to_json() == {"measurable": False, "reason": res.reason, "n_identities": 3, "n_enrol": 1}
    X, y = clusters(6, 2)
    res = open_set_identification(X, y, seed=0, n_enrol=2)  # nobody has an image left to search
    assert not res.measurable and "n_enrol" in res.reason
    t = paired_open_set_test(res, res, seed=0)
    assert t["measurable"] is False and t["reason"] == res.reason and t["rank1_p_value"] is None


def test_bad_inputs_raise_value_errors():
    X, y = clusters(6, 4)
    with pytest.raises(ValueError, match="n_enrol"):
        open_set_identification(X, y, seed=0, n_enrol=0)
    with pytest.raises(ValueError, match="nonmated_fraction"):
        open_set_identification(X, y, seed=0, nonmated_fraction=1.0)
    with pytest.raises(ValueError, match="NaN"):
        open_set_identification(np.full_like(X, np.nan), y, seed=0)
    with pytest.raises(ValueError, match="one label per row"):
        open_set_identification(X, y[:-1], seed=0)
    a = open_set_identification(X, y, seed=0)
    with pytest.raises(ValueError, match="same open-set split"):
        paired_open_set_test(a, open_set_identification(X, y, seed=1), seed=0)
    with pytest.raises(ValueError, match="OpenSetResult"):
        paired_open_set_test(a, "floor", seed=0)


def test_paired_test_finds_a_better_model_and_not_an_equal_one():
    y = np.repeat(np.arange(40), 10)
    rng = np.random.default_rng(6)
    centres = rng.standard_normal((40, 32))
    model = open_set_identification(centres[y] * 1.5 + rng.standard_normal((y.size, 32)), y, seed=0)
    floor = open_set_identification(rng.standard_normal((y.size, 32)), y, seed=0)
    t = paired_open_set_test(model, floor, seed=0)
    assert t["measurable"] and t["rank1_delta"] == pytest.approx(model.rank1 - floor.rank1)
    assert t["rank1_delta"] > 0.5 and t["rank1_p_value"] < 0.01 and t["rank1_ci95"][0] > 0
    assert t["fnir_delta"]["1e-1"] < -0.3 and t["fnir_p_value"]["1e-1"] < 0.01
    assert t["lower95_fnir"]["1e-1"] <= t["fnir_delta"]["1e-1"]
    assert t["fnir_p_value"]["1e-2"] is None  # 200 non-mated searches: 1e-2 needs 1000
    same = paired_open_set_test(model, model, seed=0)
    assert same["rank1_delta"] == 0.0 and same["rank1_p_value"] == 1.0


def test_paired_test_false_positive_rate_on_equal_encoders():
    """Two encoders drawn from the same distribution on the same identities: the paired test's
    rejections at alpha stay near alpha."""
    reps, alpha = 120, 0.05
    y = np.repeat(np.arange(40), 8)
    rejected = 0
    for r in range(reps):
        rng = np.random.default_rng([r, 5])
        a = rng.standard_normal((40, 16))[y] * 0.5 + rng.standard_normal((y.size, 16))
        b = rng.standard_normal((40, 16))[y] * 0.5 + rng.standard_normal((y.size, 16))
        ra = open_set_identification(a, y, seed=r, n_boot=400)
        rb = open_set_identification(b, y, seed=r, n_boot=400)
        rejected += paired_open_set_test(ra, rb, seed=r, n_boot=400)["rank1_p_value"] < alpha
    assert rejected / reps <= alpha + 2.5 * np.sqrt(alpha * (1 - alpha) / reps)
    assert isinstance(ra, OpenSetResult)
