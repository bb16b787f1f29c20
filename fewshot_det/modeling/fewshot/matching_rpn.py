"""Support-matching RPN: the plain RPN's candidates ranked by how well each candidate box's
finest-level features match the support, for K classes at once, with nothing learned.

Shape glossary: N images, K class columns, L RPN levels, R anchors (all levels), P
candidates of one image, C channels of the matching feature, s bins, E = C*s*s, M crops.

1. The RPN head (a class-agnostic prior, trained on every box as a plain RPN) scores and
   regresses every anchor; the ``pre_nms_topk`` best anchors of each level are the
   candidates.
2. Each candidate's decoded box is RoIAligned to s x s bins on the matching feature and
   flattened to a unit vector ``v``. A support prototype is the same vector for the
   support box in its crop (one backbone, shared with the query), the mean over shots.
   The matching feature is the finest FPN level (P3 in the quick start): there an object
   is 3-16 cells wide and box-aligned features carry class identity (nearest prototype
   0.47-0.49 among 12 classes, chance 0.08). At the objects' natural levels, which the
   anchor-window correlation of ``AttentionRPN`` sees, they carry almost none (0.16), and
   no scorer trained on those learned to pick the support's class (BENCHMARKS.md).
   Box-aligned also means aligned by the RPN's own regression, not an anchor window.
3. Column k scores a candidate ``prior logit + weight * cos(v, prototype_k)``; columns are
   merged by their maximum (proposals for all K classes at once).
4. NMS keeps the box of best prior in each cluster and ranks clusters by the merged score
   (quality-guided, ``find_top_proposals``): the support decides which objects come first,
   the prior where their boxes lie.

Nothing here is trained: in training mode it is the plain RPN (the episodic stage freezes
the RPN anyway), so any plain base model's RPN can be used with supports as it is.

Measured on the synthetic few-shot benchmark (BENCHMARKS.md, session 7; weight 5 chosen
on a validation set): it costs no recall at 100 or 1000 proposals (the anchor-window
attention does, in clutter), but what it adds is within the seed spread: dense-scene novel
AR@100 39.1 against 38.4 for the plain RPN and 38.2 with the wrong classes' supports.
4x4 finest-level features separate the classes too weakly to re-rank thousands of
candidates without learning. It is an option, not the shipped configs' choice.
"""
from __future__ import annotations

from itertools import accumulate
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import boxes as box_ops
from torchvision.ops import roi_align

from ..backbone import ShapeSpec
from ..proposal_generator.proposals import find_top_proposals
from ..proposal_generator.rpn import RPN, flatten_predictions
from ..registry import PROPOSAL_GENERATOR_REGISTRY
from ..utils import upcast
from .prototypes import Prototypes


def box_vectors(feature: Tensor, boxes: Tensor, stride: int, bins: int) -> Tensor:
    """Unit-length RoIAligned features of boxes on one image.

    Args:
        feature: float [1, C, H, W]; boxes: float [P, 4] XYXY in input pixels.
        stride: of ``feature`` (input pixels per cell).
    Returns:
        float [P, C*bins*bins], rows of L2 norm 1.
    """
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1).to(feature.dtype)
    v = roi_align(feature, rois, (bins, bins), spatial_scale=1.0 / stride, sampling_ratio=2,
                  aligned=True)
    return F.normalize(upcast(v.flatten(1)), dim=1)


