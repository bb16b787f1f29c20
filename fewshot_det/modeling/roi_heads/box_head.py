"""The box head: pooled RoI features -> a feature vector per RoI (fully-connected layers).

Shape glossary: R RoIs, C channels, S pooled size, D head width (FC_DIM).
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


class FastRCNNFCHead(nn.Module):
    """``num_fc`` fully-connected layers with ReLU (torchvision's TwoMLPHead when 2).

    Parameters are named ``fc1``, ``fc2`` ... (detectron2's names; torchvision's ``fc6``,
    ``fc7`` are renamed when its weights are loaded).

    Args:
        input_size: C * S * S, the flattened pooled feature size.
        num_fc: number of layers (>= 1).
        fc_dim: D, width of every layer.
    """

    def __init__(self, *, input_size: int, num_fc: int = 2, fc_dim: int = 1024):
        super().__init__()
        if num_fc < 1:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.NUM_FC must be >= 1, got {num_fc}")
        self.output_size = fc_dim
        for i in range(num_fc):
            self.add_module(f"fc{i + 1}", nn.Linear(input_size if i == 0 else fc_dim, fc_dim))

    def forward(self, x: Tensor) -> Tensor:
        """
        Args:
            x: float [R, C, S, S].
        Returns:
            float [R, D].
        """
        x = x.flatten(start_dim=1)
        for layer in self.children():
            x = F.relu_(layer(x))
        return x
