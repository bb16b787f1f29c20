"""The interface of support-conditioned detectors: models that take new classes from
support examples (crops with a box) instead of, or before, training.

Shape glossary: M support crops, S crop side.

The engine, the tools and the ``Predictor`` check ``is_support_conditioned(model)`` and
call these methods; they never branch on the meta-architecture's name.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List

from torch import Tensor, nn


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
