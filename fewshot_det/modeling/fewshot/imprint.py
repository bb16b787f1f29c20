"""Training-free imprinting: a cosine classifier's class row from K example boxes.

Shape glossary: M example boxes, D box-head feature size, K classes (row 0: background).

A cosine classifier (``CosineSimOutputLayers``, TFA) scores a box by the cosine between its
box-head feature and each class row, so a row only has a direction. The direction that
scores a class's examples highest on average is the mean of their normalised features
(Qi et al. 2018, "Low-Shot Learning with Imprinted Weights"): that is the imprinted row.
The box-regression rows are left as surgery set them (the mean of the copied classes').
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn

from ..meta_arch.preprocess import normalize_and_pad, prepare_targets
from ..roi_heads.fast_rcnn import CosineSimOutputLayers


def cosine_predictor(model: nn.Module) -> CosineSimOutputLayers:
    """The model's cosine box predictor.

    Raises:
        ValueError: the model has another predictor (a linear layer's rows also carry a
            scale and a bias, which a few boxes cannot fix without training).
    """
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if not isinstance(predictor, CosineSimOutputLayers):
        raise ValueError(f"imprinting needs MODEL.ROI_BOX_HEAD.PREDICTOR "
                         f"CosineSimOutputLayers (a TFA config), got "
                         f"{type(predictor).__name__}")
    return predictor


@torch.no_grad()
def gt_box_features(model: nn.Module, batch: List[dict]) -> Dict[int, Tensor]:
    """Box-head features of the GT boxes of ``batch`` (model inputs with ``instances``).

    Returns:
        {class id: float [M_k, D]} over the batch's boxes.
    """
    was_training = model.training
    model.eval()
    try:
        images = normalize_and_pad([x["image"] for x in batch], model.pixel_mean,
                                   model.pixel_std, model.backbone.size_divisibility)
        targets = prepare_targets(batch, model.roi_heads.num_classes, model.device)
        features = model.backbone(images.tensors)
        heads = model.roi_heads
        pooled = heads.pooler([features[f] for f in heads.in_features],
                              [t["gt_boxes"] for t in targets])
        feats = heads.box_head(pooled).float()
    finally:
        model.train(was_training)
    labels = torch.cat([t["gt_labels"] for t in targets])
    return {int(k): feats[labels == k] for k in labels.unique()}


def imprint_rows(model: nn.Module, examples: Dict[int, List[Tensor]],
                 class_ids: Sequence[int]) -> List[int]:
    """Set the cosine rows of ``class_ids`` to their examples' mean normalised feature.

    Args:
        examples: {class id: features [M, D] of its example boxes, possibly in parts}.
        class_ids: the classes (1..K) to imprint; one without examples keeps its row.
    Returns:
        the class ids imprinted.
    """
    weight = cosine_predictor(model).cls_score.weight
    done = []
    with torch.no_grad():
        for k in class_ids:
            parts = [f for f in examples.get(int(k), []) if len(f)]
            if not parts:
                continue
            feats = torch.cat(parts)
            unit = feats / (feats.norm(dim=1, keepdim=True) + 1e-5)
            row = unit.mean(dim=0)
            # the row's norm is free (the classifier normalises it); keep the old one
            weight[k] = row / (row.norm() + 1e-12) * weight[k].norm().clamp(min=1e-3)
            done.append(int(k))
    return done
