"""Support-conditioned box head: a (K+1)-way softmax whose class scores come from the support.

Shape glossary: N images, R RoIs (all images), R_i RoIs of image i, D box-head width,
E relation width, M support crops, K class columns of a forward (episode classes in
training, all known classes at inference), K_w classes of the dataset
(MODEL.ROI_HEADS.NUM_CLASSES).

Design (a relation head, so a class given only as support images is detected with no
training, and fine-tuning then has parameters to adapt):

* RoI feature ``x`` (FC head, [D]) and class prototype ``h_k`` (the same FC head on the
  support box, mean over shots) live in one space; a shared projection ``P`` (D -> E)
  maps both to the relation space.
* Logits: column 0 (background) is linear in ``x``; column k is a learned relation score
  ``MLP([P x * P h_k, |P x - P h_k|])`` (FsDetView-style aggregation). A cosine score was
  tried first: features learned from scratch start nearly parallel (ReLU outputs), cosines
  saturate at 1 and the class prototypes collapsed onto one direction; the relation MLP
  has no such fixed point.
* Box deltas are class-specific and conditioned on the prototype: for column k,
  ``bbox_pred(x * (1 + tanh(G h_k)))``; ``G`` starts at zero (class-agnostic regression at
  first); the loss reads only the column of a foreground RoI's class (u >= 1).
* Meta losses (training only): a plain linear (K_w+1)-way classifier ``meta_cls`` (row 0
  background) classifies every support crop's feature (Meta R-CNN's meta loss) and every
  sampled query RoI by its dataset class, including objects of classes outside the
  episode. Learned from scratch, the relational loss alone gives few labelled examples
  per step (only episode classes are foreground) and the prototypes of different classes
  stayed alike; this direct class signal makes the shared features discriminative as fast
  as a plain detector's. Its rows are the predictor's class-shaped parameters (class
  surgery: background row kept, base rows copied, novel rows initialised); inference never
  uses it, so classes given only as supports are scored like any other.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.detection.image_list import ImageList

from ..backbone import ShapeSpec
from ..losses import fast_rcnn_losses
from ..registry import ROI_BOX_PREDICTOR_REGISTRY, ROI_HEADS_REGISTRY
from ..roi_heads.fast_rcnn import fast_rcnn_inference
from ..roi_heads.roi_heads import StandardROIHeads
from ..utils import upcast
from .prototypes import Prototypes


@ROI_BOX_PREDICTOR_REGISTRY.register()
class SupportConditionedOutputLayers(nn.Module):
    """Relation-scored (K+1)-way classifier and prototype-gated box regressor (module doc).

    Args:
        input_dim: D.
        num_classes: K_w; the meta classifier has K_w + 1 rows.
        relation_dim: E.
    """

    def __init__(self, *, input_dim: int, num_classes: int, relation_dim: int = 128):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"MODEL.ROI_HEADS.NUM_CLASSES must be >= 1, got {num_classes}")
        if relation_dim < 1:
            raise ValueError(f"MODEL.SIAMESE.RELATION_DIM must be >= 1, got {relation_dim}")
        self.num_classes = num_classes
        self.proj = nn.Linear(input_dim, relation_dim)
        self.relation = nn.Sequential(nn.Linear(2 * relation_dim, relation_dim), nn.ReLU(),
                                      nn.Linear(relation_dim, 1))
        self.bg_score = nn.Linear(input_dim, 1)
        self.meta_cls = nn.Linear(input_dim, num_classes + 1)
        self.bbox_gate = nn.Linear(input_dim, input_dim)
        self.bbox_pred = nn.Linear(input_dim, 4)
        with torch.no_grad():
            for layer in (self.bg_score, self.meta_cls, self.relation[2]):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
            nn.init.zeros_(self.bbox_gate.weight)
            nn.init.zeros_(self.bbox_gate.bias)
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.zeros_(self.bbox_pred.bias)

    @classmethod
    def from_config(cls, cfg, input_dim: int) -> "SupportConditionedOutputLayers":
        return cls(input_dim=input_dim, num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                   relation_dim=cfg.MODEL.SIAMESE.RELATION_DIM)

    def forward(self, x: Tensor, head: Tensor, class_ids: Tensor, valid: Tensor
                ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            x: float [R_i, D], RoI features of one image.
            head: float [K, D], that image's class prototypes.
            class_ids: int64 [K] dataset class of every column (unused: scores depend on
                the prototypes only, so any class, known or new, is scored alike).
            valid: bool [K]; invalid columns get logit -inf.
        Returns:
            (class logits float [R_i, K+1], box deltas float [R_i, 4K])
        """
        xp, hp = self.proj(x), self.proj(head)  # R_i, E / K, E
        pair = torch.cat([xp[:, None] * hp[None], (xp[:, None] - hp[None]).abs()], dim=-1)
        logits = torch.cat([self.bg_score(x), self.relation(pair).squeeze(-1)], dim=1)
        if not bool(valid.all()):
            mask = torch.cat([valid.new_ones(1), valid])
            logits = logits.masked_fill(~mask[None], float("-inf"))
        gate = 1 + torch.tanh(self.bbox_gate(head))  # K, D
        deltas = self.bbox_pred(x[:, None, :] * gate[None])  # R_i, K, 4
        return logits, deltas.flatten(1)

    def meta_loss(self, features: Tensor, labels: Tensor, *, foreground_only: bool) -> Tensor:
        """Cross-entropy of the meta classifier.

        Args:
            features: float [M, D] support-crop or RoI features.
            labels: int64 [M] dataset class ids (0 = background, RoIs only).
            foreground_only: classify among the K_w classes only (support crops).
        """
        logits = self.meta_cls(features)
        if foreground_only:
            return F.cross_entropy(logits[:, 1:], labels - 1)
        return F.cross_entropy(logits, labels)


