"""Geometric transforms that move boxes with the pixels (numpy + OpenCV, no torch).

Each transform is a callable ``t(image, boxes, rng) -> (image, boxes)`` where ``image`` is
H, W, C uint8, ``boxes`` is an [M, 4] float32 XYXY array and ``rng`` a
``numpy.random.Generator`` (drawn per sample, so results do not depend on worker count).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> Tuple[int, int]:
    """New (h, w) with the short side = ``short`` and the long side <= ``max_size``."""
    scale = short / min(h, w)
    if max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize(image: np.ndarray, boxes: np.ndarray, new_h: int, new_w: int):
    h, w = image.shape[:2]
    if (h, w) == (new_h, new_w):
        return image, boxes
    out = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    scale = np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)
    return out, boxes * scale


class ResizeShortestEdge:
    """Resize so the short side is one of ``short_edge_lengths`` ("choice") or drawn in
    [min, max] ("range"), capping the long side at ``max_size`` (multi-scale training)."""

    def __init__(self, short_edge_lengths: Sequence[int], max_size: int,
                 sample_style: str = "choice"):
        if sample_style not in ("choice", "range"):
            raise ValueError(f"sample_style must be choice or range, got {sample_style!r}")
        self.lengths = list(short_edge_lengths)
        self.max_size = max_size
        self.sample_style = sample_style

    def __call__(self, image, boxes, rng):
        if self.sample_style == "range":
            short = int(rng.integers(self.lengths[0], self.lengths[1] + 1))
        else:
            short = int(self.lengths[rng.integers(len(self.lengths))])
        h, w = image.shape[:2]
        return resize(image, boxes, *shortest_edge_size(h, w, short, self.max_size))


class FixedSizeResize:
    """Resize to ``size`` x ``size`` ignoring the aspect ratio (YOLO-grid input)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image, boxes, rng):
        return resize(image, boxes, self.size, self.size)


class RandomHorizontalFlip:
    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def __call__(self, image, boxes, rng):
        if self.prob <= 0 or rng.random() >= self.prob:
            return image, boxes
        w = image.shape[1]
        flipped = boxes.copy()
        flipped[:, 0] = w - boxes[:, 2]
        flipped[:, 2] = w - boxes[:, 0]
        return np.ascontiguousarray(image[:, ::-1]), flipped


def apply_transforms(transforms: List, image: np.ndarray, boxes: np.ndarray, rng):
    for t in transforms:
        image, boxes = t(image, boxes, rng)
    return image, boxes


def build_transforms(*, is_train: bool, resize_mode: str, min_size_train: Sequence[int],
                     max_size_train: int, min_size_sampling: str, min_size_test: int,
                     max_size_test: int, fixed_size: int, flip_prob: float) -> List:
    """The standard train / test pipelines (typed arguments; see ``from_config`` users)."""
    if resize_mode == "fixed_square":
        ts: List = [FixedSizeResize(fixed_size)]
    elif is_train:
        ts = [ResizeShortestEdge(min_size_train, max_size_train, min_size_sampling)]
    else:
        ts = [ResizeShortestEdge([min_size_test], max_size_test)]
    if is_train and flip_prob > 0:
        ts.append(RandomHorizontalFlip(flip_prob))
    return ts
