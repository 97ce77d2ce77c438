import itertools
import json

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from creepscan.attacks.verification import (
    N_BOOT,
    paired_verification_test,
    roc_auc,
    roc_curve_points,
    tar_at_far,
    verification,
    verification_from_pairs,
)


def clusters(n_classes, per_class, dim=16, sep=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * sep
    y = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    return (centres[y] + rng.standard_normal((y.size, dim))).astype(np.float32), y


def brute_force_pairs(X, y):
    """Every pair i < j: (genuine scores, genuine labels, impostor scores, impostor label pairs)."""
    Xn = X.astype(np.float64) / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    gen, gid, imp, iid = [], [], [], []
    for i, j in itertools.combinations(range(len(y)), 2):
        s = float(Xn[i] @ Xn[j])
        if y[i] == y[j]:
            gen.append(s)
            gid.append(y[i])
        else:
            imp.append(s)
            iid.append((min(y[i], y[j]), max(y[i], y[j])))
    return np.array(gen), np.array(gid), np.array(imp), iid


def identity_weights(gid, iid):
    """The documented weights, computed the plain way: each identity's genuine pairs share 1/K_g,
    each identity pair's impostor pairs share 1/n_cells."""
    g_count = {k: list(gid).count(k) for k in set(gid)}
    c_count = {}
    for c in iid:
        c_count[c] = c_count.get(c, 0) + 1
    gw = np.array([1.0 / (len(g_count) * g_count[k]) for k in gid])
    iw = np.array([1.0 / (len(c_count) * c_count[c]) for c in iid])
    return gw, iw


def brute_tar(gen, imp, far, gw=None, iw=None):
    """Scan every candidate threshold; keep the best TAR with FAR <= far, accept = score > t."""
    gw = np.ones_like(gen) if gw is None else gw
    iw = np.ones_like(imp) if iw is None else iw
    best = 0.0
    for t in np.concatenate([[-np.inf], np.unique(np.concatenate([gen, imp]))]):
        if iw[imp > t].sum() / iw.sum() <= far + 1e-12:
            best = max(best, gw[gen > t].sum() / gw.sum())
    return best


def test_matches_brute_force_on_all_pairs():
    X, y = clusters(8, 20, sep=0.8)  # 160 images: 12720 pairs, 1520 genuine; equal classes: weights equal
    res = verification(X, y, seed=0)
    gen, _, imp, _ = brute_force_pairs(X, y)
    assert not res.sampled
    assert (res.n_genuine, res.n_impostor) == (gen.size, imp.size) == (1520, 11200)
    labels = np.r_[np.ones(gen.size), np.zeros(imp.size)]
    assert res.auc == pytest.approx(roc_auc_score(labels, np.r_[gen, imp]), abs=1e-6)
    assert res.unweighted["auc"] == pytest.approx(res.auc, abs=1e-9)
    for name, far in (("1e-2", 1e-2), ("1e-3", 1e-3)):
        assert res.tar_at_far[name] == pytest.approx(brute_tar(gen, imp, far), abs=2 / gen.size)
        lo, hi = res.tar_ci95[name]
        assert lo <= res.tar_at_far[name] <= hi and hi - lo > 0
    assert res.auc_ci95[0] <= res.auc <= res.auc_ci95[1]
    assert res.not_measurable == []
    out = res.to_json()
    json.dumps(out, allow_nan=False)
    assert {"tar_at_far", "auc", "n_genuine", "n_impostor", "not_measurable", "roc", "tar_ci95", "auc_ci95",
            "n_identities", "unweighted", "ci_method"} <= set(out)
    assert out["n_identities"] == 8 and out["n_identity_pairs"] == 28
    roc = np.array(out["roc"])
    assert 2 <= len(roc) <= 200 and roc[-1].tolist() == [1.0, 1.0]
    assert np.all(np.diff(roc[:, 0]) >= 0) and np.all(np.diff(roc[:, 1]) >= 0)


def test_weighted_statistics_match_brute_force_on_unequal_identities():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(7), [2, 3, 5, 8, 13, 21, 40])  # 92 images, very unequal identities
    X = (rng.standard_normal((7, 12))[y] * 0.9 + rng.standard_normal((y.size, 12))).astype(np.float32)
    res = verification(X, y, seed=0)
    gen, gid, imp, iid = brute_force_pairs(X, y)
    gw, iw = identity_weights(gid, iid)
    labels = np.r_[np.ones(gen.size), np.zeros(imp.size)]
    assert res.auc == pytest.approx(roc_auc_score(labels, np.r_[gen, imp], sample_weight=np.r_[gw, iw]), abs=1e-6)
    assert res.unweighted["auc"] == pytest.approx(roc_auc_score(labels, np.r_[gen, imp]), abs=1e-6)
    assert abs(res.auc - res.unweighted["auc"]) > 0.005  # the weighting changes the answer here
    for far in (0.01, 0.05, 0.2):
        assert tar_at_far(gen, imp, far, genuine_weight=gw, impostor_weight=iw) == pytest.approx(
            brute_tar(gen, imp, far, gw, iw), abs=1e-6)
    # the result's own weights are the documented ones, pair by pair
    order_g = np.lexsort((res.genuine_scores, res.genuine_identity))
    assert np.allclose(np.sort(res.genuine_weight), np.sort(gw))
    assert np.allclose(np.sort(res.impostor_weight), np.sort(iw))
    assert res.genuine_weight[order_g].sum() == pytest.approx(1.0) and res.impostor_weight.sum() == pytest.approx(1.0)


