"""Geometric transforms that move boxes with the pixels (numpy + OpenCV).

Each transform is a callable ``t(image, boxes, rng) -> (image, boxes)`` where ``image`` is
H, W, C (uint8; float32 0-255 after a "torchvision" resize), ``boxes`` is an [M, 4]
float32 XYXY array and ``rng`` a ``numpy.random.Generator`` (drawn per sample, so results
do not depend on worker count).

The shortest-edge resize has three backends (``INPUT.RESIZE_BACKEND``), because a
pretrained model gives its own detections only on the inputs it was made for:
    opencv       OpenCV bilinear on uint8, sizes rounded to nearest (fast; the default)
    pil          detectron2's ResizeShortestEdge: the same sizes, PIL bilinear on uint8
                 (PIL widens its filter when shrinking, so a downscale is smoother)
    torchvision  GeneralizedRCNNTransform: one scale for both sides, sizes floored,
                 torch bilinear (align_corners=False) on the float pixels, not rounded back
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np

RESIZE_BACKENDS = ("opencv", "pil", "torchvision")


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> Tuple[int, int]:
    """New (h, w) with the short side = ``short`` and the long side <= ``max_size``,
    rounded as detectron2's ``ResizeShortestEdge.get_output_shape`` rounds them."""
    scale = short / min(h, w)
    new_h, new_w = (short, scale * w) if h < w else (scale * h, short)
    if max(new_h, new_w) > max_size:
        cap = max_size / max(new_h, new_w)
        new_h, new_w = new_h * cap, new_w * cap
    return int(new_h + 0.5), int(new_w + 0.5)


def torchvision_scale(h: int, w: int, short: int, max_size: int) -> float:
    """torchvision's resize factor: min(short / min side, max_size / max side), in double
    as its eager ``_resize_image_and_masks``; the new sizes are floor(side * factor)."""
    return min(short / min(h, w), max_size / max(h, w))


def _scale_boxes(boxes: np.ndarray, h: int, w: int, new_h: int, new_w: int) -> np.ndarray:
    scale = np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)
    return boxes * scale


def resize(image: np.ndarray, boxes: np.ndarray, new_h: int, new_w: int,
           backend: str = "opencv"):
    """``image`` resized to ``new_h x new_w`` by ``backend`` (opencv or pil), boxes too."""
    h, w = image.shape[:2]
    if (h, w) == (new_h, new_w):
        return image, boxes
    if backend == "pil":
        from PIL import Image

        out = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    else:
        out = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return out, _scale_boxes(boxes, h, w, new_h, new_w)


def resize_torchvision(image: np.ndarray, boxes: np.ndarray, short: int, max_size: int):
    """torchvision's resize: the image comes back as float32 H, W, C (0-255)."""
    import torch
    import torch.nn.functional as F

    h, w = image.shape[:2]
    scale = torchvision_scale(h, w, short, max_size)
    # torchvision resizes the [0, 1]-normalised image; bilinear weights sum to 1, so
    # resizing 0-255 values and normalising after gives the same up to float rounding.
    # In float64: torch's float32 CPU kernel is off by up to ~2e-3 on a 0-255 scale.
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).double()[None]
    out = F.interpolate(x, scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                        align_corners=False)[0]
    new_h, new_w = out.shape[-2:]
    return (out.permute(1, 2, 0).numpy().astype(np.float32),
            _scale_boxes(boxes, h, w, new_h, new_w))


class ResizeShortestEdge:
    """Resize so the short side is one of ``short_edge_lengths`` ("choice") or drawn in
    [min, max] ("range"), capping the long side at ``max_size`` (multi-scale training);
    ``backend`` is one of ``RESIZE_BACKENDS`` (module docstring). ``per_batch``: the size is
    drawn from the batch's generator (``apply_transforms``), one size per batch."""

    def __init__(self, short_edge_lengths: Sequence[int], max_size: int,
                 sample_style: str = "choice", backend: str = "opencv",
                 per_batch: bool = False):
        if sample_style not in ("choice", "range"):
            raise ValueError(f"sample_style must be choice or range, got {sample_style!r}")
        if backend not in RESIZE_BACKENDS:
            raise ValueError(f"resize backend must be one of {RESIZE_BACKENDS}, got "
                             f"{backend!r}")
        self.lengths = list(short_edge_lengths)
        self.max_size = max_size
        self.sample_style = sample_style
        self.backend = backend
        self.per_batch = per_batch

    def __call__(self, image, boxes, rng):
        if self.sample_style == "range":
            short = int(rng.integers(self.lengths[0], self.lengths[1] + 1))
        else:
            short = int(self.lengths[rng.integers(len(self.lengths))])
        h, w = image.shape[:2]
        if self.backend == "torchvision":
            return resize_torchvision(image, boxes, short, self.max_size)
        return resize(image, boxes, *shortest_edge_size(h, w, short, self.max_size),
                      backend=self.backend)


