"""The YOLO-grid backbone: one feature map of a registered backbone (a ResNet or an
EfficientNet-Lite body).

The wrapped network is stored as ``body``, so parameter names are ``backbone.body.*``:
the names every weight format of ``fewshot_det.checkpoint`` converts a body to
(torchvision, detectron2, EfficientNet-Lite and our own checkpoints load as for the R-CNN).
"""
from __future__ import annotations

from torch import Tensor

from ..backbone import Backbone


class GridBackbone(Backbone):
    """``body(x)[in_feature]``.

    Args:
        body: a Backbone (e.g. ``ResNet``) producing ``in_feature``.
        in_feature: name of the feature map the head reads, e.g. "res5".
        body_name: how the body was chosen (config key and value), for error messages.
    """

    def __init__(self, *, body: Backbone, in_feature: str, body_name: str = "backbone"):
        super().__init__()
        shapes = body.output_shape()
        if in_feature not in shapes:
            raise ValueError(f"MODEL.YOLO.IN_FEATURE {in_feature!r} is not produced by "
                             f"{body_name} (it gives {list(shapes)}); YOLOGrid uses "
                             f"MODEL.BACKBONE.NAME 'build_resnet_backbone' or "
                             f"'build_efficientnet_lite_backbone'")
        self.body, self.in_feature = body, in_feature
        self._out_shapes = {in_feature: shapes[in_feature]}

    def forward(self, x: Tensor) -> Tensor:
        """
        Args:
            x: float [N, 3, H, W], normalised.
        Returns:
            float [N, C, H / stride, W / stride], the ``in_feature`` map.
        """
        return self.body(x)[self.in_feature]
