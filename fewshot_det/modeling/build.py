"""``build_model(cfg)``: the meta-architecture named by ``MODEL.META_ARCHITECTURE``."""
from __future__ import annotations

from torch import nn

from .registry import META_ARCH_REGISTRY, lookup


def build_model(cfg) -> nn.Module:
    """Build the model described by ``cfg`` (randomly initialised, on the CPU, train mode).

    Weights are loaded separately (``fewshot_det.checkpoint.load_weights``) and the caller
    moves the model to ``MODEL.DEVICE``.
    """
    meta_arch = lookup(META_ARCH_REGISTRY, cfg.MODEL.META_ARCHITECTURE,
                       "MODEL.META_ARCHITECTURE")
    return meta_arch.from_config(cfg)
