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
    return write_all_or_nothing(Path(path).parent, {Path(path).name: text})[0]


def write_all_or_nothing(folder: Path | str, texts: dict[str, str]) -> list[Path]:
    """Write each ``name -> text`` (UTF-8) into ``folder`` (created if missing), all or none.

    Every file is first written in full to a temp file beside its final name and synced; only when
    all are on disk are they renamed into place. If any write fails (a full disk: ``OSError``
    ENOSPC) the temp files are removed, the folder is removed again if this call created it, files
    already there are left as they were (never truncated), and the error is raised. Returns the
    paths in the order of ``texts``.
    """
    folder = Path(folder)
    created = not folder.exists()
    temps: list[str] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            temps.append(tmp)
            _write_synced(fd, text.encode("utf-8"))
            # mkstemp makes the file 0600; a report is an ordinary file, so give it the usual mode
            os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        _discard(temps, folder if created else None)
        raise
    out = []
    for tmp, name in zip(temps, texts):
        os.replace(tmp, folder / name)
        out.append(folder / name)
    return out


def _write_synced(fd: int, data: bytes) -> None:
    """Write ``data`` to the open file ``fd`` and sync it to disk (where a full disk shows itself,
    at the latest), closing ``fd``."""
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _discard(temps: list[str], created: Path | None) -> None:
    """Remove the temp files of a failed write, and the folder it created if nothing else is in it."""
    for tmp in temps:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    if created is not None:
        try:
            created.rmdir()
        except OSError:
            pass


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_json(path: Path | str) -> dict:
    """Read a report.json back (for ``creepscan`` tools that re-render a saved result)."""
    with open(path, "r", encoding="utf-8") as fh:
        return json.load(fh)