@PROPOSAL_GENERATOR_REGISTRY.register()
class SupportMatchingRPN(RPN):
    """Support-conditioned RPN by training-free box-feature matching (module doc).

    Args:
        match_feature: backbone output the boxes are matched on (MODEL.RPN.MATCH_FEATURE).
        match_shape: that output's channels and stride.
        match_bins: s (MODEL.RPN.MATCH_BINS).
        match_weight: logit added per unit of cosine similarity (MODEL.RPN.MATCH_WEIGHT).
        kwargs: as ``RPN``.
    """

    def __init__(self, *, match_feature: str, match_shape: ShapeSpec, match_bins: int = 4,
                 match_weight: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        if match_bins < 1:
            raise ValueError(f"MODEL.RPN.MATCH_BINS must be >= 1, got {match_bins}")
        if match_weight < 0:
            raise ValueError(f"MODEL.RPN.MATCH_WEIGHT must be >= 0, got {match_weight}")
        self.match_feature = match_feature
        self.match_channels = match_shape.channels
        self.match_stride = match_shape.stride
        self.match_bins = match_bins
        self.match_weight = match_weight

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> "SupportMatchingRPN":
        name = cfg.MODEL.RPN.MATCH_FEATURE
        if name not in input_shape:
            raise ValueError(f"MODEL.RPN.MATCH_FEATURE {name!r} is not a backbone output "
                             f"{list(input_shape)}")
        return cls(match_feature=name, match_shape=input_shape[name],
                   match_bins=cfg.MODEL.RPN.MATCH_BINS, match_weight=cfg.MODEL.RPN.MATCH_WEIGHT,
                   **cls.arguments_from_config(cfg, input_shape))

    @property
    def prototype_dim(self) -> int:
        """E = C * s * s, the length of one prototype."""
        return self.match_channels * self.match_bins ** 2

    def support_features(self, features: Dict[str, Tensor], boxes: List[Tensor]) -> Tensor:
        """Prototypes of individual support crops.

        Args:
            features: backbone outputs of the crops.
            boxes: per crop float [1, 4] XYXY in the crop's pixels.
        Returns:
            float [M, L, E]: the same unit vector for every level.
        """
        feature = features[self.match_feature]
        rows = [box_vectors(feature[i:i + 1], b.to(feature.dtype), self.match_stride,
                            self.match_bins) for i, b in enumerate(boxes)]
        return torch.cat(rows)[:, None].expand(-1, len(self.in_features), -1)

    def forward(self, images: ImageList, features: Dict[str, Tensor], prototypes: Prototypes,
                targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Tuple[List[Tensor], Dict[str, Tensor]]:
        """
        Args:
            images, features, targets: as ``RPN``.
            prototypes: K columns per image (``rpn`` [N, K, L, E], ``valid``); not used in
                training.
        Returns:
            (per image proposals float [P, 4], by decreasing merged score; the plain RPN
             losses in training, else {})
        """
        if self.training:
            return super().forward(images, features, targets)
        feats = [features[f] for f in self.in_features]
        prior, deltas = flatten_predictions(*self.head(feats))
        prior, deltas = upcast(prior), upcast(deltas)  # N, R / N, R, 4
        anchors = self.anchor_generator([tuple(f.shape[-2:]) for f in feats],
                                        tuple(images.tensors.shape[-2:]), prior.device)
        per_level = [len(a) for a in anchors]
        n = prior.shape[0]
        boxes = self.box_coder.decode_single(deltas.reshape(-1, 4),
                                             torch.cat(anchors).repeat(n, 1)).view(n, -1, 4)
        merged = torch.stack([
            self.merged_scores(features[self.match_feature][i:i + 1], boxes[i], prior[i],
                               per_level, images.image_sizes[i], prototypes, i)
            for i in range(n)])
        proposals = find_top_proposals(
            boxes, merged, per_level, images.image_sizes, pre_nms_topk=self.pre_nms_topk[1],
            post_nms_topk=self.post_nms_topk[1], nms_thresh=self.nms_thresh,
            min_size=self.min_size, quality=prior)
        return proposals, {}

    def merged_scores(self, feature: Tensor, boxes: Tensor, prior: Tensor,
                      per_level: List[int], image_size: Tuple[int, int],
                      prototypes: Prototypes, i: int) -> Tensor:
        """Steps 1-3 of the module doc for image ``i``.

        Args:
            feature: [1, C, H, W]; boxes: [R, 4] decoded; prior: [R] logits.
        Returns:
            float [R]: the best column's score for candidates, -inf for other anchors.
        """
        starts = [0] + list(accumulate(per_level))[:-1]
        candidates = torch.cat([  # P: the top k of every level, as find_top_proposals takes
            level.topk(min(self.pre_nms_topk[1], len(level))).indices + start
            for level, start in zip(prior.split(per_level), starts)])
        v = box_vectors(feature, box_ops.clip_boxes_to_image(boxes[candidates], image_size),
                        self.match_stride, self.match_bins)  # P, E
        protos = F.normalize(upcast(prototypes.rpn[i, :, 0]), dim=1)  # K, E
        valid = prototypes.valid[i]
        best = (v @ protos[valid].T).max(dim=1).values if bool(valid.any()) \
            else v.new_zeros(len(v))
        merged = prior.new_full(prior.shape, float("-inf"))
        merged[candidates] = prior[candidates] + self.match_weight * best
        return merged
