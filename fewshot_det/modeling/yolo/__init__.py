"""YOLO-grid parts: head, target encoding, the four-term loss, decoding.

The meta-architecture that assembles them is ``meta_arch.yolo_grid.YOLOGrid`` (its
``class_rows`` names the class layer for ``modeling.fewshot.class_surgery``).
"""
from .backbone import GridBackbone
from .decode import decode_detections
from .grid import cell_boxes_to_xyxy, elementwise_iou
from .head import YOLOHead
from .loss import (GridPredictions, find_responsible_boxes, get_class_prediction_loss,
                   get_contain_conf_loss, get_no_object_loss, get_regression_loss,
                   split_predictions, yolo_loss)
from .targets import GridTargets, encode_targets

__all__ = ["GridBackbone", "YOLOHead", "GridPredictions", "GridTargets", "encode_targets",
           "split_predictions", "find_responsible_boxes", "get_class_prediction_loss",
           "get_no_object_loss", "get_contain_conf_loss", "get_regression_loss", "yolo_loss",
           "decode_detections", "cell_boxes_to_xyxy", "elementwise_iou"]
