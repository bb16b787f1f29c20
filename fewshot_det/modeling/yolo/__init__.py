"""YOLO-grid parts: head, target encoding, the four-term loss, decoding, class surgery.

The meta-architecture that assembles them is ``meta_arch.yolo_grid.YOLOGrid``.
"""
from .backbone import GridBackbone
from .decode import decode_detections
from .grid import cell_boxes_to_xyxy, elementwise_iou
from .head import YOLOHead
from .loss import (GridPredictions, find_responsible_boxes, get_class_prediction_loss,
                   get_contain_conf_loss, get_no_object_loss, get_regression_loss,
                   split_predictions, yolo_loss)
from .surgery import remap_class_layer
from .targets import GridTargets, encode_targets

__all__ = ["GridBackbone", "YOLOHead", "GridPredictions", "GridTargets", "encode_targets",
           "split_predictions", "find_responsible_boxes", "get_class_prediction_loss",
           "get_no_object_loss", "get_contain_conf_loss", "get_regression_loss", "yolo_loss",
           "decode_detections", "remap_class_layer", "cell_boxes_to_xyxy", "elementwise_iou"]
