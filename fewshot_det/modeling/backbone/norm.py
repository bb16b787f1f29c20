"""Normalisation layers of the ResNet, and convolution fused with frozen batch norm.

A frozen batch norm is an affine map ``y = x * scale + shift`` with constant ``scale`` and
``shift``. Folding it into the preceding convolution's weight and bias gives the same result
with one pass over the activations instead of three, and stores no extra activation for the
backward pass: on CPU the ResNet-50 body runs about twice as fast this way. The fold is done
on every call (on the small weight tensor), so the conv weight stays trainable and the
state dict keeps torchvision's layout (``conv1.weight``, ``bn1.running_mean``, ...). Trained
convolutions on small maps run as a matrix product (``small_conv``).
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops.misc import FrozenBatchNorm2d

from .small_conv import conv2d

NORMS = ("FrozenBN", "BN", "GN")
GN_GROUPS = 32


def get_norm(norm: str, channels: int) -> nn.Module:
    """A normalisation layer for ``channels`` channels.

    Args:
        norm: "FrozenBN" (statistics and affine fixed, for pretrained weights), "BN"
            (``nn.BatchNorm2d``, trained) or "GN" (GroupNorm with 32 groups).
    """
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "GN":
        return nn.GroupNorm(GN_GROUPS, channels)
    raise ValueError(f"MODEL.RESNETS.NORM must be one of {NORMS}, got {norm!r}")


def conv_norm(x: Tensor, conv: nn.Conv2d, norm: nn.Module) -> Tensor:
    """``norm(conv(x))``, with a frozen batch norm folded into the convolution.

    Args:
        x: float [N, C_in, H, W].
    Returns:
        float [N, C_out, H', W'].
    """
    # Training mode only: an evaluation with gradients on keeps F.conv2d's exact values.
    conv_fn = conv2d if conv.training else F.conv2d
    if not isinstance(norm, FrozenBatchNorm2d):
        return norm(conv_fn(x, conv.weight, conv.bias, conv.stride, conv.padding,
                            conv.dilation, conv.groups))
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()  # C_out
    shift = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    return conv_fn(x, weight, shift, conv.stride, conv.padding, conv.dilation, conv.groups)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` by a FrozenBatchNorm2d (in place).

    Frozen stages of a BN network must also stop updating running statistics, otherwise
    their outputs would still drift during training.

    Returns:
        ``module`` itself, or the new layer when ``module`` is a BatchNorm2d.
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        frozen.running_mean.copy_(module.running_mean)
        frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = freeze_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module
