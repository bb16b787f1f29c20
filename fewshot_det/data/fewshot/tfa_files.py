"""Read and write TFA-compatible few-shot split files.

Layout (few-shot-object-detection's ``datasets/vocsplit`` and ``datasets/cocosplit``)::

    SPLIT_DIR/seed{i}/box_{K}shot_{class}_train.txt            VOC style
    SPLIT_DIR/seed{i}/full_box_{K}shot_{class}_trainval.json   COCO style

* VOC style: one image path per line. The split of a class is those images with *that
  class's* annotations (TFA's loader); the boxes come from the dataset, not the file.
* COCO style: ``{"images", "annotations", "categories"}`` in COCO format (``bbox`` XYWH,
  ``category_id`` = the dataset's id); the file holds the boxes itself.

TFA keeps its seed-0 files directly in ``SPLIT_DIR`` (no ``seed0/``); both layouts are read,
``seed{i}/`` is always written. No torch here.
"""
import json
import os
import warnings
from typing import Dict, List, Optional, Sequence

from ...utils.files import atomic_write_text
from .kshot import FewShotWarning, is_countable, merge_class_splits

__all__ = [
    "SPLIT_FORMATS",
    "split_file_name",
    "split_file_path",
    "find_split_file",
    "resolve_split_format",
    "write_voc_split",
    "read_voc_split",
    "records_from_voc_split",
    "write_coco_split",
    "read_coco_split",
    "write_class_splits",
    "load_class_splits",
    "load_fewshot_dataset",
]

SPLIT_FORMATS = ("voc", "coco")


def _meta(metadata, key: str, default=None):
    """Read a metadata field from a Metadata object or a plain dict."""
    if isinstance(metadata, dict):
        return metadata.get(key, default)
    return getattr(metadata, key, default)


def split_file_name(fmt: str, class_name: str, shots: int) -> str:
    """TFA's file name for one (format, class, K); '/' in a class name becomes '_'."""
    safe = str(class_name).replace("/", "_").replace("\\", "_")
    if fmt == "voc":
        return f"box_{int(shots)}shot_{safe}_train.txt"
    if fmt == "coco":
        return f"full_box_{int(shots)}shot_{safe}_trainval.json"
    raise ValueError(f"unknown split file format {fmt!r}; expected one of {SPLIT_FORMATS}")


def split_file_path(split_dir: str, fmt: str, class_name: str, shots: int, seed: int) -> str:
    """Where a split file is written: ``split_dir/seed{seed}/<TFA name>``."""
    return os.path.join(split_dir, f"seed{int(seed)}", split_file_name(fmt, class_name, shots))


def find_split_file(split_dir: str, fmt: str, class_name: str, shots: int, seed: int) -> str:
    """The existing split file for (format, class, K, seed): ``seed{seed}/`` first, then for
    seed 0 TFA's layout without a seed folder.

    Raises:
        FileNotFoundError: naming every path tried.
    """
    tried = [split_file_path(split_dir, fmt, class_name, shots, seed)]
    if int(seed) == 0:
        tried.append(os.path.join(split_dir, split_file_name(fmt, class_name, shots)))
    for path in tried:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"no {fmt} few-shot split file for class {class_name!r}, {shots} shots, seed {seed}; "
        f"tried {tried} (write them with tools/prepare_fewshot_splits.py)"
    )


def resolve_split_format(fmt: str, metadata) -> str:
    """"voc" / "coco" as given; "auto" -> "coco" for COCO-evaluated datasets, else "voc"."""
    if fmt == "auto":
        return "coco" if _meta(metadata, "evaluator_type") == "coco" else "voc"
    if fmt not in SPLIT_FORMATS:
        raise ValueError(f"unknown split file format {fmt!r}; expected auto, voc or coco")
    return fmt


# ------------------------------------------------------------------------------ VOC style
def write_voc_split(records: Sequence[dict], path: str) -> None:
    """Write the image paths of ``records`` (``file_name``, first occurrence order)."""
    seen = dict.fromkeys(str(r["file_name"]) for r in records)
    atomic_write_text(path, "".join(p + "\n" for p in seen))


