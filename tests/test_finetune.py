import json

import numpy as np
import pytest
import torch
from conftest import TINY, make_folder
from PIL import Image

from creepscan.attacks import linear_probe
from creepscan.attacks.finetune import finetune_attack
from creepscan.attacks.splits import stratified_split


@pytest.fixture(scope="module")
def tiny_encoder(tiny_weights):
    from creepscan.encoders.openclip import from_local_weights

    return from_local_weights(TINY, tiny_weights["safetensors"])


def _load(encoder, root):
    paths = sorted(root.glob("*/*.png"))
    y = np.array([int(p.parent.name[1:]) for p in paths])
    images = torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths])
    return images, y


@pytest.fixture(scope="module")
def hue_data(tiny_encoder, tmp_path_factory):
    """12 hue-coded classes x 30 images: separable, but not perfectly by the frozen prototypes."""
    folder = make_folder(tmp_path_factory.mktemp("ft") / "imgs", n_classes=12, per_class=30, seed=1)
    images, y = _load(tiny_encoder, folder)
    return images, y, stratified_split(y, seed=0)


def _without_timings(js):
    js = dict(js, prefix_seconds=None)
    js["points"] = [dict(p, seconds=None) for p in js["points"]]
    return js


def test_fitting_sees_train_images_only_within_the_budget_and_is_deterministic(tiny_encoder, hue_data):
    images, y, split = hue_data
    before = {k: v.clone() for k, v in tiny_encoder.model.state_dict().items()}
    steps_seen = []
    requested = []

    def get(rows):  # every image the attack asks for, for whatever purpose
        requested.append(np.asarray(rows))
        return images[torch.from_numpy(rows)]

    budgets = ((1, 6), (4, 12), (40, 5))
    res = finetune_attack(tiny_encoder, get, y, split, budgets=budgets, seed=0, batch=16, on_step=steps_seen.append)
    # k=40 is more than any class has in training: reported, not run
    assert [(p.k, p.steps) for p in res.points] == [(1, 6), (4, 12)]
    assert res.unavailable[0]["k"] == 40 and "fewer than 40 training images" in res.unavailable[0]["reason"]
    # every optimiser step drew its minibatch from the point's fitting rows: k per class of split.train
    assert len(steps_seen) == 6 + 12
    for p, batches in ((res.points[0], steps_seen[:6]), (res.points[1], steps_seen[6:])):
        assert np.isin(p.fit_rows, split.train).all()
        assert np.array_equal(np.bincount(y[p.fit_rows], minlength=12), np.full(12, p.k))
        for rows in batches:
            assert rows.size == min(16, 12 * p.k) and np.isin(rows, p.fit_rows).all()
            assert not np.isin(rows, np.concatenate([split.val, split.test])).any()
        assert 0 <= p.stopped_at <= p.steps and p.flops == p.flops_per_step * p.steps > 0
        assert p.test_correct.shape == split.test.shape and p.ci95[0] <= p.accuracy <= p.ci95[1]
    # test images are asked for only once per point, after fitting, and never with other rows
    test_requests = [r for r in requested if np.isin(r, split.test).any()]
    assert all(np.isin(r, split.test).all() for r in test_requests)
    assert np.array_equal(np.concatenate(test_requests), np.tile(split.test, 2))
    # the caller's model is untouched
    assert all(torch.equal(before[k], v) for k, v in tiny_encoder.model.state_dict().items())
    # same seed, same numbers
    again = finetune_attack(tiny_encoder, images, y, split, budgets=budgets, seed=0, batch=16)
    assert json.dumps(_without_timings(again.to_json())) == json.dumps(_without_timings(res.to_json()))
    assert all(np.array_equal(a.test_pred, b.test_pred) for a, b in zip(again.points, res.points))


def test_early_stopping_reads_validation_only(tiny_encoder, hue_data):
    images, y, split = hue_data
    budgets = ((4, 12),)
    clean = finetune_attack(tiny_encoder, images, y, split, budgets=budgets, seed=0)
    poisoned = images.clone()
    poisoned[torch.from_numpy(split.test)] = float("nan")  # anything computed from a test image turns NaN
    res = finetune_attack(tiny_encoder, poisoned, y, split, budgets=budgets, seed=0)
    a, b = clean.points[0], res.points[0]
    assert ((a.val_accuracy, a.initial_val_accuracy, a.stopped_at)
            == (b.val_accuracy, b.initial_val_accuracy, b.stopped_at))
    # validation images do steer the choice of the checkpoint
    nan_val = images.clone()
    nan_val[torch.from_numpy(split.val)] = float("nan")
    blind = finetune_attack(tiny_encoder, nan_val, y, split, budgets=budgets, seed=0).points[0]
    assert blind.val_accuracy < a.val_accuracy


def test_fine_tuning_adapts_the_tower_and_the_floor_gets_the_same_budget(tiny_encoder, hue_data):
    images, y, split = hue_data
    res = finetune_attack(tiny_encoder, images, y, split, budgets=((16, 40),), seed=0)
    p = res.points[0]
    # the tower really changed: a later checkpoint beat the frozen start (prototype head) on validation
    assert p.stopped_at > 0 and p.val_accuracy > p.initial_val_accuracy
    assert res.trainable_params > 0 and "transformer blocks" in res.method
    floor = finetune_attack(tiny_encoder.floor, images, y, split, budgets=((16, 40),), seed=0)
    assert floor.points[0].flops == p.flops and floor.points[0].steps == p.steps
    assert np.array_equal(floor.points[0].fit_rows, p.fit_rows)


def test_on_separable_data_fine_tuning_is_at_least_the_frozen_linear_probe(tiny_encoder, tmp_path):
    images, y = _load(tiny_encoder, make_folder(tmp_path / "sep", n_classes=4, per_class=30, seed=2))
    split = stratified_split(y, seed=0)
    frozen = linear_probe(tiny_encoder.encode_images(images), y, 4, split, seed=0)
    res = finetune_attack(tiny_encoder, images, y, split, budgets=((16, 30),), seed=0)
    assert res.points[0].accuracy >= frozen.accuracy > 0.9


def test_bad_input_names_the_problem(tiny_encoder, hue_data):
    images, y, split = hue_data
    with pytest.raises(ValueError, match="open_clip encoder"):
        finetune_attack(object(), images, y, split, budgets=((1, 2),), seed=0)
    with pytest.raises(ValueError, match=r"images must be a float tensor \[n=360"):
        finetune_attack(tiny_encoder, images[:10], y, split, budgets=((1, 2),), seed=0)
    with pytest.raises(ValueError, match="images per class, steps"):
        finetune_attack(tiny_encoder, images, y, split, budgets=(3,), seed=0)
    with pytest.raises(ValueError, match="blocks must be in 1..2"):
        finetune_attack(tiny_encoder, images, y, split, budgets=((1, 2),), seed=0, blocks=5)
