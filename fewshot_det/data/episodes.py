"""Support crops and episodic N-way K-shot sampling (the torch side of the few-shot data).

Shape glossary: M support crops, S crop side (``FEWSHOT.SUPPORT.SIZE``), N ways (classes
of an episode), K shots per class.

Design:

* **Support crop.** A square window centred on the GT box, of side
  ``max(w, h) * (1 + 2 * context)``, is cut from the image (the part outside the image is
  filled with the image's mean colour), resized to ``S x S``; the box is returned in the
  crop's frame so the model pools exactly the object (the context only feeds the
  receptive field). Square windows keep the object's aspect ratio.
* **Support box check** (``check_support_box``, run on every crop): four finite numbers,
  positive width and height, and some area inside the image. A box fully outside its
  image would make a prototype of the fill colour, so it is an error naming the example;
  a box partly outside (touching the border is inside) is clipped to the image with a
  warning, as the datasets' ``clip`` box policy does.
* **Episode** (one per query image, ``EpisodicMapper``): N classes drawn from the classes
  that have support instances: up to ``N - min_negatives`` of the classes present in the
  query, the rest absent from it (negatives: the model must propose and classify nothing
  for them). Objects of present classes not drawn are background for this episode, which
  is what a support-conditioned detector must learn. Columns are in random order. Shots
  come from other images than the query whenever the class has instances elsewhere
  (otherwise the model could match the query's own pixels).
* ``FEWSHOT.TRAIN_CLASSES: base`` drops novel-class boxes from the training records
  (``restrict_to_classes``); novel objects then are background, as in TFA base training.

This module builds tensors, so like ``mapper.py`` it is imported only by training and
inference code (``data.build``, ``engine``), never by ``import fewshot_det.data``.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from .fewshot.kshot import is_countable
from .mapper import read_image

logger = logging.getLogger(__name__)

TRAIN_CLASSES = ("all", "base")


def restrict_to_classes(records: Sequence[dict], thing_classes: Sequence[str],
                        keep: Sequence[str]) -> List[dict]:
    """Copies of ``records`` keeping only the annotations of the classes named in ``keep``.

    Images left without boxes are kept (negative samples; ``DATALOADER.
    FILTER_EMPTY_ANNOTATIONS`` decides about them before this step).

    Raises:
        ValueError: a name of ``keep`` is not a dataset class.
    """
    unknown = [c for c in keep if c not in thing_classes]
    if unknown:
        raise ValueError(f"FEWSHOT.TRAIN_CLASSES: classes {unknown} are not in the dataset's "
                         f"classes {list(thing_classes)}")
    ids = {list(thing_classes).index(c) + 1 for c in keep}
    return [{**r, "annotations": [a for a in r["annotations"] if a["category_id"] in ids]}
            for r in records]


def training_classes(cfg, metadata) -> Optional[List[str]]:
    """The class names kept by ``FEWSHOT.TRAIN_CLASSES`` (None = every class)."""
    mode = cfg.FEWSHOT.TRAIN_CLASSES
    if mode not in TRAIN_CLASSES:
        raise ValueError(f"FEWSHOT.TRAIN_CLASSES must be one of {TRAIN_CLASSES}, got {mode!r}")
    if mode == "all":
        return None
    base = list(metadata.get("base_classes") or [])
    if not base:
        raise ValueError("FEWSHOT.TRAIN_CLASSES is 'base' but the dataset declares no base "
                         "classes: set FEWSHOT.SPLIT or FEWSHOT.BASE_CLASSES/NOVEL_CLASSES")
    return base


# ------------------------------------------------------------------------------- crops
def _box_text(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def check_support_box(box, image_shape: Sequence[int], where: str) -> np.ndarray:
    """A support box checked against its image (module doc): the box to crop around.

    Args:
        box: [x1, y1, x2, y2] in the image's pixels (any sequence of numbers).
        image_shape: the image's (H, W, ...).
        where: the example, for the messages (e.g. "supports: class 'nest', example 2").
    Returns:
        float64 [4] XYXY, clipped to the image when it reached past it.
    Raises:
        ValueError: not four finite numbers, no area, or nothing inside the image.
    """
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != 4:
        raise ValueError(f"{where}: a box is 4 numbers [x1, y1, x2, y2], got {box!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: box {_box_text(values)} has a non-finite coordinate")
    x1, y1, x2, y2 = values
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"{where}: box {_box_text(values)} has no area (x2 must be > x1 "
                         f"and y2 > y1)")
    h, w = image_shape[:2]
    clipped = [max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))]
    if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
        raise ValueError(f"{where}: box {_box_text(values)} lies outside its {w} x {h} image")
    if clipped != values:
        logger.warning("%s: box %s reaches past its %d x %d image; clipped to %s", where,
                       _box_text(values), w, h, _box_text(clipped))
    return np.array(clipped, dtype=np.float64)


def crop_support(image: np.ndarray, box: Sequence[float], size: int, context: float
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Cut a square window around ``box`` with context and resize it to ``size``.

    Args:
        image: H, W, 3 uint8.
        box: XYXY in ``image`` pixels, positive width and height.
        size: S, side of the output.
        context: margin on each side as a fraction of the box's longer side.
    Returns:
        (crop uint8 [S, S, 3], box float32 [4] XYXY in the crop's pixels)
    Raises:
        ValueError: a degenerate box.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"support box {list(box)} has no area")
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * context)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    scale = size / side
    # Affine map: window [cx - side/2, cx + side/2] -> [0, size]; outside = mean colour.
    m = np.array([[scale, 0.0, size / 2.0 - cx * scale],
                  [0.0, scale, size / 2.0 - cy * scale]], dtype=np.float64)
    fill = tuple(float(v) for v in image.reshape(-1, 3).mean(axis=0))
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    out_box = np.array([x1 * scale + m[0, 2], y1 * scale + m[1, 2],
                        x2 * scale + m[0, 2], y2 * scale + m[1, 2]], dtype=np.float32)
    return crop, np.clip(out_box, 0, size)


def flip_crop(crop: np.ndarray, box: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of a crop and its box."""
    w = crop.shape[1]
    return np.ascontiguousarray(crop[:, ::-1]), np.array(
        [w - box[2], box[1], w - box[0], box[3]], dtype=np.float32)


