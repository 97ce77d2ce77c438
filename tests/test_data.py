"""Probe data: folders, manifests, and every kind of unusable image."""
import io

import numpy as np
import pytest
from conftest import make_folder
from PIL import Image

from creepscan import data as data_mod
from creepscan.data import (
    UnusableImage,
    apply_group_rule,
    cap_per_class,
    compile_group_rule,
    content_hashes,
    dataset_fingerprint,
    decode_image,
    load_image_set,
)
from creepscan.errors import DataUnavailable, ProbeFileError
from creepscan.probes import load_probe


def _jpeg_bytes(size=(32, 24), color=(10, 200, 30), exif_orientation=None):
    img = Image.new("RGB", size, color)
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, "JPEG", exif=exif.tobytes())
    else:
        img.save(buf, "JPEG")
    return buf.getvalue()


def test_folder_lists_labels_and_empty_label(tmp_path):
    root = make_folder(tmp_path / "d", n_classes=3, per_class=4)
    (root / "empty_label").mkdir()
    (root / "c0" / ".DS_Store").write_bytes(b"junk")
    s = load_image_set(root)
    assert len(s) == 12 and sorted(set(s.labels)) == ["c0", "c1", "c2"]
    assert s.empty_labels == ["empty_label"]
    assert all(p.is_absolute() for p in s.paths)


def test_symlink_loops_and_links_to_folders_are_recorded_as_skips(tmp_path):
    """Links that name no image (a loop, a broken link) or a folder (which may loop back) used to
    vanish from the listing without a word; now each is a skip with its reason."""
    import os

    root = make_folder(tmp_path / "d", n_classes=2, per_class=4)
    label = min(p for p in root.iterdir() if p.is_dir())
    first = min(label.iterdir())
    os.symlink("loop", label / "loop")                    # points at itself
    os.symlink("gone.png", label / "broken.png")
    (label / "sub").mkdir()
    os.symlink("..", label / "sub" / "up")                # a folder loop: sub/up/sub/up/...
    os.symlink(first.name, label / "alias.png")           # a link to an image is an image
    os.symlink("nowhere", root / "ghost")                  # a would-be label folder that is a broken link
    s = load_image_set(root)
    reasons = {sk["path"]: sk["reason"] for sk in s.skipped}
    rel = label.name
    assert "symbolic link loop" in reasons[f"{rel}/loop"]
    assert "broken symbolic link" in reasons[f"{rel}/broken.png"]
    assert "symbolic link to a folder, not followed" in reasons[f"{rel}/sub/up"]
    assert "broken symbolic link" in reasons["ghost"]
    assert len(reasons) == 4
    assert (label / "alias.png") in s.paths and len(s) == 2 * 4 + 1


def test_csv_manifest_with_missing_file_is_recorded(tmp_path):
    root = make_folder(tmp_path / "d", n_classes=2, per_class=3)
    rows = ["path,label,group"] + [f"{p.relative_to(tmp_path).as_posix()},{p.parent.name},g1"
                                   for p in sorted(root.rglob("*.png"))]
    rows.append("d/c0/gone.png,c0,g1")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    s = load_image_set(tmp_path / "m.csv")
    assert len(s) == 6 and s.groups[0] == "g1"
    assert s.skipped == [{"path": "d/c0/gone.png", "reason": "file not found"}]


def test_csv_without_header_columns_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(DataUnavailable, match="path,label"):
        load_image_set(tmp_path / "m.csv")


def test_missing_path_and_folder_without_labels(tmp_path):
    with pytest.raises(DataUnavailable, match="not found"):
        load_image_set(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DataUnavailable, match="sub-folder"):
        load_image_set(tmp_path / "flat")


