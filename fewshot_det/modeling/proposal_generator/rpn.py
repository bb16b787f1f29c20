"""Region Proposal Network: objectness and box deltas for every anchor, then proposals.

Shape glossary: N images, L levels, A anchors per cell, H/W feature height/width,
R = sum over levels of H*W*A anchors, M ground-truth boxes of one image.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.image_list import ImageList

from ..backbone import ShapeSpec
from ..losses import rpn_losses
from ..registry import PROPOSAL_GENERATOR_REGISTRY
from ..sampling import match_boxes, subsample_labels
from ..utils import upcast
from .anchor_generator import AnchorGenerator
from .proposals import find_top_proposals


class RPNHead(nn.Module):
    """A shared 3x3 conv + ReLU, then 1x1 convs for A objectness logits and A*4 deltas.

    Parameter names are torchvision's (``conv``, ``cls_logits``, ``bbox_pred``).
    """

    def __init__(self, *, in_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """
        Args:
            features: per level, float [N, C, H, W].
        Returns:
            (per level objectness logits [N, A, H, W], per level deltas [N, A*4, H, W])
        """
        logits, deltas = [], []
        for x in features:
            t = F.relu_(self.conv(x))
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def flatten_predictions(logits: List[Tensor], deltas: List[Tensor]) -> Tuple[Tensor, Tensor]:
    """Per-level head outputs -> anchor-ordered tensors (cell-major, anchor-minor).

    Returns:
        (float [N, R] logits, float [N, R, 4] deltas)
    """
    flat_logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]  # N, H*W*A
    flat_deltas = []
    for x in deltas:
        n, _, h, w = x.shape
        x = x.view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2)  # N, H, W, A, 4
        flat_deltas.append(x.reshape(n, -1, 4))
    return torch.cat(flat_logits, dim=1), torch.cat(flat_deltas, dim=1)


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Proposals from anchors; training also returns the RPN losses.

    Args:
        in_features: feature levels used (e.g. p2..p6), finest first.
        head: module mapping a list of features to (logits, deltas) lists.
        anchor_generator: gives the anchors of every level.
        box_reg_weights: (wx, wy, ww, wh) of the anchor box coder.
        iou_thresholds: (low, high): anchors with max IoU < low are negative, >= high
            positive; each GT box's best anchors are positive too.
        batch_size_per_image, positive_fraction: anchors sampled for the loss.
        pre_nms_topk, post_nms_topk: (train, test) top-k per level before NMS and per
            image after NMS.
        nms_thresh: IoU threshold of the NMS (done per level).
        min_size: proposals with a side below this (input pixels) are removed.
        score_thresh_test: with the test top-k, proposals of objectness probability below
            this are removed before the NMS (0: none).
        smooth_l1_beta: of the box loss (0 = L1).
        loss_weight: multiplies both RPN losses.
    """

    def __init__(self, *, in_features: Sequence[str], head: nn.Module,
                 anchor_generator: AnchorGenerator,
                 box_reg_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 iou_thresholds: Sequence[float] = (0.3, 0.7), batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5, pre_nms_topk: Tuple[int, int] = (2000, 1000),
                 post_nms_topk: Tuple[int, int] = (2000, 1000), nms_thresh: float = 0.7,
                 min_size: float = 1e-3, score_thresh_test: float = 0.0,
                 smooth_l1_beta: float = 1.0 / 9, loss_weight: float = 1.0):
        super().__init__()
        self.in_features = list(in_features)
        self.head = head
        self.anchor_generator = anchor_generator
        self.box_coder = BoxCoder(tuple(box_reg_weights))
        low, high = iou_thresholds
        self.matcher = Matcher(high, low, allow_low_quality_matches=True)
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_topk = tuple(pre_nms_topk)
        self.post_nms_topk = tuple(post_nms_topk)
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        self.score_thresh_test = score_thresh_test
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weight = loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> "RPN":
        return cls(**cls.arguments_from_config(cfg, input_shape))

    @staticmethod
    def arguments_from_config(cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        """The constructor's keyword arguments from MODEL.RPN / MODEL.ANCHOR_GENERATOR."""
        r, a = cfg.MODEL.RPN, cfg.MODEL.ANCHOR_GENERATOR
        in_features = list(r.IN_FEATURES)
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(f"MODEL.RPN.IN_FEATURES {missing} are not backbone outputs "
                             f"{list(input_shape)}")
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"MODEL.RPN.IN_FEATURES {in_features} must share one channel "
                             f"count (the RPN head is shared), got {sorted(channels)}")
        anchor_generator = AnchorGenerator(
            sizes=a.SIZES, aspect_ratios=a.ASPECT_RATIOS,
            strides=[input_shape[f].stride for f in in_features],
            stride_from_shape=a.STRIDE_FROM_SHAPE)
        head = RPNHead(in_channels=channels.pop(), num_anchors=anchor_generator.num_anchors)
        return dict(in_features=in_features, head=head, anchor_generator=anchor_generator,
                    box_reg_weights=r.BBOX_REG_WEIGHTS, iou_thresholds=r.IOU_THRESHOLDS,
                    batch_size_per_image=r.BATCH_SIZE_PER_IMAGE,
                    positive_fraction=r.POSITIVE_FRACTION,
                    pre_nms_topk=(r.PRE_NMS_TOPK_TRAIN, r.PRE_NMS_TOPK_TEST),
                    post_nms_topk=(r.POST_NMS_TOPK_TRAIN, r.POST_NMS_TOPK_TEST),
                    nms_thresh=r.NMS_THRESH, min_size=r.MIN_SIZE,
                    score_thresh_test=r.SCORE_THRESH_TEST, smooth_l1_beta=r.SMOOTH_L1_BETA,
                    loss_weight=r.LOSS_WEIGHT)

    def forward(self, images: ImageList, features: Dict[str, Tensor],
                targets: Optional[List[Dict[str, Tensor]]] = None, *,
                training_topk: Optional[bool] = None) -> Tuple[List[Tensor], Dict[str, Tensor]]:
        """
        Args:
            images: padded batch ``tensors`` [N, 3, H, W] and ``image_sizes`` (h, w) each.
            features: backbone outputs, containing ``in_features``.
            targets: per image {"gt_boxes": [M, 4], "gt_labels": [M]}: required in
                training; when given, the losses are computed (and the anchors sampled).
            training_topk: use the training (True) or test (False) top-k; default: the
                module's mode.
        Returns:
            (per image proposals float [P, 4] XYXY in the resized image, sorted by
             decreasing objectness; losses {"loss_rpn_cls", "loss_rpn_loc"} or {})
        """
        feats = [features[f] for f in self.in_features]
        logits, deltas = flatten_predictions(*self.head(feats))  # N, R / N, R, 4
        logits, deltas = upcast(logits), upcast(deltas)  # float32 decoding under autocast
        anchors = self.anchor_generator(feats, images.tensors)
        num_anchors_per_level = [a.shape[0] for a in anchors]  # not len(): traced sizes
        anchors = torch.cat(anchors)  # R, 4
        n = logits.shape[0]
        # Faster R-CNN does not back-propagate through the proposals.
        proposals = self.box_coder.decode_single(
            deltas.detach().reshape(-1, 4), anchors.repeat(n, 1)).view(n, -1, 4)
        mode = int(not (self.training if training_topk is None else training_topk))
        proposals = find_top_proposals(
            proposals, logits.detach(), num_anchors_per_level, images.image_sizes,
            pre_nms_topk=self.pre_nms_topk[mode], post_nms_topk=self.post_nms_topk[mode],
            nms_thresh=self.nms_thresh, min_size=self.min_size,
            score_thresh=self.score_thresh_test if mode == 1 else 0.0)
        if targets is None:
            if self.training:
                raise ValueError("RPN in training mode needs targets")
            return proposals, {}
        gt_labels, gt_deltas = self.label_and_sample_anchors(anchors, targets)
        losses = rpn_losses(logits, deltas, gt_labels, gt_deltas,
                            smooth_l1_beta=self.smooth_l1_beta)
        return proposals, {k: v * self.loss_weight for k, v in losses.items()}

    @torch.no_grad()
    def label_and_sample_anchors(self, anchors: Tensor, targets: List[Dict[str, Tensor]]
                                 ) -> Tuple[Tensor, Tensor]:
        """Sampled anchor labels and the regression targets of the positive ones.

        Args:
            anchors: float [R, 4].
            targets: per image {"gt_boxes": float [M, 4], ...}; M may be 0.
        Returns:
            (int64 [N, R] labels in {1, 0, -1 (not sampled)}, float [N, R, 4] deltas,
             zero where the label is not 1)
        """
        all_labels, all_deltas = [], []
        for target in targets:
            gt_boxes = target["gt_boxes"]
            labels = torch.zeros(len(anchors), dtype=torch.int64, device=anchors.device)
            gt_deltas = torch.zeros_like(anchors)
            if len(gt_boxes):
                matched = match_boxes(gt_boxes, anchors, self.matcher)
                labels[matched >= 0] = 1
                labels[matched == Matcher.BETWEEN_THRESHOLDS] = -1
            labels = subsample_labels(labels, self.batch_size_per_image, self.positive_fraction)
            pos = torch.nonzero(labels == 1).squeeze(1)
            if len(pos):
                gt_deltas[pos] = self.box_coder.encode_single(gt_boxes[matched[pos]], anchors[pos])
            all_labels.append(labels)
            all_deltas.append(gt_deltas)
        return torch.stack(all_labels), torch.stack(all_deltas)