def test_tar_and_auc_on_hand_made_scores_with_ties():
    rng = np.random.default_rng(0)
    imp = np.round(rng.random(5000), 2)   # heavy ties
    gen = np.round(rng.random(300) * 0.5 + 0.5, 2)
    for far in (1e-2, 1e-3, 0.05):
        assert tar_at_far(gen, imp, far) == pytest.approx(brute_tar(gen, imp, far))
    labels = np.r_[np.ones(gen.size), np.zeros(imp.size)]
    assert roc_auc(gen, imp) == pytest.approx(roc_auc_score(labels, np.r_[gen, imp]))
    gw, iw = rng.random(gen.size), rng.random(imp.size)
    assert roc_auc(gen, imp, genuine_weight=gw, impostor_weight=iw) == pytest.approx(
        roc_auc_score(labels, np.r_[gen, imp], sample_weight=np.r_[gw, iw]))
    assert tar_at_far(gen, imp, 0.05, genuine_weight=gw, impostor_weight=iw) == pytest.approx(
        brute_tar(gen, imp, 0.05, gw, iw))
    # all impostors tied at the top: no threshold admits any without admitting all -> TAR 0
    assert tar_at_far(np.array([1.0, 1.0]), np.full(1000, 1.0), 1e-2) == 0.0
    pts = np.array(roc_curve_points(gen, imp))
    assert np.all((0 <= pts) & (pts <= 1)) and np.all(np.diff(pts[:, 0]) >= 0)
    for far, tar in pts:  # each point is an achieved FAR and the TAR at its threshold
        assert tar_at_far(gen, imp, far) == pytest.approx(tar)
    with pytest.raises(ValueError, match="weights must match"):
        tar_at_far(gen, imp, 0.01, genuine_weight=np.ones(3))


