"""Sliced inference: a large photo as overlapping full-resolution tiles (``TEST.SLICE.*``).

A 60-px defect in a 4000 x 3000 photo is 12 px once the photo is resized to an 800-px
detector input, and 4 px at the quick start's 288 px: too small to find. Tiles cut at
full resolution keep it at its size:

    image [H, W] -> tiles of SIZE x SIZE, consecutive tiles sharing OVERLAP of a side
    (the last row and column aligned with the image's edges)
    -> each tile through the model's own test resize, in batches of BATCH
    -> boxes shifted back to the image; optionally (WHOLE_IMAGE) plus the whole image,
       resized as usual, for the objects larger than a tile
    -> merged per class (``merge_detections``): a large whole-image detection is kept and
       the tiles' pieces of its object are dropped; duplicates of one object from
       overlapping tiles are suppressed, and the pieces of an object cut by a tile border
       are joined into one box

Works for every meta-architecture: a model only sees images (tiles); a support-
conditioned model keeps its supports. An image no larger than a tile is inferred as usual.

Shape glossary: T tiles, D detections (all tiles together).
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms
from tqdm import tqdm

from ..data.mapper import DatasetMapper, image_to_tensor
from ..data.transforms import apply_transforms, transforms_from_config

logger = logging.getLogger(__name__)

# A box within this many pixels of a tile edge that is not an image edge was cut there.
CUT_MARGIN = 2.0
# Most tiles one image may be cut into. Each tile is a full forward pass (0.05-0.5 s on a
# GPU): 1,000 tiles are minutes per image. Real settings stay far below it (a 12,000 x
# 9,000 px photo in 1,024-px tiles at 0.25 overlap is 192 tiles); above it the keys are
# wrong, e.g. OVERLAP 0.99 cuts a 512-px image into 16,641 tiles of 64 px.
MAX_TILES = 1000
# From this many tiles of one image on, a line gives the count when no progress bar shows
# (no terminal: a log file, a notebook), so that a long wait is explained.
LOG_TILES = 50
# An object with a side of at least this fraction of the tile size comes from the
# whole-image pass, whatever WHOLE_MIN_SIZE says: at the default OVERLAP 0.25 (a stride of
# 0.75 x SIZE) one 0.8 x SIZE long lies whole in a tile for at most 0.2 / 0.75 of its
# positions, so the tiles mostly see pieces of it, each scored as if it were the object.
LARGE_SIDE = 0.8
# An uncut tile detection inside such a box of its class is a piece of it when it covers
# at least this fraction of the box's area (or of a tile's, if less); a smaller one is an
# object of its own (a small object in front of a large one of the same class).
OWN_OBJECT_AREA = 0.1


def _stride(size: int, overlap: float) -> int:
    return max(1, int(size * (1 - overlap)))


def tile_origins(length: int, size: int, overlap: float) -> List[int]:
    """Start offsets of tiles of ``size`` covering [0, length): a stride of
    size * (1 - overlap), the last tile ending at ``length``."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, _stride(size, overlap)))
    return starts + [length - size]


