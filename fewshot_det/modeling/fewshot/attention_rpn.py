"""Attention RPN: objectness conditioned on the support, for K classes at once.

Shape glossary: N images, K class columns, L levels, A anchors per cell, C channels,
H/W feature height/width, R = sum over levels of H*W*A anchors, M support crops.

Design (Attention-RPN of Fan et al. 2020, generalised from its 2-way episodes to K columns):

1. Query and support share the RPN's 3x3 conv + ReLU (the siamese branch): ``t_l`` is the
   query's hidden feature of level l, ``q_{k,l}`` the support prototype of class k at the
   same level (the hidden feature averaged inside the support box, then RMS-normalised).
2. Depth-wise (1x1-kernel) correlation = channel attention: ``t_l * q_{k,l}``, then a 1x1
   conv (``attn_logits``) gives A logits per cell for class k. The conv is linear, so it is
   folded into per-class weights ``W * q_{k,l}`` and evaluated as one batched matrix
   product (no [N, K, C, H, W] tensor).
3. Objectness of column k = ``cls_logits(t)`` (a shared prior) + the attention logits of
   step 2. The prior is also trained class-agnostically on every GT box (all classes of the
   query), as a plain RPN; learned from scratch, the correlation alone gave half the plain
   RPN's recall. Box deltas are class-agnostic (from ``t_l``), trained on every GT box.
4. Proposals are merged across classes: an anchor's score is its best column's logit, then
   the usual per-level top-k, NMS and per-image top-k.
5. Per-column loss: an anchor is positive for column k if it matches (IoU >= 0.7, or best
   anchor) a GT box of column k's class, negative below 0.3 with those boxes. Each
   (image, column) samples ``batch_size_per_image`` anchors, and every anchor matching an
   object of another class is added as a negative: the attention must tell the support's
   class from other objects. Sampled at random, those hard negatives were a handful among
   background anchors the prior already rejects, and the correlation weights barely moved
   from their initialisation.

Parameter names of the plain RPN are kept (``head.conv``, ``head.cls_logits``,
``head.bbox_pred``), so a plain RPN checkpoint initialises all but ``attn_logits``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import roi_align

from ..losses import rpn_losses
from ..proposal_generator.proposals import find_top_proposals
from ..proposal_generator.rpn import RPN, flatten_predictions
from ..registry import PROPOSAL_GENERATOR_REGISTRY
from ..sampling import match_boxes, subsample_labels
from ..utils import upcast
from .prototypes import Prototypes

SUPPORT_POOL = 4  # support boxes are average-pooled from a 4x4 RoIAlign grid


def rms_normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """``x`` divided by the root mean square of its last dimension."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