def read_voc_split(path: str) -> List[str]:
    """The image paths listed in a VOC-style split file (blank lines ignored)."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _image_index(records: Sequence[dict]):
    by_path, by_stem = {}, {}
    for r in records:
        by_path[os.path.normpath(str(r["file_name"]))] = r
        stem = os.path.splitext(os.path.basename(str(r["file_name"])))[0]
        by_stem.setdefault(stem, []).append(r)
    return by_path, by_stem


def records_from_voc_split(
    image_paths: Sequence[str],
    records: Sequence[dict],
    class_id: int,
    shots: Optional[int] = None,
    *,
    source: str = "<split>",
) -> List[dict]:
    """Per-class records for the listed images: each keeps that class's countable annotations.

    An image is matched by its full path, else by file stem (TFA's files hold paths like
    ``datasets/VOC2007/JPEGImages/000005.jpg`` that only match by stem). With ``shots``,
    images are walked in file order and each contributes its first annotations up to the
    remaining count: this reproduces the sampler's partial last image exactly, and is a
    deterministic version of TFA's loader trimming an over-full split to K boxes.

    Args:
        image_paths: lines of a VOC-style split file.
        records: the full dataset's records.
        class_id: the class's contiguous label (1..K).
        shots: K to trim to, or None to keep every instance.
        source: the split file, named in errors.

    Raises:
        ValueError: a listed image is not in the dataset, or its stem is ambiguous.
    """
    by_path, by_stem = _image_index(records)
    out, total = [], 0
    for line in image_paths:
        record = by_path.get(os.path.normpath(line))
        if record is None:
            matches = by_stem.get(os.path.splitext(os.path.basename(line))[0], [])
            if len(matches) != 1:
                what = "is not in the dataset" if not matches else "matches several images"
                raise ValueError(f"{source}: image {line!r} {what}")
            record = matches[0]
        anns = [
            dict(a) for a in record.get("annotations", [])
            if int(a["category_id"]) == class_id and is_countable(a)
        ]
        if not anns:
            warnings.warn(
                f"{source}: image {line!r} has no box of this class; skipped", FewShotWarning
            )
            continue
        if shots is not None:
            anns = anns[: max(int(shots) - total, 0)]
            if not anns:
                continue
        total += len(anns)
        out.append({**{k: v for k, v in record.items() if k != "annotations"}, "annotations": anns})
    return out


# ----------------------------------------------------------------------------- COCO style
def _relative_name(file_name: str, image_root: Optional[str]) -> str:
    if image_root:
        rel = os.path.relpath(file_name, image_root)
        if not rel.startswith(".."):
            return rel
    return file_name


def _ann_id(ann: dict, fallback: int):
    return ann["id"] if ann.get("id") is not None else fallback


def write_coco_split(
    records: Sequence[dict], path: str, metadata, *, image_root: Optional[str] = None
) -> None:
    """Write records as a COCO json (TFA's ``full_box_*`` files).

    Args:
        records: per-class split records (XYXY boxes, contiguous ``category_id``).
        path: output json path.
        metadata: gives ``thing_classes`` and ``thing_dataset_id_to_contiguous_id``
            (identity if absent), and ``image_root`` if ``image_root`` is None.
        image_root: image paths under it are written relative to it (COCO's convention).
    """
    classes = list(_meta(metadata, "thing_classes"))
    to_contiguous = _meta(metadata, "thing_dataset_id_to_contiguous_id") or {
        i: i for i in range(1, len(classes) + 1)
    }
    to_dataset = {int(c): int(d) for d, c in to_contiguous.items()}
    image_root = image_root or _meta(metadata, "image_root")
    images, annotations, seen = [], [], set()
    for r in records:
        if r["image_id"] not in seen:
            seen.add(r["image_id"])
            images.append({
                "id": r["image_id"], "file_name": _relative_name(str(r["file_name"]), image_root),
                "height": int(r["height"]), "width": int(r["width"]),
            })
        for a in r["annotations"]:
            x1, y1, x2, y2 = (float(v) for v in a["bbox"])
            annotations.append({
                "id": _ann_id(a, len(annotations) + 1), "image_id": r["image_id"],
                "category_id": to_dataset[int(a["category_id"])],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(a.get("area", (x2 - x1) * (y2 - y1))),
                "iscrowd": int(a.get("iscrowd", 0)),
            })
    categories = [{"id": to_dataset[i + 1], "name": n} for i, n in enumerate(classes)]
    atomic_write_text(path, json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))


def read_coco_split(path: str, metadata, *, image_root: Optional[str] = None) -> List[dict]:
    """Records of a COCO-style split file (ours or TFA's).

    Args:
        path: the json file.
        metadata: gives ``thing_dataset_id_to_contiguous_id`` (identity if absent) and
            ``image_root`` if ``image_root`` is None.
        image_root: joined to relative image file names.

    Returns:
        One record per image in file order; boxes XYXY, ``category_id`` contiguous, with
        ``iscrowd``, ``difficult`` (0), ``area`` and ``id`` as in the file.

    Raises:
        ValueError: malformed file or unknown category id, naming the file.
    """
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path}: not a COCO split file (needs 'images' and 'annotations')")
    to_contiguous = _meta(metadata, "thing_dataset_id_to_contiguous_id") or {
        i: i for i in range(1, len(_meta(metadata, "thing_classes")) + 1)
    }
    image_root = image_root or _meta(metadata, "image_root") or ""
    records = {}
    for img in data["images"]:
        records[img["id"]] = {
            "file_name": os.path.join(image_root, img["file_name"]), "image_id": img["id"],
            "height": int(img["height"]), "width": int(img["width"]), "annotations": [],
        }
    for a in data["annotations"]:
        if a["category_id"] not in to_contiguous or a["image_id"] not in records:
            raise ValueError(
                f"{path}: annotation {a.get('id')!r} has unknown category_id "
                f"{a['category_id']!r} or image_id {a['image_id']!r}"
            )
        x, y, w, h = (float(v) for v in a["bbox"])
        records[a["image_id"]]["annotations"].append({
            "bbox": [x, y, x + w, y + h], "category_id": int(to_contiguous[a["category_id"]]),
            "iscrowd": int(a.get("iscrowd", 0)), "difficult": 0,
            "area": float(a.get("area", w * h)), "id": a.get("id"),
        })
    return list(records.values())


# ------------------------------------------------------------------------ whole splits
def write_class_splits(
    per_class: Dict[str, List[dict]], split_dir: str, shots: int, seed: int, fmt: str, metadata
) -> List[str]:
    """Write one split file per class under ``split_dir/seed{seed}/``.

    Args:
        per_class: {class name: records} from :func:`~.kshot.sample_kshot`.
        fmt: "voc", "coco" or "auto" (see :func:`resolve_split_format`).

    Returns:
        The paths written, in class order.
    """
    fmt = resolve_split_format(fmt, metadata)
    paths = []
    for name, records in per_class.items():
        path = split_file_path(split_dir, fmt, name, shots, seed)
        if fmt == "voc":
            write_voc_split(records, path)
        else:
            write_coco_split(records, path, metadata)
        paths.append(path)
    return paths


def load_class_splits(
    split_dir: str,
    records: Sequence[dict],
    metadata,
    shots: int,
    seed: int,
    *,
    fmt: str = "auto",
    classes: Optional[Sequence[str]] = None,
) -> Dict[str, List[dict]]:
    """Read the per-class splits of (K, seed) back into records.

    Args:
        split_dir: the folder holding ``seed{i}/`` (or TFA's seed-0 files).
        records: the full dataset (needed by VOC-style files, which list images only).
        metadata: the dataset's metadata (``thing_classes``, id map, ``evaluator_type``).
        fmt: "voc", "coco", or "auto": the dataset's natural format first, else the other.
        classes: class names to read (default: all ``thing_classes``).

    Returns:
        {class name: records}, as :func:`~.kshot.sample_kshot` returns.
    """
    thing_classes = list(_meta(metadata, "thing_classes"))
    order = [resolve_split_format(fmt, metadata)]
    if fmt == "auto":
        order.append("coco" if order[0] == "voc" else "voc")
    out = {}
    for name in thing_classes if classes is None else classes:
        if name not in thing_classes:
            raise ValueError(f"unknown class {name!r}; the dataset's classes are {thing_classes}")
        out[name] = _load_one(split_dir, records, metadata, order, name, shots, seed)
    return out


def _load_one(split_dir, records, metadata, formats, name, shots, seed) -> List[dict]:
    errors = []
    for fmt in formats:
        try:
            path = find_split_file(split_dir, fmt, name, shots, seed)
        except FileNotFoundError as e:
            errors.append(str(e))
            continue
        if fmt == "coco":
            return read_coco_split(path, metadata)
        class_id = list(_meta(metadata, "thing_classes")).index(name) + 1
        return records_from_voc_split(read_voc_split(path), records, class_id, shots, source=path)
    raise FileNotFoundError("; ".join(errors))


def load_fewshot_dataset(
    split_dir: str,
    records: Sequence[dict],
    metadata,
    shots: int,
    seed: int,
    *,
    fmt: str = "auto",
    classes: Optional[Sequence[str]] = None,
) -> List[dict]:
    """The few-shot training set stored in split files: the union of the class splits."""
    per_class = load_class_splits(
        split_dir, records, metadata, shots, seed, fmt=fmt, classes=classes
    )
    return merge_class_splits(per_class)
