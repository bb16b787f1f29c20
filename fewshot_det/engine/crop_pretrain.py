"""Backbone warm-up on object crops: a short classification stage before detection training.

Why: a detector trained from random initialisation (no pretrained weights, as on a fresh
machine with no download) spends most of a CPU budget learning what its classes look like,
one 256-px image at a time. A ResNet classifies a 64-px crop about 16x cheaper than it
processes a 256-px detection image, so a minute or two of classifying the *training boxes*
(nothing else is seen: few-shot base training crops base classes only) gives the backbone
class-discriminative features, and the detection stage that follows mostly has to learn to
localise. The classifier layer is thrown away afterwards.

With ``PRETRAIN.HEADS`` (R-CNN models), each crop is also treated as a one-object image:
the FPN, RoIAlign of the crop's box and the box head's (K+1)-way classifier learn the
classes too. Why: the ResNet alone is not the detector's classifier; from random FPN and
box-head weights the detection stage still spends hundreds of iterations learning to pass
what the ResNet knows to the class logits, and that is learnt here at the crops' price.

Runs when ``PRETRAIN.ITERS`` > 0 and training starts at iteration 0
(never on ``--resume`` from a checkpoint: the checkpoint already holds its effect).

Shape glossary: M crops in the bank, B batch, S crop side, C feature channels, K classes.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config.validate import OPTIMIZERS
from ..data.episodes import crop_support
from ..data.mapper import read_image
from ..modeling import Detector
from . import comm
from .optim import make_optimizer

logger = logging.getLogger(__name__)

# Crops are cut this much larger than SIZE, then randomly cropped to SIZE (jitter).
_JITTER = 1.25


def feature_body(model: nn.Module) -> nn.Module:
    """The model's bottom-up feature network (``Detector.body``: a ResNet for R-CNN,
    YOLO-grid and the siamese detector alike), which the warm-up trains."""
    if not isinstance(model, Detector):
        raise ValueError(f"the crop warm-up (PRETRAIN.ITERS > 0) needs a fewshot_det "
                         f"detector, got {type(model).__name__}")
    return model.body()


class CropBank:
    """Every training box cut once (square, with context) at ``side`` px, with its class.

    Attributes:
        crops: uint8 [M, side, side, 3] in the records' channel order.
        boxes: float32 [M, 4] XYXY, the object's box in its crop.
        labels: int64 [M] in 0..K-1 (index into ``classes``).
        classes: the dataset category ids (1-based) present, sorted.
    """

    def __init__(self, records: Sequence[dict], side: int, context: float, image_format: str,
                 max_crops: int, seed: int):
        boxes = [(i, a) for i, r in enumerate(records) for a in r["annotations"]
                 if a["bbox"][2] > a["bbox"][0] and a["bbox"][3] > a["bbox"][1]]
        if not boxes:
            raise ValueError("the crop warm-up (PRETRAIN.ITERS > 0): the training set has no boxes")
        if len(boxes) > max_crops:  # large sets: a random subset keeps memory bounded
            keep = np.random.default_rng(seed).choice(len(boxes), max_crops, replace=False)
            boxes = [boxes[k] for k in sorted(keep)]
        self.classes = sorted({a["category_id"] for _, a in boxes})
        index = {c: k for k, c in enumerate(self.classes)}
        crops, crop_boxes, labels, cached = [], [], [], (None, None)
        for i, ann in boxes:  # grouped by image: each image is read once
            if cached[0] != i:
                cached = (i, read_image(records[i]["file_name"], image_format))
            crop, box = crop_support(cached[1], ann["bbox"], side, context)
            crops.append(crop)
            crop_boxes.append(box)
            labels.append(index[ann["category_id"]])
        self.crops = np.stack(crops)
        self.boxes = np.stack(crop_boxes).astype(np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, rng: np.random.Generator, batch: int, size: int):
        """Random crops, each a random S-px window of its crop, randomly flipped.

        Returns:
            (uint8 [B, S, S, 3], float32 [B, 4] the objects' boxes in the windows, clipped;
             int64 [B] labels)
        """
        idx = rng.integers(0, len(self), batch)
        margin = self.crops.shape[1] - size
        out = np.empty((batch, size, size, 3), np.uint8)
        boxes = np.empty((batch, 4), np.float32)
        for b, k in enumerate(idx):
            y, x = rng.integers(0, margin + 1, 2)
            crop = self.crops[k, y:y + size, x:x + size]
            box = np.clip(self.boxes[k] - np.array([x, y, x, y], np.float32), 0, size)
            if rng.random() < 0.5:
                crop, box = crop[:, ::-1], np.array([size - box[2], box[1], size - box[0],
                                                     box[3]], np.float32)
            out[b], boxes[b] = crop, box
        return out, boxes, self.labels[idx]


def _lr(base: float, it: int, total: int) -> float:
    warmup = max(1, total // 20)
    if it < warmup:
        return base * (it + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (it - warmup) / max(1, total - warmup)))


def _check_heads(model: Detector) -> None:
    """A one-line error when ``PRETRAIN.HEADS`` cannot train this model's heads."""
    if not model.trains_heads_on_crops():
        raise ValueError("PRETRAIN.HEADS True needs MODEL.META_ARCHITECTURE GeneralizedRCNN "
                         f"with an FPN backbone, got {type(model).__name__} with "
                         f"{type(model.backbone).__name__}")