def test_far_level_not_measurable_with_few_impostor_pairs():
    X, y = clusters(3, 20, sep=2.0)  # 60 images: 1200 impostor pairs, >= 10 / 1e-2 but < 10 / 1e-3
    res = verification(X, y, seed=0)
    assert res.n_impostor == 60 * 59 // 2 - 3 * 190 == 1200
    assert res.tar_at_far["1e-3"] is None and res.not_measurable == ["1e-3"]
    assert res.tar_at_far["1e-2"] is not None and res.tar_ci95["1e-3"] is None
    assert res.to_json()["tar_at_far"]["1e-3"] is None and res.to_json()["tar_ci95"]["1e-3"] is None
    few = verification(X[:30], y[:30], seed=0)
    assert few.not_measurable == ["1e-2", "1e-3"] and few.tar_at_far == {"1e-2": None, "1e-3": None}
    t = paired_verification_test(res, verification(X[::-1].copy(), y, seed=0), "1e-3", seed=0)
    assert t["tar_p_value"] is None and "1000" in t["tar_not_measurable"] and t["auc_p_value"] is not None


def test_sampled_pairs_are_seeded_within_budget_and_close_to_exact():
    X, y = clusters(20, 30, sep=0.7, seed=1)  # 600 images, 179700 pairs
    exact = verification(X, y, seed=0)
    a = verification(X, y, seed=0, max_pairs=40_000)
    b = verification(X, y, seed=0, max_pairs=40_000)
    assert a.sampled and not exact.sampled
    assert a.n_genuine + a.n_impostor <= 40_000
    assert a.n_genuine == exact.n_genuine  # 8700 genuine pairs fit in half the budget: all kept
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())
    assert a.auc == pytest.approx(exact.auc, abs=0.02)
    assert a.tar_at_far["1e-2"] == pytest.approx(exact.tar_at_far["1e-2"], abs=0.05)
    c = verification(X, y, seed=0, max_pairs=6_000)  # genuine pairs sampled too
    assert c.n_genuine + c.n_impostor <= 6_000 and c.n_genuine < exact.n_genuine
    assert c.auc == pytest.approx(exact.auc, abs=0.04)
    assert verification(X, y, seed=1, max_pairs=40_000).pair_digest != a.pair_digest


def test_pairs_depend_on_labels_and_seed_never_on_features():
    X, y = clusters(20, 30, sep=0.7, seed=1)
    noise = np.random.default_rng(9).standard_normal(X.shape).astype(np.float32) * 100
    for max_pairs in (40_000, 6_000, 2_000_000):  # sampled impostors; sampled genuine too; every pair
        model = verification(X, y, seed=4, max_pairs=max_pairs)
        floor = verification(noise, y, seed=4, max_pairs=max_pairs)
        assert model.pair_digest == floor.pair_digest
        assert np.array_equal(model.genuine_identity, floor.genuine_identity)
        assert np.array_equal(model.impostor_identities, floor.impostor_identities)
        assert np.array_equal(model.impostor_weight, floor.impostor_weight)
        assert not np.array_equal(model.impostor_scores, floor.impostor_scores)
    with pytest.raises(ValueError, match="same pairs"):
        paired_verification_test(model, verification(X, np.roll(y, 1), seed=4), "1e-2", seed=0)


def test_one_prolific_identity_cannot_carry_tar():
    """50 near-identical photos of one person (1225 perfect genuine pairs) beside 20 people whose
    4 photos each match no better than strangers (120 genuine pairs): per pair TAR ~0.9, per
    identity ~1/21."""
    rng = np.random.default_rng(1)
    d = 64
    prolific = rng.standard_normal(d) + 0.01 * rng.standard_normal((50, d))
    others = rng.standard_normal((80, d))
    X = np.vstack([prolific, others]).astype(np.float32)
    y = np.r_[np.zeros(50, int), np.repeat(np.arange(1, 21), 4)]
    res = verification(X, y, seed=0)
    assert res.unweighted["tar_at_far"]["1e-2"] > 0.85 and res.unweighted["auc"] > 0.9
    assert res.tar_at_far["1e-2"] < 0.2 and res.auc < 0.65
    assert res.tar_ci95["1e-2"][1] < 0.5


