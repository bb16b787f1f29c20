"""Support-conditioned box head: a (K+1)-way cosine softmax whose class weights come from
the support prototypes.

Shape glossary: N images, R RoIs (all images), R_i RoIs of image i, D box-head width,
K class columns of a forward (episode + bank classes in training, all known classes at
inference), K_w classes of the dataset (MODEL.ROI_HEADS.NUM_CLASSES).

Design (weight imprinting made learnable: Qi et al. 2018, Gidaris & Komodakis 2018):

* RoI feature ``x`` and class prototype ``h_k`` (the same FC box head on the support box,
  mean over shots) live in one space. The classifier weight of column k is
  ``unit(g(h_k)) + W[c_k]``: ``g`` (D -> D, initialised to the identity) turns a prototype
  into a unit-length weight, ``W`` holds a learned residual row per dataset class (zero
  for a class the model has never been trained on, and after class surgery for novel
  classes). Logits are ``scale * cos(x, weight)``; background is the row ``W[0]``. The
  unit length keeps ``W``'s updates on the scale of the weight they correct (with a raw
  ``g(h)`` of norm ~10, fine-tuning barely moved the novel weights).
* So a class given only as support images is scored by ``g(h_k)`` alone (no training),
  and fine-tuning starts from exactly that weight and learns its residual (its box deltas
  start as the base classes' mean, as below).
* Training drops each column's ``W`` row with probability ``prototype_only_prob``: those
  columns must be recognised from the prototype alone, which is what teaches ``g`` (with
  the rows always present, ``W`` fits the base classes and ``g`` learns nothing).
* Box deltas are class-specific rows (u >= 1 only in the loss); a class beyond K_w
  (added at inference) uses the mean of the class rows.

A cosine score on raw prototypes saturated when the features were learned from scratch
(ReLU features start nearly parallel); the siamese quick start therefore builds on a
trained plain detector (``MODEL.SIAMESE.FREEZE_DETECTOR``) whose features already
separate classes.
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
from ..roi_heads.fast_rcnn import cosine_logits
from ..roi_heads.roi_heads import StandardROIHeads
from ..traceable import split_per_image
from ..utils import upcast
from .prototypes import Prototypes


@ROI_BOX_PREDICTOR_REGISTRY.register()
class PrototypeCosineOutputLayers(nn.Module):
    """Cosine (K+1)-way classifier with prototype-derived weights, class-specific deltas.

    Args:
        input_dim: D.
        num_classes: K_w (rows of ``cls_score``: K_w + 1, background first).
        scale: cosine temperature (MODEL.ROI_BOX_HEAD.COSINE_SCALE).
        prototype_only_prob: training probability of scoring a column from its prototype
            alone (MODEL.SIAMESE.PROTOTYPE_ONLY_PROB).
    """

    def __init__(self, *, input_dim: int, num_classes: int, scale: float = 20.0,
                 prototype_only_prob: float = 0.5):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"MODEL.ROI_HEADS.NUM_CLASSES must be >= 1, got {num_classes}")
        if not 0 <= prototype_only_prob <= 1:
            raise ValueError(f"MODEL.SIAMESE.PROTOTYPE_ONLY_PROB must be in [0, 1], got "
                             f"{prototype_only_prob}")
        if scale <= 0:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.COSINE_SCALE must be > 0, got {scale}")
        self.num_classes = num_classes
        self.scale = scale
        self.prototype_only_prob = prototype_only_prob
        self.cls_score = nn.Linear(input_dim, num_classes + 1, bias=False)  # W
        self.generator = nn.Linear(input_dim, input_dim)  # g
        self.bbox_pred = nn.Linear(input_dim, 4 * num_classes)
        with torch.no_grad():
            nn.init.normal_(self.cls_score.weight, std=0.01)
            self.cls_score.weight[1:] = 0  # no class knowledge beyond the prototypes yet
            nn.init.eye_(self.generator.weight)
            nn.init.zeros_(self.generator.bias)
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.zeros_(self.bbox_pred.bias)

    @classmethod
    def from_config(cls, cfg, input_dim: int) -> "PrototypeCosineOutputLayers":
        return cls(input_dim=input_dim, num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                   scale=cfg.MODEL.ROI_BOX_HEAD.COSINE_SCALE,
                   prototype_only_prob=cfg.MODEL.SIAMESE.PROTOTYPE_ONLY_PROB)

    def class_weights(self, head: Tensor, class_ids: Tensor) -> Tensor:
        """Classifier weights of the columns: float [K, D] (module doc)."""
        has_row = class_ids <= self.num_classes
        rows = self.cls_score.weight[class_ids.clamp(max=self.num_classes)]
        keep = has_row.to(rows.dtype)
        if self.training and self.prototype_only_prob > 0:
            drop = torch.rand(len(class_ids), device=rows.device) < self.prototype_only_prob
            keep = keep * (~drop).to(rows.dtype)
        return F.normalize(self.generator(head), dim=1, eps=1e-5) + rows * keep[:, None]

    def forward(self, x: Tensor, head: Tensor, class_ids: Tensor, valid: Tensor
                ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            x: float [R_i, D], RoI features of one image.
            head: float [K, D], that image's class prototypes.
            class_ids: int64 [K], the dataset class of every column.
            valid: bool [K]; invalid columns (no prototype) get logit -inf.
        Returns:
            (class logits float [R_i, K+1], box deltas float [R_i, 4K])
        """
        weights = torch.cat([self.cls_score.weight[:1], self.class_weights(head, class_ids)])
        logits = cosine_logits(x, weights, self.scale)
        if not bool(valid.all()):
            mask = torch.cat([valid.new_ones(1), valid])
            logits = logits.masked_fill(~mask[None], float("-inf"))
        per_class = self.bbox_pred(x).view(-1, self.num_classes, 4)
        rows = (class_ids - 1).clamp(max=self.num_classes - 1)
        has_row = (class_ids <= self.num_classes)[None, :, None]
        deltas = torch.where(has_row, per_class[:, rows], per_class.mean(dim=1, keepdim=True))
        return logits, deltas.flatten(1)


