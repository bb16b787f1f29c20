"""Proposal generators: features -> per-image proposal boxes (+ losses in training)."""
from .anchor_generator import AnchorGenerator, cell_anchors
from .proposals import find_top_proposals
from .rpn import RPN, RPNHead, flatten_predictions

__all__ = ["AnchorGenerator", "cell_anchors", "find_top_proposals", "RPN", "RPNHead",
           "flatten_predictions"]
