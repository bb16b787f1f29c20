"""Label the trained classes in K-shot images with the base model's own detections.

A K-shot image is drawn for one class and keeps only that class's boxes (TFA's protocol,
and what a user does who draws boxes of a new class on a few photos). The other objects
in it are unlabelled, so fine-tuning trains them as background: the fish beside a labelled
stingray teaches "fish is background", and nothing teaches "fish is not a stingray". On
aquarium photos that is where a 10-shot TFA model's novel false positives sit: most of the
stingray detections that outrank true ones lie on fish and sharks.

The base model already detects its classes. ``label_base_objects`` adds its confident
detections of those classes (score >= ``FEWSHOT.FINETUNE.BASE_LABEL_SCORE``) to the K-shot
records, away from every labelled box, before fine-tuning; new classes are never
pseudo-labelled (the base model has no rows for them).
"""
from __future__ import annotations

import copy
import logging
from collections import Counter
from typing import Dict, List, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

# A detection overlapping a labelled box this much is that object (labelled already, or
# the base model's guess at a new-class object): it is not added.
LABELLED_IOU = 0.3


def base_predictor(cfg, weights: str):
    """A ``Predictor`` of the checkpoint ``weights`` with its own classes (before class
    surgery); ``cfg`` gives everything else (backbone, test sizes, thresholds)."""
    from ..checkpoint.class_names import checkpoint_class_names
    from ..config import set_num_classes
    from .predictor import Predictor

    names = checkpoint_class_names(weights)
    if not names:
        raise ValueError(f"FEWSHOT.FINETUNE.BASE_LABEL_SCORE: {weights} names no classes, so "
                         "its detections cannot be matched to the K-shot classes")
    base = cfg.clone()
    base.defrost()
    base.MODEL.WEIGHTS = weights
    base.FEWSHOT.CALIBRATION.WEIGHTS = ""  # a base model has no new class to calibrate
    set_num_classes(base, len(names))
    base.freeze()
    return Predictor(base, class_names=names)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of XYXY boxes a [N, 4] against b [M, 4] -> [N, M]."""
    from torchvision.ops import box_iou

    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    return box_iou(torch.as_tensor(a, dtype=torch.float32),
                   torch.as_tensor(b, dtype=torch.float32)).numpy()


def added_labels(detections: dict, labelled: np.ndarray, class_ids: Dict[str, int],
                 score: float) -> List[dict]:
    """The annotations to add from one image's ``detections`` (a Predictor's output):
    classes of ``class_ids`` (name -> training category id) at ``score`` or above, away
    from ``labelled`` [M, 4] boxes (IoU < LABELLED_IOU)."""
    boxes = np.asarray(detections["boxes"], np.float32).reshape(-1, 4)
    keep = [i for i, (s, n) in enumerate(zip(detections["scores"], detections["class_names"]))
            if float(s) >= score and n in class_ids]
    boxes = boxes[keep]
    names = [detections["class_names"][i] for i in keep]
    free = (_box_iou(boxes, labelled) < LABELLED_IOU).all(axis=1) if len(labelled) \
        else np.ones(len(boxes), bool)
    return [{"bbox": [float(v) for v in box], "category_id": class_ids[name], "iscrowd": 0,
             "difficult": 0, "pseudo_label": True}
            for box, name, ok in zip(boxes, names, free) if ok]


def label_base_objects(cfg, records: Sequence[dict], metadata) -> List[dict]:
    """Copies of the K-shot ``records`` with the base model's (``MODEL.WEIGHTS``) confident
    detections of the base classes added as annotations; ``records`` when
    ``FEWSHOT.FINETUNE.BASE_LABEL_SCORE`` is 0 or there are no weights."""
    from ..data.mapper import read_image

    score = float(cfg.FEWSHOT.FINETUNE.BASE_LABEL_SCORE)
    if score <= 0:
        return list(records)
    if not cfg.MODEL.WEIGHTS:
        logger.warning("FEWSHOT.FINETUNE.BASE_LABEL_SCORE is set but MODEL.WEIGHTS is "
                       "empty: no base model to label the K-shot images with")
        return list(records)
    predictor = base_predictor(cfg, cfg.MODEL.WEIGHTS)
    novel = set(metadata.get("novel_classes") or [])
    classes = list(metadata.thing_classes)
    class_ids = {n: classes.index(n) + 1 for n in predictor.class_names
                 if n in classes and n not in novel}
    out, added = [], Counter()
    for record in records:
        image = read_image(record["file_name"], cfg.INPUT.FORMAT)
        with torch.no_grad():
            detections = predictor(image)
        labelled = np.array([a["bbox"] for a in record["annotations"]],
                            np.float32).reshape(-1, 4)
        new = added_labels(detections, labelled, class_ids, score)
        record = copy.copy(record)
        record["annotations"] = list(record["annotations"]) + new
        out.append(record)
        added.update(classes[a["category_id"] - 1] for a in new)
    logger.info("base-model labels added to the %d K-shot images (score >= %.2f): %s",
                len(records), score, dict(added) or "none")
    return out
