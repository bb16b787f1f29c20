"""Wrap the model in DistributedDataParallel when more than one process trains.

Two DDP settings are chosen here rather than left at their defaults:

* ``find_unused_parameters=False``: every trainable parameter of our models receives a
  gradient in every training step, empty-target images included (their losses are sums
  over empty selections, still connected to the graph; the ``tests/modeling`` tests check
  that every parameter gets a gradient). Frozen parameters (``requires_grad`` False:
  ``MODEL.BACKBONE.FREEZE_AT``, ``MODEL.SIAMESE.FREEZE_DETECTOR``, the TFA fine-tune) are
  not DDP's concern. With True, DDP walks the autograd graph every step and warns that it
  found nothing; a model that did leave a parameter unused would make DDP raise at the
  next step, naming it.
* ``gradient_as_bucket_view=True``: the gradients become views of DDP's all-reduce
  buckets, saving the copy back from the bucket and the memory of a second gradient copy.

Channels-last feature maps (``MODEL.BACKBONE.CHANNELS_LAST``) give 1x1 convolutions
weight gradients whose strides differ from the weights' in the size-1 kernel dimensions
only: the same memory layout, which autograd accepts but DDP's bucket check does not
("Grad strides do not match bucket view strides"). ``match_grad_strides`` re-labels those
strides (a view, no copy) before DDP sees the gradient.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from .comm import get_world_size

__all__ = ["match_grad_strides", "wrap_ddp"]


def wrap_ddp(model: nn.Module) -> nn.Module:
    """``model`` in DistributedDataParallel when several processes train, else ``model``.

    Args:
        model: the model, on its device (one device per process).
    Returns:
        the module to train (its forward returns the losses, its backward all-reduces).
    """
    if get_world_size() == 1:
        return model
    match_grad_strides(model)
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=False, gradient_as_bucket_view=True)


def match_grad_strides(model: nn.Module) -> List[torch.utils.hooks.RemovableHandle]:
    """Give each trainable parameter's gradient the parameter's strides where the two
    differ in size-1 dimensions only (same memory: a view, no copy, same values).

    Returns:
        the hook handles (``handle.remove()`` undoes it).
    """
    return [p.register_hook(_restrider(p)) for p in model.parameters() if p.requires_grad]


def _restrider(param: nn.Parameter):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        if grad.stride() == param.stride() or not _same_layout(grad, param):
            return grad  # equal already, or another layout (AccumulateGrad copies those)
        return grad.as_strided(param.size(), param.stride())
    return hook


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether same-sized ``a`` and ``b`` place every element at the same offset: their
    strides agree in each dimension longer than 1 (a size-1 dimension's stride is never
    used)."""
    return a.size() == b.size() and all(
        sa == sb or n == 1 for sa, sb, n in zip(a.stride(), b.stride(), a.size()))
