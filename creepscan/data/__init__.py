"""Probe data: image sets from a folder (one sub-folder per label) or a CSV manifest, and decoding.

Nothing here knows about models. Files that cannot be used are recorded with a reason, never dropped
silently: missing files at listing time here, undecodable ones when ``decode_image`` fails.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ..errors import DataUnavailable

# Pillow's own bomb limit (about 89 Mpixel): larger images are refused, not decoded.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


@dataclass
class ImageSet:
    """Paths and raw labels of one probe's images.

    ``paths`` are absolute; ``labels`` are the raw label strings; ``groups`` holds each image's group
    (a person, a video sequence: images of one group never sit on both sides of a split) or None,
    one entry per image; ``skipped`` lists files that could not be used (``{"path", "reason"}``, paths
    relative to ``root``); ``empty_labels`` are label folders with no usable file.
    """

    root: Path
    paths: list[Path]
    labels: list[str]
    source: str
    groups: list[str | None] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    empty_labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.groups:
            self.groups = [None] * len(self.paths)
        if not len(self.paths) == len(self.labels) == len(self.groups):
            raise ValueError(f"an image set needs one label and one group (or None) per path: {len(self.paths)} paths, "
                             f"{len(self.labels)} labels, {len(self.groups)} groups")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def has_groups(self) -> bool:
        """True when some image carries a group."""
        return any(g is not None for g in self.groups)

    def relpath(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def subset(self, indices) -> "ImageSet":
        indices = list(indices)
        return ImageSet(
            root=self.root, paths=[self.paths[i] for i in indices], labels=[self.labels[i] for i in indices],
            source=self.source, groups=[self.groups[i] for i in indices],
            skipped=list(self.skipped), empty_labels=list(self.empty_labels),
        )


def load_image_set(path: str | os.PathLike) -> ImageSet:
    """A folder with one sub-folder per label, or a CSV manifest with columns ``path,label[,group]``.

    A manifest's ``group`` column (empty cells: no group) sets ``ImageSet.groups``; a folder's images
    have no group (see ``apply_group_rule`` to derive them from file names)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataUnavailable(f"data path not found: {path} "
                              "(give a folder with one sub-folder per label, or a CSV manifest path,label)")
    if path.is_dir():
        return _from_folder(path)
    if path.suffix.lower() == ".csv":
        return _from_csv(path)
    raise DataUnavailable(f"{path} is neither a folder nor a .csv manifest")


def _from_folder(root: Path) -> ImageSet:
    root = root.resolve()
    label_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not label_dirs:
        raise DataUnavailable(f"{root} has no sub-folders: "
                              "put each label's images in a sub-folder named after the label")
    paths, labels, empty, skipped = [], [], [], []
    for entry in sorted(root.iterdir()):
        reason = _unfollowable(entry)
        if reason and not entry.name.startswith("."):
            skipped.append({"path": entry.name, "reason": reason})
    for d in label_dirs:
        files, odd = _list_files(d)
        skipped += [{"path": Path(p).relative_to(root).as_posix(), "reason": why} for p, why in odd]
        if not files:
            empty.append(d.name)
        paths += files
        labels += [d.name] * len(files)
    return ImageSet(root=root, paths=paths, labels=labels, source=f"folder {root}", empty_labels=empty,
                    skipped=skipped)


