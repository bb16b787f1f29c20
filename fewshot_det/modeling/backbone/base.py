"""What every backbone declares: its output feature names, channels and strides.

Heads are built from ``backbone.output_shape()``, never from hard-coded channel counts, so a
narrow quick-start FPN and the paper's 256-channel FPN share all head code.
"""
from __future__ import annotations

from typing import Dict, NamedTuple

from torch import Tensor, nn


class ShapeSpec(NamedTuple):
    """Channels and stride (input pixels per feature cell) of one feature map."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """A module mapping images ``[N, 3, H, W]`` to a dict of named feature maps.

    Subclasses set ``self._out_shapes`` (name -> ShapeSpec, in increasing stride order) and
    implement ``forward``. It is a plain module, so it can also encode support crops (the
    siamese few-shot detector runs support images through the same backbone).
    """

    _out_shapes: Dict[str, ShapeSpec]

    def forward(self, x: Tensor) -> Dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Feature name -> ShapeSpec(channels, stride), finest level first."""
        return dict(self._out_shapes)

    @property
    def size_divisibility(self) -> int:
        """Input height and width are padded to a multiple of this (0 = no constraint)."""
        return 0
