"""Standard ROI heads: sample proposals, pool, box head, predictor, loss or detections.

Shape glossary: N images, R sampled RoIs (all images), P_i proposals of image i,
M ground-truth boxes of one image, K foreground classes.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.image_list import ImageList

from ..backbone import ShapeSpec
from ..losses import fast_rcnn_losses
from ..registry import ROI_BOX_PREDICTOR_REGISTRY, ROI_HEADS_REGISTRY, lookup
from ..sampling import match_boxes, sampled_indices
from ..traceable import ImageSize
from ..utils import upcast
from .box_head import FastRCNNFCHead
from .fast_rcnn import fast_rcnn_inference
from .poolers import POOLER_TYPES, ROIPooler


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(nn.Module):
    """Box branch of Faster R-CNN.

    Args:
        in_features: feature levels pooled from (e.g. p2..p5), finest first.
        pooler: multi-level RoIAlign.
        box_head: pooled features [R, C, S, S] -> [R, D].
        box_predictor: [R, D] -> (class logits [R, K+1], deltas [R, 4K] or [R, 4]).
        num_classes: K.
        batch_size_per_image, positive_fraction: RoIs sampled per image for the loss.
        iou_threshold: proposals with IoU >= this with a GT box are foreground.
        proposal_append_gt: add the GT boxes to the proposals in training.
        box_reg_weights: (wx, wy, ww, wh) of the box coder.
        smooth_l1_beta: of the box loss (0 = L1).
        score_thresh, nms_thresh, detections_per_image: test-time post-processing.
    """

    def __init__(self, *, in_features: Sequence[str], pooler: ROIPooler, box_head: nn.Module,
                 box_predictor: nn.Module, num_classes: int, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25, iou_threshold: float = 0.5,
                 proposal_append_gt: bool = True,
                 box_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
                 smooth_l1_beta: float = 0.0, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_image: int = 100):
        super().__init__()
        self.in_features = list(in_features)
        self.pooler = pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.matcher = Matcher(iou_threshold, iou_threshold, allow_low_quality_matches=False)
        self.proposal_append_gt = proposal_append_gt
        self.box_coder = BoxCoder(tuple(box_reg_weights))
        self.smooth_l1_beta = smooth_l1_beta
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_image = detections_per_image

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> "StandardROIHeads":
        r, h = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
        if r.NUM_CLASSES < 1:
            raise ValueError(f"MODEL.ROI_HEADS.NUM_CLASSES must be set (>= 1) before the model "
                             f"is built, got {r.NUM_CLASSES}")
        in_features = list(r.IN_FEATURES)
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(f"MODEL.ROI_HEADS.IN_FEATURES {missing} are not backbone outputs "
                             f"{list(input_shape)}")
        if h.POOLER_TYPE not in POOLER_TYPES:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.POOLER_TYPE must be one of "
                             f"{list(POOLER_TYPES)}, got {h.POOLER_TYPE!r}")
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"MODEL.ROI_HEADS.IN_FEATURES {in_features} must share one channel "
                             f"count, got {sorted(channels)}")
        pooler = ROIPooler(output_size=h.POOLER_RESOLUTION,
                           strides=[input_shape[f].stride for f in in_features],
                           sampling_ratio=h.POOLER_SAMPLING_RATIO,
                           aligned=POOLER_TYPES[h.POOLER_TYPE],
                           canonical_box_size=h.POOLER_CANONICAL_BOX_SIZE)
        box_head = FastRCNNFCHead(input_size=channels.pop() * h.POOLER_RESOLUTION ** 2,
                                  num_fc=h.NUM_FC, fc_dim=h.FC_DIM)
        predictor_cls = lookup(ROI_BOX_PREDICTOR_REGISTRY, h.PREDICTOR,
                               "MODEL.ROI_BOX_HEAD.PREDICTOR")
        return cls(in_features=in_features, pooler=pooler, box_head=box_head,
                   box_predictor=predictor_cls.from_config(cfg, box_head.output_size),
                   num_classes=r.NUM_CLASSES, batch_size_per_image=r.BATCH_SIZE_PER_IMAGE,
                   positive_fraction=r.POSITIVE_FRACTION, iou_threshold=r.IOU_THRESHOLD,
                   proposal_append_gt=r.PROPOSAL_APPEND_GT, box_reg_weights=h.BBOX_REG_WEIGHTS,
                   smooth_l1_beta=h.SMOOTH_L1_BETA, score_thresh=r.SCORE_THRESH_TEST,
                   nms_thresh=r.NMS_THRESH_TEST,
                   detections_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)

    def forward(self, images: ImageList, features: Dict[str, Tensor], proposals: List[Tensor],
                targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        """
        Args:
            images: the padded batch; ``image_sizes`` is the frame of proposals and boxes.
            features: backbone outputs containing ``in_features``.
            proposals: per image float [P_i, 4] XYXY.
            targets: training only, per image {"gt_boxes": [M, 4], "gt_labels": [M] 1..K}.
        Returns:
            training: ([], {"loss_cls", "loss_box_reg"});
            eval: (per image {"boxes" [D, 4] in the resized frame, "scores", "labels"}, {}).
        """
        if self.training:
            if targets is None:
                raise ValueError("StandardROIHeads in training mode needs targets")
            proposals, gt_labels, gt_deltas = self.label_and_sample_proposals(proposals, targets)
        class_logits, deltas = self.predict(features, proposals)
        if self.training:
            return [], fast_rcnn_losses(class_logits, deltas, gt_labels, gt_deltas,
                                        smooth_l1_beta=self.smooth_l1_beta)
        return self.postprocess(class_logits, deltas, proposals, images.image_sizes), {}

    def box_features(self, features: Dict[str, Tensor], boxes: List[Tensor],
                     stop: Optional[int] = None) -> Tensor:
        """Pooled, then box-head features of per-image boxes [R_i, 4]: float [R, D]
        (after the head's first ``stop`` layers when given)."""
        return self.box_head(self.pooler([features[f] for f in self.in_features], boxes),
                             stop=stop)

    def predict_boxes(self, box_features: Tensor) -> Tuple[Tensor, Tensor]:
        """The predictor on box features [R, D].

        Returns:
            (class logits float [R, K+1], deltas float [R, 4K] or [R, 4]), float32 for
            decoding under autocast.
        """
        class_logits, deltas = self.box_predictor(box_features)
        return upcast(class_logits), upcast(deltas)

    def predict(self, features: Dict[str, Tensor], proposals: List[Tensor]
                ) -> Tuple[Tensor, Tensor]:
        """Raw predictor outputs for the given boxes (``box_features`` + ``predict_boxes``)."""
        return self.predict_boxes(self.box_features(features, proposals))

    def postprocess(self, class_logits: Tensor, deltas: Tensor, proposals: List[Tensor],
                    image_sizes: List[ImageSize]) -> List[Dict[str, Tensor]]:
        """Detections of every image in the proposals' frame (``fast_rcnn_inference``):
        {"boxes" [D, 4], "scores" [D], "labels" [D] in 1..K}."""
        return fast_rcnn_inference(
            class_logits, deltas, proposals, image_sizes, box_coder=self.box_coder,
            score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
            topk_per_image=self.detections_per_image)

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Tensor],
                                   targets: List[Dict[str, Tensor]],
                                   num_samples: Optional[int] = None
                                   ) -> Tuple[List[Tensor], Tensor, Tensor]:
        """Sample RoIs per image and give them class labels and regression targets.

        ``num_samples``: RoIs per image (default ``batch_size_per_image``; the RoI-feature
        cache of ``engine.roi_cache`` keeps a larger pool to sample from).

        Returns:
            (per image sampled RoIs float [R_i, 4]; int64 [R] labels in 0..K;
             float [R, 4] deltas, zero for background RoIs)
        """
        sampled_rois, all_labels, all_deltas = [], [], []
        for boxes, target in zip(proposals, targets):
            gt_boxes, gt_classes = target["gt_boxes"], target["gt_labels"]
            if self.proposal_append_gt:
                boxes = torch.cat([boxes, gt_boxes.to(boxes.dtype)])
            labels = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
            if len(gt_boxes) and len(boxes):
                matched = match_boxes(gt_boxes, boxes, self.matcher)
                labels = torch.where(matched >= 0, gt_classes[matched.clamp(min=0)], labels)
            idx, labels = sampled_indices(labels, num_samples or self.batch_size_per_image,
                                          self.positive_fraction)
            rois = boxes[idx]
            deltas = torch.zeros_like(rois)
            fg = torch.nonzero(labels > 0).squeeze(1)
            if len(fg):
                deltas[fg] = self.box_coder.encode_single(gt_boxes[matched[idx[fg]]], rois[fg])
            sampled_rois.append(rois)
            all_labels.append(labels)
            all_deltas.append(deltas)
        return sampled_rois, torch.cat(all_labels), torch.cat(all_deltas)
