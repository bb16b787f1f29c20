"""Faster R-CNN: backbone -> proposal generator -> ROI heads, behind ``model(batch)``.

Shape glossary: N images, M GT boxes of one image, P proposals of one image, R RoIs (all
images), D box-head width, K classes, D_i detections of image i.

The stages, each a method that the engine, export and few-shot code call instead of
rebuilding a piece of the forward pass (docs/ARCHITECTURE.md):

    batch --preprocess--> ImageList (normalised, padded)
          --features--> {level: [N, C, H_l, W_l]}
          --proposals--> per image [P, 4] (+ RPN losses in training)
          --box_features(features, boxes)--> [R, D]
          --predict_boxes--> class logits [R, K+1], deltas [R, 4K]
          --postprocess--> per image {"boxes", "scores", "labels"} (resized frame)
          --calibration (optional)--> the same, new classes rescored
          --rescale_detections--> original pixels
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from ..backbone import FPN, Backbone
from ..fewshot.calibration import PrototypeCalibration
from ..fewshot.surgery import PREDICTOR, ClassRows
from ..registry import (BACKBONE_REGISTRY, META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                        ROI_HEADS_REGISTRY, lookup)
from ..preprocess import normalize_and_pad, prepare_targets, rescale_detections
from ..roi_heads.fast_rcnn import CosineSimOutputLayers
from .capabilities import Detector, Detections


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(Detector):
    """Two-stage detector (Faster R-CNN with the default components).

    Args:
        backbone: images -> named features, with ``output_shape()``.
        proposal_generator: (images, features, targets) -> (proposals, losses).
        roi_heads: (images, features, proposals, targets) -> (detections, losses).
        pixel_mean, pixel_std: per channel, 0-255 scale, in the input's channel order.
        calibration: rescores the detections of the classes it has prototypes of
            (``PrototypeCalibration``, FEWSHOT.CALIBRATION), or None.
    """

    def __init__(self, *, backbone: Backbone, proposal_generator: nn.Module,
                 roi_heads: nn.Module, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 calibration: Optional[nn.Module] = None):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.calibration = calibration
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
        parts = cls.components_from_config(cfg)
        if cfg.FEWSHOT.CALIBRATION.WEIGHTS:
            parts["calibration"] = PrototypeCalibration.from_config(
                cfg, parts["roi_heads"].num_classes)
        return cls(**parts)

    @classmethod
    def class_rows(cls, state_dict: Dict[str, Tensor], num_classes: int) -> List[ClassRows]:
        """Class-shaped tensors for class surgery (``modeling.fewshot.class_surgery``): the
        classifier's rows (background first; new rows as a fresh layer's) and the
        class-specific box deltas (4 rows per class; class-agnostic deltas have none), and
        the calibration's prototypes when it has them (new rows zero: not calibrated).

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
        if "calibration.prototypes" in state_dict:
            rows.append(ClassRows("calibration.prototypes", leading_rows=1, init="zeros"))
        return rows

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        """K, the classes of the box predictor's rows."""
        return self.roi_heads.num_classes

    # ------------------------------------------------------------------ capabilities
    def body(self) -> nn.Module:
        return self.backbone.body if isinstance(self.backbone, FPN) else self.backbone

    def detectable_class_ids(self) -> List[int]:
        return list(range(1, self.num_classes + 1))

    def cosine_classifier(self) -> Optional[nn.Module]:
        predictor = self.roi_heads.box_predictor
        return predictor if isinstance(predictor, CosineSimOutputLayers) else None

    def caches_roi_features(self) -> bool:
        return True

    def trains_heads_on_crops(self) -> bool:
        return isinstance(self.backbone, FPN)

    # ------------------------------------------------------------------ stages
    def preprocess(self, batch: List[dict]) -> ImageList:
        """Normalised images padded to one batch (``preprocess.normalize_and_pad``)."""
        return normalize_and_pad([item["image"] for item in batch], self.pixel_mean,
                                 self.pixel_std, self.backbone.size_divisibility)

    def features(self, images: ImageList) -> Dict[str, Tensor]:
        """Backbone outputs of the padded batch."""
        return self.backbone(images.tensors)

    def proposals(self, images: ImageList, features: Dict[str, Tensor],
                  targets: Optional[List[Dict[str, Tensor]]] = None, *,
                  training_topk: Optional[bool] = None) -> Tuple[List[Tensor], Dict[str, Tensor]]:
        """RPN proposals, per image float [P, 4] XYXY in the resized frame, best first, and
        the RPN losses when ``targets`` are given.

        Args:
            training_topk: use the training (True) or test (False) top-k; default: the
                module's mode.
        """
        return self.proposal_generator(images, features, targets, training_topk=training_topk)

    def sample_rois(self, proposals: List[Tensor], targets: List[Dict[str, Tensor]],
                    num_samples: Optional[int] = None) -> Tuple[List[Tensor], Tensor, Tensor]:
        """The RoIs the box head trains on: proposals + GT boxes, labelled (0..K) and
        sampled, with their regression targets (``StandardROIHeads.label_and_sample_proposals``)."""
        return self.roi_heads.label_and_sample_proposals(proposals, targets, num_samples)

    def box_features(self, features: Dict[str, Tensor], boxes: List[Tensor],
                     stop: Optional[int] = None) -> Tensor:
        """Box-head features of per-image boxes [R_i, 4] (resized frame): float [R, D];
        ``stop``: only the head's first ``stop`` layers."""
        return self.roi_heads.box_features(features, boxes, stop)

    def box_head_from(self, x: Tensor, start: int) -> Tensor:
        """The box head's layers from ``start`` on ``x`` [R, D], layer ``start - 1``'s
        output (``box_features(..., stop=start)``): float [R, D]."""
        return self.roi_heads.box_head(x, start=start)

    def predict_boxes(self, box_features: Tensor) -> Tuple[Tensor, Tensor]:
        """(class logits float [R, K+1], deltas float [R, 4K] or [R, 4]) of box features."""
        return self.roi_heads.predict_boxes(box_features)

    def postprocess(self, class_logits: Tensor, deltas: Tensor, proposals: List[Tensor],
                    images: ImageList) -> Detections:
        """Detections in the resized frame (``fast_rcnn_inference``)."""
        return self.roi_heads.postprocess(class_logits, deltas, proposals, images.image_sizes)

    def inference(self, images: ImageList, batch: Optional[List[dict]] = None) -> Detections:
        """Detections of a preprocessed batch, in the resized frame (eval mode). ``batch``
        is the model input (siamese: may carry supports); plain R-CNN does not need it."""
        features = self.features(images)
        proposals, _ = self.proposals(images, features)
        logits, deltas = self.predict_boxes(self.box_features(features, proposals))
        return self.postprocess(logits, deltas, proposals, images)

    # ------------------------------------------------------------------ crop warm-up
    def crop_class_logits(self, body_features: Dict[str, Tensor], boxes: Tensor) -> Tensor:
        """(K+1)-way class logits of one box per crop, from the body's features of the
        crops (``PRETRAIN.HEADS``): float [B, K+1] for boxes float [B, 4]."""
        features = self.backbone.from_bottom_up(body_features)
        return self.predict_boxes(self.box_features(features, list(boxes.unsqueeze(1))))[0]

    def crop_head_parameters(self) -> List[nn.Parameter]:
        """What ``crop_class_logits`` trains besides the body: the FPN, the box head and the
        box predictor (the RPN and the box regressor see no crops, so get no gradient)."""
        modules = [self.backbone.fpn, self.roi_heads.box_head, self.roi_heads.box_predictor]
        return [p for m in modules for p in m.parameters() if p.requires_grad]

    def forward(self, batch: List[dict]) -> Union[Dict[str, Tensor], Detections]:
        """
        Args:
            batch: per image {"image": [3, H, W] 0-255 in INPUT.FORMAT order (resized),
                "height", "width" (original size), "image_id",
                "instances": {"gt_boxes": [M, 4] XYXY resized frame, "gt_labels": [M] 1..K}
                (training only)}.
        Returns:
            training: {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"} scalars;
            eval: per image {"boxes": float [D_i, 4] XYXY original pixels, "scores": [D_i],
                "labels": int64 [D_i] in 1..K}.
        """
        images = self.preprocess(batch)
        if not self.training:
            detections = self.inference(images, batch)
            if self.calibration is not None:  # the batch's images are in the resized frame
                detections = self.calibration([b["image"] for b in batch], detections)
            return rescale_detections(detections, batch, images.image_sizes)
        targets = prepare_targets(batch, self.num_classes, self.device)
        features = self.features(images)
        proposals, proposal_losses = self.proposals(images, features, targets)
        _, detector_losses = self.roi_heads(images, features, proposals, targets)
        return {**proposal_losses, **detector_losses}
