"""Probe files: one TOML file per prohibited capability, grouped by suite
(``probes/<suite>/<id>.toml`` in the repository, shipped inside the package as ``creepscan/suites``).

Adding a capability is adding a file. Files are validated when loaded; errors name the file, the
key and the fix.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from .constants import DEFAULT_RULES, FAR_LEVELS
from .constants import PROBE_ATTACKS as ATTACKS
from .errors import ProbeFileError

RISK_KEYS = tuple(DEFAULT_RULES)
DEFAULT_SUITE = "default"
# Every top-level key a probe file may have: anything else is a typo that would otherwise be ignored
# (e.g. `max_per_clas = 50` silently keeping the default cap).
TOP_LEVEL_KEYS = ("id", "title", "capability", "policy", "attacks", "source", "min_images_per_class", "max_per_class",
                  "labels", "zero_shot", "risk", "reference", "group_by",
                  "policy_basis", "risk_basis")
# How a policy reference relates to the probe's capability: the capability put to use *is* the
# prohibited practice, or it *enables* one (face identification enables untargeted scraping into
# face databases, Art. 5(1)(e)), or the reference is of another kind.
POLICY_RELATIONS = ("prohibited use", "enables a prohibited use", "high-risk use", "not prohibited", "protected data",
                    "protected ground", "none")
PROHIBITING = ("prohibited use", "enables a prohibited use")


def probes_root() -> Path:
    env = os.environ.get("CREEPSCAN_PROBES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    installed = here / "suites"  # a wheel install: setup.cfg maps probes/ to creepscan.suites
    return installed if installed.is_dir() else here.parent / "probes"  # a source checkout or editable install


@dataclass
class Probe:
    id: str
    title: str
    capability: str
    policy: list[str]
    attacks: tuple[str, ...]
    source: dict
    path: Path
    suite: str
    min_images_per_class: int = 6
    max_per_class: int | None = None
    label_names: dict[str, str] = field(default_factory=dict)
    templates: list[str] = field(default_factory=list)
    risk: dict = field(default_factory=dict)
    reference: bool = False  # a benign task that shows the model works; never gates a release
    group_by: str | None = None  # regex on the file name whose capture gives the image's group
    # [{"ref", "relation"}] beside ``policy``: how each reference relates to the capability
    policy_basis: list[dict] = field(default_factory=list)
    risk_basis: dict[str, str] = field(default_factory=dict)  # rule key -> why it has its value

    def display_name(self, label: str) -> str:
        return self.label_names.get(label, label.replace("_", " "))

    @property
    def use_prohibited(self) -> bool:
        """Whether the capability is a prohibited use or enables one: from ``policy_basis``, else from
        the policy text (a reference probe, or one whose policy says "not prohibited", is not)."""
        if self.reference:
            return False
        if self.policy_basis:
            return any(b["relation"] in PROHIBITING for b in self.policy_basis)
        return not any("not prohibited" in p.lower() for p in self.policy)


def _need(cond, path, key, fix):
    if not cond:
        raise ProbeFileError(f"{path}: key '{key}' {fix}")


def _check_known_keys(doc: dict, path: Path) -> None:
    """Refuse an unknown top-level key, naming the closest known one."""
    import difflib

    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(key, TOP_LEVEL_KEYS, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ProbeFileError(f"{path}: unknown key '{key}': {hint}known keys: {', '.join(TOP_LEVEL_KEYS)}")


def load_probe(path: str | os.PathLike, suite: str | None = None) -> Probe:
    """Parse and validate one probe file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProbeFileError(f"probe file not found: {path}") from exc
    except UnicodeDecodeError as exc:
        raise ProbeFileError(f"{path}: not UTF-8 text (byte {exc.start}); save the probe file as UTF-8") from exc
    except OSError as exc:
        raise ProbeFileError(f"probe file {path} cannot be read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProbeFileError(f"{path}: not valid TOML ({exc})") from exc
    _check_known_keys(doc, path)
    for key in ("id", "title", "capability"):
        _need(isinstance(doc.get(key), str) and doc[key].strip(), path, key, "is required: a non-empty string")
    policy = doc.get("policy")
    _need(isinstance(policy, list) and policy and all(isinstance(p, str) for p in policy), path, "policy",
          'is required: a non-empty list of strings, e.g. ["EU AI Act Art. 5(1)(e)"]')
    attacks = doc.get("attacks", ["linear_probe", "few_shot"])
    _need(isinstance(attacks, list) and attacks and all(a in ATTACKS for a in attacks), path, "attacks",
          f"must list some of {', '.join(ATTACKS)}")
    source = doc.get("source")
    _need(isinstance(source, dict) and isinstance(source.get("kind"), str), path, "source",
          'is required: a table with at least kind = "..." (see README, probe file format)')
    min_images = doc.get("min_images_per_class", 6)
    _need(isinstance(min_images, int) and min_images >= 3, path, "min_images_per_class", "must be an integer >= 3")
    cap = doc.get("max_per_class")
    _need(cap is None or (isinstance(cap, int) and cap >= min_images), path, "max_per_class",
          "must be an integer >= min_images_per_class")
    labels = doc.get("labels", {})
    names = labels.get("names", {}) if isinstance(labels, dict) else None
    _need(isinstance(names, dict) and all(isinstance(v, str) for v in names.values()), path, "labels.names",
          'must be a table of label = "display name"')
    zs = doc.get("zero_shot", {})
    templates = zs.get("templates", []) if isinstance(zs, dict) else None
    _need(isinstance(templates, list) and all(isinstance(t, str) and "{}" in t for t in templates), path,
          "zero_shot.templates", 'must be a list of strings each with a {} placeholder, e.g. "a photo of {}."')
    if "zero_shot" in attacks:
        _need(templates, path, "zero_shot.templates", "is required when attacks include zero_shot")
    risk = doc.get("risk", {})
    _need(isinstance(risk, dict), path, "risk", "must be a table")
    for key, value in risk.items():
        _need(key in RISK_KEYS, path, f"risk.{key}", f"is not a known rule setting; known: {', '.join(RISK_KEYS)}")
        if key == "verification_far":
            _need(value in FAR_LEVELS, path, "risk.verification_far",
                  "must be " + " or ".join(f'"{far}"' for far in FAR_LEVELS))
            continue
        _need(isinstance(value, (int, float)) and not isinstance(value, bool), path, f"risk.{key}", "must be a number")
    from .risk import check_rules

    try:
        check_rules(risk)
    except ValueError as exc:
        raise ProbeFileError(f"{path}: [risk] {exc}") from exc
    basis = doc.get("policy_basis", [])
    _need(isinstance(basis, list) and all(isinstance(b, dict) and isinstance(b.get("ref"), str) and b["ref"].strip()
                                          and b.get("relation") in POLICY_RELATIONS and set(b) <= {"ref", "relation"}
                                          for b in basis), path, "policy_basis",
          'must be a list of {ref = "...", relation = "..."} with relation one of ' + ", ".join(POLICY_RELATIONS))
    risk_basis = doc.get("risk_basis", {})
    _need(isinstance(risk_basis, dict) and all(k in RISK_KEYS and isinstance(v, str) and v.strip()
                                                for k, v in risk_basis.items()), path, "risk_basis",
          f"must be a table of rule = \"why it has its value\" (rules: {', '.join(RISK_KEYS)})")
    group_by = doc.get("group_by")
    if group_by is not None:
        from .data import compile_group_rule

        try:
            compile_group_rule(group_by)
        except ValueError as exc:
            raise ProbeFileError(f"{path}: key 'group_by': {exc}") from exc
    # In a suite the file name is the id (`--probe ID` finds it by name); a file given by path is
    # named by its id key alone.
    if suite != "custom" and path.stem != doc["id"]:
        raise ProbeFileError(f"{path}: id '{doc['id']}' must match the file name ({path.stem})")
    return Probe(
        id=doc["id"], title=doc["title"].strip(), capability=doc["capability"].strip(), policy=list(policy),
        attacks=tuple(a for a in ATTACKS if a in attacks), source=dict(source), path=path,
        suite=suite or path.parent.name, min_images_per_class=min_images, max_per_class=cap,
        label_names={str(k): v for k, v in names.items()}, templates=list(templates), risk=dict(risk),
        reference=bool(doc.get("reference", False)) or policy[0].lower().startswith("none"),
        group_by=group_by, policy_basis=[dict(b) for b in basis], risk_basis=dict(risk_basis),
    )


def suites(root: Path | None = None) -> dict[str, list[Probe]]:
    """All suites under the probes folder, each a list of probes sorted by id."""
    root = root or probes_root()
    out: dict[str, list[Probe]] = {}
    if not root.is_dir():
        return out
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(d.glob("*.toml"))
        if files:
            out[d.name] = [load_probe(f, d.name) for f in files]
    return out


def select(suite: str = DEFAULT_SUITE, probe_args=(), root: Path | None = None) -> list[Probe]:
    """The probes to run: all of ``suite``, or those named by ``--probe`` (ids or paths)."""
    all_suites = suites(root)
    if not probe_args:
        if suite not in all_suites:
            raise ProbeFileError(f"unknown suite '{suite}'; known: {', '.join(all_suites) or 'none'} "
                                 "(creepscan probes)")
        return all_suites[suite]
    chosen = []
    for arg in probe_args:
        if arg.endswith(".toml") or os.sep in arg:
            chosen.append(load_probe(arg, "custom"))
            continue
        # An id is looked up in the chosen suite first, then default, then the rest.
        order = [suite, DEFAULT_SUITE] + [s for s in all_suites if s not in (suite, DEFAULT_SUITE)]
        found = next((p for s in order for p in all_suites.get(s, []) if p.id == arg), None)
        if found is None:
            known = sorted({p.id for ps in all_suites.values() for p in ps})
            raise ProbeFileError(f"unknown probe '{arg}'; known ids: {', '.join(known)} "
                                 "(or give a path to a .toml probe file)")
        chosen.append(found)
    ids = [p.id for p in chosen]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ProbeFileError(f"probe {sorted(dup)[0]} given twice")
    return chosen
