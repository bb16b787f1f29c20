"""The class names a checkpoint's class rows stand for (for ``Predictor`` and surgery).

Our checkpoints save them (``extra.thing_classes``). torchvision's and detectron2's
detection checkpoints save none, but their COCO models have a fixed layout, recognised by
the format and the number of classifier rows:

==========================  ==========  =================================================
format                      rows        classes (our labels 1..K)
==========================  ==========  =================================================
``torchvision_detection``   91          COCO category ids 1..90 (background first); the
                                        10 ids COCO leaves unused are named ``N/A <id>``
                                        (also ``torchvision_mobilenet_detection``)
``detectron2``              81          COCO's 80 classes in category-id order
==========================  ==========  =================================================

The names come from torchvision's COCO weights metadata, the list its own models report.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

CLS_SCORE = "roi_heads.box_predictor.cls_score.weight"
# The formats of torchvision's detection checkpoints (checkpoint.convert).
TORCHVISION_DETECTION = ("torchvision_detection", "torchvision_mobilenet_detection")


def coco_category_names() -> List[str]:
    """The 90 names of COCO category ids 1..90 (``N/A <id>`` for the unused ids)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    names = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"][1:]
    return [f"N/A {i}" if n == "N/A" else n for i, n in enumerate(names, start=1)]


def coco_80_names() -> List[str]:
    """COCO's 80 classes in category-id order (detectron2's contiguous order)."""
    return [n for n in coco_category_names() if not n.startswith("N/A")]


def saved_class_names(path: str) -> Optional[List[str]]:
    """Class names saved in our checkpoint's ``extra`` (None for other formats)."""
    if path.endswith(".pkl"):
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not ours (read_weights reports unreadable files with a clear error)
        return None
    names = ckpt.get("extra", {}).get("thing_classes") if isinstance(ckpt, dict) else None
    return list(names) if names else None


def layout_class_names(fmt: str, converted: Dict[str, Tensor]) -> Optional[List[str]]:
    """COCO names when a torchvision / detectron2 checkpoint has the COCO layout.

    Args:
        fmt: the format ``checkpoint.convert`` detected.
        converted: its state dict under our names.
    """
    cls = converted.get(CLS_SCORE)
    rows = None if cls is None else int(cls.shape[0])
    if fmt in TORCHVISION_DETECTION and rows == 91:
        names = coco_category_names()
    elif fmt == "detectron2" and rows == 81:
        names = coco_80_names()
    else:
        return None
    logger.info("%s checkpoint with %d class rows: taken as COCO's classes (%s, %s, ...)",
                fmt, rows - 1, names[0], names[1])
    return names


def checkpoint_class_names(path: str) -> Optional[List[str]]:
    """The names of the classes of the weight file at ``path`` (table above), or None."""
    names = saved_class_names(path)
    if names:
        return names
    from .convert import convert
    from .io import read_weights

    try:
        fmt, converted = convert(read_weights(path))
    except (ValueError, FileNotFoundError, KeyError):
        return None  # loading the weights reports the problem
    return layout_class_names(fmt, {name: t for _, name, t in converted})