def test_separable_identities_ci_never_collapses_and_bad_inputs():
    X, y = clusters(10, 20, sep=6.0, seed=2)
    res = verification(X, y, seed=0)
    assert res.auc > 0.99 and res.tar_at_far["1e-3"] > 0.9
    assert res.tar_at_far["1e-2"] == 1.0
    lo, hi = res.tar_ci95["1e-2"]
    assert hi == 1.0 and lo <= 0.025 ** (1 / 10) < 1.0  # 10 identities all perfect: not proof of 1.0
    with pytest.raises(ValueError, match="NaN"):
        verification(np.full((4, 2), np.nan), np.array([0, 0, 1, 1]), seed=0)
    with pytest.raises(ValueError, match=">= 2 classes"):
        verification(X[:5], np.zeros(5, int), seed=0)
    with pytest.raises(ValueError, match="seed"):
        verification(X, y, seed=-1)
    with pytest.raises(ValueError, match="with itself"):
        verification_from_pairs([0.5], [0], [0.1], [[1, 1]], 2, seed=0)
    with pytest.raises(ValueError, match="far must be"):
        paired_verification_test(res, res, "1e-4", seed=0)


def test_bootstrap_is_seeded():
    X, y = clusters(12, 10, sep=1.0, seed=3)
    a, b = verification(X, y, seed=5), verification(X, y, seed=5)
    c = verification(X, y, seed=6)
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())
    assert a.pair_digest == c.pair_digest  # every pair scored: the seed only moves the CI draws
    assert a.auc == c.auc and a.auc_ci95 != c.auc_ci95


# ---------------------------------------------------------------------------------------------
# Calibration on synthetic identities with a known truth (score-level model, so the truth is exact)
# ---------------------------------------------------------------------------------------------
# Genuine pairs of identity a score mu_a + e (mu_a ~ N(MU, TAU^2)); impostor pairs of identities
# (a, b) score u_a + u_b + e (u ~ N(0, SU^2)); e ~ N(0, 1); identities have 1-15 genuine pairs and
# identity pairs 1-6 impostor pairs. Identity-weighted truth: FAR(t) = P(N(0, 1 + 2 SU^2) > t),
# TAR(t) = P(N(MU, 1 + TAU^2) > t), AUC = P(N(MU, 2 + TAU^2 + 2 SU^2) > 0).
MU, TAU, SU = 1.5, 0.6, 0.3


def identity_scores(rng, K, mu=MU, pairs=None):
    if pairs is None:
        gid = np.repeat(np.arange(K), rng.integers(1, 16, K))
        a, b = np.triu_indices(K, 1)
        n_c = rng.integers(1, 7, a.size)
        pairs = gid, np.stack([np.repeat(a, n_c), np.repeat(b, n_c)], axis=1)
    gid, iid = pairs
    mu_a, u = rng.normal(mu, TAU, K), rng.normal(0.0, SU, K)
    gen = mu_a[gid] + rng.standard_normal(gid.size)
    imp = u[iid[:, 0]] + u[iid[:, 1]] + rng.standard_normal(len(iid))
    return gen, imp, pairs


def test_ci_coverage_of_tar_and_auc_on_known_truth():
    # Measured apart on 800-1000 replicates each: AUC covers ~0.945 with 40 identities and ~0.95+
    # with 80; TAR ~0.97 (conservative). 60 identities here, AUC by its linearised bootstrap (what
    # an audit of LFW's size uses).
    K, reps, far = 60, 300, 1e-2
    t = np.sqrt(1 + 2 * SU ** 2) * norm.isf(far)
    true_tar = norm.sf((t - MU) / np.sqrt(1 + TAU ** 2))
    true_auc = norm.cdf(MU / np.sqrt(2 + TAU ** 2 + 2 * SU ** 2))
    hits_tar = hits_auc = 0
    for r in range(reps):
        gen, imp, (gid, iid) = identity_scores(np.random.default_rng([r, 99]), K)
        res = verification_from_pairs(gen, gid, imp, iid, K, seed=r, n_boot=400, auc_ci="linearised")
        lo, hi = res.tar_ci95["1e-2"]
        hits_tar += lo <= true_tar <= hi
        hits_auc += res.auc_ci95[0] <= true_auc <= res.auc_ci95[1]
    assert hits_tar / reps >= 0.94 and hits_auc / reps >= 0.94