def stack_supports(crops: List[np.ndarray], boxes: List[np.ndarray], labels: List[int]
                   ) -> Dict[str, torch.Tensor]:
    """Lists of crops -> the model's support tensors.

    Returns:
        {"images": float32 [M, 3, S, S] 0-255, "boxes": float32 [M, 4] (crop frame),
         "labels": int64 [M] class ids 1..K}
    """
    images = torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2)))
    return {"images": images.float(),
            "boxes": torch.from_numpy(np.stack(boxes).astype(np.float32)).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64)}


class SupportPool:
    """Every instance usable as a support, by class: ``(record index, annotation index)``.

    Args:
        records: dataset records (original-image XYXY boxes, ``category_id`` 1..K).
        min_box_size: instances with a side below this (pixels) are left out; so are
            ``difficult`` and ``iscrowd`` ones.
    """

    def __init__(self, records: Sequence[dict], *, min_box_size: float = 4.0):
        self.records = list(records)
        self.instances: Dict[int, List[Tuple[int, int]]] = defaultdict(list)
        for i, record in enumerate(self.records):
            for j, ann in enumerate(record["annotations"]):
                x1, y1, x2, y2 = ann["bbox"]
                if is_countable(ann) and min(x2 - x1, y2 - y1) >= min_box_size:
                    self.instances[int(ann["category_id"])].append((i, j))
        self.class_ids = sorted(self.instances)

    def __len__(self) -> int:
        return len(self.class_ids)

    def draw(self, class_id: int, shots: int, rng: np.random.Generator,
             exclude_image=None) -> List[Tuple[int, int]]:
        """``shots`` instances of ``class_id`` (with replacement only when too few), avoiding
        the record whose (image_id, file_name) is ``exclude_image`` when possible."""
        found = self.instances[class_id]
        if exclude_image is not None:
            other = [(i, j) for i, j in found if _image_key(self.records[i]) != exclude_image]
            found = other or found
        idx = rng.choice(len(found), size=shots, replace=len(found) < shots)
        return [found[int(k)] for k in idx]


