"""RoIAlign for training on a CPU: torchvision's sampling, with a fast backward pass.

Why: torchvision's CPU ``roi_align`` backward is a scalar loop, 47 ms for the 256 RoIs of a
quick-start step (4 images x 64 RoIs, a 64-channel FPN level; ~8 % of the step on 2 cores).
RoIAlign is linear in the features: each output value is a weighted sum of 4 taps x S^2
sample points. Written as that sum, the forward pass is one ``embedding_bag`` over the
features seen as a table of pixels, and the backward pass one sparse-matrix product with
the same taps: 8 ms together, the same values within float rounding (other summation
order). Inference keeps torchvision's op, so detections stay bit for bit torchvision's.

The sampling follows torchvision's kernel exactly: S x S points per bin (``sampling_ratio``
S > 0 only; the adaptive S = 0 goes to torchvision), points outside [-1, size] count as
zero, points below 0 move to 0, the last row / column is clamped.

Shape glossary: N images, C channels, H x W feature map, R RoIs, P x Q output bins,
T = 4 S^2 taps per bin.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor
from torch.nn import functional as F


def use_fast_path(feature: Tensor, sampling_ratio: int) -> bool:
    """Training on a CPU with a fixed number of sample points per bin."""
    return (feature.device.type == "cpu" and sampling_ratio > 0 and torch.is_grad_enabled()
            and feature.requires_grad)


def roi_align_taps(rois: Tensor, size: Tuple[int, int], output_size: Tuple[int, int],
                   spatial_scale: float, sampling_ratio: int, aligned: bool
                   ) -> Tuple[Tensor, Tensor]:
    """Pixel indices and weights of every output bin's taps.

    Args:
        rois: float [R, 5] (image index, x1, y1, x2, y2) in input pixels.
        size: the feature map's (H, W).
    Returns:
        (int64 [R*P*Q, T] indices into the N*H*W pixels, float [R*P*Q, T] weights), bins
        in (RoI, row, column) order; a tap of a point outside the map has weight 0.
    """
    h, w = size
    p, q = output_size
    s = sampling_ratio
    offset = 0.5 if aligned else 0.0
    boxes = rois[:, 1:].detach() * spatial_scale - offset  # R, 4
    extent = boxes[:, 2:] - boxes[:, :2]  # R, 2 (width, height)
    if not aligned:  # torchvision's legacy mode: RoIs of at least one pixel
        extent = extent.clamp(min=1.0)
    within = (torch.arange(s, dtype=boxes.dtype) + 0.5) / s  # S
    ys = _points(boxes[:, 1], extent[:, 1] / p, p, within)  # R, P, S
    xs = _points(boxes[:, 0], extent[:, 0] / q, q, within)  # R, Q, S
    vy, y0, y1, wy0, wy1 = _axis(ys, h)
    vx, x0, x1, wx0, wx1 = _axis(xs, w)
    valid = vy[:, :, None, :, None] & vx[:, None, :, None, :]  # R, P, Q, S, S
    base = (rois[:, 0].long() * (h * w))[:, None, None, None, None]
    index, weight = [], []
    for yy, wy in ((y0, wy0), (y1, wy1)):
        for xx, wx in ((x0, wx0), (x1, wx1)):
            index.append(base + yy[:, :, None, :, None] * w + xx[:, None, :, None, :])
            weight.append(wy[:, :, None, :, None] * wx[:, None, :, None, :] * valid)
    bins = len(rois) * p * q
    return (torch.stack(index, -1).reshape(bins, -1),
            (torch.stack(weight, -1) / (s * s)).reshape(bins, -1))


def _points(start: Tensor, step: Tensor, bins: int, within: Tensor) -> Tensor:
    """Sample coordinates along one axis: float [R, bins, S]."""
    k = torch.arange(bins, dtype=start.dtype)[None, :, None] + within[None, None, :]
    return start[:, None, None] + k * step[:, None, None]


def _axis(v: Tensor, size: int):
    """torchvision's bilinear bookkeeping along one axis: (inside [-1, size], low index,
    high index, weight of low, weight of high)."""
    inside = (v >= -1.0) & (v <= size)
    v = v.clamp(min=0)
    low = v.floor().long()
    last = low >= size - 1
    low = torch.where(last, torch.full_like(low, size - 1), low)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(v), v - low.to(v.dtype))
    return inside, low, high, 1 - frac, frac


class _TapSum(torch.autograd.Function):
    """out[b] = sum_t weight[b, t] * table[index[b, t]]; the backward pass is A^T @ grad,
    A the sparse [bins, pixels] matrix of the taps."""

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(index, weight)
        ctx.pixels = table.shape[0]
        return F.embedding_bag(index, table, per_sample_weights=weight, mode="sum")

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, weight = ctx.saved_tensors
        bins, taps = index.shape
        rows = torch.arange(bins, device=index.device).repeat_interleave(taps)
        a_t = torch.sparse_coo_tensor(torch.stack([index.reshape(-1), rows]),
                                      weight.reshape(-1), (ctx.pixels, bins),
                                      check_invariants=False)
        return torch.sparse.mm(a_t, grad.contiguous()), None, None


def roi_align(feature: Tensor, rois: Tensor, output_size: Tuple[int, int],
              spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
    """torchvision's ``roi_align`` (same arguments, ``sampling_ratio`` > 0), for training.

    Args:
        feature: float [N, C, H, W] (channels-last is read without a copy).
        rois: float [R, 5].
    Returns:
        float [R, C, P, Q].
    """
    n, c, h, w = feature.shape
    if len(rois) == 0:
        return feature.new_zeros((0, c) + tuple(output_size))
    index, weight = roi_align_taps(rois, (h, w), output_size, spatial_scale, sampling_ratio,
                                   aligned)
    table = feature.permute(0, 2, 3, 1).reshape(n * h * w, c)  # pixels as rows
    out = _TapSum.apply(table, index, weight.to(feature.dtype))  # R*P*Q, C
    return out.reshape(len(rois), *output_size, c).permute(0, 3, 1, 2)
