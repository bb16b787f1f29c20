"""Checks shared by every reader: boxes against image bounds, and image files.

Readers produce records in the package's contract (see DESIGN.md) and then call
``sanitize_boxes`` and, optionally, ``check_image_files``. Bad boxes are common in real data
(BCCD has two zero-area boxes), so by default they are repaired or dropped and summarised in
one warning; ``box_policy="strict"`` turns them into errors instead.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, List, Mapping, Sequence, Tuple

from .image_format import truncation_problem

logger = logging.getLogger(__name__)

BOX_POLICIES = ("clip", "strict", "keep")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """Bad dataset content; the message names the file."""


def _box_problem(box, width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    if not all(map(_finite, box)):
        return "non-finite coordinates"
    if x2 <= x1 or y2 <= y1:
        return "zero or negative width/height"
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return f"outside the {width}x{height} image"
    return ""


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


def _clip(box, width: int, height: int) -> List[float]:
    x1, y1, x2, y2 = box
    return [min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height)]


def sanitize_boxes(records: List[dict], policy: str, source: str) -> List[dict]:
    """Clip boxes to their image and drop degenerate ones (in place), or raise.

    Args:
        records: dataset records; each annotation's ``bbox`` is XYXY in pixels.
        policy: "clip" (repair + one summary warning), "strict" (``DataError`` on the
            first bad box, naming its file) or "keep" (leave boxes as written).
        source: dataset name or path, for the messages.
    Returns:
        the same list, for chaining.
    """
    if policy not in BOX_POLICIES:
        raise ValueError(f"box_policy must be one of {BOX_POLICIES}, got {policy!r}")
    if policy == "keep":
        return records
    clipped, dropped, files = 0, 0, []
    for r in records:
        kept = []
        for ann in r["annotations"]:
            problem = _box_problem(ann["bbox"], r["width"], r["height"])
            if not problem:
                kept.append(ann)
                continue
            if policy == "strict":
                raise DataError(f"{r['file_name']}: box {ann['bbox']} has {problem} "
                                "(DATASETS.BOX_POLICY strict)")
            box = _clip(ann["bbox"], r["width"], r["height"]) if all(map(_finite, ann["bbox"])) \
                else [0.0, 0.0, 0.0, 0.0]
            files.append(os.path.basename(r["file_name"]))
            if box[2] > box[0] and box[3] > box[1]:
                ann["bbox"] = box
                kept.append(ann)
                clipped += 1
            else:
                dropped += 1
        r["annotations"] = kept
    if files:
        shown = sorted(set(files))
        logger.warning(
            "%s: %d box(es) clipped to the image and %d degenerate box(es) dropped, in %d "
            "file(s): %s%s", source, clipped, dropped, len(shown), ", ".join(shown[:10]),
            " ..." if len(shown) > 10 else "")
    return records


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) from the file header, without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise DataError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image {path}: {e}") from e


def check_image_file(record: dict) -> None:
    """The record's image exists, is not truncated and has the annotated size."""
    path = record["file_name"]
    if not os.path.isfile(path):
        raise DataError(f"image file not found: {path}")
    problem = truncation_problem(path)
    if problem:
        raise DataError(f"image file is truncated (incomplete copy?): {path}: {problem}")
    width, height = image_size(path)
    if (width, height) != (record["width"], record["height"]):
        raise DataError(
            f"{path}: the annotation says {record['width']}x{record['height']} (WxH) but the "
            f"image is {width}x{height}")


def check_image_files(records: Iterable[dict], num_threads: int = 8) -> None:
    """Run ``check_image_file`` on every record (threads: the work is file I/O)."""
    records = list(records)
    with ThreadPoolExecutor(num_threads) as pool:
        list(pool.map(check_image_file, records))


def find_class_list(*folders: str) -> List[str]:
    """Class names from the first ``classes.txt`` found in ``folders`` ([] if none)."""
    for folder in folders:
        path = os.path.join(folder, "classes.txt")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: not UTF-8 text (byte {e.start}: "
                                f"{data[e.start:e.start + 1]!r}); save it as UTF-8") from None
            names = [line.strip() for line in text.splitlines() if line.strip()]
            if len(set(names)) != len(names):
                raise DataError(f"{path}: duplicate class names")
            logger.info("class order from %s: %s", path, names)
            return names
    return []


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest single-character insertions, deletions and
    substitutions that turn ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def is_typo_of(name: str, other: str) -> bool:
    """``name`` is ``other`` with a typo: at most 2 character edits, and at most a fifth of
    the longer name (case ignored). A whole word more or less, or another word in its
    place ("greenstraight" / "redstraight", "cat" / "car"), is a different name."""
    a, b = name.lower(), other.lower()
    distance = edit_distance(a, b)
    return 0 < distance <= 2 and distance * 5 <= max(len(a), len(b))


def warn_lookalike_classes(files_by_class: Mapping[str, Sequence[str]], source: str
                           ) -> List[str]:
    """Warn about rare class names that look like a frequent one (a misspelt label).

    Without a ``classes.txt`` every name in the annotations becomes a class, so a typo
    ("insulater" once among 500 "insulator") silently adds a class with one instance. A
    name is suspect when a name at least 5 times as frequent differs from it by a typo
    (``is_typo_of``).

    Args:
        files_by_class: class name -> the annotation file of each of its instances.
        source: the dataset, for the message.
    Returns:
        the suspect names (each also logged with its count, files and look-alike).
    """
    counts = {name: len(files) for name, files in files_by_class.items()}
    suspects = []
    for name, n in sorted(counts.items()):
        close = sorted((edit_distance(name.lower(), o.lower()), o) for o in counts
                       if counts[o] >= 5 * n and is_typo_of(name, o))
        if not close:
            continue
        like = close[0][1]
        shown = sorted(set(files_by_class[name]))
        suspects.append(name)
        logger.warning(
            "%s: class %r has %d instance(s) (%s%s) and looks like %r (%d instances): a "
            "misspelt label? Without classes.txt every name becomes a class; write the "
            "class list in classes.txt to make unknown names an error", source, name, n,
            ", ".join(shown[:5]), " ..." if len(shown) > 5 else "", like, counts[like])
    return suspects

