"""Readers of the three annotation layouts users have: Pascal VOC, COCO json, YOLO txt.

Each returns records in the package's contract (absolute XYXY boxes, labels 1..K) and never
imports torch.
"""
from .coco import load_coco_json
from .voc import load_voc
from .yolo import load_yolo

__all__ = ["load_voc", "load_coco_json", "load_yolo"]
