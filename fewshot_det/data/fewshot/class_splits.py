"""Base / novel class splits as data, and one resolver for named splits and user lists.

Named splits (the keys of ``CLASS_SPLITS``):

* ``voc1``, ``voc2``, ``voc3``: the three Pascal VOC splits of TFA (15 base / 5 novel). The
  base lists keep TFA's order (``PASCAL_VOC_BASE_CATEGORIES`` of few-shot-object-detection).
* ``coco``: COCO 60 base / 20 novel, the novel classes being the 20 VOC classes under their
  COCO names; both lists follow COCO's category-id order.
* ``synthetic``: the shapes-on-clutter set of ``fewshot_det.data.synthetic``.

Class names are always the dataset's own names (``"aeroplane"`` for VOC, ``"airplane"`` for
COCO). No torch here.
"""
import difflib
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = [
    "VOC_CLASSES",
    "COCO_CLASSES",
    "COCO_NOVEL_CLASSES",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_NOVEL_CLASSES",
    "CLASS_SPLITS",
    "available_splits",
    "get_class_split",
    "resolve_class_split",
]

# Standard VOC order (VOC devkit / torchvision / detectron2).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

_VOC_NOVEL = {
    1: ("bird", "bus", "cow", "motorbike", "sofa"),
    2: ("aeroplane", "bottle", "cow", "horse", "sofa"),
    3: ("boat", "cat", "motorbike", "sheep", "sofa"),
}

# The 80 COCO thing classes in category-id order (ids 1..90 with gaps).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)

# The 20 VOC classes under their COCO names, in COCO order (TFA's COCO_NOVEL_CATEGORIES).
COCO_NOVEL_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "boat", "bird",
    "cat", "dog", "horse", "sheep", "cow", "bottle", "chair", "couch", "potted plant",
    "dining table", "tv",
)

# Class order of the synthetic shapes set (its classes.txt) and its declared novel classes.
SYNTHETIC_CLASSES = (
    "circle", "square", "triangle", "star", "hexagon", "cross", "ring", "ellipse",
    "diamond", "arrow", "heart", "crescent",
)
SYNTHETIC_NOVEL_CLASSES = ("star", "arrow", "heart")


def _base_novel(all_classes: Sequence[str], novel: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    base = tuple(c for c in all_classes if c not in novel)
    return {"base": base, "novel": tuple(novel)}


CLASS_SPLITS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    **{f"voc{i}": _base_novel(VOC_CLASSES, novel) for i, novel in _VOC_NOVEL.items()},
    "coco": _base_novel(COCO_CLASSES, COCO_NOVEL_CLASSES),
    "synthetic": _base_novel(SYNTHETIC_CLASSES, SYNTHETIC_NOVEL_CLASSES),
}

# Spellings users arrive with (TFA's "split1", our docs' "voc_split1", the dataset name).
_ALIASES = {
    **{f"voc_split{i}": f"voc{i}" for i in _VOC_NOVEL},
    **{f"split{i}": f"voc{i}" for i in _VOC_NOVEL},
    "coco_60_20": "coco",
    "shapes": "synthetic",
}


def available_splits() -> List[str]:
    """Names accepted by :func:`get_class_split` (canonical names, then aliases)."""
    return list(CLASS_SPLITS) + list(_ALIASES)


def get_class_split(name: str) -> Tuple[List[str], List[str]]:
    """The (base, novel) class-name lists of a named split.

    Args:
        name: one of :func:`available_splits` (case-insensitive).

    Returns:
        (base, novel): two new lists of class names.

    Raises:
        ValueError: unknown split name (the message lists the known names).
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in CLASS_SPLITS:
        raise ValueError(
            f"Unknown class split {name!r}; known splits: {', '.join(available_splits())} "
            "(or leave it empty and give FEWSHOT.BASE_CLASSES / FEWSHOT.NOVEL_CLASSES)"
        )
    split = CLASS_SPLITS[key]
    return list(split["base"]), list(split["novel"])


def _check_names(names: Sequence[str], thing_classes: Sequence[str], what: str) -> List[str]:
    """Reject names that are not dataset classes, and duplicates, with a helpful message."""
    names = [str(n) for n in names]
    unknown = [n for n in names if n not in thing_classes]
    if unknown:
        hints = []
        lowered = {c.lower(): c for c in thing_classes}
        for n in unknown:
            close = [lowered[n.lower()]] if n.lower() in lowered else \
                difflib.get_close_matches(n, list(thing_classes), n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"{what}: unknown class name(s) {', '.join(hints)}; "
            f"the dataset's classes are {list(thing_classes)}"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what}: class name(s) listed twice: {dupes}")
    return names


def resolve_class_split(
    thing_classes: Sequence[str],
    split_name: Optional[str] = None,
    base_classes: Optional[Sequence[str]] = None,
    novel_classes: Optional[Sequence[str]] = None,
) -> Tuple[List[str], List[str]]:
    """Turn a split name or user lists into (base, novel) lists checked against a dataset.

    Exactly one source is used:

    * ``split_name`` (e.g. ``"voc1"``, ``"coco"``, ``"synthetic"``): the named split; every
      one of its classes must be in ``thing_classes``.
    * ``base_classes`` and/or ``novel_classes``: names of ``thing_classes``. If only one list
      is given, the other is the rest of ``thing_classes``. If both are given, together they
      must cover every class.
    * nothing: every class is base, none novel (plain detection).

    Args:
        thing_classes: the dataset's class names (index i <-> label i+1).
        split_name: a name of :func:`available_splits`, or None / "" for the lists.
        base_classes, novel_classes: lists of class names, or None / empty.

    Returns:
        (base, novel): lists of names. A named split keeps its own order; user lists keep
        the order given; a completed list follows ``thing_classes``.

    Raises:
        ValueError: unknown split or class name (naming it and listing the classes), a name
            listed twice, a class both base and novel, classes left in neither list, or a
            split name given together with lists.
    """
    thing_classes = [str(c) for c in thing_classes]
    base_classes = list(base_classes or [])
    novel_classes = list(novel_classes or [])
    if split_name:
        if base_classes or novel_classes:
            raise ValueError(
                f"FEWSHOT.SPLIT={split_name!r} and explicit FEWSHOT.BASE_CLASSES / "
                "FEWSHOT.NOVEL_CLASSES were both given; use one or the other"
            )
        base, novel = get_class_split(split_name)
        _check_names(base + novel, thing_classes, f"class split {split_name!r}")
        return base, novel
    if not base_classes and not novel_classes:
        return list(thing_classes), []
    base = _check_names(base_classes, thing_classes, "FEWSHOT.BASE_CLASSES")
    novel = _check_names(novel_classes, thing_classes, "FEWSHOT.NOVEL_CLASSES")
    overlap = [c for c in base if c in novel]
    if overlap:
        raise ValueError(f"class(es) {overlap} are listed as both base and novel")
    if not base_classes:
        base = [c for c in thing_classes if c not in novel]
    elif not novel_classes:
        novel = [c for c in thing_classes if c not in base]
    else:
        missing = [c for c in thing_classes if c not in base and c not in novel]
        if missing:
            raise ValueError(
                f"class(es) {missing} are in neither FEWSHOT.BASE_CLASSES nor "
                "FEWSHOT.NOVEL_CLASSES; every dataset class must be in one of them"
            )
    return base, novel
