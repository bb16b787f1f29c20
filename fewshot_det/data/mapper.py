"""Dataset record -> model input: read the image, transform, make tensors.

Output (one image), as ``GeneralizedRCNN.forward`` and the other meta-architectures take it:
    image      float32 [3, H', W'] on a 0-255 scale, channels in INPUT.FORMAT order
    height, width   the ORIGINAL image size (predictions are mapped back to it)
    image_id, file_name
    instances  {"gt_boxes": float32 [M, 4] XYXY in the resized frame, "gt_labels": int64 [M]}
"""
from __future__ import annotations

from typing import List, Optional

import cv2
import numpy as np
import torch

from .records import DataError
from .transforms import apply_transforms, transforms_from_config


def read_image(path: str, image_format: str = "BGR") -> np.ndarray:
    """H, W, 3 uint8 in ``image_format`` order; ``DataError`` naming the file on failure."""
    # Orientation is ignored on purpose: annotations refer to the stored pixel grid.
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise DataError(f"cannot read image (missing, corrupt or not an image): {path}")
    if image_format == "RGB":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """H, W, C uint8 (or float32 0-255) -> C, H, W float32 (0-255)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


class DatasetMapper:
    """Callable ``mapper(record, rng, batch_rng=None) -> model input dict`` (see module
    docstring); ``batch_rng``, shared by a training batch, draws its per-batch choices."""

    def __init__(self, *, transforms: List, image_format: str = "BGR",
                 use_difficult: bool = False, keep_annotations: bool = True):
        self.transforms = transforms
        self.image_format = image_format
        self.use_difficult = use_difficult
        self.keep_annotations = keep_annotations

    @classmethod
    def from_config(cls, cfg, is_train: bool, *, resize: bool = True) -> "DatasetMapper":
        """The mapper of INPUT.*; ``resize`` False keeps test images at their original size
        (sliced inference resizes each tile instead: ``engine.slicing.for_inference``)."""
        i = cfg.INPUT
        transforms = transforms_from_config(cfg, is_train=is_train) if resize or is_train else []
        if is_train and i.RESIZE_MODE == "fixed_square" and i.YOLO_AUG.ENABLED:
            from .yolo_transforms import build_yolo_train_transforms

            a = i.YOLO_AUG
            transforms = build_yolo_train_transforms(
                fixed_size=i.FIXED_SIZE, flip_prob=i.RANDOM_FLIP, image_format=i.FORMAT,
                crop_prob=a.CROP_PROB, crop_min=a.CROP_MIN, scale=a.SCALE, shift=a.SHIFT,
                hue=a.HUE, saturation=a.SATURATION, exposure=a.EXPOSURE,
                min_visible=a.MIN_VISIBLE)
        return cls(transforms=transforms, image_format=i.FORMAT,
                   use_difficult=cfg.DATASETS.TRAIN_USE_DIFFICULT, keep_annotations=is_train)

    def _targets(self, record: dict):
        anns = [a for a in record["annotations"]
                if not a.get("iscrowd", 0) and (self.use_difficult or not a.get("difficult", 0))]
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        labels = np.array([a["category_id"] for a in anns], dtype=np.int64)
        return boxes, labels

    def __call__(self, record: dict, rng: np.random.Generator,
                 batch_rng: Optional[np.random.Generator] = None) -> dict:
        image = read_image(record["file_name"], self.image_format)
        h, w = image.shape[:2]
        if (w, h) != (record["width"], record["height"]):
            raise DataError(f"{record['file_name']}: annotated as {record['width']}x"
                            f"{record['height']} (WxH) but the image is {w}x{h}")
        boxes, labels = self._targets(record)
        image, boxes = apply_transforms(self.transforms, image, boxes, rng, batch_rng)
        out = {"image": image_to_tensor(image), "height": h, "width": w,
               "image_id": record["image_id"], "file_name": record["file_name"]}
        if self.keep_annotations:
            out["instances"] = {"gt_boxes": torch.from_numpy(boxes),
                                "gt_labels": torch.from_numpy(labels)}
        return out
