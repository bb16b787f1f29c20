"""The exported graphs: thin wrappers that fix the input and output format of a model's
own inference stages for one image (``Detector.inference``); every size follows the
tensors (``modeling.traceable``).

Shape glossary: H/W padded input height/width, S square side (YOLO-grid), N detections.

    RCNNGraph(image float [1, 3, H, W] 0-255 in INPUT.FORMAT order, H and W multiples of
              the backbone's size divisibility, any values in the padding;
              image_size float [2] = (h, w) of the unpadded image)
        -> boxes float [N, 4] XYXY in the unpadded input's pixels, scores float [N],
           labels int64 [N] (dataset class ids)
    YOLOGraph(image float [1, 3, S, S] 0-255) -> the same three outputs, S x S pixels.

What the wrappers add to the model: the normalisation of a raw image, and for two-stage
models zeros in the padding (the model pads with 0 after normalising; an exported graph
takes the padded image from its caller). A siamese model's class prototypes are the
bank's at export time: traced as constants, so the exported graph takes no support
images.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from ..modeling import Detector
from ..modeling.traceable import grid_indices

Detections = Tuple[Tensor, Tensor, Tensor]


def inside_mask(image: Tensor, image_size: Tensor) -> Tensor:
    """float [H, W]: 1 inside the unpadded ``image_size`` (float [2]: h, w), 0 in the
    bottom/right padding."""
    rows, cols = grid_indices(image[0, 0])
    return ((rows < image_size[0]) & (cols < image_size[1])).to(image.dtype)


class RCNNGraph(nn.Module):
    """A two-stage model (Faster R-CNN, the siamese detector) for export (module doc)."""

    def __init__(self, model: Detector):
        super().__init__()
        self.model = model
        self.class_ids: List[int] = model.detectable_class_ids()
        if not self.class_ids:
            raise ValueError("the siamese model has no class prototypes to bake into the "
                             "export: give supports (--supports) or trained weights")
        self.eval()

    def forward(self, image: Tensor, image_size: Tensor) -> Detections:
        m = self.model
        x = (image - m.pixel_mean) / m.pixel_std * inside_mask(image, image_size)
        out = m.inference(ImageList(x, [image_size]))[0]
        return out["boxes"], out["scores"], out["labels"]


class YOLOGraph(nn.Module):
    """A detector of one fixed square input size (YOLO-grid) for export (module doc)."""

    def __init__(self, model: Detector):
        super().__init__()
        self.model = model
        self.class_ids: List[int] = model.detectable_class_ids()
        self.eval()

    def forward(self, image: Tensor) -> Detections:
        m = self.model
        out = m.inference((image - m.pixel_mean) / m.pixel_std)[0]
        return out["boxes"], out["scores"], out["labels"]


def graph_for(model: Detector) -> nn.Module:
    """The export graph of a built model (eval mode is set on the model)."""
    if not isinstance(model, Detector):
        raise ValueError(f"no export graph for {type(model).__name__}: a fewshot_det "
                         f"detector (GeneralizedRCNN, SiameseRCNN, YOLOGrid) is exported")
    model.eval()
    return YOLOGraph(model) if model.fixed_input_size() else RCNNGraph(model)