def test_every_kind_of_bad_image(tmp_path, monkeypatch):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    good = _jpeg_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    Image.new("RGB", (200, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(data_mod, "MAX_PIXELS", 100 * 100)
    reasons = {}
    for name in ("empty.jpg", "text.jpg", "truncated.jpg", "big.png"):
        with pytest.raises(UnusableImage) as info:
            decode_image(tmp_path / name)
        reasons[name] = str(info.value)
    assert "empty" in reasons["empty.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "refused" in reasons["big.png"] and "bomb" in reasons["big.png"]


def test_exif_orientation_is_applied(tmp_path):
    (tmp_path / "rot.jpg").write_bytes(_jpeg_bytes(size=(40, 20), exif_orientation=6))  # 90 degrees
    img = decode_image(tmp_path / "rot.jpg")
    assert img.size == (20, 40) and img.mode == "RGB"


def test_grayscale_and_rgba_become_rgb(tmp_path):
    Image.new("L", (8, 8), 128).save(tmp_path / "g.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 0)).save(tmp_path / "a.png")
    assert decode_image(tmp_path / "g.png").mode == "RGB"
    assert decode_image(tmp_path / "a.png").mode == "RGB"


def test_dataset_fingerprint_tracks_content_and_labels(tmp_path):
    root = make_folder(tmp_path / "d", n_classes=2, per_class=3)
    s = load_image_set(root)
    fp1 = dataset_fingerprint(s, content_hashes(s.paths))
    assert fp1 == dataset_fingerprint(s, content_hashes(s.paths))
    Image.new("RGB", (40, 40), (1, 1, 1)).save(s.paths[0])
    assert dataset_fingerprint(s, content_hashes(s.paths)) != fp1


def test_cap_per_class_is_seeded_and_balanced(tmp_path):
    s = load_image_set(make_folder(tmp_path / "d", n_classes=3, per_class=10))
    a, b = cap_per_class(s, 4, seed=0), cap_per_class(s, 4, seed=0)
    assert a.paths == b.paths and sorted(np.unique(a.labels, return_counts=True)[1]) == [4, 4, 4]
    assert cap_per_class(s, 4, seed=1).paths != a.paths
    assert cap_per_class(s, None, seed=0).paths == s.paths


def _manifest_with_groups(tmp_path, per_class=6):
    root = make_folder(tmp_path / "d", n_classes=2, per_class=per_class)
    files = sorted(root.rglob("*.png"))
    rows = ["path,label,group"]
    for n, p in enumerate(files):
        group = "" if n == 0 else f"person{n % 4}"          # the first row has an empty group cell
        rows.append(f"{p.relative_to(tmp_path).as_posix()},{p.parent.name},{group}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return load_image_set(tmp_path / "m.csv"), files


def test_groups_one_per_image_from_a_manifest_none_from_a_folder(tmp_path):
    s, files = _manifest_with_groups(tmp_path)
    assert len(s.groups) == len(s) == len(files)
    assert s.groups[0] is None and s.groups[1:5] == ["person1", "person2", "person3", "person0"]
    assert s.has_groups
    folder = load_image_set(tmp_path / "d")
    assert folder.groups == [None] * len(folder) and not folder.has_groups


def test_cap_per_class_and_subset_carry_groups(tmp_path):
    s, _ = _manifest_with_groups(tmp_path, per_class=10)
    group_of_path = dict(zip(s.paths, s.groups))
    capped = cap_per_class(s, 4, seed=0)
    assert len(capped) == 8 and capped.groups == [group_of_path[p] for p in capped.paths]
    sub = s.subset([5, 2])
    assert sub.groups == [s.groups[5], s.groups[2]]


def test_group_rule_on_file_names(tmp_path):
    folder = load_image_set(make_folder(tmp_path / "d", n_classes=2, per_class=3))  # img000.png ...
    s = apply_group_rule(folder, r"(?P<group>\d)\.png$")  # the last digit of the number
    assert s.groups == [p.stem[-1] for p in s.paths] and len(set(s.groups)) == 6
    assert apply_group_rule(folder, None) is folder
    manifest, _ = _manifest_with_groups(tmp_path / "m")
    filled = apply_group_rule(manifest, r"^img(\d+)")
    assert filled.groups[1:] == manifest.groups[1:]       # the manifest's groups win
    assert filled.groups[0] == manifest.paths[0].stem[3:]  # the rule fills the empty cell
    with pytest.raises(ValueError, match="matches none"):
        apply_group_rule(folder, r"^person(\d+)")


@pytest.mark.parametrize("rule, message", [("(", "not a valid regular expression"), ("img", "0 capture groups"),
                                           ("(a)(b)", "2 capture groups"), ("", "non-empty")])
def test_bad_group_rules_name_the_fix(rule, message):
    with pytest.raises(ValueError, match=message):
        compile_group_rule(rule)


def test_probe_file_group_by(tmp_path):
    body = ('id = "p"\ntitle = "t"\ncapability = "c"\npolicy = ["x"]\n{rule}'
            '[source]\nkind = "synthetic"\n')
    (tmp_path / "p.toml").write_text(body.format(rule='group_by = "^(\\\\w+?)_\\\\d+"\n'))
    probe = load_probe(tmp_path / "p.toml")
    assert probe.group_by == r"^(\w+?)_\d+"
    (tmp_path / "p.toml").write_text(body.format(rule=""))
    assert load_probe(tmp_path / "p.toml").group_by is None
    (tmp_path / "p.toml").write_text(body.format(rule='group_by = "(a)(b)"\n'))
    with pytest.raises(ProbeFileError, match="group_by.*2 capture groups"):
        load_probe(tmp_path / "p.toml")
