"""Backbones: images [N, 3, H, W] -> dict of named feature maps with declared shapes."""
from .base import Backbone, ShapeSpec
from .efficientnet_lite import (EfficientNetLite, EfficientNetLiteClassifier,
                                build_efficientnet_lite_backbone,
                                build_efficientnet_lite_fpn_backbone)
from .fpn import FPN, build_resnet_fpn_backbone, build_resnet_backbone
from .mobilenet import MobileNetV3, build_mobilenet_v3_fpn_backbone
from .norm import conv_norm, freeze_batchnorm, get_norm
from .resnet import ResNet, build_resnet

__all__ = ["Backbone", "ShapeSpec", "EfficientNetLite", "EfficientNetLiteClassifier",
           "build_efficientnet_lite_backbone", "build_efficientnet_lite_fpn_backbone",
           "FPN", "ResNet", "build_resnet", "build_resnet_fpn_backbone",
           "build_resnet_backbone", "MobileNetV3", "build_mobilenet_v3_fpn_backbone",
           "conv_norm", "freeze_batchnorm", "get_norm"]
