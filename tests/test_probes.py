"""Probe files: the shipped catalogue, and malformed files refused with the key and the fix."""
import pytest

from creepscan.errors import ProbeFileError
from creepscan.probes import load_probe, select, suites

GOOD = '''id = "p"
title = "T"
capability = "c"
policy = ["x"]
attacks = ["linear_probe", "few_shot"]
[source]
kind = "lfw"
'''


def test_shipped_suites_keep_the_contract_ids():
    all_suites = suites()
    assert sorted(p.id for p in all_suites["default"]) == sorted(
        ["face-identity", "attribute-gender", "attribute-age", "attribute-race", "emotion", "benign-reference"])
    assert [p.id for p in all_suites["extended"]] == ["geolocation"]
    assert {p.id for p in all_suites["fixtures"]} <= {p.id for p in all_suites["default"]}
    for plist in all_suites.values():
        for p in plist:
            assert p.policy and p.capability and p.source["kind"]
            if "zero_shot" in p.attacks:
                assert p.templates
    assert [p.reference for p in all_suites["default"] if p.id == "benign-reference"] == [True]


@pytest.mark.parametrize("edit,key", [
    (lambda s: s.replace('policy = ["x"]', "policy = []"), "policy"),
    (lambda s: s.replace('title = "T"\n', ""), "title"),
    (lambda s: s.replace('"few_shot"]', '"few_shot", "mind_reading"]'), "attacks"),
    (lambda s: s + '[risk]\nskill_thresold = 0.4\n', "risk.skill_thresold"),
    (lambda s: s + '[risk]\nskill_threshold = 2\n', "skill_threshold must be in (0, 1]"),
    (lambda s: s + '[zero_shot]\ntemplates = ["no placeholder"]\n', "zero_shot.templates"),
    (lambda s: s.replace('attacks = ["linear_probe", "few_shot"]', 'attacks = ["zero_shot"]'), "zero_shot.templates"),
    (lambda s: s.replace("[source]\nkind = \"lfw\"\n", ""), "source"),
    (lambda s: s + "min_images_per_class = 1\n", "min_images_per_class"),
])
def test_malformed_probe_names_file_and_key(tmp_path, edit, key):
    path = tmp_path / "p.toml"
    text = edit(GOOD)
    if "min_images_per_class = 1" in text:  # top-level keys must precede the tables
        text = "min_images_per_class = 1\n" + text.replace("min_images_per_class = 1\n", "")
    path.write_text(text)
    with pytest.raises(ProbeFileError) as info:
        load_probe(path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_unknown_top_level_key_is_refused_with_a_did_you_mean(tmp_path):
    """A typo in a top-level key used to load without a word (the default silently applied)."""
    from click.testing import CliRunner

    from creepscan.cli import main

    path = tmp_path / "p.toml"
    path.write_text("max_per_clas = 50\n" + GOOD)
    with pytest.raises(ProbeFileError, match="unknown key 'max_per_clas': did you mean 'max_per_class'"):
        load_probe(path)
    path.write_text("colour = 1\n" + GOOD)
    with pytest.raises(ProbeFileError, match="unknown key 'colour': known keys: id, title"):
        load_probe(path)
    r = CliRunner().invoke(main, ["audit", "py:conftest_plugins:colour", "--probe", str(path), "--out",
                                  str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "-q"])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "unknown key 'colour'" in lines[0]


def test_id_must_match_file_name_and_toml_must_parse(tmp_path):
    (tmp_path / "other.toml").write_text(GOOD)
    with pytest.raises(ProbeFileError, match="must match the file name"):
        load_probe(tmp_path / "other.toml")
    # a probe file given by path (--probe FILE) is named by its id key, whatever the file is called
    assert load_probe(tmp_path / "other.toml", "custom").id != "other"
    (tmp_path / "p.toml").write_text("id = ")
    with pytest.raises(ProbeFileError, match="not valid TOML"):
        load_probe(tmp_path / "p.toml")


def test_select_by_id_path_and_suite(tmp_path):
    (tmp_path / "p.toml").write_text(GOOD)
    assert [p.id for p in select("default", ["face-identity", str(tmp_path / "p.toml")])] == ["face-identity", "p"]
    assert select("fixtures", ["face-identity"])[0].suite == "fixtures"
    assert select("default", ["face-identity"])[0].suite == "default"
    with pytest.raises(ProbeFileError, match="unknown suite"):
        select("nope")
    with pytest.raises(ProbeFileError, match="given twice"):
        select("default", ["emotion", "emotion"])


def test_a_wheel_install_ships_the_suites(tmp_path):
    """Built as a wheel and installed (not editable), the package finds every shipped suite: the
    probe files live inside the package, not beside it in the repository."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    # The installed setuptools builds it (no isolated build environment to download and set up: most of
    # this test's time); setup.cfg and the package data are read as in any build.
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "whl"), str(repo)], capture_output=True, text=True)
    # A wheel that cannot be built is a packaging bug, not a reason to skip.
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "whl").glob("creepscan-*.whl"))
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:  # a pure-Python wheel installs by unpacking it: what pip --target does
        zf.extractall(target)
    code = ("import creepscan.probes as p; s = p.suites(); "
            "print(p.probes_root()); print(sorted(s)); print(sorted(x.id for x in s['default']))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "CREEPSCAN_PROBES"}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True)
    root, names, default = out.stdout.splitlines()
    assert root.startswith(str(target))  # the installed copy, not the repository's
    assert names == str(["default", "extended", "fixtures"])
    assert "face-identity" in default and "emotion" in default


def test_setup_cfg_lists_every_package_folder():
    """setup.cfg lists the packages by hand (probes/ is mapped in as creepscan.suites); a new
    sub-package missing from that list would be left out of the wheel."""
    import configparser
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    cfg = configparser.ConfigParser()
    cfg.read(repo / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    on_disk = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "creepscan").rglob("__init__.py")}
    assert on_disk - listed == set()
    assert "creepscan.suites" in listed and (repo / "probes" / "default" / "face-identity.toml").is_file()