class FixedSizeResize:
    """Resize to ``size`` x ``size`` ignoring the aspect ratio (YOLO-grid input)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image, boxes, rng):
        return resize(image, boxes, self.size, self.size)


def clip_boxes(boxes: np.ndarray, moved: np.ndarray, width: int, height: int,
               min_visible: float) -> np.ndarray:
    """Clip ``moved`` boxes to the image; empty the ones that kept too little area.

    A transform never removes rows from ``boxes`` (the labels travel separately): a box
    that leaves the image, or keeps less than ``min_visible`` of its area, becomes the
    empty box [0, 0, 0, 0], which the model's target preparation drops with its label.

    Args:
        boxes: [M, 4] the boxes before the geometric change, in its output scale (their
            area is the reference for ``min_visible``).
        moved: [M, 4] the boxes after it, possibly outside the image.
    Returns:
        float32 [M, 4].
    """
    out = moved.copy()
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    area = (boxes[:, 2] - boxes[:, 0]).clip(min=0) * (boxes[:, 3] - boxes[:, 1]).clip(min=0)
    kept = (out[:, 2] - out[:, 0]).clip(min=0) * (out[:, 3] - out[:, 1]).clip(min=0)
    gone = (kept <= 0) | (kept < min_visible * area)
    out[gone] = 0
    return out.astype(np.float32)


class RandomTileCrop:
    """A ``size`` x ``size`` window of the full-resolution image (the whole image along a
    side no longer than ``size``), as sliced inference sees it (``TEST.SLICE``).

    With probability ``whole_image_prob`` the image is left whole (the usual resize
    follows): one model then learns both passes of sliced inference, the tiles and the
    whole image. Otherwise, with probability ``on_object`` the window is placed on a random
    GT box (small objects are sparse in large photos, and most uniform windows would show
    none): around it when it fits, else centred on a random point of it, so every part of
    an object larger than a tile is seen; else the window is uniform.

    A box cut by the window is clipped to it. It stays a label when it keeps at least
    ``min_visible`` of its area, or when its visible part is at least ``min_piece`` pixels
    on each side: a piece of an object is still that object, and as background it would
    teach the model the opposite of the whole-image pass (the RPN and RoI matchers have no
    ignore regions to leave it out of the loss). Thinner slivers become empty.
    """

    def __init__(self, size: int, min_visible: float = 0.5, on_object: float = 0.5,
                 min_piece: int = 16, whole_image_prob: float = 0.0):
        if (size < 16 or not 0 <= min_visible <= 1 or not 0 <= on_object <= 1
                or min_piece < 1 or not 0 <= whole_image_prob <= 1):
            raise ValueError(f"INPUT.TILE_CROP: SIZE >= 16, MIN_PIECE >= 1 and MIN_VISIBLE, "
                             f"ON_OBJECT, WHOLE_IMAGE_PROB in [0, 1], got {size}, "
                             f"{min_piece}, {min_visible}, {on_object}, {whole_image_prob}")
        self.size, self.min_visible, self.on_object = size, min_visible, on_object
        self.min_piece, self.whole_image_prob = min_piece, whole_image_prob

    def _start(self, length: int, lo: float, hi: float, rng) -> int:
        """A window start in [0, length - size] whose window holds [lo, hi] when it fits,
        else whose centre lies on [lo, hi]."""
        last = length - self.size
        first, end = max(0, int(np.ceil(hi)) - self.size), min(last, int(lo))
        if first > end:
            half = self.size // 2
            first = min(last, max(0, int(lo) - half))
            end = min(last, max(0, int(np.ceil(hi)) - half))
        return int(rng.integers(first, end + 1))

    def _origin(self, length: int, lo, hi, rng) -> int:
        """The window's start along a side: on [lo, hi] (``_start``), or uniform when lo is
        None."""
        if length <= self.size:
            return 0
        if lo is None:
            return int(rng.integers(0, length - self.size + 1))
        return self._start(length, lo, hi, rng)

    def _labels(self, boxes: np.ndarray, moved: np.ndarray, width: int, height: int
                ) -> np.ndarray:
        """``moved`` clipped to the window; the boxes that are no label become empty."""
        out = clip_boxes(boxes, moved, width, height, 0.0)
        w, h = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        piece = (w >= self.min_piece) & (h >= self.min_piece)
        out[(w * h < self.min_visible * area) & ~piece] = 0
        return out

    def __call__(self, image, boxes, rng):
        h, w = image.shape[:2]
        if h <= self.size and w <= self.size:
            return image, boxes
        if self.whole_image_prob > 0 and rng.random() < self.whole_image_prob:
            return image, boxes
        real = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        x1 = y1 = x2 = y2 = None
        if len(real) and rng.random() < self.on_object:
            x1, y1, x2, y2 = real[int(rng.integers(len(real)))]
        x0, y0 = self._origin(w, x1, x2, rng), self._origin(h, y1, y2, rng)
        cw, ch = min(w, self.size), min(h, self.size)
        moved = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
        return (np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]),
                self._labels(boxes, moved, cw, ch))


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


def apply_transforms(transforms: List, image: np.ndarray, boxes: np.ndarray, rng,
                     batch_rng=None):
    """Apply ``transforms`` in order; those with ``per_batch`` True draw from ``batch_rng``
    (the generator a training batch shares) when it is given, the others from ``rng``."""
    for t in transforms:
        shared = batch_rng is not None and getattr(t, "per_batch", False)
        image, boxes = t(image, boxes, batch_rng if shared else rng)
    return image, boxes


def build_transforms(*, is_train: bool, resize_mode: str, min_size_train: Sequence[int],
                     max_size_train: int, min_size_sampling: str, min_size_test: int,
                     max_size_test: int, fixed_size: int, flip_prob: float,
                     resize_backend: str = "opencv", tile_crop=None,
                     scale_per_batch: bool = False) -> List:
    """The standard train / test pipelines (typed arguments; ``transforms_from_config``).
    ``tile_crop``: a ``RandomTileCrop`` applied first when training, or None;
    ``scale_per_batch``: the training scale is drawn once per batch."""
    crop: List = [tile_crop] if is_train and tile_crop is not None else []
    if resize_mode == "fixed_square":
        ts: List = crop + [FixedSizeResize(fixed_size)]
    elif is_train:
        ts = crop + [ResizeShortestEdge(min_size_train, max_size_train, min_size_sampling,
                                        resize_backend, per_batch=scale_per_batch)]
    else:
        ts = [ResizeShortestEdge([min_size_test], max_size_test, backend=resize_backend)]
    if is_train and flip_prob > 0:
        ts.append(RandomHorizontalFlip(flip_prob))
    return ts


def transforms_from_config(cfg, *, is_train: bool) -> List:
    """``build_transforms`` from ``cfg.INPUT`` (no flip at test time)."""
    i = cfg.INPUT
    t = i.TILE_CROP
    crop = (RandomTileCrop(t.SIZE, t.MIN_VISIBLE, t.ON_OBJECT, t.MIN_PIECE, t.WHOLE_IMAGE_PROB)
            if t.ENABLED else None)
    return build_transforms(
        is_train=is_train, resize_mode=i.RESIZE_MODE, min_size_train=i.MIN_SIZE_TRAIN,
        max_size_train=i.MAX_SIZE_TRAIN, min_size_sampling=i.MIN_SIZE_TRAIN_SAMPLING,
        min_size_test=i.MIN_SIZE_TEST, max_size_test=i.MAX_SIZE_TEST,
        fixed_size=i.FIXED_SIZE, flip_prob=i.RANDOM_FLIP if is_train else 0.0,
        resize_backend=i.RESIZE_BACKEND, tile_crop=crop, scale_per_batch=i.SCALE_PER_BATCH)
