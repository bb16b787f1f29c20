"""Small tensor helpers shared by the heads."""
import torch
from torch import Tensor

_HALF = (torch.float16, torch.bfloat16)


def upcast(x: Tensor) -> Tensor:
    """``x`` in float32 if it is half precision (autocast output), else unchanged.

    Box decoding and losses need float32: bfloat16 cannot place a box on an 800 px image
    to better than ~4 px. float64 (tests, exact comparisons) is kept as it is.
    """
    return x.float() if x.dtype in _HALF else x
