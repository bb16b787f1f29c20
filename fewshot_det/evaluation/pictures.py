"""Example detections on test images, as one PNG: what the numbers of an evaluation look
like (written beside metrics.json after training and by tools/eval.py).

TP detections are drawn solid in their class colour, FP detections solid in red, missed
ground-truth boxes (FN) dashed in orange; the images with the most errors come first.
"""
from __future__ import annotations

import os
from typing import List, Sequence

import cv2
import numpy as np

from ..utils.draw import class_color, draw_boxes
from .ground_truth import meta_get
from .matching import Matching

FP_COLOR = (40, 40, 230)  # BGR red
FN_COLOR = (0, 150, 255)  # BGR orange
TILE = 320  # px, the longer side of each image in the grid


def save_example_grid(records: Sequence[dict], metadata, results: List[dict], path: str, *,
                      score_thresh: float = 0.5, max_images: int = 12, columns: int = 4
                      ) -> str:
    """Write ``path`` (PNG): up to ``max_images`` test images with their detections scoring
    >= ``score_thresh`` marked TP / FP and their missed boxes (FN), hardest first.

    Args:
        records, metadata, results: as ``evaluation.evaluate`` takes them.
    Returns:
        ``path``.
    """
    m = Matching(list(records), metadata, results)
    counts = m.per_record(score_thresh, None)
    errors = counts["fp"] + counts["fn"]
    order = np.lexsort((-counts["tp"], -errors))[:max_images]
    tiles = [_tile(records[i], i, m, metadata, score_thresh) for i in order]
    grid = _grid([t for t in tiles if t is not None], columns)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cv2.imwrite(path, grid)
    return path


def _tile(record: dict, index: int, m: Matching, metadata, score_thresh: float):
    image = cv2.imread(record["file_name"], cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        return None
    names = [str(c) for c in meta_get(metadata, "thing_classes")]
    boxes, texts, colors, dashed = [], [], [], []
    det = (m.record_of_det == index) & (m.det.score >= score_thresh) & (m.kind != "ignored")
    det_boxes = m.det.xyxy()
    for d in np.flatnonzero(det):
        name = names[m.det.cat[d]]
        boxes.append(det_boxes[d])
        texts.append(f"{name} {m.det.score[d]:.2f}" + ("" if m.kind[d] == "tp" else " FP"))
        colors.append(class_color(name) if m.kind[d] == "tp" else FP_COLOR)
        dashed.append(False)
    for g in np.flatnonzero(m.missed(score_thresh) & (m.record_of_gt == index)):
        boxes.append(m.gt.boxes[g])
        texts.append(f"{names[m.gt.cat[g]]} missed")
        colors.append(FN_COLOR)
        dashed.append(True)
    drawn = draw_boxes(image, boxes, texts, colors, dashed=dashed)
    scale = TILE / max(drawn.shape[:2])
    return cv2.resize(drawn, (max(1, round(drawn.shape[1] * scale)),
                              max(1, round(drawn.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)


def _grid(tiles: List[np.ndarray], columns: int) -> np.ndarray:
    """The tiles in rows of ``columns``, each cell TILE x TILE, white between."""
    if not tiles:
        return np.full((TILE, TILE, 3), 255, np.uint8)
    rows = (len(tiles) + columns - 1) // columns
    cols = min(columns, len(tiles))
    grid = np.full((rows * (TILE + 4), cols * (TILE + 4), 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        y, x = (i // cols) * (TILE + 4), (i % cols) * (TILE + 4)
        grid[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    return grid