def _image_key(record: dict):
    return (str(record["image_id"]), str(record["file_name"]))


class SupportCropper:
    """Reads images and makes support crops (``crop_support``), optionally flipped.

    Args:
        size, context: see ``crop_support`` (``FEWSHOT.SUPPORT.SIZE / CONTEXT``).
        image_format: "BGR" or "RGB" (``INPUT.FORMAT``).
    """

    def __init__(self, *, size: int = 128, context: float = 0.2, image_format: str = "BGR"):
        if size < 32 or size % 32:
            raise ValueError(f"FEWSHOT.SUPPORT.SIZE must be a multiple of 32 (>= 32), got {size}")
        if context < 0:
            raise ValueError(f"FEWSHOT.SUPPORT.CONTEXT must be >= 0, got {context}")
        self.size, self.context, self.image_format = size, context, image_format

    @classmethod
    def from_config(cls, cfg) -> "SupportCropper":
        s = cfg.FEWSHOT.SUPPORT
        return cls(size=s.SIZE, context=s.CONTEXT, image_format=cfg.INPUT.FORMAT)

    def crop(self, image: np.ndarray, box: Sequence[float], where: str = "support box"
             ) -> Tuple[np.ndarray, np.ndarray]:
        """``crop_support`` of ``box`` once checked against ``image`` (``check_support_box``;
        ``where`` names the example in its errors)."""
        box = check_support_box(box, image.shape, where)
        return crop_support(image, box, self.size, self.context)

    def crop_instances(self, records: Sequence[dict], refs: Sequence[Tuple[int, int]],
                       flip_prob: float = 0.0, rng: Optional[np.random.Generator] = None):
        """Crops of the instances ``refs`` ((record index, annotation index) pairs).

        Returns:
            (list of crops uint8 [S, S, 3], list of boxes float32 [4], list of class ids)
        """
        crops, boxes, labels, cache = [], [], [], {}
        for i, j in refs:
            record = records[i]
            if i not in cache:
                cache[i] = read_image(record["file_name"], self.image_format)
            ann = record["annotations"][j]
            crop, box = self.crop(cache[i], ann["bbox"],
                                  where=f"{record['file_name']}: annotation {j}")
            if flip_prob > 0 and rng is not None and rng.random() < flip_prob:
                crop, box = flip_crop(crop, box)
            crops.append(crop)
            boxes.append(box)
            labels.append(int(ann["category_id"]))
        return crops, boxes, labels


def build_support_set(records: Sequence[dict], cropper: SupportCropper,
                      class_ids: Optional[Sequence[int]] = None, *,
                      min_box_size: float = 4.0) -> Dict[str, torch.Tensor]:
    """Every usable instance of ``class_ids`` (default: all) in ``records`` as supports.

    Used to encode a K-shot split once for inference (``SiameseRCNN.set_supports``).

    Returns:
        ``stack_supports`` output; M = number of instances.
    Raises:
        ValueError: a requested class has no usable instance.
    """
    pool = SupportPool(records, min_box_size=min_box_size)
    wanted = pool.class_ids if class_ids is None else [int(c) for c in class_ids]
    missing = [c for c in wanted if c not in pool.instances]
    if missing:
        raise ValueError(f"no support instance (non-difficult, >= {min_box_size} px) for "
                         f"class ids {missing} in the {len(records)} given records")
    refs = [ref for c in wanted for ref in pool.instances[c]]
    return stack_supports(*cropper.crop_instances(pool.records, refs))


