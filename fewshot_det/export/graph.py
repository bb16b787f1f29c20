"""The exported graphs: one image in, its detections out, every size taken from tensors.

Shape glossary: H/W padded input height/width, A anchors per cell, P proposals, C
candidates (siamese), D box-head width, K class columns, N detections.

    RCNNGraph(image float [1, 3, H, W] 0-255 in INPUT.FORMAT order, H and W multiples of
              the backbone's size divisibility, any values in the padding;
              image_size float [2] = (h, w) of the unpadded image)
        -> boxes float [N, 4] XYXY in the unpadded input's pixels, scores float [N],
           labels int64 [N] (dataset class ids, 1..K)
    YOLOGraph(image float [1, 3, S, S] 0-255) -> the same three outputs, S x S pixels.

Both wrap a built model in eval mode and reuse its modules (backbone, heads, box coders,
thresholds); only the steps whose sizes follow the data go through ``export.ops``. A
siamese model's class prototypes are baked in at construction: the classifier weights they
give (``PrototypeCosineOutputLayers.class_weights``) become a constant, so the exported
graph takes no support images.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import nms

from ..modeling.proposal_generator.rpn import flatten_predictions
from ..modeling.roi_heads.fast_rcnn import MIN_BOX_SIZE_TEST, cosine_logits
from ..modeling.yolo import split_predictions
from ..modeling.yolo.grid import cell_boxes_to_xyxy
from .ops import (clip_boxes, inside_mask, large_enough, level_anchors, nms_by_group,
                  pool_levels, top_k_padded)

Detections = Tuple[Tensor, Tensor, Tensor]


class BakedPrototypeClassifier(nn.Module):
    """A siamese predictor with its prototype columns fixed: float [R, D] RoI features ->
    (class logits [R, K+1], deltas [R, 4K]), column k for class ``class_ids[k-1]``.

    Only columns that have a prototype are kept: the model gives the others logit -inf,
    i.e. probability 0 and no weight in the softmax, so dropping them changes nothing.
    """

    def __init__(self, predictor: nn.Module, head: Tensor, class_ids: Tensor):
        super().__init__()
        with torch.no_grad():
            weights = torch.cat([predictor.cls_score.weight[:1],
                                 predictor.class_weights(head, class_ids)])
        self.register_buffer("weights", weights.detach().clone())
        self.register_buffer("class_ids", class_ids.clone())
        self.scale = predictor.scale
        self.num_rows = predictor.num_classes
        self.bbox_pred = predictor.bbox_pred
        self.register_buffer("delta_rows", (class_ids - 1).clamp(max=self.num_rows - 1))
        self.register_buffer("has_row", (class_ids <= self.num_rows)[None, :, None])

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        logits = cosine_logits(x, self.weights, self.scale)
        per_class = self.bbox_pred(x).reshape(-1, self.num_rows, 4)
        deltas = torch.where(self.has_row, per_class[:, self.delta_rows],
                             per_class.mean(dim=1, keepdim=True))
        return logits, deltas.flatten(1)


class RCNNGraph(nn.Module):
    """Faster R-CNN (``GeneralizedRCNN``) or the siamese detector, for export (module doc).

    Args:
        model: the built model, weights loaded; a ``SiameseRCNN`` needs prototypes in its
            bank (trained, ``set_supports`` or ``load_prototypes``).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone = model.backbone
        self.rpn = model.proposal_generator
        self.heads = model.roi_heads
        self.register_buffer("pixel_mean", model.pixel_mean.clone())
        self.register_buffer("pixel_std", model.pixel_std.clone())
        self.siamese = hasattr(model, "prototype_bank")
        keep = self.rpn.post_nms_topk[1]
        self.candidates = max(keep, model.proposal_candidates) if self.siamese else keep
        self.ranked = self.siamese and model.proposal_candidates > 0
        if self.siamese:
            known = model.prototype_bank.known_classes()
            if not len(known):
                raise ValueError("the siamese model has no class prototypes to bake into the "
                                 "export: give supports (--supports) or trained weights")
            protos = model.prototype_bank.prototypes(1, known.tolist())
            self.predictor = BakedPrototypeClassifier(self.heads.box_predictor,
                                                      protos.head[0], protos.class_ids[0])
            self.register_buffer("class_ids", protos.class_ids[0].clone())
        else:
            self.predictor = self.heads.box_predictor
            self.register_buffer("class_ids", torch.arange(1, self.heads.num_classes + 1))
        self.eval()

    @property
    def num_columns(self) -> int:
        return len(self.class_ids)

    def forward(self, image: Tensor, image_size: Tensor) -> Detections:
        x = (image - self.pixel_mean) / self.pixel_std * inside_mask(image, image_size)
        features = self.backbone(x)
        proposals = self.proposals(x, features, image_size)
        roi_features = [features[f] for f in self.heads.in_features]
        if self.ranked:  # the support-conditioned proposal stage
            logits, _ = self.predictor(self.heads.box_head(self.pool(roi_features, proposals)))
            support = logits.softmax(dim=1)[:, 1:].max(dim=1).values
            proposals = proposals[stable_descending_order(support)]
        proposals = proposals[: self.rpn.post_nms_topk[1]]
        logits, deltas = self.predictor(self.heads.box_head(self.pool(roi_features, proposals)))
        return self.detections(logits, deltas, proposals, image_size)

    def proposals(self, image: Tensor, features, image_size: Tensor) -> Tensor:
        """``RPN`` + ``find_top_proposals`` on one image: float [P, 4], best first."""
        rpn, gen = self.rpn, self.rpn.anchor_generator
        # the siamese model asks the RPN for its C candidates (``rpn_candidates``)
        pre = max(rpn.pre_nms_topk[1], self.candidates) if self.siamese else rpn.pre_nms_topk[1]
        feats = [features[f] for f in rpn.in_features]
        head_logits, head_deltas = rpn.head(feats)
        boxes, scores = [], []
        for level, feature in enumerate(feats):
            logits, deltas = flatten_predictions([head_logits[level]], [head_deltas[level]])
            logits, deltas = logits[0], deltas[0]
            values, top = top_k_padded(logits, pre)
            top = top[torch.nonzero(torch.isfinite(values)).squeeze(1)]  # drop the padding
            anchors = level_anchors(gen.cell_anchors[level], feature, image,
                                    gen.strides[level], gen.stride_from_shape)
            level_boxes = rpn.box_coder.decode_single(deltas[top], anchors[top])
            level_boxes = clip_boxes(level_boxes, image_size)
            level_scores = torch.sigmoid(logits[top])
            keep = large_enough(level_boxes, rpn.min_size)
            level_boxes, level_scores = level_boxes[keep], level_scores[keep]
            keep = nms(level_boxes, level_scores, rpn.nms_thresh)
            boxes.append(level_boxes[keep])
            scores.append(level_scores[keep])
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        return boxes[scores.sort(descending=True).indices][: self.candidates]

    def pool(self, features: List[Tensor], boxes: Tensor) -> Tensor:
        p = self.heads.pooler
        return pool_levels(features, boxes, output_size=p.output_size, scales=p.scales,
                           sampling_ratio=p.sampling_ratio, aligned=p.aligned,
                           min_level=p.min_level, max_level=p.max_level,
                           canonical_box_size=p.canonical_box_size)

    def detections(self, logits: Tensor, deltas: Tensor, proposals: Tensor,
                   image_size: Tensor) -> Detections:
        """``fast_rcnn_inference`` on one image."""
        h, k = self.heads, self.num_columns
        scores = F.softmax(logits, dim=-1)[:, 1:]  # P, K
        boxes = h.box_coder.decode_single(deltas, proposals)
        boxes = boxes.reshape(-1, deltas.shape[1] // 4, 4).expand(-1, k, -1)
        boxes = clip_boxes(boxes, image_size).reshape(-1, 4)
        columns = torch.ones_like(scores, dtype=torch.int64).cumsum(1).reshape(-1) - 1
        scores = scores.reshape(-1)
        keep = torch.nonzero(scores > h.score_thresh).squeeze(1)
        boxes, scores, columns = boxes[keep], scores[keep], columns[keep]
        keep = large_enough(boxes, MIN_BOX_SIZE_TEST)
        boxes, scores, columns = boxes[keep], scores[keep], columns[keep]
        keep = nms_by_group(boxes, scores, columns, k, h.nms_thresh)[: h.detections_per_image]
        return boxes[keep], scores[keep], self.class_ids[columns[keep]]


class YOLOGraph(nn.Module):
    """The YOLO-grid detector for export (module doc)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        self.input_size = model.input_size
        self.decode_args = dict(model.decode_args)
        self.register_buffer("pixel_mean", model.pixel_mean.clone())
        self.register_buffer("pixel_std", model.pixel_std.clone())
        self.eval()

    def forward(self, image: Tensor) -> Detections:
        """``YOLOGrid.forward`` + ``decode_detections`` on one S x S image."""
        x = (image - self.pixel_mean) / self.pixel_std
        preds = split_predictions(self.head(self.backbone(x)), self.head.num_boxes)
        k = self.head.num_classes
        boxes = cell_boxes_to_xyxy(preds.boxes).clamp(0, 1) * self.input_size
        scores = preds.conf[..., None] * preds.class_probs[..., None, :]  # 1, G, G, B, K
        boxes, scores = boxes[0].reshape(-1, 4), scores[0].reshape(-1, k)
        pairs = torch.nonzero(scores > self.decode_args["score_thresh"])  # box, class
        boxes, scores = boxes[pairs[:, 0]], scores[pairs[:, 0], pairs[:, 1]]
        keep = nms_by_group(boxes, scores, pairs[:, 1], k, self.decode_args["nms_thresh"])
        keep = keep[: self.decode_args["max_detections"]]
        return boxes[keep], scores[keep], pairs[keep, 1] + 1


def stable_descending_order(scores: Tensor) -> Tensor:
    """int64 indices sorting ``scores`` high to low, ties in index order (the model's
    stable argsort). ONNX has no stable sort flag, but its TopK, which a sort becomes, breaks
    ties by the lower index."""
    if torch.onnx.is_in_onnx_export():
        return scores.sort(descending=True).indices
    return scores.sort(descending=True, stable=True).indices


def graph_for(model: nn.Module) -> nn.Module:
    """The export graph of a built model (eval mode is set on the model)."""
    model.eval()
    if hasattr(model, "head") and hasattr(model, "input_size"):
        return YOLOGraph(model)
    if hasattr(model, "proposal_generator") and hasattr(model, "roi_heads"):
        return RCNNGraph(model)
    raise ValueError(f"no export graph for {type(model).__name__}: GeneralizedRCNN, "
                     f"SiameseRCNN and YOLOGrid can be exported")
