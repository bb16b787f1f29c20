"""Backbones: images [N, 3, H, W] -> dict of named feature maps with declared shapes."""
from .base import Backbone, ShapeSpec
from .fpn import FPN, build_resnet_fpn_backbone, build_resnet_backbone
from .norm import conv_norm, freeze_batchnorm, get_norm
from .resnet import ResNet, build_resnet

__all__ = ["Backbone", "ShapeSpec", "FPN", "ResNet", "build_resnet", "build_resnet_fpn_backbone",
           "build_resnet_backbone", "conv_norm", "freeze_batchnorm", "get_norm"]