# ----------------------------------------------------------------------------- episodes
def sample_episode_classes(present: Sequence[int], pool_classes: Sequence[int], ways: int,
                           min_negatives: int, rng: np.random.Generator) -> List[int]:
    """The N class ids of one episode, in random column order.

    Args:
        present: class ids of the query's objects (duplicates allowed).
        pool_classes: class ids that have support instances (>= ``ways`` of them).
        ways: N.
        min_negatives: classes absent from the query, when the pool has that many.
    Returns:
        ``ways`` distinct class ids.
    """
    present = sorted(set(int(c) for c in present) & set(pool_classes))
    absent = [c for c in pool_classes if c not in present]
    num_pos = min(len(present), ways - min(min_negatives, len(absent)))
    # ways <= len(present) + len(absent), so ``absent`` always holds the remaining columns.
    chosen = list(rng.choice(present, size=num_pos, replace=False)) if num_pos else []
    chosen += list(rng.choice(absent, size=ways - num_pos, replace=False)) if ways > num_pos \
        else []
    return [int(c) for c in rng.permutation(np.array(chosen, dtype=np.int64))]


class EpisodicMapper:
    """``mapper(record, rng)``: the base mapper's query dict plus an N-way K-shot episode.

    Adds to the query dict::

        "supports": {"images": float32 [N*K, 3, S, S], "boxes": float32 [N*K, 4],
                     "labels": int64 [N*K] class ids, "class_ids": int64 [N] column order}

    The query's ``instances`` keep the dataset labels; the model maps them to columns.

    Args:
        base_mapper: ``mapper(record, rng) -> dict`` (``DatasetMapper``).
        records: the support pool's records (the training set).
        cropper: makes the crops.
        ways, shots, min_negatives: ``FEWSHOT.EPISODE.*``; ``ways`` is clamped to the number
            of classes with support instances (every episode of a run has the same N).
        flip_prob: horizontal flip probability of each crop.
        min_box_size: see ``SupportPool``.
    """

    def __init__(self, base_mapper, records: Sequence[dict], cropper: SupportCropper, *,
                 ways: int = 3, shots: int = 1, min_negatives: int = 1, flip_prob: float = 0.0,
                 min_box_size: float = 4.0):
        if ways < 1 or shots < 1 or min_negatives < 0:
            raise ValueError(f"FEWSHOT.EPISODE: WAYS and SHOTS must be >= 1 and MIN_NEGATIVES "
                             f">= 0, got {ways}, {shots}, {min_negatives}")
        self.base_mapper, self.cropper = base_mapper, cropper
        self.pool = SupportPool(records, min_box_size=min_box_size)
        if not len(self.pool):
            raise ValueError("FEWSHOT.EPISODE: the training set has no instance usable as a "
                             "support (all difficult, crowd or smaller than "
                             "FEWSHOT.SUPPORT.MIN_BOX_SIZE)")
        if ways > len(self.pool):
            logger.info("FEWSHOT.EPISODE.WAYS %d > %d classes with supports: using %d-way "
                        "episodes", ways, len(self.pool), len(self.pool))
        self.ways = min(ways, len(self.pool))
        self.shots, self.min_negatives, self.flip_prob = shots, min_negatives, flip_prob

    @classmethod
    def from_config(cls, cfg, base_mapper, records: Sequence[dict]) -> "EpisodicMapper":
        e = cfg.FEWSHOT.EPISODE
        return cls(base_mapper, records, SupportCropper.from_config(cfg), ways=e.WAYS,
                   shots=e.SHOTS, min_negatives=e.MIN_NEGATIVES, flip_prob=cfg.INPUT.RANDOM_FLIP,
                   min_box_size=cfg.FEWSHOT.SUPPORT.MIN_BOX_SIZE)

    def __call__(self, record: dict, rng: np.random.Generator, batch_rng=None) -> dict:
        out = (self.base_mapper(record, rng) if batch_rng is None
               else self.base_mapper(record, rng, batch_rng=batch_rng))
        present = [a["category_id"] for a in record["annotations"] if is_countable(a)]
        class_ids = sample_episode_classes(present, self.pool.class_ids, self.ways,
                                           self.min_negatives, rng)
        refs = [ref for c in class_ids
                for ref in self.pool.draw(c, self.shots, rng, exclude_image=_image_key(record))]
        supports = stack_supports(*self.cropper.crop_instances(self.pool.records, refs,
                                                               self.flip_prob, rng))
        supports["class_ids"] = torch.as_tensor(class_ids, dtype=torch.int64)
        out["supports"] = supports
        return out
