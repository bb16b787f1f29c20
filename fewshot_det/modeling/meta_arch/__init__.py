"""Meta-architectures: whole detectors behind ``model(batch)``."""
from .preprocess import normalize_and_pad, prepare_targets, rescale_detections
from .rcnn import GeneralizedRCNN

__all__ = ["GeneralizedRCNN", "normalize_and_pad", "prepare_targets", "rescale_detections"]
