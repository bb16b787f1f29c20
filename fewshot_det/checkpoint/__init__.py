"""Initial weights from MODEL.WEIGHTS: ours, torchvision's and detectron2's formats.

    from fewshot_det.checkpoint import load_state, load_weights
    report = load_weights(model, "R-50.pkl")   # logs a grouped summary; see LoadReport
    report = load_state(model, state_dict, source="base.pth after class surgery")

Saving checkpoints and resuming training are the engine's (``fewshot_det.engine``).
"""
from .convert import convert, detect_format
from .io import read_weights
from .loader import LoadReport, group_keys, load_state, load_weights

__all__ = ["load_weights", "load_state", "LoadReport", "read_weights", "convert",
           "detect_format", "group_keys"]
