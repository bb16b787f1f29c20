"""ROI heads: pooled proposals -> (K+1)-way classification + box deltas."""
from .box_head import FastRCNNFCHead
from .fast_rcnn import CosineSimOutputLayers, FastRCNNOutputLayers, fast_rcnn_inference
from .poolers import ROIPooler, assign_levels
from .roi_heads import StandardROIHeads

__all__ = ["FastRCNNFCHead", "CosineSimOutputLayers", "FastRCNNOutputLayers",
           "fast_rcnn_inference", "ROIPooler", "assign_levels", "StandardROIHeads"]