def _unfollowable(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (a loop, a missing target), or None."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop: the link leads back to itself, so it names no image"
        if exc.errno == errno.ENOENT:
            return f"broken symbolic link: its target {os.readlink(path)} does not exist"
        return f"symbolic link cannot be followed ({exc.strerror or exc})"
    return None


def _list_files(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(the files under ``folder``, sorted; [(path, reason)] for what is not used). Hidden names are
    left out; symbolic links to files are used; links to folders are not followed (one that points
    back up would list the same images again, or loop), and each is recorded with a reason, as are
    loops, broken links and other non-files: nothing is dropped silently."""
    files, odd = [], []
    todo = [folder]
    while todo:
        current = todo.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            odd.append((Path(current), f"folder cannot be read ({exc.strerror or exc})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            p = Path(entry.path)
            reason = _unfollowable(p)
            if reason is None and entry.is_symlink() and entry.is_dir():
                reason = ("symbolic link to a folder, not followed (it may lead back into the data and list "
                          "images twice); link or copy the image files themselves")
            if reason:
                odd.append((p, reason))
            elif entry.is_dir(follow_symlinks=False):
                todo.append(p)
            elif entry.is_file():
                files.append(p)
            else:
                odd.append((p, "not a regular file"))
    return sorted(files), sorted(odd)


def _from_csv(manifest: Path) -> ImageSet:
    manifest = manifest.resolve()
    base = manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "path" not in fields or "label" not in fields:
                raise DataUnavailable(f"{manifest}: a manifest needs a header with columns path,label[,group]; "
                                      f"found {reader.fieldnames}")
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as exc:
        raise DataUnavailable(f"{manifest} is not a UTF-8 CSV file") from exc
    paths, labels, groups, skipped = [], [], [], []
    for line, row in enumerate(rows, start=2):
        if not row.get("path") or not row.get("label"):
            skipped.append({"path": f"{manifest.name}:{line}", "reason": "row without path or label"})
            continue
        p = Path(row["path"])
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            skipped.append({"path": row["path"], "reason": "file not found"})
            continue
        paths.append(p.resolve())
        labels.append(row["label"])
        groups.append(row.get("group") or None)
    if not paths and not skipped:
        raise DataUnavailable(f"{manifest} lists no images")
    return ImageSet(root=base, paths=paths, labels=labels, source=f"manifest {manifest}", groups=groups,
                    skipped=skipped)


class UnusableImage(Exception):
    """An image file that cannot be used; the message is the recorded reason."""


def decode_image(path) -> Image.Image:
    """Decode to RGB with EXIF orientation applied; raise UnusableImage with a reason otherwise."""
    try:
        if os.path.getsize(path) == 0:
            raise UnusableImage("empty file (0 bytes)")
    except OSError as exc:
        raise UnusableImage(f"cannot read file: {exc.strerror or exc}") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise UnusableImage(f"refused: {w}x{h} pixels exceeds the decompression-bomb limit of {MAX_PIXELS}")
                img.load()
                img = ImageOps.exif_transpose(img)
                return img.convert("RGB")
        except UnusableImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UnusableImage(f"refused: decompression bomb ({exc})") from exc
        except Image.UnidentifiedImageError as exc:
            raise UnusableImage("not an image (unrecognised format)") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise UnusableImage(f"truncated or corrupt image ({str(exc)[:120]})") from exc


ImageFile.LOAD_TRUNCATED_IMAGES = False


def file_digest(path) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_hashes(paths, workers: int = 8) -> list[str | None]:
    """sha256 of each file, None where the file cannot be read. I/O-bound, so threads overlap it."""
    def one(p):
        try:
            return file_digest(p)
        except OSError:
            return None

    if len(paths) < 64:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, paths, chunksize=64))


def dataset_fingerprint(image_set: ImageSet, hashes) -> str:
    """sha256 over (relative path, size, content hash, label) of every listed file."""
    h = hashlib.sha256()
    for p, label, digest in zip(image_set.paths, image_set.labels, hashes):
        try:
            size = os.path.getsize(p)
        except OSError:
            size = -1
        h.update(f"{image_set.relpath(p)}\t{size}\t{digest}\t{label}\n".encode())
    return "sha256:" + h.hexdigest()


def cap_per_class(image_set: ImageSet, max_per_class: int | None, seed: int) -> ImageSet:
    """At most ``max_per_class`` images per label: a seeded sample, the same for every model (groups
    travel with their images)."""
    if not max_per_class:
        return image_set
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(image_set.labels):
        by_label.setdefault(label, []).append(i)
    keep = []
    for label in sorted(by_label):
        idx = by_label[label]
        if len(idx) > max_per_class:
            label_seed = int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:8], "little")
            rng = np.random.default_rng(label_seed)
            idx = sorted(rng.choice(idx, size=max_per_class, replace=False).tolist())
        keep += idx
    return image_set.subset(sorted(keep))


def compile_group_rule(pattern: str) -> re.Pattern:
    """A probe's ``group_by`` rule as a compiled regular expression.

    The rule is searched in each image's file name (``re.search``, not anchored); the group is the
    named capture group ``group`` when there is one, else the single capture group. Raises
    ValueError naming the rule and the fix when it does not compile or has no usable capture group.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"group_by must be a non-empty regular expression string, got {pattern!r}")
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"group_by {pattern!r} is not a valid regular expression ({exc})") from exc
    if "group" not in rx.groupindex and rx.groups != 1:
        raise ValueError(f"group_by {pattern!r} has {rx.groups} capture groups; give exactly one, or name one "
                         "(?P<group>...), e.g. '^(\\w+?)_\\d+' for person12_0003.jpg")
    return rx


def group_of(rule: re.Pattern, file_name: str) -> str | None:
    """The group a compiled ``group_by`` rule gives one file name, or None when it does not match
    (or captures an empty string)."""
    m = rule.search(file_name)
    if m is None:
        return None
    value = m.group("group") if "group" in rule.groupindex else m.group(1)
    return value or None


def apply_group_rule(image_set: ImageSet, pattern: str | None) -> ImageSet:
    """Fill the groups of images that have none from a ``group_by`` rule on their file names.

    Groups a manifest already gives win (the rule only fills the gaps). Images the rule does not
    match keep no group (each is split on its own). Raises ValueError when the rule matches none of
    the images that lack a group: a rule that never applies is a mistake, not a choice.
    """
    if pattern is None:
        return image_set
    rule = compile_group_rule(pattern)
    groups = list(image_set.groups)
    todo = [i for i, g in enumerate(groups) if g is None]
    matched = 0
    for i in todo:
        g = group_of(rule, Path(image_set.paths[i]).name)
        if g is not None:
            groups[i] = g
            matched += 1
    if todo and not matched:
        example = Path(image_set.paths[todo[0]]).name
        raise ValueError(f"group_by {pattern!r} matches none of the {len(todo)} file names without a group "
                         f"(e.g. {example!r}); fix the rule in the probe file")
    return ImageSet(root=image_set.root, paths=list(image_set.paths), labels=list(image_set.labels),
                    source=image_set.source, groups=groups, skipped=list(image_set.skipped),
                    empty_labels=list(image_set.empty_labels))
