"""Class-count surgery of the YOLO-grid head, for fine-tuning on a new class list.

The box predictor and the confidence do not depend on the classes and are kept whole;
only the class-probability layer (``YOLOHead.cls_pred``, one output row per class) changes.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .head import class_prior_logit


def remap_class_layer(layer: nn.Conv2d, old_classes: Sequence[str], new_classes: Sequence[str],
                      *, generator: Optional[torch.Generator] = None) -> nn.Conv2d:
    """A class-probability layer for ``new_classes``, copying the rows of shared classes.

    Pure: ``layer`` is not modified. Rows of classes present in both lists (matched by
    name) are copied from ``layer``; rows of new classes are initialised as a fresh head's
    for ``len(new_classes)`` classes (weight ~ N(0, 0.01^2), bias ``class_prior_logit``).

    Args:
        layer: 1x1 conv with ``len(old_classes)`` output channels (row k <-> label k+1).
        old_classes: class names of ``layer``'s rows.
        new_classes: class names of the new layer's rows (label order 1..K').
        generator: for the new rows' initialisation (reproducible surgery).
    Returns:
        a new ``nn.Conv2d`` with ``len(new_classes)`` output channels, on ``layer``'s device.
    Raises:
        ValueError: the layer's row count does not match ``old_classes``, or a list has
            duplicate names.
    """
    if layer.out_channels != len(old_classes):
        raise ValueError(f"class layer has {layer.out_channels} rows but {len(old_classes)} "
                         f"old class names were given")
    for name, classes in (("old_classes", old_classes), ("new_classes", new_classes)):
        if len(set(classes)) != len(classes):
            raise ValueError(f"{name} has duplicate names: {list(classes)}")
    new = nn.Conv2d(layer.in_channels, len(new_classes), layer.kernel_size,
                    bias=layer.bias is not None).to(layer.weight.device)
    old_index = {name: k for k, name in enumerate(old_classes)}
    with torch.no_grad():
        w = torch.randn(new.weight.shape, generator=generator) * 0.01
        new.weight.copy_(w.to(new.weight.device))
        if new.bias is not None:
            new.bias.fill_(class_prior_logit(len(new_classes)))
        for k, name in enumerate(new_classes):
            if name in old_index:
                new.weight[k] = layer.weight[old_index[name]]
                if new.bias is not None:
                    new.bias[k] = layer.bias[old_index[name]]
    return new
