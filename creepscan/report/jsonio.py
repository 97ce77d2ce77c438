"""The result dict as strict JSON: NaN/inf become null, numpy scalars and arrays plain Python.

``report.json`` is the source the other renderers read, so it is written first, atomically, and the
Markdown and HTML are rendered from the same sanitised dict (a NaN never shows up as "nan" in one
file and as null in another).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path, PurePath
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """Return a copy of ``obj`` that ``json.dumps(..., allow_nan=False)`` accepts.

    - float NaN / +-inf -> ``None``;
    - numpy scalars and arrays (anything with ``tolist``/``item``) -> Python numbers and lists;
    - tuples and sets -> lists (sets sorted, so the output stays deterministic);
    - ``pathlib`` paths -> ``str``; dict keys -> ``str``.
    Dict insertion order is kept. Anything else that is not JSON-able raises ``TypeError``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, PurePath):
        return str(obj)
    # numpy (and torch) without importing them: arrays have tolist, scalars have item
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):
        return to_jsonable(obj.item())
    raise TypeError(f"report: value of type {type(obj).__name__} is not JSON-able: {obj!r}")


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, float) and not math.isfinite(k):
        return "null"
    if hasattr(k, "item") and callable(k.item):
        k = k.item()
    return str(k)


def dumps(result: dict) -> str:
    """The exact text of ``report.json`` (ends with a newline)."""
    return json.dumps(to_jsonable(result), indent=2, sort_keys=False, allow_nan=False,
                      ensure_ascii=False) + "\n"


def write_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` via a temp file in the same folder and ``os.replace``.

    A reader never sees a half-written report; newlines are written as ``\\n`` on every platform.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes the file 0600; a report is an ordinary file, so give it the usual mode
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_json(path: Path | str) -> dict:
    """Read a report.json back (for ``creepscan`` tools that re-render a saved result)."""
    with open(path, "r", encoding="utf-8") as fh:
        return json.load(fh)
