"""Meta-architectures: whole detectors behind ``model(batch)``."""
from .preprocess import normalize_and_pad, prepare_targets, rescale_detections
from .rcnn import GeneralizedRCNN
from .siamese_rcnn import SiameseRCNN  # few-shot (also registers modeling.fewshot parts)
from .support import SupportConditioned, is_support_conditioned
from .yolo_grid import YOLOGrid  # noqa: F401 (registers)

__all__ = ["GeneralizedRCNN", "SiameseRCNN", "YOLOGrid", "SupportConditioned",
           "is_support_conditioned", "normalize_and_pad", "prepare_targets",
           "rescale_detections"]
