"""Convolution on small feature maps, as one matrix product (im2col + GEMM), when training.

Why: on a CPU, oneDNN's convolution *backward* runs far below the matrix-product rate when
the output map has only a few positions, e.g. ResNet's res5 (512 channels, 3x3 kernels) on
the 2 x 2 maps of 48-px crops in the crop warm-up (``engine/crop_pretrain.py``): measured
2.3x slower than unfolding the input and multiplying by the weight matrix. The unfolded
input is small exactly when the map is small, so the GEMM path costs little memory there.
Same results within float rounding; inference and large maps keep ``F.conv2d``.

Shape glossary: N images, C input channels, O output channels, k kernel side,
L = H' x W' output positions.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

# Output positions (H' x W') up to which a trained convolution takes the GEMM path. Measured
# on R-18's shapes (2 cores, AVX2 kernels, forward + backward): 2 x 2 maps 1.6-2.3x faster
# this way; 3 x 3 maps already 0.7-0.8x, larger ones slower still.
SMALL_MAP = 4


def uses_gemm(x: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> bool:
    """Whether ``conv2d`` takes the unfold + GEMM path for this call."""
    if groups != 1 or isinstance(padding, str) or tuple(dilation) != (1, 1) or x.dim() != 4:
        return False
    if not torch.is_grad_enabled() or not (weight.requires_grad or x.requires_grad):
        return False  # inference: oneDNN's forward is fine
    kh, kw = weight.shape[-2:]
    h = (x.shape[-2] + 2 * padding[0] - kh) // stride[0] + 1
    w = (x.shape[-1] + 2 * padding[1] - kw) // stride[1] + 1
    return kh * kw > 1 and h * w <= SMALL_MAP


def conv2d(x: Tensor, weight: Tensor, bias, stride, padding, dilation, groups: int) -> Tensor:
    """``F.conv2d`` with tuple arguments, through a GEMM on small maps while training.

    Args:
        x: float [N, C, H, W] (any memory format).
        weight: float [O, C, k, k]; bias: float [O] or None.
    Returns:
        float [N, O, H', W'], channels-last strided on the GEMM path (the ResNet's format).
    """
    if not uses_gemm(x, weight, stride, padding, dilation, groups):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    n = x.shape[0]
    kh, kw = weight.shape[-2:]
    h = (x.shape[-2] + 2 * padding[0] - kh) // stride[0] + 1
    w = (x.shape[-1] + 2 * padding[1] - kw) // stride[1] + 1
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # [N, C*k*k, L]
    out = cols.transpose(1, 2) @ weight.reshape(weight.shape[0], -1).t()  # [N, L, O]
    if bias is not None:
        out = out + bias
    return out.reshape(n, h, w, -1).permute(0, 3, 1, 2)  # [N, O, H', W'], NHWC strides
