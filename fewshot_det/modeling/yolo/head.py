"""The YOLO-grid head: a few convolutions, then 1x1 box and class predictors on the grid.

Shape glossary: N images, C channels, H/W feature height/width, G grid size, B boxes per
cell, K classes.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

HEAD_NORMS = ("BN", "GN", "")
# Initial confidence of every box. Starting at 0.5 would make the no-object term dominate
# the first iterations (almost all G*G*B boxes are empty); 0.1 is near its eventual level.
CONF_PRIOR = 0.1


def class_prior_logit(num_classes: int) -> float:
    """Initial class-probability logit: sigmoid = 1 / (K + 1).

    With sigmoid outputs and a squared error, starting at 0.5 lets the first steps push
    every class probability (K - 1 of K targets are 0) deep into the flat tail of the
    sigmoid, where the true class's gradient vanishes: training from scratch then stalls
    for hundreds of iterations. Starting near 1 / K avoids the collapse.
    """
    p = 1.0 / (num_classes + 1)
    return math.log(p / (1 - p))


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "GN":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    return nn.Identity()


class YOLOHead(nn.Module):
    """Feature map -> G x G x (B*5 + K) sigmoid outputs.

    Args:
        in_channels: channels of the backbone feature.
        grid_size: G; a feature map of another size is average-pooled to G x G.
        num_boxes: B.
        num_classes: K.
        conv_dim: channels of the 3x3 convs.
        num_convs: number of 3x3 conv + norm + LeakyReLU(0.1) layers (0 = none).
        norm: "BN", "GN" or "" (then the convs have biases).
    """

    def __init__(self, *, in_channels: int, grid_size: int, num_boxes: int, num_classes: int,
                 conv_dim: int = 256, num_convs: int = 2, norm: str = "BN"):
        super().__init__()
        if norm not in HEAD_NORMS:
            raise ValueError(f"MODEL.YOLO.HEAD_NORM must be one of {HEAD_NORMS}, got {norm!r}")
        for key, value, low in (("GRID_SIZE", grid_size, 1), ("NUM_BOXES", num_boxes, 1),
                                ("HEAD_NUM_CONVS", num_convs, 0), ("HEAD_CONV_DIM", conv_dim, 1)):
            if value < low:
                raise ValueError(f"MODEL.YOLO.{key} must be >= {low}, got {value}")
        if num_classes < 1:
            raise ValueError(f"the YOLO head needs >= 1 class (MODEL.YOLO.NUM_CLASSES), "
                             f"got {num_classes}")
        self.grid_size, self.num_boxes, self.num_classes = grid_size, num_boxes, num_classes
        layers, channels = [], in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(channels, conv_dim, 3, padding=1, bias=not norm),
                       _norm(norm, conv_dim), nn.LeakyReLU(0.1, inplace=True)]
            channels = conv_dim
        self.convs = nn.Sequential(*layers)
        self.box_pred = nn.Conv2d(channels, num_boxes * 5, 1)  # per box: x, y, w, h, conf
        self.cls_pred = nn.Conv2d(channels, num_classes, 1)
        for layer in (self.box_pred, self.cls_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        with torch.no_grad():
            self.box_pred.bias[4::5] = math.log(CONF_PRIOR / (1 - CONF_PRIOR))
            self.cls_pred.bias.fill_(class_prior_logit(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """
        Args:
            x: float [N, C, H, W] backbone feature.
        Returns:
            float [N, G, G, B*5 + K] in 0..1: per box (x, y, w, h, conf), then K class
            probabilities (see ``loss.split_predictions``).
        """
        x = self.convs(x)
        if tuple(x.shape[-2:]) != (self.grid_size, self.grid_size):
            x = F.adaptive_avg_pool2d(x, self.grid_size)
        logits = torch.cat([self.box_pred(x), self.cls_pred(x)], dim=1)  # N, B*5+K, G, G
        return logits.sigmoid().permute(0, 2, 3, 1)
