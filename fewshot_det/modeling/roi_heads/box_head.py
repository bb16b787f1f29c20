"""The box head: pooled RoI features -> a feature vector per RoI (fully-connected layers).

Shape glossary: R RoIs, C channels, S pooled size, D head width (FC_DIM).
"""
from __future__ import annotations

from typing import Optional

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

    @property
    def num_layers(self) -> int:
        return len(list(self.children()))

    def forward(self, x: Tensor, *, start: int = 0, stop: Optional[int] = None) -> Tensor:
        """Layers ``start`` .. ``stop - 1`` (all by default); the RoI cache of TFA
        fine-tuning runs a frozen prefix once and the trainable rest at every step.

        Args:
            x: float [R, C, S, S] when ``start`` is 0, else [R, D], layer ``start - 1``'s
                output.
        Returns:
            float [R, D].
        """
        if start == 0:
            x = x.flatten(start_dim=1)
        for layer in list(self.children())[start:stop]:
            x = F.relu_(layer(x))
        return x