def test_exact_and_linearised_auc_intervals_agree():
    K = 30
    gen, imp, (gid, iid) = identity_scores(np.random.default_rng(0), K)
    exact = verification_from_pairs(gen, gid, imp, iid, K, seed=0, auc_ci="exact")
    lin = verification_from_pairs(gen, gid, imp, iid, K, seed=0, auc_ci="linearised")
    assert exact.auc == lin.auc and exact.tar_ci95 == lin.tar_ci95
    width = exact.auc_ci95[1] - exact.auc_ci95[0]
    assert np.allclose(exact.auc_ci95, lin.auc_ci95, atol=0.15 * width)
    assert "exact" in exact.to_json()["ci_method"] and "linearised" in lin.to_json()["ci_method"]


def test_paired_test_false_positive_rate_and_power():
    K, reps, alpha = 40, 200, 0.05
    false_tar = false_auc = found_tar = found_auc = 0

    def scored(gen, imp, pairs, r):
        return verification_from_pairs(gen, pairs[0], imp, pairs[1], K, seed=r, n_boot=400, auc_ci="linearised")

    for r in range(reps):
        rng = np.random.default_rng([r, 77])
        gm, im, pairs = identity_scores(rng, K)
        gf, iff, _ = identity_scores(rng, K, pairs=pairs)             # an equally good encoder
        gb, ib, _ = identity_scores(rng, K, mu=MU + 1.5, pairs=pairs)  # a clearly better one (TAR 0.19 -> 0.66)
        floor = scored(gf, iff, pairs, r)
        same = paired_verification_test(scored(gm, im, pairs, r), floor, "1e-2", seed=r, n_boot=400)
        better = paired_verification_test(scored(gb, ib, pairs, r), floor, "1e-2", seed=r, n_boot=400)
        false_tar += same["tar_p_value"] < alpha
        false_auc += same["auc_p_value"] < alpha
        found_tar += better["tar_p_value"] < alpha and better["tar_delta"] > 0
        found_auc += better["auc_p_value"] < alpha and better["auc_delta"] > 0
    se = np.sqrt(alpha * (1 - alpha) / reps)
    # the AUC test holds its size; the TAR test is conservative (see the module docstring)
    assert false_tar / reps <= alpha + 2.5 * se
    assert abs(false_auc / reps - alpha) <= 2.5 * se
    assert found_tar / reps >= 0.9 and found_auc / reps >= 0.9


def test_paired_test_on_features_model_vs_noise_floor():
    X, y = clusters(30, 8, dim=32, sep=1.5, seed=4)
    floor_X = np.random.default_rng(1).standard_normal(X.shape).astype(np.float32)
    model, floor = verification(X, y, seed=0), verification(floor_X, y, seed=0)
    t = paired_verification_test(model, floor, "1e-2", seed=[0, 15])
    assert t["tar_delta"] == pytest.approx(model.tar_at_far["1e-2"] - floor.tar_at_far["1e-2"])
    assert t["tar_delta"] > 0.3 and t["tar_p_value"] < 0.01 and t["tar_ci95"][0] > 0
    assert t["auc_delta"] > 0.2 and t["auc_p_value"] < 0.01
    assert t["tar_ci95"][0] <= t["tar_delta"] <= t["upper95_tar"] <= t["tar_ci95"][1]
    assert t["se_tar"] > 0 and t["n_boot"] == N_BOOT and "identity-level" in t["method"]
    same = paired_verification_test(model, model, "1e-2", seed=0)
    assert same["tar_delta"] == 0.0 and same["tar_p_value"] == 1.0 and same["tar_ci95"] == [0.0, 0.0]
    assert paired_verification_test(model, floor, "1e-2", seed=[0, 15]) == t
