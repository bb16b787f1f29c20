"""Boxes with readable labels on an image (OpenCV): the demo's drawings and the example
detections written after an evaluation.

Labels never cover each other: each goes above its box if that place is free, else inside
the box's top, else is moved down (or up) until it overlaps no label drawn before it; the
boxes are drawn first, the labels last, so no box line crosses a label.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
Rect = Tuple[int, int, int, int]  # x1, y1, x2, y2


def class_color(name: str) -> Tuple[int, int, int]:
    """A stable BGR colour per class name (the same in every image and run)."""
    hue = sum(map(ord, str(name))) * 37 % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_label(box: Rect, size: Tuple[int, int], taken: List[Rect], height: int,
                width: int) -> Rect:
    """Where a label of ``size`` (w, h) goes for ``box``, avoiding the ``taken`` labels,
    inside the ``width`` x ``height`` image."""
    w, h = size
    x = min(max(0, box[0]), max(0, width - w))
    starts = [box[1] - h, box[1]]  # above the box, then inside its top
    step = h + 1
    starts += [box[1] + step * i for i in range(1, 40)] + [box[1] - h - step * i
                                                             for i in range(1, 40)]
    for y in starts:
        y = min(max(0, y), max(0, height - h))
        rect = (x, y, x + w, y + h)
        if not any(_overlaps(rect, t) for t in taken):
            return rect
    return (x, min(max(0, box[1] - h), max(0, height - h)), x + w,
            min(max(0, box[1] - h), max(0, height - h)) + h)


def _dashed_rectangle(image: np.ndarray, rect: Rect, color, thickness: int, dash: int = 6):
    x1, y1, x2, y2 = rect
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)),
                               ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, length, 2 * dash):
            end = min(start + dash, length)
            p = (ax + (bx - ax) * start // max(length, 1), ay + (by - ay) * start // max(length, 1))
            q = (ax + (bx - ax) * end // max(length, 1), ay + (by - ay) * end // max(length, 1))
            cv2.line(image, p, q, color, thickness, cv2.LINE_AA)


def draw_boxes(image: np.ndarray, boxes: Sequence[Sequence[float]], texts: Sequence[str],
               colors: Sequence[Tuple[int, int, int]], *,
               dashed: Optional[Sequence[bool]] = None, scale: float = 0.45,
               thickness: int = 2) -> np.ndarray:
    """A copy of the H x W x 3 uint8 ``image`` with the boxes and their labels.

    Args:
        boxes: [x1, y1, x2, y2] in the image's pixels; texts, colors (BGR): one per box.
        dashed: per box, a dashed outline (e.g. a missed ground-truth box).
    """
    out = image.copy()
    height, width = out.shape[:2]
    rects = [tuple(int(round(v)) for v in b) for b in boxes]
    for i, (rect, color) in enumerate(zip(rects, colors)):
        if dashed is not None and dashed[i]:
            _dashed_rectangle(out, rect, color, thickness)
        else:
            cv2.rectangle(out, rect[:2], rect[2:], color, thickness)
    taken: List[Rect] = []
    for rect, text, color in zip(rects, texts, colors):
        (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
        label = place_label(rect, (tw + 4, th + base + 3), taken, height, width)
        taken.append(label)
        cv2.rectangle(out, label[:2], (label[2] - 1, label[3] - 1), color, -1)
        cv2.putText(out, text, (label[0] + 2, label[3] - base - 1), FONT, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out
