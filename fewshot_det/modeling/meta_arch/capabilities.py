"""What every meta-architecture declares to the code that drives it: the engine, export,
the tools and the app call these methods and never guess a model's kind from its
attributes or its class name.

Shape glossary: M support crops, S crop side, N images, D detections of one image.

``Detector`` is the base of every meta-architecture: ``model(batch)`` plus its stages
(``preprocess`` -> ``features`` -> ... -> ``postprocess``; each family adds the stages it
has, see docs/ARCHITECTURE.md) and the optional capabilities below, each answered by the
model itself:

* ``cosine_classifier()``: the cosine box classifier whose class rows can be imprinted
  from example boxes (TFA models), or None;
* ``caches_roi_features()``: the box predictor is a function of box-head features alone,
  so a fine-tune that trains only the predictor can run on cached RoI features;
* ``trains_heads_on_crops()``: the crop warm-up can train the feature pyramid and the
  box classifier on one-box crops (``crop_class_logits``);
* ``SupportConditioned``: new classes from support examples, without training.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, List, Optional

from torch import Tensor, nn


class Detector(nn.Module):
    """Base of the meta-architectures (module doc); the defaults say "not supported"."""

    def body(self) -> nn.Module:
        """The bottom-up feature network (a ResNet, ...): images -> named features, with
        ``output_shape()``; the crop warm-up trains it."""
        raise NotImplementedError

    def detectable_class_ids(self) -> List[int]:
        """The class ids (1..K, or support classes beyond K) the model can output now."""
        raise NotImplementedError

    def fixed_input_size(self) -> Optional[int]:
        """The side of the square input every image is resized to (YOLO-grid), or None
        when images keep their aspect ratio and are padded to a batch (two-stage models)."""
        return None

    def cosine_classifier(self) -> Optional[nn.Module]:
        """The box predictor whose rows ``modeling.fewshot.imprint`` can set, or None."""
        return None

    def caches_roi_features(self) -> bool:
        """True when ``box_features`` / ``sample_rois`` / ``predict_boxes`` exist and the
        predictor needs nothing but box-head features (``engine.roi_cache``)."""
        return False

    def trains_heads_on_crops(self) -> bool:
        """True when ``crop_class_logits`` / ``crop_head_parameters`` exist
        (``PRETRAIN.HEADS``)."""
        return False


class SupportConditioned(ABC):
    """Mixin of a meta-architecture whose classes can be set from support examples."""

    @abstractmethod
    def set_supports(self, images: Tensor, boxes: Tensor, labels: Tensor) -> List[int]:
        """Encode a support set and cache its class prototypes.

        Args:
            images: float [M, 3, S, S], 0-255, INPUT.FORMAT channel order.
            boxes: float [M, 4] XYXY in the crops' pixels.
            labels: int64 [M], class ids >= 1 (ids above K add classes).
        Returns:
            the class ids that were set.
        """

    @abstractmethod
    def save_prototypes(self, path: str) -> None:
        """Write the cached class prototypes (tensors only) to ``path``."""

    @abstractmethod
    def load_prototypes(self, path: str) -> None:
        """Read prototypes written by ``save_prototypes``."""


def is_support_conditioned(model: nn.Module) -> bool:
    """True for a ``SupportConditioned`` model (a DDP wrapper is looked through)."""
    return isinstance(getattr(model, "module", model), SupportConditioned)


Detections = List[Dict[str, Tensor]]  # per image {"boxes" [D, 4], "scores" [D], "labels" [D]}
