"""Batch dicts -> a normalised, padded image tensor and checked targets; and back.

Shape glossary: N images, C channels (3), H/W padded height/width, M GT boxes of one image,
D detections of one image.

Shared by every meta-architecture, so that all of them read ``model(batch)`` inputs
(DESIGN: "Model") the same way and reject bad targets with the same messages.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList


def normalize_and_pad(images: Sequence[Tensor], pixel_mean: Tensor, pixel_std: Tensor,
                      size_divisibility: int) -> ImageList:
    """Normalise each image and pad the batch (bottom/right, with 0 after normalisation).

    Args:
        images: per image [C, H_i, W_i] on a 0-255 scale (float or uint8).
        pixel_mean, pixel_std: float [C, 1, 1].
        size_divisibility: pad H and W up to a multiple of this (0 = no rounding).
    Returns:
        ImageList(tensors float [N, C, H, W], image_sizes [(H_i, W_i)]).
    """
    sizes = [tuple(int(s) for s in img.shape[-2:]) for img in images]
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    if size_divisibility > 1:
        h = int(math.ceil(h / size_divisibility) * size_divisibility)
        w = int(math.ceil(w / size_divisibility) * size_divisibility)
    batch = pixel_mean.new_zeros((len(images), pixel_mean.shape[0], h, w))
    for i, img in enumerate(images):
        img = img.to(device=batch.device, dtype=batch.dtype, non_blocking=True)
        batch[i, :, : img.shape[-2], : img.shape[-1]] = (img - pixel_mean) / pixel_std
    return ImageList(batch, sizes)


def prepare_targets(batch: List[dict], num_classes: int, device: torch.device
                    ) -> List[Dict[str, Tensor]]:
    """The ``instances`` of every image, checked, on ``device``, degenerate boxes removed.

    A GT box with zero (or negative) width or height cannot be regressed to (its encoded
    target is log(0)) and would match every anchor with IoU 0; it is dropped here.

    Raises:
        ValueError naming the image id when ``instances`` is missing, malformed, holds
        non-finite coordinates or labels outside 1..num_classes.
    Returns:
        per image {"gt_boxes": float32 [M, 4], "gt_labels": int64 [M]}
    """
    targets = []
    for item in batch:
        image_id = item.get("image_id", "?")
        inst = item.get("instances")
        if inst is None:
            raise ValueError(f"image {image_id}: training needs 'instances' with gt_boxes and "
                             f"gt_labels")
        boxes = torch.as_tensor(inst["gt_boxes"], dtype=torch.float32).to(device).reshape(-1, 4)
        labels = torch.as_tensor(inst["gt_labels"], dtype=torch.int64).to(device).reshape(-1)
        if len(boxes) != len(labels):
            raise ValueError(f"image {image_id}: {len(boxes)} gt_boxes but {len(labels)} gt_labels")
        if not torch.isfinite(boxes).all():
            raise ValueError(f"image {image_id}: non-finite gt_boxes {boxes.tolist()}")
        if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
            raise ValueError(f"image {image_id}: gt_labels must be in 1..{num_classes} "
                             f"(0 is background), got {sorted(set(labels.tolist()))}")
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        targets.append({"gt_boxes": boxes[keep], "gt_labels": labels[keep]})
    return targets


def rescale_detections(detections: List[Dict[str, Tensor]], batch: List[dict],
                       image_sizes: List[tuple]) -> List[Dict[str, Tensor]]:
    """Map boxes from the resized frame to each image's original ``height`` x ``width``.

    Returns:
        per image {"boxes" float [D, 4] (original pixels), "scores" [D], "labels" [D]}
    """
    results = []
    for det, item, (h, w) in zip(detections, batch, image_sizes):
        out_h, out_w = item.get("height", h), item.get("width", w)
        boxes = det["boxes"]
        if (out_h, out_w) != (h, w):
            scale = boxes.new_tensor([out_w / w, out_h / h, out_w / w, out_h / h])
            boxes = boxes * scale
            boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=out_w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=out_h)
        results.append({"boxes": boxes, "scores": det["scores"], "labels": det["labels"]})
    return results
