"""Large synthetic scenes with small objects: the shapes of ``data.synthetic`` at 12-48 px
on 2048 x 1536 clutter, like defects in a UAV inspection photo (for sliced inference).

With ``large_objects`` a scene also holds large objects (300-1200 px by default, beside the
small ones): half of them are a shape of the drawn classes at that size (so a class has
small and large instances, the case where sliced inference must tell the pieces of a
large object from small objects of its class), half a *chain* (class ``CHAIN``): a straight
string of 8-16 touching, overlapping links on a thin rod, like an insulator string, as
discs (flattened ellipses across the rod) or beads (circles), within 15 degrees of
horizontal or vertical, with one box around the whole string.

Layout written (Pascal VOC; no torch)::

    ROOT/JPEGImages/large_{i:06d}.jpg   ROOT/Annotations/large_{i:06d}.xml
    ROOT/ImageSets/Main/{split}.txt     ROOT/classes.txt (all SYNTHETIC_CLASSES, + CHAIN
                                        with large objects, or the class list of the
                                        model to be evaluated)

Scene ``i`` is drawn from a generator seeded with ``(seed, i)``. Objects never overlap
(each box keeps a 4-px gap), so every box is a whole, visible shape. Without large objects
(the default) a scene is the same, byte for byte, as before they existed.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .fewshot.class_splits import SYNTHETIC_CLASSES
from .synthetic import _background, _ngon, _paint, _shape_mask

__all__ = ["CHAIN", "render_large_scene", "generate_large_scenes"]

CHAIN = "chain"
_GAP = 4
_CHAIN_SHARE = 0.5  # of the large objects
_LARGE_TRIES = 5  # sizes drawn for a large object before it is left out
_MAX_TILT = np.pi / 12


def render_large_scene(rng: np.random.Generator, width: int = 2048, height: int = 1536, *,
                       classes: Sequence[str] = SYNTHETIC_CLASSES,
                       object_px: Tuple[int, int] = (12, 48), num_objects: Tuple[int, int] =
                       (20, 40), large_objects: Union[int, Tuple[int, int]] = 0,
                       large_px: Tuple[int, int] = (300, 1200)
                       ) -> Tuple[np.ndarray, List[dict]]:
    """One scene: (uint8 [height, width, 3] BGR, [{"name", "box": [x1, y1, x2, y2]}])
    with 0-based inclusive pixel boxes; sides drawn log-uniformly in ``object_px``.

    Args:
        large_objects: how many large objects, drawn first (int n: exactly n; (lo, hi): a
            count in [lo, hi]); one that finds no free place in ``_LARGE_TRIES`` sizes is
            left out. 0 draws nothing (the scene is then unchanged by this option).
        large_px: their size range (log-uniform): a shape's diameter or a chain's length,
            capped so that it fits the scene.
    """
    img = _background(rng, max(width, height))[:height, :width].copy()
    taken = np.zeros((height, width), bool)
    objects = []
    count = _count_range(large_objects)
    if count[1] > 0:
        objects += _large_objects(img, taken, rng, count, large_px, classes)
    lo, hi = object_px
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        name = classes[int(rng.integers(len(classes)))]
        side = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
        coverage = _shape_mask(name, rng, side)
        spot = _free_spot(rng, taken, coverage.shape[0])
        if spot is None or not (coverage > 0.5).any():
            continue
        x0, y0 = spot
        _paint(img, coverage, x0, y0, rng)
        s = coverage.shape[0]
        taken[max(0, y0 - _GAP):y0 + s + _GAP, max(0, x0 - _GAP):x0 + s + _GAP] = True
        rows, cols = np.nonzero((coverage > 0.5).any(axis=1))[0], \
            np.nonzero((coverage > 0.5).any(axis=0))[0]
        objects.append({"name": name, "box": [x0 + int(cols[0]), y0 + int(rows[0]),
                                              x0 + int(cols[-1]), y0 + int(rows[-1])]})
    img += rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


def _count_range(large_objects: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    lo, hi = (large_objects, large_objects) if np.isscalar(large_objects) else large_objects
    if not 0 <= int(lo) <= int(hi):
        raise ValueError(f"large_objects: a count n >= 0 or a range (lo, hi) with "
                         f"0 <= lo <= hi, got {large_objects!r}")
    return int(lo), int(hi)


def _large_objects(img: np.ndarray, taken: np.ndarray, rng: np.random.Generator,
                   count: Tuple[int, int], large_px: Tuple[int, int],
                   classes: Sequence[str]) -> List[dict]:
    """Paint the large objects into ``img`` and mark their boxes (+ gap) in ``taken``;
    returns their annotations."""
    height, width = taken.shape
    cap = min(width, height) - 2 * _GAP - 8
    lo, hi = min(large_px[0], cap), min(large_px[1], cap)
    if not 16 <= large_px[0] <= large_px[1] or lo < 16:
        raise ValueError(f"large_px: a range (lo, hi) with 16 <= lo <= hi that fits the "
                         f"{width} x {height} scene, got {tuple(large_px)}")
    objects = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        for _ in range(_LARGE_TRIES):
            name = CHAIN if rng.random() < _CHAIN_SHARE else classes[
                int(rng.integers(len(classes)))]
            size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            coverage = _chain_mask(rng, size) if name == CHAIN else _crop(
                _shape_mask(name, rng, int(round(size))))
            h, w = coverage.shape
            spot = _free_rect(rng, taken, h, w) if h < height and w < width else None
            if spot is not None:
                break
        else:
            continue
        x0, y0 = spot
        _paint_rect(img, coverage, x0, y0, rng)
        taken[max(0, y0 - _GAP):y0 + h + _GAP, max(0, x0 - _GAP):x0 + w + _GAP] = True
        rows = np.nonzero((coverage > 0.5).any(axis=1))[0]
        cols = np.nonzero((coverage > 0.5).any(axis=0))[0]
        objects.append({"name": name, "box": [x0 + int(cols[0]), y0 + int(rows[0]),
                                              x0 + int(cols[-1]), y0 + int(rows[-1])]})
    return objects


def _chain_mask(rng: np.random.Generator, length: float) -> np.ndarray:
    """float32 [h, w] coverage of a chain about ``length`` px long: 8-16 links on a rod
    through their centres, cropped to the drawing. Beads: circles at least as wide as
    their spacing (neighbours touch or overlap); discs: ellipses 1.6-2.5x the spacing
    across the rod and 0.55-0.8x along it, the rod showing between them."""
    links = int(rng.integers(8, 17))
    pitch = length / links
    if rng.random() < 0.5:
        along = across = pitch * rng.uniform(1.0, 1.25)
    else:
        along, across = pitch * rng.uniform(0.55, 0.8), pitch * rng.uniform(1.6, 2.5)
    centres = (np.arange(links) - (links - 1) / 2) * pitch
    polys = [_ngon(48) * [along / 2, across / 2] + [c, 0.0] for c in centres]
    half_rod, half_thick = centres[-1], across * rng.uniform(0.08, 0.12)
    polys.append(np.array([(-half_rod, half_thick), (half_rod, half_thick),
                           (half_rod, -half_thick), (-half_rod, -half_thick)]))
    angle = (np.pi / 2 if rng.random() < 0.5 else 0.0) + rng.uniform(-_MAX_TILT, _MAX_TILT)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    polys = [p @ rot.T for p in polys]
    low = np.min([p.min(axis=0) for p in polys], axis=0) - 2
    w, h = (np.ceil(np.max([p.max(axis=0) for p in polys], axis=0) - low) + 3).astype(int)
    mask = np.zeros((h, w), np.uint8)
    for p in polys:  # one at a time: a single call would leave the overlaps empty (even-odd)
        # 4 fractional bits (shift=4), as data.synthetic draws its shapes
        cv2.fillPoly(mask, [np.round((p - low) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return _crop(mask.astype(np.float32) / 255.0)


def _crop(coverage: np.ndarray) -> np.ndarray:
    """``coverage`` cut to its non-zero rows and columns."""
    rows, cols = np.nonzero(coverage.any(axis=1))[0], np.nonzero(coverage.any(axis=0))[0]
    return coverage[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _paint_rect(img: np.ndarray, coverage: np.ndarray, x0: int, y0: int,
                rng: np.random.Generator) -> None:
    """``data.synthetic._paint`` (square coverage) for an [h, w] coverage at (x0, y0),
    through a square canvas: the colour, shading and outline of the small shapes."""
    h, w = coverage.shape
    side = max(h, w)
    canvas = np.zeros((side, side, 3), np.float32)
    canvas[:h, :w] = img[y0:y0 + h, x0:x0 + w]
    square = np.zeros((side, side), np.float32)
    square[:h, :w] = coverage
    _paint(canvas, square, 0, 0, rng)
    img[y0:y0 + h, x0:x0 + w] = canvas[:h, :w]


def _free_spot(rng, taken: np.ndarray, side: int) -> Optional[Tuple[int, int]]:
    return _free_rect(rng, taken, side, side)


def _free_rect(rng, taken: np.ndarray, h: int, w: int) -> Optional[Tuple[int, int]]:
    """Top-left (x0, y0) of a free ``h`` x ``w`` window of ``taken``, or None after 50
    random tries."""
    height, width = taken.shape
    for _ in range(50):
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        if not taken[y0:y0 + h, x0:x0 + w].any():
            return x0, y0
    return None


def _voc_xml(filename: str, width: int, height: int, objects: List[dict]) -> str:
    objs = "".join(
        f"<object><name>{o['name']}</name><difficult>0</difficult><bndbox>"
        f"<xmin>{o['box'][0] + 1}</xmin><ymin>{o['box'][1] + 1}</ymin>"
        f"<xmax>{o['box'][2] + 1}</xmax><ymax>{o['box'][3] + 1}</ymax></bndbox></object>"
        for o in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objs}</annotation>\n")


def generate_large_scenes(root: str, num: int = 20, *, width: int = 2048, height: int = 1536,
                          seed: int = 0, classes: Sequence[str] = SYNTHETIC_CLASSES,
                          class_list: Optional[Sequence[str]] = None,
                          object_px: Tuple[int, int] = (12, 48),
                          large_objects: Union[int, Tuple[int, int]] = 0,
                          large_px: Tuple[int, int] = (300, 1200), split: str = "test") -> str:
    """Write ``num`` scenes as a VOC split under ``root``; returns its spec
    ``voc:ROOT:SPLIT``.

    Args:
        classes: the shapes drawn (e.g. the base classes), small and large.
        class_list: classes.txt, label k = its line k (e.g. a model's own class list);
            None = SYNTHETIC_CLASSES, then CHAIN when large objects are drawn.
        large_objects, large_px: as ``render_large_scene``'s.
        split: the split file's name (ImageSets/Main/SPLIT.txt).
    Raises:
        ValueError: a class of ``classes`` unknown or not in ``class_list``; large objects
            with a ``class_list`` lacking CHAIN.
    """
    large = _count_range(large_objects)[1] > 0
    if class_list is None:
        class_list = list(SYNTHETIC_CLASSES) + ([CHAIN] if large else [])
    unknown = sorted(set(classes) - set(SYNTHETIC_CLASSES))
    if unknown:
        raise ValueError(f"large scenes: unknown classes {unknown} (known: {SYNTHETIC_CLASSES})")
    unlisted = sorted(set(classes) - set(class_list)) + (
        [CHAIN] if large and CHAIN not in class_list else [])
    if unlisted:
        raise ValueError(f"large scenes: drawn classes {unlisted} are not in class_list")
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    stems = []
    for i in range(num):
        stem = f"large_{i:06d}"
        img, objects = render_large_scene(
            np.random.default_rng([int(seed), i]), width, height, classes=classes,
            object_px=object_px, large_objects=large_objects, large_px=large_px)
        if not cv2.imwrite(os.path.join(root, "JPEGImages", stem + ".jpg"), img,
                           [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"cannot write {os.path.join(root, 'JPEGImages', stem + '.jpg')}")
        with open(os.path.join(root, "Annotations", stem + ".xml"), "w") as f:
            f.write(_voc_xml(stem + ".jpg", width, height, objects))
        stems.append(stem)
    with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("".join(s + "\n" for s in stems))
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("".join(c + "\n" for c in class_list))
    return f"voc:{root}:{split}"
