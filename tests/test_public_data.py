"""Public sources beyond tests/test_sources.py: real on-disk formats, failure wording, offline modes,
marker reuse, and the probe catalogue read as plain TOML. All offline, on small fakes."""
import io
import os
import pickle
import tomllib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from creepscan.data import load_image_set, public
from creepscan.errors import DataUnavailable

PROBES = Path(__file__).resolve().parent.parent / "probes"


def _one_line_with_fix(exc_info, probe_id):
    msg = str(exc_info.value)
    assert "\n" not in msg and f"--data {probe_id}=PATH" in msg, msg
    return msg


# ---------------------------------------------------------------------------------------- cifar10

def _fake_cifar(root: Path, names=("airplane", "cat"), labels=(0, 1, 1, 0, 1)):
    """cifar-10-batches-py in the real on-disk format: python pickles of dicts with a uint8 array."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    data = np.arange(len(labels) * 3072, dtype=np.int64).astype(np.uint8).reshape(len(labels), 3072)
    batch = {"batch_label": "testing batch 1 of 1", "labels": list(labels), "data": data,
             "filenames": [f"img_{i}.png" for i in range(len(labels))]}
    (base / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": list(names), "num_cases_per_batch": 5}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return data


def test_cifar10_real_batch_format_is_read_offline_without_torchvision_md5s(tmp_path):
    data = _fake_cifar(tmp_path)
    images = load_image_set(public.materialize({"kind": "cifar10"}, tmp_path, download=False))
    assert sorted(images.labels) == ["airplane", "airplane", "cat", "cat", "cat"]
    first = next(p for p in images.paths if p.name == "test_00000.png")
    expected = data[0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(Image.open(first)), expected)  # channel order as CIFAR stores it


def test_cifar10_batch_that_would_run_code_is_refused(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (base / "test_batch").write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a"]}, protocol=2))
    with pytest.raises(DataUnavailable, match="refused to load") as info:
        public.materialize({"kind": "cifar10"}, tmp_path, download=False, probe_id="benign-reference")
    _one_line_with_fix(info, "benign-reference")


# ---------------------------------------------------------------------------------------- fer2013

def _fer_rows(header, rows):
    pixels = " ".join(str(v % 256) for v in range(48 * 48))
    return "\n".join([header] + [r.format(p=pixels) for r in rows]) + "\n"


def test_fer2013_through_torchvision_and_the_tolerant_reader_agree(tmp_path, monkeypatch):
    rows = ['0,"{p}",PublicTest', '5,"{p}",PrivateTest', '2,"{p}",Training', '6,"{p}",PrivateTest']
    for sub in ("a", "b"):
        (tmp_path / sub / "fer2013").mkdir(parents=True)
        (tmp_path / sub / "fer2013" / "fer2013.csv").write_text(_fer_rows("emotion,pixels,Usage", rows))
    tolerant = load_image_set(public.materialize({"kind": "fer2013"}, tmp_path / "a", download=False))
    import torchvision.datasets.fer2013 as tv_fer

    monkeypatch.setattr(tv_fer, "check_integrity", lambda *a, **k: True)  # as if it were Kaggle's exact file
    via_tv = load_image_set(public.materialize({"kind": "fer2013"}, tmp_path / "b", download=False))
    assert sorted(tolerant.labels) == sorted(via_tv.labels) == ["angry", "neutral", "surprise"]
    assert [p.read_bytes() for p in tolerant.paths] == [p.read_bytes() for p in via_tv.paths]
    assert Image.open(tolerant.paths[0]).size == (48, 48)


def test_fer2013_icml_headers_train_split_and_unlabelled_test_csv(tmp_path):
    base = tmp_path / "icml" / "fer2013"
    base.mkdir(parents=True)
    (base / "icml_face_data.csv").write_text(
        _fer_rows("emotion, Usage, pixels", ['3, Training,"{p}"', '1, PublicTest,"{p}"']))
    train = load_image_set(public.materialize({"kind": "fer2013", "split": "train"}, tmp_path / "icml", download=False))
    assert train.labels == ["happy"]
    base = tmp_path / "split" / "fer2013"
    base.mkdir(parents=True)
    (base / "test.csv").write_text(_fer_rows("pixels", ['"{p}"']))
    with pytest.raises(DataUnavailable, match="no labels") as info:
        public.materialize({"kind": "fer2013"}, tmp_path / "split", download=False, probe_id="emotion")
    _one_line_with_fix(info, "emotion")


def test_fer2013_image_folder_form_is_used_as_is(tmp_path):
    for emotion in ("happy", "sad"):
        d = tmp_path / "fer2013" / "test" / emotion
        d.mkdir(parents=True)
        Image.new("L", (48, 48), 9).save(d / "im0.jpg")
    path = public.materialize({"kind": "fer2013", "split": "test"}, tmp_path, download=False)
    assert path == tmp_path / "fer2013" / "test"
    assert sorted(load_image_set(path).labels) == ["happy", "sad"]


def test_fer2013_missing_says_where_the_kaggle_file_goes(tmp_path):
    with pytest.raises(DataUnavailable) as info:
        public.materialize({"kind": "fer2013"}, tmp_path, probe_id="emotion")  # download=True: still nothing to fetch
    msg = _one_line_with_fix(info, "emotion")
    assert "fer2013.csv" in msg and str(tmp_path / "fer2013") in msg and "kaggle.com" in msg


# ---------------------------------------------------------------------------------------- huggingface

class _ClassLabel:
    def __init__(self, names):
        self.names = names


class _FakeStream:
    """What _load_hf_dataset returns for a real dataset: iterable rows plus ``features``; no len."""

    def __init__(self, rows, features):
        self.rows, self.features = rows, features

    def __iter__(self):
        return iter(self.rows)


def _jpeg(value):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (value, 40, 80)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_huggingface_keeps_original_bytes_maps_class_labels_and_groups(tmp_path, monkeypatch):
    races = ["East Asian", "Black", "White"]
    rows = [{"image": {"bytes": _jpeg(10 * i), "path": f"{i}.jpg"}, "gender": i % 2, "race": i % 3,
             "service_test": True}
            for i in range(6)]
    rows.append({"image": {"bytes": None, "path": None}, "gender": 0, "race": 0, "service_test": False})  # no image
    rows.append({"image": {"bytes": _jpeg(99), "path": None}, "gender": None, "race": 1,
                 "service_test": False})  # no label
    feats = {"image": object(), "gender": _ClassLabel(["Male", "Female"]), "race": _ClassLabel(races)}
    calls = []

    def loader(name, config, split):
        calls.append((name, config, split, os.environ.get("HF_DATASETS_OFFLINE"), os.environ.get("HF_HUB_OFFLINE")))
        return _FakeStream(rows, feats)

    monkeypatch.setattr(public, "_load_hf_dataset", loader)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    src = {"kind": "huggingface", "name": "HuggingFaceM4/FairFace", "config": "0.25", "split": "validation",
           "label_column": "gender", "group_column": "race"}
    path = public.materialize(src, tmp_path, download=False, probe_id="attribute-gender")
    assert calls == [("HuggingFaceM4/FairFace", "0.25", "validation", "1", "1")]  # offline while loading ...
    assert "HF_DATASETS_OFFLINE" not in os.environ and "HF_HUB_OFFLINE" not in os.environ  # ... and only then
    images = load_image_set(path)
    assert images.labels == ["Male", "Female", "Male", "Female", "Male", "Female"]
    assert images.groups == ["East Asian", "Black", "White", "East Asian", "Black", "White"]
    assert [p.read_bytes() for p in images.paths] == [r["image"]["bytes"] for r in rows[:6]]
    assert all(p.suffix == ".jpg" for p in images.paths)


def test_huggingface_offline_miss_and_bad_column_are_one_line(tmp_path, monkeypatch):
    def offline_loader(name, config, split):
        raise ConnectionError("Couldn't reach 'x/y' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(public, "_load_hf_dataset", offline_loader)
    src = {"kind": "huggingface", "name": "x/y", "split": "validation", "label_column": "race"}
    with pytest.raises(DataUnavailable, match="downloads are switched off") as info:
        public.materialize(src, tmp_path / "a", download=False, probe_id="attribute-race")
    _one_line_with_fix(info, "attribute-race")

    monkeypatch.setattr(public, "_load_hf_dataset",
                        lambda *a: _FakeStream([{"image": Image.new("RGB", (4, 4))}],
                                               {"image": object(), "age": object()}))
    with pytest.raises(DataUnavailable, match="no column 'race'.*columns: image, age") as info:
        public.materialize(src, tmp_path / "b", probe_id="attribute-race")
    _one_line_with_fix(info, "attribute-race")


# ---------------------------------------------------------------------------------------- lfw, country211

def _lfw_tree(root, people):
    home = root / "lfw_home"
    home.mkdir(parents=True)
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):  # sklearn checks these exist
        (home / name).write_text("")
    for person, n in people:
        d = home / "lfw_funneled" / person
        d.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (25, 25), (i * 20, 0, 0)).save(d / f"{person}_{i + 1:04d}.jpg")
    return home


def test_lfw_manifest_lists_files_in_place_and_public_fallback_works(tmp_path, monkeypatch):
    _lfw_tree(tmp_path / "a", [("Grace_Hopper", 3), ("Only_Once", 1)])
    manifest = public.materialize({"kind": "lfw", "min_faces_per_person": 2}, tmp_path / "a", download=False)
    assert manifest.suffix == ".csv"
    rows = manifest.read_text().splitlines()
    assert rows[0] == "path,label"
    assert rows[1] == "lfw_home/lfw_funneled/Grace_Hopper/Grace_Hopper_0001.jpg,Grace_Hopper"
    assert len(rows) == 4  # nothing copied: the manifest points into the extracted tree
    import sklearn.datasets._lfw as sk_lfw

    original = sk_lfw._check_fetch_lfw

    def changed_signature(**kwargs):  # a future scikit-learn whose private helper changed: we use the public API
        if "n_retries" not in kwargs:
            raise TypeError("unexpected signature")
        return original(**kwargs)

    monkeypatch.setattr(sk_lfw, "_check_fetch_lfw", changed_signature)
    _lfw_tree(tmp_path / "b", [("Grace_Hopper", 3), ("Alan_Turing", 2)])
    path = public.materialize({"kind": "lfw", "min_faces_per_person": 2}, tmp_path / "b", download=False)
    images = load_image_set(path)
    assert sorted(set(images.labels)) == ["Alan_Turing", "Grace_Hopper"] and len(images) == 5


def test_lfw_download_failure_and_offline_miss_are_worded_apart(tmp_path, monkeypatch):
    import sklearn.datasets._lfw as sk_lfw

    def no_network(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(sk_lfw, "_fetch_remote", no_network)
    with pytest.raises(DataUnavailable, match="download failed.*name resolution") as info:
        public.materialize({"kind": "lfw"}, tmp_path / "net", probe_id="face-identity")
    _one_line_with_fix(info, "face-identity")
    with pytest.raises(DataUnavailable, match="downloads are switched off") as info:
        public.materialize({"kind": "lfw"}, tmp_path / "off", download=False, probe_id="face-identity")
    _one_line_with_fix(info, "face-identity")


def test_country211_offline_miss_and_unknown_kind(tmp_path):
    with pytest.raises(DataUnavailable, match="Country211.*downloads are switched off") as info:
        public.materialize({"kind": "country211"}, tmp_path, download=False, probe_id="geolocation")
    _one_line_with_fix(info, "geolocation")
    with pytest.raises(DataUnavailable, match="unknown source kind 'imagenet'") as info:
        public.materialize({"kind": "imagenet"}, tmp_path, probe_id="x")
    _one_line_with_fix(info, "x")


# ---------------------------------------------------------------------------------------- marker

def test_marker_reuse_skips_the_source_and_a_changed_source_redoes_it(tmp_path, monkeypatch):
    _fake_cifar(tmp_path)
    first = public.materialize({"kind": "cifar10"}, tmp_path, download=False)
    mtimes = {p: p.stat().st_mtime_ns for p in first.rglob("*.png")}
    monkeypatch.setitem(public.SOURCES, "cifar10", lambda *a: pytest.fail("materialised again"))
    assert public.materialize({"kind": "cifar10"}, tmp_path, download=True) == first  # no network either
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*.png")} == mtimes

    src = {"kind": "digits", "per_class": 2}
    d = public.materialize(src, tmp_path / "d")
    assert len(load_image_set(d)) == 20
    d = public.materialize({**src, "per_class": 3}, tmp_path / "d")
    assert len(load_image_set(d)) == 30  # the old files are gone, not mixed in


# ---------------------------------------------------------------------------------------- the catalogue

REQUIRED = {"id": str, "title": str, "capability": str, "policy": list, "source": dict}


def _catalogue():
    return {suite.name: {f.stem: tomllib.loads(f.read_text(encoding="utf-8")) for f in sorted(suite.glob("*.toml"))}
            for suite in sorted(PROBES.iterdir()) if suite.is_dir()}


def test_every_probe_file_parses_with_the_required_keys():
    cat = _catalogue()
    for suite, probes in cat.items():
        for stem, doc in probes.items():
            for key, kind in REQUIRED.items():
                assert isinstance(doc.get(key), kind) and doc[key], (suite, stem, key)
            assert doc["id"] == stem and "\n" not in doc["capability"]
            assert doc["source"]["kind"] in public.SOURCES, (suite, stem)
            assert "unknown" not in public.describe(doc["source"])
            assert set(doc.get("attacks", [])) <= {"linear_probe", "few_shot", "verification", "zero_shot"}
    assert sorted(cat["default"]) == sorted(["face-identity", "attribute-gender", "attribute-age", "attribute-race",
                                             "emotion", "benign-reference"])
    assert sorted(cat["extended"]) == ["geolocation"]
    assert set(cat["fixtures"]) <= set(cat["default"])


def test_fixtures_suite_is_offline_and_small(tmp_path):
    for stem, doc in _catalogue()["fixtures"].items():
        assert doc["source"]["kind"] in ("synthetic", "digits"), stem
        images = load_image_set(public.materialize(doc["source"], tmp_path / stem, download=False, progress=False))
        cap = doc.get("max_per_class")
        n = sum(min(cap or 10**9, images.labels.count(lab)) for lab in set(images.labels))
        # Small enough to make in a second; the no-signal control needs its 600 images (6 x 100) for
        # the equivalence test behind "none" to have the power to pass (tests/test_risk.py).
        assert 20 <= n <= 600, (stem, n)


def test_geolocation_names_every_country211_code():
    doc = _catalogue()["extended"]["geolocation"]
    names = doc["labels"]["names"]
    assert len(names) == 211 and list(names) == sorted(names) and all(len(code) == 2 for code in names)
    assert names["US"] == "the United States" and names["JP"] == "Japan"


def test_offline_switch_restores_the_hugging_face_flags(tmp_path, monkeypatch):
    import sys
    import types

    fake = types.ModuleType("datasets")
    fake.config = types.SimpleNamespace(HF_HUB_OFFLINE=False, HF_DATASETS_OFFLINE=False)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setitem(sys.modules, "datasets.config", fake.config)
    seen = []

    def loader(name, config, split):
        seen.append((fake.config.HF_HUB_OFFLINE, fake.config.HF_DATASETS_OFFLINE))
        return _FakeStream([{"image": Image.new("RGB", (4, 4)), "label": "a"}], {})

    monkeypatch.setattr(public, "_load_hf_dataset", loader)
    src = {"kind": "huggingface", "name": "x/y", "label_column": "label"}
    public.materialize(src, tmp_path / "off", download=False)
    public.materialize(src, tmp_path / "on", download=True)
    assert seen == [(True, True), (False, False)]
    assert fake.config.HF_HUB_OFFLINE is False and fake.config.HF_DATASETS_OFFLINE is False