def _check(c) -> None:
    for key, low in (("ITERS", 0), ("BATCH_SIZE", 2), ("SIZE", 16), ("MAX_CROPS", 1)):
        if getattr(c, key) < low:
            raise ValueError(f"PRETRAIN.{key} must be >= {low}, got {getattr(c, key)}")
    if c.OPTIMIZER not in OPTIMIZERS:
        raise ValueError(f"PRETRAIN.OPTIMIZER must be {' or '.join(OPTIMIZERS)}, "
                         f"got {c.OPTIMIZER!r}")
    if not c.BASE_LR > 0 or c.CONTEXT < 0:
        raise ValueError(f"PRETRAIN.BASE_LR must be > 0 and PRETRAIN.CONTEXT >= 0, "
                         f"got {c.BASE_LR} and {c.CONTEXT}")


def pretrain_backbone_on_crops(cfg, model: nn.Module, records: Sequence[dict]) -> Dict[str, float]:
    """Train the model's feature body (+ a throw-away linear layer) to classify box crops.

    With ``PRETRAIN.HEADS`` the FPN and the box head's classifier train on the crops too.

    Args:
        cfg: the run's config (``PRETRAIN.*``, ``MODEL.PIXEL_MEAN/STD``, ``INPUT.FORMAT``,
            ``SOLVER.WEIGHT_DECAY``, ``SEED``).
        model: any fewshot_det detector (``Detector.body``); updated in place.
        records: the training records (``fewshot_det.data.build.training_records``).
    Returns:
        {"iters", "crops", "classes", "loss", "accuracy" (last 10 % of iterations), "seconds"}
    """
    c = cfg.PRETRAIN
    _check(c)
    start = time.perf_counter()
    body = feature_body(model)
    if c.HEADS:
        _check_heads(model)
    device = next(body.parameters()).device
    bank = CropBank(records, int(round(c.SIZE * _JITTER)), c.CONTEXT, cfg.INPUT.FORMAT,
                    c.MAX_CROPS, cfg.SEED)
    feature = max(body.output_shape().items(), key=lambda kv: kv[1].stride)
    head = nn.Linear(feature[1].channels, len(bank.classes)).to(device)
    with torch.no_grad():  # a private generator: the global torch RNG stream is left alone
        gen = torch.Generator().manual_seed(cfg.SEED)
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.01)
        head.bias.zero_()
    params = [p for p in body.parameters() if p.requires_grad] + list(head.parameters())
    if c.HEADS:
        params += model.crop_head_parameters()
    optimizer = make_optimizer(c.OPTIMIZER, params, lr=c.BASE_LR, momentum=0.9,
                               weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, device=device).view(1, -1, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD, device=device).view(1, -1, 1, 1)
    memory_format = torch.channels_last if cfg.MODEL.BACKBONE.CHANNELS_LAST \
        else torch.contiguous_format
    rng = np.random.default_rng([cfg.SEED, 7])
    was_training = model.training
    model.train()
    # Detector labels are the dataset category ids (1..K; 0 is background).
    category = torch.tensor(bank.classes, device=device)
    logger.info("crop pre-training: %d iterations of %d crops (%d px) from %d boxes of %d "
                "classes%s", c.ITERS, c.BATCH_SIZE, c.SIZE, len(bank), len(bank.classes),
                ", with the FPN and box classifier" if c.HEADS else "")
    tail: List[float] = []
    loss = torch.zeros(())
    for it in range(c.ITERS):
        crops, boxes, labels = bank.sample(rng, c.BATCH_SIZE, c.SIZE)
        x = torch.from_numpy(crops).to(device).permute(0, 3, 1, 2).float()
        x = ((x - mean) / std).contiguous(memory_format=memory_format)
        y = torch.from_numpy(labels).to(device)
        bottom_up = body(x)
        logits = head(F.adaptive_avg_pool2d(bottom_up[feature[0]], 1).flatten(1))
        loss = F.cross_entropy(logits, y)
        if c.HEADS:  # one proposal per crop: the object's own box
            box_logits = model.crop_class_logits(bottom_up, torch.from_numpy(boxes).to(device))
            loss = loss + F.cross_entropy(box_logits, category[y])
        for group in optimizer.param_groups:
            group["lr"] = _lr(c.BASE_LR, it, c.ITERS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if it >= c.ITERS - max(1, c.ITERS // 10):
            tail.append(float((logits.argmax(1) == y).float().mean()))
        if (it + 1) % max(1, cfg.SOLVER.LOG_PERIOD) == 0 or it + 1 == c.ITERS:
            spent = time.perf_counter() - start
            logger.info("crop pre-training %d/%d  loss %.4f  eta %ds", it + 1, c.ITERS,
                        loss.item(), int(spent / (it + 1) * (c.ITERS - it - 1)))
    model.train(was_training)
    if comm.get_world_size() > 1:  # every rank continues from rank 0's weights
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, 0)
    summary = {"iters": c.ITERS, "crops": len(bank), "classes": len(bank.classes),
               "loss": loss.item(), "accuracy": float(np.mean(tail)) if tail else 0.0,
               "seconds": time.perf_counter() - start}
    logger.info("crop pre-training done: accuracy %.3f over the last %d iterations, %.0f s",
                summary["accuracy"], len(tail), summary["seconds"])
    return summary
