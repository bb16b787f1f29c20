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

from ..preprocess import prepare_targets


def cosine_predictor(model: nn.Module) -> nn.Module:
    """The model's cosine box predictor (its declared ``cosine_classifier``).

    Raises:
        ValueError: the model has another classifier (a linear layer's rows also carry a
            scale and a bias, which a few boxes cannot fix without training; a siamese
            model takes new classes as supports).
    """
    predictor = model.cosine_classifier()
    if predictor is None:
        raise ValueError(f"imprinting needs a cosine box classifier: MODEL.ROI_BOX_HEAD."
                         f"PREDICTOR CosineSimOutputLayers on GeneralizedRCNN (a TFA config), "
                         f"got {type(model).__name__}")
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
        images = model.preprocess(batch)
        targets = prepare_targets(batch, model.num_classes, model.device)
        feats = model.box_features(model.features(images),
                                   [t["gt_boxes"] for t in targets]).float()
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