@PROPOSAL_GENERATOR_REGISTRY.register()
class AttentionRPN(RPN):
    """Support-conditioned RPN (module doc). Same constructor and config as ``RPN``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        cls_logits = self.head.cls_logits
        self.attn_logits = nn.Conv2d(cls_logits.in_channels, cls_logits.out_channels, 1)
        nn.init.normal_(self.attn_logits.weight, std=0.01)
        nn.init.constant_(self.attn_logits.bias, 0)

    def hidden(self, features: List[Tensor]) -> List[Tensor]:
        """The shared 3x3 conv + ReLU of every level: per level [N, C, H, W]."""
        return [F.relu(self.head.conv(x)) for x in features]

    def support_features(self, features: Dict[str, Tensor], boxes: List[Tensor]) -> Tensor:
        """RPN prototypes of individual support crops.

        Args:
            features: backbone outputs of the crops (containing ``in_features``).
            boxes: per crop float [1, 4] XYXY in the crop's pixels.
        Returns:
            float [M, L, C].
        """
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1)
                          for i, b in enumerate(boxes)])
        pooled = []
        strides = self.anchor_generator.strides
        for t, stride in zip(self.hidden([features[f] for f in self.in_features]), strides):
            p = roi_align(t, rois.to(t.dtype), (SUPPORT_POOL, SUPPORT_POOL),
                          spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)
            pooled.append(p.mean(dim=(2, 3)))  # M, C
        return torch.stack(pooled, dim=1)

    def class_logits(self, hidden: List[Tensor], prototypes: Tensor) -> List[Tensor]:
        """Per level attention logits of every column (steps 1-2 of the module doc).

        Args:
            hidden: per level [N, C, H, W].
            prototypes: float [N, K, L, C].
        Returns:
            per level [N, K*A, H, W] (column-major: index k*A + a).
        """
        w = self.attn_logits.weight.flatten(1)  # A, C
        b = self.attn_logits.bias  # A
        q = rms_normalize(prototypes.to(w.dtype))
        out = []
        for level, t in enumerate(hidden):
            n, c, h, wd = t.shape
            weights = (q[:, :, level, None, :] * w[None, None]).flatten(1, 2)  # N, K*A, C
            logits = torch.bmm(weights.to(t.dtype), t.reshape(n, c, h * wd))  # N, K*A, H*W
            logits = logits + b.repeat(q.shape[1])[None, :, None]
            out.append(logits.view(n, -1, h, wd))
        return out

    def forward(self, images: ImageList, features: Dict[str, Tensor], prototypes: Prototypes,
                targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Tuple[List[Tensor], Dict[str, Tensor]]:
        """
        Args:
            images: padded query batch.
            features: backbone outputs of the queries.
            prototypes: K columns per image (``rpn`` [N, K, L, C], ``valid``).
            targets: training only, per image {"gt_boxes" [M, 4], "gt_labels" [M]} with
                DATASET class ids; a box is positive for the columns of its class.
        Returns:
            (per image proposals float [P, 4], sorted by merged objectness;
             {"loss_rpn_cls", "loss_rpn_loc"} in training, else {})
        """
        feats = [features[f] for f in self.in_features]
        hidden = self.hidden(feats)
        num_cols = prototypes.num_columns
        per_level = self.class_logits(hidden, prototypes.rpn)
        prior, deltas = flatten_predictions([self.head.cls_logits(t) for t in hidden],
                                            [self.head.bbox_pred(t) for t in hidden])
        # N*K, R in the anchor order of flatten_predictions (cell-major, anchor-minor)
        attn = torch.cat([x.view(x.shape[0] * num_cols, -1, *x.shape[-2:])
                          .permute(0, 2, 3, 1).flatten(1) for x in per_level], dim=1)
        n = deltas.shape[0]
        prior, deltas = upcast(prior), upcast(deltas)  # N, R / N, R, 4
        logits = prior[:, None, :] + upcast(attn).view(n, num_cols, -1)  # N, K, R
        anchors = self.anchor_generator([tuple(f.shape[-2:]) for f in feats],
                                        tuple(images.tensors.shape[-2:]), logits.device)
        num_anchors_per_level = [len(a) for a in anchors]
        anchors = torch.cat(anchors)
        merged = logits.detach().masked_fill(~prototypes.valid[:, :, None], float("-inf"))
        merged = merged.max(dim=1).values  # N, R
        boxes = self.box_coder.decode_single(
            deltas.detach().reshape(-1, 4), anchors.repeat(n, 1)).view(n, -1, 4)
        mode = int(not self.training)
        proposals = find_top_proposals(
            boxes, merged, num_anchors_per_level, images.image_sizes,
            pre_nms_topk=self.pre_nms_topk[mode], post_nms_topk=self.post_nms_topk[mode],
            nms_thresh=self.nms_thresh, min_size=self.min_size)
        if not self.training:
            return proposals, {}
        if targets is None:
            raise ValueError("AttentionRPN in training mode needs targets")
        losses = self.losses(anchors, logits, prior, deltas, targets, prototypes.class_ids)
        return proposals, {k: v * self.loss_weight for k, v in losses.items()}

    def losses(self, anchors: Tensor, logits: Tensor, prior: Tensor, deltas: Tensor,
               targets: List[Dict[str, Tensor]], class_ids: Tensor) -> Dict[str, Tensor]:
        """Per-column objectness BCE; class-agnostic prior BCE and smooth-L1 on all boxes.

        Args:
            anchors: [R, 4]; logits: [N, K, R]; prior: [N, R]; deltas: [N, R, 4];
            class_ids: int64 [N, K].
        Returns:
            {"loss_rpn_cls" (columns), "loss_rpn_prior", "loss_rpn_loc"}
        """
        col_labels = self.label_columns(anchors, targets, class_ids)  # N, K, R
        valid = col_labels >= 0
        loss_cls = F.binary_cross_entropy_with_logits(
            logits[valid], col_labels[valid].to(logits.dtype), reduction="sum")
        gt_labels, gt_deltas = self.label_and_sample_anchors(anchors, targets)  # N, R
        agnostic = rpn_losses(prior, deltas, gt_labels, gt_deltas,
                              smooth_l1_beta=self.smooth_l1_beta)
        return {"loss_rpn_cls": loss_cls / valid.sum().clamp(min=1),
                "loss_rpn_prior": agnostic["loss_rpn_cls"],
                "loss_rpn_loc": agnostic["loss_rpn_loc"]}

    @torch.no_grad()
    def label_columns(self, anchors: Tensor, targets: List[Dict[str, Tensor]],
                      class_ids: Tensor) -> Tensor:
        """Sampled anchor labels of every (image, column): 1, 0 or -1 (not sampled).

        Args:
            class_ids: int64 [N, K], the dataset class of every column.
        Returns:
            int64 [N, K, R].
        """
        out = torch.full(tuple(class_ids.shape) + (len(anchors),), -1, dtype=torch.int64,
                         device=anchors.device)
        for i, target in enumerate(targets):
            for k, class_id in enumerate(class_ids[i].tolist()):
                gt = target["gt_boxes"][target["gt_labels"] == class_id]
                labels = torch.zeros(len(anchors), dtype=torch.int64, device=anchors.device)
                if len(gt):
                    matched = match_boxes(gt, anchors, self.matcher)
                    labels[matched >= 0] = 1
                    labels[matched == Matcher.BETWEEN_THRESHOLDS] = -1
                sampled = subsample_labels(labels, self.batch_size_per_image,
                                           self.positive_fraction)
                others = target["gt_boxes"][target["gt_labels"] != class_id]
                if len(others):  # hard negatives: objects of other classes
                    hard = (match_boxes(others, anchors, self.matcher) >= 0) & (labels == 0)
                    sampled[hard] = 0
                out[i, k] = sampled
        return out
