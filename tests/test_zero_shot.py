import numpy as np
import pytest
import torch

from creepscan.attacks.zero_shot import class_text_embeddings, zero_shot

NAMES = ["cat", "dog", "owl", "eel", "bee", "ant"]


def clusters(n_classes=6, per_class=20, dim=32, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * sep
    y = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    return (centres[y] + rng.standard_normal((y.size, dim))).astype(np.float32), y, centres


def fake_text_tower(centres, seed=0):
    """encode_text: the class mean of the named class, scaled and slightly perturbed per prompt."""
    rng = np.random.default_rng(seed)
    calls = []

    def encode_text(prompts):
        calls.append(list(prompts))
        rows = []
        for p in prompts:
            name = next(n for n in NAMES if n in p)
            v = centres[NAMES.index(name)] * (1 + len(p) % 3) + 0.05 * rng.standard_normal(centres.shape[1])
            rows.append(v)
        return torch.tensor(np.array(rows), dtype=torch.float32)  # a torch tensor, like real towers
    return encode_text, calls


def test_text_tower_equal_to_class_means_gives_near_perfect_accuracy():
    X, y, centres = clusters()
    encode, calls = fake_text_tower(centres)
    T = class_text_embeddings(encode, NAMES, ["a photo of a {}.", "a blurry photo of the {}", "{}"])
    assert T.shape == (6, 32) and T.dtype == np.float32
    assert np.allclose(np.linalg.norm(T, axis=1), 1.0, atol=1e-5)
    assert sum(len(c) for c in calls) == 18
    assert calls[0][:3] == ["a photo of a cat.", "a blurry photo of the cat", "cat"]
    res = zero_shot(X, y, T, 6, seed=0)
    assert res.accuracy > 0.97 and res.skill > 0.95
    assert res.ci95[0] <= res.accuracy <= res.ci95[1]
    assert np.array_equal(res.test_correct, res.test_pred == y)
    assert set(res.to_json()) >= {"accuracy", "ci95"}


def test_wrong_text_embeddings_give_chance_and_candidates_restrict_predictions():
    X, y, centres = clusters(seed=1)
    T = np.random.default_rng(5).standard_normal((6, 32)).astype(np.float32)
    res = zero_shot(X, y, T, 6, seed=0)
    assert res.ci95[0] < 0.45
    keep = np.isin(y, [0, 2, 4])
    T_good = centres.astype(np.float32)
    sub = zero_shot(X[keep], y[keep], T_good, 6, seed=0, candidates=[0, 2, 4])
    assert set(np.unique(sub.test_pred)) <= {0, 2, 4} and sub.chance == pytest.approx(1 / 3)


def test_averaging_normalises_each_prompt_first():
    # template "A" gives a 100x longer embedding than template "b": each prompt is normalised
    # before the mean, so both templates weigh the same
    def encode(prompts):
        return np.array([[100.0, 0.0] if p.startswith("A") else [0.0, 1.0] for p in prompts])
    T = class_text_embeddings(encode, ["x", "y"], ["A {}", "b {}"])
    assert np.allclose(T, np.sqrt(0.5), atol=1e-6)


def test_bad_inputs():
    X, y, centres = clusters()
    encode, _ = fake_text_tower(centres)
    with pytest.raises(ValueError, match="placeholder"):
        class_text_embeddings(encode, NAMES, ["a photo"])
    with pytest.raises(ValueError, match="templates is empty"):
        class_text_embeddings(encode, NAMES, [])
    with pytest.raises(ValueError, match="share an embedding space"):
        zero_shot(X, y, np.ones((6, 5)), 6, seed=0)
