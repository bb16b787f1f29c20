"""Models: backbones, proposal generators, ROI heads and the meta-architectures.

    from fewshot_det.modeling import build_model
    model = build_model(cfg)          # cfg.MODEL.META_ARCHITECTURE, e.g. "GeneralizedRCNN"
    losses = model(batch)             # train mode: dict of scalar losses
    detections = model.eval()(batch)  # per image {"boxes", "scores", "labels"}
"""
from . import backbone, meta_arch, proposal_generator, roi_heads  # noqa: F401 (registers)
from .backbone import Backbone, ShapeSpec
from .build import build_model
from .meta_arch import Detector, GeneralizedRCNN, SupportConditioned, is_support_conditioned
from .registry import (BACKBONE_REGISTRY, META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                       ROI_BOX_PREDICTOR_REGISTRY, ROI_HEADS_REGISTRY)

__all__ = ["build_model", "Backbone", "ShapeSpec", "Detector", "GeneralizedRCNN", "SupportConditioned",
           "is_support_conditioned", "META_ARCH_REGISTRY",
           "BACKBONE_REGISTRY", "PROPOSAL_GENERATOR_REGISTRY", "ROI_HEADS_REGISTRY",
           "ROI_BOX_PREDICTOR_REGISTRY"]
