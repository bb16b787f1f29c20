"""Meta-architectures: whole detectors behind ``model(batch)``, with declared stages and
capabilities (``capabilities.Detector``)."""
from .capabilities import Detector, SupportConditioned, is_support_conditioned
from .rcnn import GeneralizedRCNN
from .siamese_rcnn import SiameseRCNN  # few-shot (also registers modeling.fewshot parts)
from .yolo_grid import YOLOGrid  # noqa: F401 (registers)

__all__ = ["Detector", "GeneralizedRCNN", "SiameseRCNN", "YOLOGrid", "SupportConditioned",
           "is_support_conditioned"]