@ROI_HEADS_REGISTRY.register()
class SiameseROIHeads(StandardROIHeads):
    """Standard ROI heads whose predictor is conditioned on class prototypes.

    Same constructor and config as ``StandardROIHeads``; the predictor must be
    ``PrototypeCosineOutputLayers`` (``MODEL.ROI_BOX_HEAD.PREDICTOR``).
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> "SiameseROIHeads":
        heads = super().from_config(cfg, input_shape)
        if not isinstance(heads.box_predictor, PrototypeCosineOutputLayers):
            raise ValueError(f"MODEL.ROI_HEADS.NAME SiameseROIHeads needs MODEL.ROI_BOX_HEAD."
                             f"PREDICTOR 'PrototypeCosineOutputLayers', got "
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
        return self.box_features(features, boxes)

    def forward(self, images: ImageList, features: Dict[str, Tensor], proposals: List[Tensor],
                prototypes: Prototypes, targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        """
        Args:
            images, features, proposals: as ``StandardROIHeads``.
            prototypes: K columns per image.
            targets: training only, per image {"gt_boxes", "gt_labels"} with DATASET class
                ids; boxes of classes outside the image's columns are background for the
                (K+1)-way loss.
        Returns:
            training: ([], {"loss_cls", "loss_box_reg"});
            eval: (per image {"boxes", "scores", "labels" = dataset class ids}, {}).
        """
        if self.training:
            if targets is None:
                raise ValueError("SiameseROIHeads in training mode needs targets")
            proposals, gt_labels, gt_deltas = self.label_and_sample_proposals(proposals, targets)
            columns = to_column_labels(gt_labels, [len(p) for p in proposals],
                                       prototypes.class_ids)
        x = self.box_features(features, proposals)
        class_logits, deltas = self.predict(x, proposals, prototypes)
        if self.training:
            return [], fast_rcnn_losses(class_logits, deltas, columns, gt_deltas,
                                        smooth_l1_beta=self.smooth_l1_beta)
        detections = self.postprocess(class_logits, deltas, proposals, images.image_sizes)
        for det, ids in zip(detections, prototypes.class_ids):
            det["labels"] = ids[det["labels"] - 1]
        return detections, {}

    def support_scores(self, features: Dict[str, Tensor], proposals: List[Tensor],
                       prototypes: Prototypes) -> List[Tensor]:
        """How much each proposal looks like one of the supports: the (K+1)-way softmax
        probability of its best foreground column, on the proposal box as it is (no
        class-specific refinement).

        Args:
            features: backbone outputs of the queries; proposals: per image [P_i, 4].
        Returns:
            per image float [P_i] in [0, 1].
        """
        logits, _ = self.predict(self.box_features(features, proposals), proposals, prototypes)
        best = logits.softmax(dim=1)[:, 1:].max(dim=1).values
        return list(split_per_image(best, [len(p) for p in proposals]))

    def predict(self, x: Tensor, proposals: List[Tensor], prototypes: Prototypes
                ) -> Tuple[Tensor, Tensor]:
        """Raw predictor outputs for RoI features ``x`` [R, D], images concatenated.

        Returns:
            (class logits float [R, K+1], deltas float [R, 4K])
        """
        outputs = [self.box_predictor(x_i, prototypes.head[i].to(x_i.dtype),
                                      prototypes.class_ids[i], prototypes.valid[i])
                   for i, x_i in enumerate(split_per_image(x, [len(p) for p in proposals]))]
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
