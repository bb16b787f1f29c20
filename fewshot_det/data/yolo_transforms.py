"""YOLOv1-style training augmentation: random crop, scale and shift, HSV colour jitter.

Same interface as ``transforms.py``: ``t(image, boxes, rng) -> (image, boxes)`` with
``image`` H, W, C uint8, ``boxes`` [M, 4] float32 XYXY and ``rng`` a
``numpy.random.Generator``. No torch.

A transform never removes rows from ``boxes`` (the labels travel separately): a box that
leaves the image, or keeps less than ``min_visible`` of its area, becomes the empty box
[0, 0, 0, 0], which the model's target preparation drops together with its label.
"""
from __future__ import annotations

from typing import List

import cv2
import numpy as np

from .transforms import FixedSizeResize, RandomHorizontalFlip, clip_boxes

# Border colour of the area uncovered by a shift or a zoom-out: mid-grey in any channel order.
FILL_VALUE = (127, 127, 127)


class RandomCrop:
    """With probability ``prob``, crop a window keeping a fraction in [min_frac, 1] of each
    side (drawn per side, so the aspect ratio changes too), at a random position."""

    def __init__(self, prob: float = 0.5, min_frac: float = 0.6, min_visible: float = 0.25):
        if not 0 <= prob <= 1 or not 0 < min_frac <= 1:
            raise ValueError(f"INPUT.YOLO_AUG.CROP_PROB must be in [0, 1] and CROP_MIN in "
                             f"(0, 1], got {prob}, {min_frac}")
        self.prob, self.min_frac, self.min_visible = prob, min_frac, min_visible

    def __call__(self, image, boxes, rng):
        if self.prob <= 0 or rng.random() >= self.prob:
            return image, boxes
        h, w = image.shape[:2]
        cw = max(1, int(round(w * rng.uniform(self.min_frac, 1.0))))
        ch = max(1, int(round(h * rng.uniform(self.min_frac, 1.0))))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        moved = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
        return (np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]),
                clip_boxes(boxes, moved, cw, ch, self.min_visible))


class RandomScaleShift:
    """Scale about the centre by a factor in [1 - scale, 1 + scale] and translate by up to
    ``shift`` x the image size in x and y (YOLOv1: up to 20 % each); same output size."""

    def __init__(self, scale: float = 0.2, shift: float = 0.2, min_visible: float = 0.25):
        if not 0 <= scale < 1 or not 0 <= shift < 1:
            raise ValueError(f"INPUT.YOLO_AUG.SCALE must be in [0, 1) and SHIFT in [0, 1), "
                             f"got {scale}, {shift}")
        self.scale, self.shift, self.min_visible = scale, shift, min_visible

    def __call__(self, image, boxes, rng):
        if self.scale == 0 and self.shift == 0:
            return image, boxes
        h, w = image.shape[:2]
        s = rng.uniform(1 - self.scale, 1 + self.scale)
        tx, ty = rng.uniform(-self.shift, self.shift, 2) * (w, h)
        # x' = s * (x - w/2) + w/2 + tx, and the same for y.
        matrix = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]])
        out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=FILL_VALUE)
        offset = np.array([matrix[0, 2], matrix[1, 2]] * 2, dtype=np.float32)
        moved = boxes * np.float32(s) + offset
        return out, clip_boxes(boxes * np.float32(s), moved, w, h, self.min_visible)


class RandomHSV:
    """Shift hue by up to +-``hue`` of the circle; multiply saturation and value by factors
    in [1 / saturation, saturation] and [1 / exposure, exposure] (YOLOv1: 1.5 and 1.5)."""

    def __init__(self, hue: float = 0.0, saturation: float = 1.5, exposure: float = 1.5,
                 image_format: str = "BGR"):
        if not 0 <= hue <= 0.5 or saturation < 1 or exposure < 1:
            raise ValueError(f"INPUT.YOLO_AUG.HUE must be in [0, 0.5] and SATURATION, EXPOSURE "
                             f">= 1, got {hue}, {saturation}, {exposure}")
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"INPUT.FORMAT must be BGR or RGB, got {image_format!r}")
        self.hue, self.saturation, self.exposure = hue, saturation, exposure
        bgr = image_format == "BGR"
        self.to_hsv = cv2.COLOR_BGR2HSV if bgr else cv2.COLOR_RGB2HSV
        self.from_hsv = cv2.COLOR_HSV2BGR if bgr else cv2.COLOR_HSV2RGB

    def _factor(self, rng, limit: float) -> float:
        return float(np.exp(rng.uniform(-np.log(limit), np.log(limit)))) if limit > 1 else 1.0

    def __call__(self, image, boxes, rng):
        if self.hue == 0 and self.saturation == 1 and self.exposure == 1:
            return image, boxes
        dh = rng.uniform(-self.hue, self.hue) * 180  # OpenCV's 8-bit hue runs over 0..180
        fs, fv = self._factor(rng, self.saturation), self._factor(rng, self.exposure)
        hsv = cv2.cvtColor(image, self.to_hsv).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + dh) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * fs, 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] * fv, 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), self.from_hsv), boxes


def build_yolo_train_transforms(*, fixed_size: int, flip_prob: float, image_format: str,
                                crop_prob: float, crop_min: float, scale: float, shift: float,
                                hue: float, saturation: float, exposure: float,
                                min_visible: float) -> List:
    """Training pipeline of the YOLO-grid detector (``INPUT.YOLO_AUG.*``):

    crop (original image) -> resize to ``fixed_size`` square -> scale and shift -> flip
    -> HSV jitter. The test pipeline is the plain ``FixedSizeResize``.
    """
    if not 0 <= min_visible <= 1:
        raise ValueError(f"INPUT.YOLO_AUG.MIN_VISIBLE must be in [0, 1], got {min_visible}")
    ts: List = [RandomCrop(crop_prob, crop_min, min_visible), FixedSizeResize(fixed_size),
                RandomScaleShift(scale, shift, min_visible)]
    if flip_prob > 0:
        ts.append(RandomHorizontalFlip(flip_prob))
    ts.append(RandomHSV(hue, saturation, exposure, image_format))
    return ts