@ROI_HEADS_REGISTRY.register()
class SiameseROIHeads(StandardROIHeads):
    """Standard ROI heads whose predictor is conditioned on class prototypes.

    Same constructor and config as ``StandardROIHeads``; the predictor must be
    ``SupportConditionedOutputLayers`` (``MODEL.ROI_BOX_HEAD.PREDICTOR``).
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> "SiameseROIHeads":
        heads = super().from_config(cfg, input_shape)
        if not isinstance(heads.box_predictor, SupportConditionedOutputLayers):
            raise ValueError(f"MODEL.ROI_HEADS.NAME SiameseROIHeads needs MODEL.ROI_BOX_HEAD."
                             f"PREDICTOR 'SupportConditionedOutputLayers', got "
                             f"{cfg.MODEL.ROI_BOX_HEAD.PREDICTOR!r}")
        return heads

    def support_features(self, features: Dict[str, Tensor], boxes: List[Tensor]) -> Tensor:
        """Head prototypes of individual support crops.

        Args:
            features: backbone outputs of the crops.
            boxes: per crop float [1, 4] XYXY in the crop's pixels.
        Returns:
            float [M, D].
        """
        return self.box_head(self.pooler([features[f] for f in self.in_features], boxes))

    def support_losses(self, support_features: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """The meta loss of the support crops' features [M, D] (labels: class ids [M])."""
        return {"loss_meta_support": self.box_predictor.meta_loss(
            support_features, labels, foreground_only=True)}

    def forward(self, images: ImageList, features: Dict[str, Tensor], proposals: List[Tensor],
                prototypes: Prototypes, targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        """
        Args:
            images, features, proposals: as ``StandardROIHeads``.
            prototypes: K columns per image.
            targets: training only, per image {"gt_boxes", "gt_labels"} with DATASET class
                ids; boxes of classes outside the image's columns are background for the
                (K+1)-way loss and labelled for the meta loss.
        Returns:
            training: ([], {"loss_cls", "loss_box_reg", "loss_meta_roi"});
            eval: (per image {"boxes", "scores", "labels" = dataset class ids}, {}).
        """
        if self.training:
            if targets is None:
                raise ValueError("SiameseROIHeads in training mode needs targets")
            proposals, gt_labels, gt_deltas = self.label_and_sample_proposals(proposals, targets)
            columns = to_column_labels(gt_labels, [len(p) for p in proposals],
                                       prototypes.class_ids)
        x = self.box_head(self.pooler([features[f] for f in self.in_features], proposals))
        class_logits, deltas = self.predict(x, proposals, prototypes)
        if self.training:
            losses = fast_rcnn_losses(class_logits, deltas, columns, gt_deltas,
                                      smooth_l1_beta=self.smooth_l1_beta)
            losses["loss_meta_roi"] = self.box_predictor.meta_loss(x, gt_labels,
                                                                   foreground_only=False)
            return [], losses
        detections = fast_rcnn_inference(
            class_logits, deltas, proposals, images.image_sizes, box_coder=self.box_coder,
            score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
            topk_per_image=self.detections_per_image)
        for det, ids in zip(detections, prototypes.class_ids):
            det["labels"] = ids[det["labels"] - 1]
        return detections, {}

    def predict(self, x: Tensor, proposals: List[Tensor], prototypes: Prototypes
                ) -> Tuple[Tensor, Tensor]:
        """Raw predictor outputs for RoI features ``x`` [R, D], images concatenated.

        Returns:
            (class logits float [R, K+1], deltas float [R, 4K])
        """
        outputs = [self.box_predictor(x_i, prototypes.head[i].to(x_i.dtype),
                                      prototypes.class_ids[i], prototypes.valid[i])
                   for i, x_i in enumerate(x.split([len(p) for p in proposals]))]
        logits = torch.cat([o[0] for o in outputs])
        deltas = torch.cat([o[1] for o in outputs])
        return upcast(logits), upcast(deltas)


def to_column_labels(labels: Tensor, counts: List[int], class_ids: Tensor) -> Tensor:
    """Dataset labels of sampled RoIs -> column labels (1..K; 0 = background or a class
    outside the image's columns).

    Args:
        labels: int64 [R] in 0..K_w, images concatenated; counts: R_i per image.
        class_ids: int64 [N, K], the dataset class of every column.
    Returns:
        int64 [R].
    """
    out = []
    for lab, ids in zip(labels.split(counts), class_ids):
        match = lab[:, None] == ids[None, :]  # R_i, K
        out.append(torch.where(match.any(dim=1), match.float().argmax(dim=1) + 1,
                               torch.zeros_like(lab)))
    return torch.cat(out)
