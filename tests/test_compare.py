"""compare: paired differences, Holm correction, and the --fail-on-increase gate."""
import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_folder

from creepscan.attacks.stats import holm
from creepscan.cli import main
from creepscan.result import MetricDelta, load_report, to_json_dict


def compare(tmp_path, a, b, data, out, *extra):
    r = CliRunner().invoke(main, ["compare", a, b, "--probe", "face-identity", "--data", f"face-identity={data}",
                                  "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"), "--quiet",
                                  "--fail-on-increase", *extra], catch_exceptions=False)
    report = tmp_path / out / "report.json"
    rep = json.loads(report.read_text()) if report.exists() else None
    return r.exit_code, rep, r.stderr


@pytest.fixture
def signal_dir(tmp_path):
    return make_folder(tmp_path / "signal", n_classes=5, per_class=14, seed=3)


def _numbers(o):
    if isinstance(o, bool) or o is None:
        return
    if isinstance(o, (int, float)):
        yield o
    elif isinstance(o, dict):
        for v in o.values():
            yield from _numbers(v)
    elif isinstance(o, list):
        for v in o:
            yield from _numbers(v)


def _keys(o, path=""):
    """Every key path of a JSON value, in the order the file writes them."""
    if isinstance(o, dict):
        for k, v in o.items():
            yield f"{path}/{k}"
            yield from _keys(v, f"{path}/{k}")
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _keys(v, f"{path}[{i}]")


def _undeclared(obj, path=""):
    """Paths of the properties a loaded report holds that its dataclasses do not declare."""
    if dataclasses.is_dataclass(obj):
        declared = {f.name for f in dataclasses.fields(obj)}
        for k, v in vars(obj).items():
            if k not in declared:
                yield f"{path}/{k}"
            else:
                yield from _undeclared(v, f"{path}/{k}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _undeclared(v, f"{path}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _undeclared(v, f"{path}[{i}]")


def test_self_compare_is_exactly_zero_and_not_significant(tmp_path, signal_dir):
    code, rep, err = compare(tmp_path, "py:conftest_plugins:colour", "py:conftest_plugins:colour", signal_dir, "same")
    assert code == 0, err
    p = rep["probes"][0]
    deltas = list(_numbers(p["delta"]))
    assert deltas and all(d == 0 for d in deltas)
    assert p["p_value"] == 1.0 and p["significant"] is False and p["risk_rose"] is False
    assert p["a"]["metrics"] == p["b"]["metrics"]


def test_rise_is_caught_and_its_reverse_is_not(tmp_path, signal_dir):
    code, rep, err = compare(tmp_path, "py:conftest_plugins:blind", "py:conftest_plugins:colour", signal_dir, "up")
    assert code == 1 and "risk rose" in err
    p = rep["probes"][0]
    assert p["risk_rose"] and p["significant"] and p["p_adjusted"] < 0.05
    assert p["delta"]["linear_probe"] > 0.5
    assert all(d > 0 for d in p["delta"]["few_shot"].values())
    assert rep["summary"]["rose"] == ["face-identity"]
    # every block is one of result.py's dataclasses, and they declare every field the report holds
    typed = load_report(rep)
    assert isinstance(typed.probes[0].delta, MetricDelta) and typed.probes[0].tests.few_shot
    assert list(_undeclared(typed)) == []
    again = json.loads(json.dumps(to_json_dict(typed)))
    assert again == rep and list(_keys(again)) == list(_keys(rep))
    code, rep, _ = compare(tmp_path, "py:conftest_plugins:colour", "py:conftest_plugins:blind", signal_dir, "down")
    assert code == 0 and rep["probes"][0]["delta"]["linear_probe"] < 0 and not rep["probes"][0]["risk_rose"]


def test_both_models_share_images_splits_and_episodes(tmp_path, signal_dir, monkeypatch):
    """Not only the same k: in every test fold, episode e of each k uses the same support images for
    A, B and the floor (recorded as the few-shot attack draws them), so the paired test compares like
    with like."""
    import creepscan.attacks
    from creepscan.attacks import few_shot

    curves = []  # one per few-shot curve run: (its fold's training rows, {(k, episode): support positions})
    draw, curve = few_shot.draw_supports, creepscan.attacks.few_shot_curve

    def recording_curve(X, y, n_classes, split, **kw):
        curves.append((split.train.tobytes(), {}))
        return curve(X, y, n_classes, split, **kw)

    def recording_draw(train_labels, classes, k, seed, episodes):
        episodes = list(episodes)
        out = draw(train_labels, classes, k, seed, episodes)
        curves[-1][1].update({(k, e): row.tobytes() for e, row in zip(episodes, out)})
        return out

    monkeypatch.setattr(creepscan.attacks, "few_shot_curve", recording_curve)
    monkeypatch.setattr(few_shot, "draw_supports", recording_draw)
    _, rep, _ = compare(tmp_path, "py:conftest_plugins:blind", "py:conftest_plugins:colour", signal_dir, "pair")
    a, b = rep["probes"][0]["a"], rep["probes"][0]["b"]
    assert a["split"] == b["split"] and a["data"]["fingerprint"] == b["data"]["fingerprint"]
    ks = [e["k"] for e in a["metrics"]["few_shot"]]
    assert ks and ks == [e["k"] for e in b["metrics"]["few_shot"]]
    by_fold: dict[bytes, list[dict]] = {}
    for train, episodes in curves:
        by_fold.setdefault(train, []).append(episodes)
    assert len(by_fold) == a["split"]["folds"]
    for plans in by_fold.values():
        assert len(plans) >= 2  # A and B (the floor, shared by both, may add a third)
        for key in set().union(*plans):
            assert len({p[key] for p in plans if key in p}) == 1, key
        assert all((k, 0) in p for p in plans for k in ks)


def test_holm_adjustment():
    adj = holm([0.01, 0.04, 0.03])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06])
