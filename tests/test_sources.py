"""Public dataset sources, tested offline on small fake copies laid out like the real ones."""
import json

import numpy as np
import pytest
from PIL import Image

from creepscan.data import load_image_set, public
from creepscan.errors import DataUnavailable


def _img(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 10, 3), value, np.uint8)).save(path)


def test_lfw_reads_the_extracted_tree_and_keeps_people_with_enough_faces(tmp_path):
    home = tmp_path / "lfw_home"
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):
        _ = (home / name).parent.mkdir(parents=True, exist_ok=True) or (home / name).write_text("")
    for person, n in (("Ada_Lovelace", 3), ("Alan_Turing", 4), ("Solo_Person", 1)):
        for i in range(n):
            _img(home / "lfw_funneled" / person / f"{person}_{i + 1:04d}.jpg", 10 * i)
    path = public.materialize({"kind": "lfw", "min_faces_per_person": 3}, tmp_path, download=False,
                              probe_id="face-identity")
    images = load_image_set(path)
    assert sorted(set(images.labels)) == ["Ada_Lovelace", "Alan_Turing"] and len(images) == 7


def test_missing_data_offline_is_one_line_naming_the_data_option(tmp_path):
    for source in ({"kind": "lfw"}, {"kind": "fer2013"}, {"kind": "country211"}, {"kind": "cifar10"}):
        with pytest.raises(DataUnavailable) as info:
            public.materialize(source, tmp_path / source["kind"], download=False, probe_id="p1")
        msg = str(info.value)
        assert "\n" not in msg and "--data p1=PATH" in msg


def test_fer2013_from_the_kaggle_csv(tmp_path):
    base = tmp_path / "fer2013"
    base.mkdir()
    pixels = " ".join(["7"] * 48 * 48)
    rows = ["emotion,pixels,Usage"] + [f"{e},{pixels},PrivateTest" for e in (0, 3, 3, 6)] + [f"1,{pixels},Training"]
    (base / "fer2013.csv").write_text("\n".join(rows) + "\n")
    images = load_image_set(public.materialize({"kind": "fer2013", "split": "test"}, tmp_path, download=False))
    assert sorted(images.labels) == ["angry", "happy", "happy", "neutral"]


def test_country211_folder(tmp_path):
    for cc in ("FR", "JP"):
        _img(tmp_path / "country211" / "test" / cc / "a.jpg")
    images = load_image_set(public.materialize({"kind": "country211", "split": "test"}, tmp_path, download=False))
    assert sorted(images.labels) == ["FR", "JP"]


class FakeClassLabel:
    names = ["Male", "Female"]


class FakeHF(list):
    features = {"gender": FakeClassLabel()}


def test_huggingface_rows_become_class_folders(tmp_path, monkeypatch):
    rows = FakeHF([{"image": Image.new("RGB", (8, 8), (i, 0, 0)), "gender": i % 2} for i in range(5)])
    monkeypatch.setattr(public, "_load_hf_dataset", lambda name, config, split: rows)
    src = {"kind": "huggingface", "name": "HuggingFaceM4/FairFace", "config": "0.25", "split": "validation",
           "label_column": "gender"}
    images = load_image_set(public.materialize(src, tmp_path, download=False))
    assert sorted(images.labels) == ["Female", "Female", "Male", "Male", "Male"]


def test_huggingface_without_datasets_package_says_how_to_install(tmp_path, monkeypatch):
    def missing(*a):
        raise ImportError("No module named 'datasets'")

    monkeypatch.setattr(public, "_load_hf_dataset", missing)
    with pytest.raises(DataUnavailable, match=r"creepscan\[hf\]"):
        public.materialize({"kind": "huggingface", "name": "x/y", "label_column": "race"}, tmp_path,
                           probe_id="attribute-race")


def test_cifar10_is_written_per_class_name(tmp_path, monkeypatch):
    import torchvision.datasets

    class FakeCIFAR:
        classes = ["airplane", "cat"]

        def __init__(self, root, train, download):
            self.data = np.zeros((3, 32, 32, 3), np.uint8)
            self.targets = [0, 1, 1]

        def __len__(self):
            return 3

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR)
    images = load_image_set(public.materialize({"kind": "cifar10"}, tmp_path, download=False))
    assert sorted(images.labels) == ["airplane", "cat", "cat"]


def test_completed_materialisation_is_reused(tmp_path, monkeypatch):
    src = {"kind": "synthetic", "generator": "identities", "n_classes": 3, "per_class": 6, "seed": 1}
    first = public.materialize(src, tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in first.rglob("*.png")}

    def boom(*a, **k):
        raise AssertionError("regenerated")

    monkeypatch.setitem(public._GENERATORS, "identities", boom)
    assert public.materialize(src, tmp_path) == first
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*.png")} == mtimes
    assert json.loads((tmp_path / public.MARKER).read_text())["source"] == src


def test_every_source_kind_is_described():
    assert all(public.describe({"kind": k}) and "unknown" not in public.describe({"kind": k}) for k in public.SOURCES)
