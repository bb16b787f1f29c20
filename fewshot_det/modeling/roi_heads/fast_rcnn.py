"""Box predictors ((K+1)-way classifier + box deltas) and their test-time decoding.

Shape glossary: N images, R RoIs (all images), D input feature size, K foreground classes,
P detections kept for one image.

Conventions: column 0 of the class logits is background (u = 0), columns 1..K the classes;
box deltas are class-specific, class k (1..K) at columns 4(k-1)..4k-1 (no background
deltas: they are never used), or one class-agnostic set of 4.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import boxes as box_ops

from ..registry import ROI_BOX_PREDICTOR_REGISTRY
from ..traceable import ImageSize, batched_nms, clip_boxes, split_per_image

# Detections with a side shorter than this (pixels) are dropped (torchvision's value).
MIN_BOX_SIZE_TEST = 1e-2


@ROI_BOX_PREDICTOR_REGISTRY.register()
class FastRCNNOutputLayers(nn.Module):
    """Linear (K+1)-way classifier and linear box-delta regressor.

    Args:
        input_dim: D.
        num_classes: K (foreground classes).
        cls_agnostic_bbox_reg: predict 4 deltas shared by all classes.
    """

    def __init__(self, *, input_dim: int, num_classes: int, cls_agnostic_bbox_reg: bool = False):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"MODEL.ROI_HEADS.NUM_CLASSES must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.cls_score = nn.Linear(input_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(input_dim, 4 if cls_agnostic_bbox_reg else 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.constant_(self.cls_score.bias, 0)
        nn.init.constant_(self.bbox_pred.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_dim: int) -> "FastRCNNOutputLayers":
        return cls(input_dim=input_dim, num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                   cls_agnostic_bbox_reg=cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            x: float [R, D].
        Returns:
            (class logits float [R, K+1], box deltas float [R, 4K] or [R, 4])
        """
        return self.cls_score(x), self.bbox_pred(x)


@ROI_BOX_PREDICTOR_REGISTRY.register()
class CosineSimOutputLayers(FastRCNNOutputLayers):
    """Cosine-similarity classifier (TFA, Wang et al. 2020): logits = scale * cos(x, w_c).

    Args:
        scale: the temperature (TFA uses 20); -1 makes it a parameter initialised to 20.
        (others as ``FastRCNNOutputLayers``)
    """

    def __init__(self, *, input_dim: int, num_classes: int, cls_agnostic_bbox_reg: bool = False,
                 scale: float = 20.0):
        super().__init__(input_dim=input_dim, num_classes=num_classes,
                         cls_agnostic_bbox_reg=cls_agnostic_bbox_reg)
        self.cls_score = nn.Linear(input_dim, num_classes + 1, bias=False)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        if scale == -1:
            self.scale = nn.Parameter(torch.tensor(20.0))
        elif scale > 0:
            self.register_buffer("scale", torch.tensor(float(scale)), persistent=False)
        else:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.COSINE_SCALE must be > 0 or -1, got {scale}")

    @classmethod
    def from_config(cls, cfg, input_dim: int) -> "CosineSimOutputLayers":
        h = cfg.MODEL.ROI_BOX_HEAD
        return cls(input_dim=input_dim, num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                   cls_agnostic_bbox_reg=h.CLS_AGNOSTIC_BBOX_REG, scale=h.COSINE_SCALE)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return cosine_logits(x, self.cls_score.weight, self.scale), self.bbox_pred(x)


def cosine_logits(x: Tensor, weights: Tensor, scale) -> Tensor:
    """``scale * cos(x_r, w_k)`` for every row pair: x [R, D], weights [K, D] -> [R, K]."""
    x_norm = x / (x.norm(dim=1, keepdim=True) + 1e-5)
    w_norm = weights / (weights.norm(dim=1, keepdim=True) + 1e-5)
    return scale * (x_norm @ w_norm.t())


def fast_rcnn_inference(pred_class_logits: Tensor, pred_proposal_deltas: Tensor,
                        proposals: List[Tensor], image_sizes: List[ImageSize], *,
                        box_coder: BoxCoder, score_thresh: float, nms_thresh: float,
                        topk_per_image: int) -> List[Dict[str, Tensor]]:
    """Detections from the predictor outputs (torchvision's ``postprocess_detections``).

    Per image: softmax; decode one box per class; clip to the image; keep (box, class)
    pairs with score > ``score_thresh`` and sides >= 0.01 px; NMS per class; keep the
    ``topk_per_image`` best.

    Args:
        pred_class_logits: float [R, K+1].
        pred_proposal_deltas: float [R, 4K] or [R, 4].
        proposals: per image float [R_i, 4], sum R_i = R.
        image_sizes: (h, w) per image, the frame of the proposals.
    Returns:
        per image {"boxes": float [P, 4], "scores": float [P], "labels": int64 [P] in 1..K}
    """
    num_classes = pred_class_logits.shape[1] - 1
    scores = F.softmax(pred_class_logits, dim=-1)[:, 1:]  # R, K
    all_proposals = torch.cat(proposals)
    boxes = box_coder.decode_single(pred_proposal_deltas, all_proposals)
    boxes = boxes.reshape(-1, pred_proposal_deltas.shape[1] // 4, 4)  # R, K or 1, 4
    boxes = boxes.expand(-1, num_classes, -1)  # R, K, 4
    counts = [len(p) for p in proposals]
    return [_per_image(b, s, size, score_thresh, nms_thresh, topk_per_image)
            for b, s, size in zip(split_per_image(boxes, counts),
                                  split_per_image(scores, counts), image_sizes)]


def _per_image(boxes: Tensor, scores: Tensor, image_size: ImageSize, score_thresh: float,
               nms_thresh: float, topk: int) -> Dict[str, Tensor]:
    num_classes = scores.shape[1]
    boxes = clip_boxes(boxes, image_size).reshape(-1, 4)  # R*K, 4
    labels = torch.arange(1, num_classes + 1, device=scores.device)
    labels = labels.view(1, -1).expand_as(scores).reshape(-1)  # R*K: 1..K per RoI
    scores = scores.reshape(-1)
    keep = torch.nonzero(scores > score_thresh).squeeze(1)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = box_ops.remove_small_boxes(boxes, min_size=MIN_BOX_SIZE_TEST)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, num_classes + 1, nms_thresh)[:topk]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
