"""Initial weights from MODEL.WEIGHTS: ours, torchvision's and detectron2's formats.

    from fewshot_det.checkpoint import load_weights
    report = load_weights(model, "R-50.pkl")   # logs a grouped summary; see LoadReport

Saving checkpoints and resuming training are the engine's (``fewshot_det.engine``).
"""
from .convert import convert, detect_format
from .io import read_weights
from .loader import LoadReport, group_keys, load_weights

__all__ = ["load_weights", "LoadReport", "read_weights", "convert", "detect_format",
           "group_keys"]