def tile_count(height: int, width: int, size: int, overlap: float) -> int:
    """len(tile_grid(height, width, size, overlap)), computed without listing the tiles."""

    def along(length: int) -> int:
        if length <= size:
            return 1
        return -(-(length - size) // _stride(size, overlap)) + 1  # ceil division

    return along(height) * along(width)


def tile_grid(height: int, width: int, size: int, overlap: float
              ) -> List[Tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of every tile, row by row."""
    return [(x, y, min(x + size, width), min(y + size, height))
            for y in tile_origins(height, size, overlap)
            for x in tile_origins(width, size, overlap)]


def cut_by_tile(boxes: Tensor, tile: Tuple[int, int, int, int], height: int, width: int
                ) -> Tensor:
    """bool [D]: the box (image pixels) touches an edge of ``tile`` inside the image."""
    x0, y0, x1, y1 = tile
    m = CUT_MARGIN
    return (((boxes[:, 0] <= x0 + m) & (x0 > 0)) | ((boxes[:, 1] <= y0 + m) & (y0 > 0))
            | ((boxes[:, 2] >= x1 - m) & (x1 < width)) | ((boxes[:, 3] >= y1 - m) & (y1 < height)))


def _intersections(a: Tensor, b: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(intersection area [A, B], area of ``a`` [A], area of ``b`` [B])."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter, area_a, area_b


def _pairwise(a: Tensor, b: Tensor) -> Tuple[Tensor, Tensor]:
    """(IoU [A, B], intersection over the smaller box [A, B])."""
    inter, area_a, area_b = _intersections(a, b)
    union = area_a[:, None] + area_b[None] - inter
    smaller = torch.min(area_a[:, None], area_b[None])
    return inter / union.clamp(min=1e-9), inter / smaller.clamp(min=1e-9)


def merge_detections(boxes: Tensor, scores: Tensor, labels: Tensor, cut: Tensor,
                     from_whole: Tensor, *, tile_size: int, iou_thresh: float,
                     ios_thresh: float, max_detections: int,
                     whole_from: float = float("inf")) -> Dict[str, Tensor]:
    """Per-class merge of the detections of all tiles and of the whole-image pass.

    Each pass is trusted for the objects it sees at a size the model finds: an object
    with a side of at least ``whole_from`` image pixels comes from the whole-image pass,
    a smaller one from the tiles (``SlicedInference``: ``TEST.SLICE.WHOLE_MIN_SIZE``
    pixels of the whole pass's input, or ``LARGE_SIDE`` of a tile if less). A tile enlarges what the whole pass sees well, and
    a model scores the enlarged view, or a piece of it, less reliably (on aquarium photos
    keeping every tile box cost 0.18 AP50 and 0.16 APl).

    0. A tile detection with a side of at least ``whole_from`` is dropped.
    1. A whole-image detection with a side of at least ``whole_from`` is final: the
       tiles see such an object in pieces, and no piece replaces it.
    2. A tile detection of its class that lies mostly inside it (intersection over the
       tile box's area >= ``ios_thresh``) is a piece of that object and is dropped when it
       was cut by a tile border or covers at least ``OWN_OBJECT_AREA`` of the large box
       (or of a tile, if less); so is a tile box with IoU > ``iou_thresh`` (the same
       object). An uncut, smaller tile detection is an object of its own and stays. The
       large box keeps its coordinates and its score: the whole-image pass rated that
       box, a tile rated a piece (and a score threshold keeps its meaning).
    3. The other detections are joined (``_join_tiles``): plain per-class NMS of the uncut
       ones, then the pieces of an object cut by tile borders become one box (their union).
    4. A joined box with IoU > ``iou_thresh`` with a final box of its class is dropped.

    Without the whole-image pass (``from_whole`` all False, ``whole_from`` infinite) this
    is step 3 alone.

    Args:
        boxes: float [D, 4] image pixels; scores [D]; labels int64 [D].
        cut: bool [D], the tile detection touches its tile's border inside the image.
        from_whole: bool [D], the detection comes from the whole-image pass.
        tile_size: ``TEST.SLICE.SIZE``, the tiles' side in image pixels.
        whole_from: the side (image pixels) from which objects come from the whole-image
            pass; infinite without it.
    Returns:
        {"boxes" [D', 4], "scores" [D'], "labels" [D']}, best first, D' <= max_detections.
    """
    large_box = (boxes[:, 2:] - boxes[:, :2]).max(1).values >= whole_from
    kept = from_whole | ~large_box  # 0.
    boxes, scores, labels, cut = boxes[kept], scores[kept], labels[kept], cut[kept]
    from_whole, large_box = from_whole[kept], large_box[kept]
    large = from_whole & large_box  # 1.
    final = torch.nonzero(large).squeeze(1)
    rest = torch.nonzero(~large).squeeze(1)
    pieces = ~from_whole[rest] & _pieces(  # 2.
        boxes[rest], labels[rest], cut[rest], boxes[final], labels[final],
        tile_size=tile_size, iou_thresh=iou_thresh, ios_thresh=ios_thresh)
    rest = rest[~pieces]
    joined = _join_tiles(boxes[rest], scores[rest], labels[rest], cut[rest],  # 3.
                         iou_thresh, ios_thresh)
    duplicate = _repeats(joined[0], joined[2], boxes[final], labels[final], iou_thresh)  # 4.
    boxes = torch.cat([boxes[final], joined[0][~duplicate]])
    scores = torch.cat([scores[final], joined[1][~duplicate]])
    labels = torch.cat([labels[final], joined[2][~duplicate]])
    order = torch.argsort(scores, descending=True, stable=True)[:max_detections]
    return {"boxes": boxes[order], "scores": scores[order], "labels": labels[order]}


def _pieces(boxes: Tensor, labels: Tensor, cut: Tensor, big: Tensor, big_labels: Tensor, *,
            tile_size: int, iou_thresh: float, ios_thresh: float) -> Tensor:
    """bool [D]: the tile detection is a piece of one of the ``big`` boxes of its class
    (step 2 of ``merge_detections``): IoU > ``iou_thresh``, or at least ``ios_thresh`` of
    its area inside it and cut by its tile's border or not small. Small is under
    ``OWN_OBJECT_AREA`` of the big box or of a tile, whichever is less: a tile shows at
    most a tile's worth of a large object."""
    own = OWN_OBJECT_AREA * (big[:, 2:] - big[:, :2]).prod(1).clamp(max=tile_size ** 2)

    def hit(rows, inter, area, big_area):
        union = area[:, None] + big_area[None] - inter
        part = cut[rows, None] | (area[:, None] >= own[None])
        return (inter > iou_thresh * union) | ((inter >= ios_thresh * area[:, None]) & part)

    return _any_of_class(boxes, labels, big, big_labels, hit)


def _repeats(boxes: Tensor, labels: Tensor, big: Tensor, big_labels: Tensor,
             iou_thresh: float) -> Tensor:
    """bool [D]: IoU > ``iou_thresh`` with one of the ``big`` boxes of its class."""

    def hit(rows, inter, area, big_area):
        return inter > iou_thresh * (area[:, None] + big_area[None] - inter)

    return _any_of_class(boxes, labels, big, big_labels, hit)


def _any_of_class(boxes: Tensor, labels: Tensor, big: Tensor, big_labels: Tensor,
                  hit: Callable, chunk: int = 4096) -> Tensor:
    """bool [D]: ``hit(rows, inter [C, B], area [C], big_area [B])`` holds for one of the
    ``big`` boxes [B, 4] of the box's class; C = ``chunk`` rows at a time bound the memory."""
    out = torch.zeros(len(boxes), dtype=torch.bool)
    if not len(big):
        return out
    for start in range(0, len(boxes), chunk):
        rows = slice(start, start + chunk)
        inter, area, big_area = _intersections(boxes[rows], big)
        same = labels[rows, None] == big_labels[None]
        out[rows] = (same & hit(rows, inter, area, big_area)).any(1)
    return out


def _join_tiles(boxes, scores, labels, cut, iou_thresh, ios_thresh):
    """Step 3 of ``merge_detections``; (boxes, scores, labels).

    Boxes no tile border cut are first reduced by plain per-class NMS (``iou_thresh``:
    the same object seen whole by two tiles). Then, greedily in decreasing score order, a
    box absorbs each lower-scored box of its class that overlaps it by IoU >
    ``iou_thresh``, or, when either was cut by a tile border, by intersection over the
    smaller > ``ios_thresh`` (a piece of the object). Absorbing a cut piece grows the box
    to their union and the search repeats, so the pieces of an object cut by several tile
    borders become one box.
    """
    uncut = torch.nonzero(~cut).squeeze(1)
    kept_uncut = uncut[batched_nms(boxes[uncut], scores[uncut], labels[uncut], iou_thresh)]
    keep = torch.cat([kept_uncut, torch.nonzero(cut).squeeze(1)])
    boxes, scores, labels, cut = boxes[keep], scores[keep], labels[keep], cut[keep]
    # Only boxes that meet a cut piece take part in the greedy merge (a Python loop);
    # the others are final.
    involved = cut | _meets(boxes, labels, cut, iou_thresh, ios_thresh)
    merged = _greedy_merge(boxes[involved], scores[involved], labels[involved],
                           cut[involved], iou_thresh, ios_thresh)
    return (torch.cat([boxes[~involved], merged[0]]), torch.cat([scores[~involved], merged[1]]),
            torch.cat([labels[~involved], merged[2]]))


def _meets(boxes, labels, cut, iou_thresh, ios_thresh, chunk: int = 4096) -> Tensor:
    """bool [D]: the box overlaps a cut box of its class enough to merge with it."""
    out = torch.zeros(len(boxes), dtype=torch.bool)
    pieces = torch.nonzero(cut).squeeze(1)
    if not len(pieces):
        return out
    for start in range(0, len(boxes), chunk):
        rows = slice(start, start + chunk)
        iou, ios = _pairwise(boxes[rows], boxes[pieces])
        same = labels[rows, None] == labels[pieces][None]
        out[rows] = (same & ((iou > iou_thresh) | (ios > ios_thresh))).any(1)
    return out


def _greedy_merge(boxes, scores, labels, cut, iou_thresh, ios_thresh):
    """The greedy absorb-and-grow loop of ``merge_detections``; (boxes, scores, labels)."""
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, scores, labels, cut = boxes[order], scores[order], labels[order], cut[order]
    alive = torch.ones(len(boxes), dtype=torch.bool)
    kept, kept_boxes = [], []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        alive[i] = False
        box, is_cut = boxes[i], bool(cut[i])
        while True:
            # after the NMS, uncut boxes meet each other only through a cut piece
            pool = alive & (labels == labels[i]) & (cut | is_cut)
            cand = torch.nonzero(pool).squeeze(1)
            if not len(cand):
                break
            iou, ios = _pairwise(box[None], boxes[cand])
            absorb = (iou[0] > iou_thresh) | ((cut[cand] | is_cut) & (ios[0] > ios_thresh))
            if not absorb.any():
                break
            taken = cand[absorb]
            alive[taken] = False
            parts = torch.cat([box[None], boxes[taken]])
            box = torch.cat([parts[:, :2].min(0).values, parts[:, 2:].max(0).values])
            is_cut = True
        kept.append(i)
        kept_boxes.append(box)
    idx = torch.tensor(kept, dtype=torch.int64)
    return (torch.stack(kept_boxes) if kept_boxes else boxes[:0], scores[idx], labels[idx])


def run_on_images(model: nn.Module, transforms: Sequence, images: List[np.ndarray]
                  ) -> List[Dict[str, Tensor]]:
    """``model`` on H x W x 3 images, each resized by the test ``transforms`` first, in one
    batch; per image its detections (on the CPU) in that image's pixels."""
    items = []
    for img in images:
        resized, _ = apply_transforms(transforms, img, np.zeros((0, 4), np.float32),
                                      np.random.default_rng(0))  # test transforms draw nothing
        items.append({"image": image_to_tensor(resized), "height": img.shape[0],
                      "width": img.shape[1]})
    return [{k: v.cpu() for k, v in out.items()} for out in model(items)]


class SlicedInference(nn.Module):
    """Wraps a model in eval mode: ``sliced(batch)`` takes items whose ``image`` is the
    ORIGINAL image (float [3, H, W] 0-255, as the data loader gives it with
    ``TEST.SLICE.ENABLED``) and returns the model's output format, in original pixels.

    Args:
        model: any meta-architecture (eval mode; ``model(batch)`` -> detections).
        transforms: the model's test transforms (``transforms_from_config``), per tile.
        size, overlap, whole_image, batch_size, iou_thresh, ios_thresh: ``TEST.SLICE.*``.
        max_detections: ``TEST.DETECTIONS_PER_IMAGE``.
        whole_min_size: ``TEST.SLICE.WHOLE_MIN_SIZE``, the side (pixels of the whole-image
            pass's input) from which objects come from that pass (``merge_detections``).
    """

    def __init__(self, model: nn.Module, transforms: Sequence, *, size: int, overlap: float,
                 whole_image: bool, batch_size: int, iou_thresh: float, ios_thresh: float,
                 max_detections: int, whole_min_size: float = 48.0):
        super().__init__()
        # The config's checks (config/validate.py), again for a wrapper built by hand.
        if size < 1 or not 0 <= overlap < 1 or batch_size < 1:
            raise ValueError(f"TEST.SLICE: SIZE must be >= 1, OVERLAP in [0, 1) and BATCH "
                             f">= 1, got {size}, {overlap}, {batch_size}")
        self.model = model
        self.transforms = list(transforms)
        self.size, self.overlap, self.whole_image = size, overlap, whole_image
        self.batch_size = batch_size
        self.iou_thresh, self.ios_thresh = iou_thresh, ios_thresh
        self.max_detections = max_detections
        self.whole_min_size = whole_min_size

    @classmethod
    def from_config(cls, cfg, model: nn.Module) -> "SlicedInference":
        s = cfg.TEST.SLICE
        return cls(model, transforms_from_config(cfg, is_train=False), size=s.SIZE,
                   overlap=s.OVERLAP, whole_image=s.WHOLE_IMAGE, batch_size=s.BATCH,
                   iou_thresh=s.NMS_THRESH, ios_thresh=s.IOS_THRESH,
                   max_detections=cfg.TEST.DETECTIONS_PER_IMAGE,
                   whole_min_size=s.WHOLE_MIN_SIZE)

    @torch.no_grad()
    def forward(self, batch: List[dict]) -> List[Dict[str, Tensor]]:
        return [self.detect(np.ascontiguousarray(item["image"].permute(1, 2, 0).cpu().numpy()))
                for item in batch]

    def _run(self, images: List[np.ndarray]) -> List[Dict[str, Tensor]]:
        return run_on_images(self.model, self.transforms, images)

    def detect(self, image: np.ndarray) -> Dict[str, Tensor]:
        """Detections on one H x W x 3 image (0-255, INPUT.FORMAT order), its pixels."""
        h, w = image.shape[:2]
        if h <= self.size and w <= self.size:
            return self._run([image])[0]
        self._check_tile_count(h, w)
        tiles = tile_grid(h, w, self.size, self.overlap)
        parts = []
        batches = range(0, len(tiles), self.batch_size)
        no_bar = not sys.stderr.isatty()
        if no_bar and len(tiles) >= LOG_TILES:
            logger.info("sliced inference: %d tiles of %d px for a %d x %d image", len(tiles),
                        self.size, w, h)
        for start in tqdm(batches, desc=f"tiles {w}x{h}", leave=False, mininterval=1.0,
                          disable=no_bar or len(batches) < 4):
            chunk = tiles[start:start + self.batch_size]
            outs = self._run([image[y0:y1, x0:x1] for x0, y0, x1, y1 in chunk])
            for (x0, y0, x1, y1), out in zip(chunk, outs):
                boxes = out["boxes"] + torch.tensor([x0, y0, x0, y0], dtype=out["boxes"].dtype)
                parts.append((boxes, out["scores"], out["labels"],
                              cut_by_tile(boxes, (x0, y0, x1, y1), h, w),
                              torch.zeros(len(boxes), dtype=torch.bool)))
        if self.whole_image:
            out = self._run([image])[0]
            never = torch.zeros(len(out["boxes"]), dtype=torch.bool)
            parts.append((out["boxes"], out["scores"], out["labels"], never, ~never))
        boxes, scores, labels, cut, from_whole = (torch.cat(p) for p in zip(*parts))
        whole_from = min(self.whole_min_size / self._whole_scale(h, w),
                         LARGE_SIDE * self.size) if self.whole_image else float("inf")
        return merge_detections(boxes.float(), scores, labels, cut, from_whole,
                                tile_size=self.size, iou_thresh=self.iou_thresh,
                                ios_thresh=self.ios_thresh, max_detections=self.max_detections,
                                whole_from=whole_from)

    def _whole_scale(self, h: int, w: int) -> float:
        """The whole-image pass's resize factor for an h x w image (the test transforms on
        a blank image of that size; the smaller axis factor for a non-uniform resize)."""
        probe, _ = apply_transforms(self.transforms, np.zeros((h, w, 1), np.uint8),
                                    np.zeros((0, 4), np.float32), np.random.default_rng(0))
        return min(probe.shape[0] / h, probe.shape[1] / w)

    def _check_tile_count(self, h: int, w: int) -> None:
        """ValueError when an h x w image would need more than ``MAX_TILES`` tiles."""
        count = tile_count(h, w, self.size, self.overlap)
        if count > MAX_TILES:
            raise ValueError(
                f"sliced inference would cut the {w} x {h} image into {count} tiles of "
                f"{self.size} px (TEST.SLICE.SIZE {self.size}, TEST.SLICE.OVERLAP "
                f"{self.overlap}); at most {MAX_TILES} are run per image: raise "
                f"TEST.SLICE.SIZE or lower TEST.SLICE.OVERLAP")


# TEST.SLICE.ENABLED is read here and nowhere else: the model wrapping and the test
# images' size (original, for tiles; or the test resize) are one decision.
def for_inference(cfg, model: nn.Module) -> Tuple[nn.Module, DatasetMapper]:
    """What runs a test set: the model (wrapped in ``SlicedInference`` when
    ``TEST.SLICE.ENABLED``) and the mapper of its images (original size when sliced: each
    tile gets the test resize; else the test resize)."""
    if cfg.TEST.SLICE.ENABLED:
        return (SlicedInference.from_config(cfg, model),
                DatasetMapper.from_config(cfg, is_train=False, resize=False))
    return model, DatasetMapper.from_config(cfg, is_train=False)


def image_detector(cfg, model) -> Callable[[np.ndarray], Dict[str, Tensor]]:
    """One H x W x 3 image (0-255, INPUT.FORMAT order) -> its detections in its pixels,
    sliced when ``TEST.SLICE.ENABLED``, else through the test resize. ``model``: any
    callable on model-input batches (a built model, an exported one)."""
    if cfg.TEST.SLICE.ENABLED:
        return SlicedInference.from_config(cfg, model).detect
    transforms = transforms_from_config(cfg, is_train=False)
    return lambda image: run_on_images(model, transforms, [image])[0]
