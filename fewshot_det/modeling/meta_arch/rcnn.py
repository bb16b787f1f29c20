"""Faster R-CNN: backbone -> proposal generator -> ROI heads, behind ``model(batch)``.

Shape glossary: N images, M GT boxes of one image, D detections of one image.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Union

import torch
from torch import Tensor, nn

from ..backbone import Backbone
from ..fewshot.surgery import PREDICTOR, ClassRows
from ..registry import (BACKBONE_REGISTRY, META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                        ROI_HEADS_REGISTRY, lookup)
from .preprocess import normalize_and_pad, prepare_targets, rescale_detections


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(nn.Module):
    """Two-stage detector (Faster R-CNN with the default components).

    Args:
        backbone: images -> named features, with ``output_shape()``.
        proposal_generator: (images, features, targets) -> (proposals, losses).
        roi_heads: (images, features, proposals, targets) -> (detections, losses).
        pixel_mean, pixel_std: per channel, 0-255 scale, in the input's channel order.
    """

    def __init__(self, *, backbone: Backbone, proposal_generator: nn.Module,
                 roi_heads: nn.Module, pixel_mean: Sequence[float], pixel_std: Sequence[float]):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @staticmethod
    def components_from_config(cfg) -> dict:
        """The constructor arguments every two-stage detector shares, built from ``cfg``."""
        backbone = lookup(BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME, "MODEL.BACKBONE.NAME")(cfg)
        shapes = backbone.output_shape()
        rpn_cls = lookup(PROPOSAL_GENERATOR_REGISTRY, cfg.MODEL.RPN.NAME, "MODEL.RPN.NAME")
        roi_cls = lookup(ROI_HEADS_REGISTRY, cfg.MODEL.ROI_HEADS.NAME, "MODEL.ROI_HEADS.NAME")
        return dict(backbone=backbone, proposal_generator=rpn_cls.from_config(cfg, shapes),
                    roi_heads=roi_cls.from_config(cfg, shapes),
                    pixel_mean=cfg.MODEL.PIXEL_MEAN, pixel_std=cfg.MODEL.PIXEL_STD)

    @classmethod
    def from_config(cls, cfg) -> "GeneralizedRCNN":
        return cls(**cls.components_from_config(cfg))

    @classmethod
    def class_rows(cls, state_dict: Dict[str, Tensor], num_classes: int) -> List[ClassRows]:
        """Class-shaped tensors for class surgery (``modeling.fewshot.class_surgery``): the
        classifier's rows (background first; new rows as a fresh layer's) and the
        class-specific box deltas (4 rows per class; class-agnostic deltas have none).

        Args:
            state_dict: the checkpoint's weights (tells class-agnostic deltas apart).
            num_classes: K of the target class list.
        """
        rows = [ClassRows(PREDICTOR + "cls_score.weight", leading_rows=1, std=0.01),
                ClassRows(PREDICTOR + "cls_score.bias", leading_rows=1, init="zeros")]
        bbox = state_dict.get(PREDICTOR + "bbox_pred.weight")
        if bbox is not None and bbox.shape[0] != 4:
            rows += [ClassRows(PREDICTOR + "bbox_pred.weight", rows_per_class=4, std=0.001),
                     ClassRows(PREDICTOR + "bbox_pred.bias", rows_per_class=4, init="zeros")]
        return rows

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batch: List[dict]) -> Union[Dict[str, Tensor], List[Dict[str, Tensor]]]:
        """
        Args:
            batch: per image {"image": [3, H, W] 0-255 in INPUT.FORMAT order (resized),
                "height", "width" (original size), "image_id",
                "instances": {"gt_boxes": [M, 4] XYXY resized frame, "gt_labels": [M] 1..K}
                (training only)}.
        Returns:
            training: {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"} scalars;
            eval: per image {"boxes": float [D, 4] XYXY original pixels, "scores": [D],
                "labels": int64 [D] in 1..K}.
        """
        images = normalize_and_pad([item["image"] for item in batch], self.pixel_mean,
                                   self.pixel_std, self.backbone.size_divisibility)
        targets = None
        if self.training:
            targets = prepare_targets(batch, self.roi_heads.num_classes, self.device)
        features = self.backbone(images.tensors)
        proposals, proposal_losses = self.proposal_generator(images, features, targets)
        detections, detector_losses = self.roi_heads(images, features, proposals, targets)
        if self.training:
            return {**proposal_losses, **detector_losses}
        return rescale_detections(detections, batch, images.image_sizes)
