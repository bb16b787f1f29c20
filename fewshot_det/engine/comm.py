"""Small helpers for single- and multi-process runs (identical code paths for both)."""
from __future__ import annotations

from typing import Any, List

import torch
import torch.distributed as dist

from ..utils.dist import dist_info, get_rank, get_world_size, is_dist, is_main_process

__all__ = ["is_dist", "dist_info", "get_rank", "get_world_size", "is_main_process",
           "synchronize", "all_gather_objects", "reduce_mean"]


def synchronize() -> None:
    if is_dist() and get_world_size() > 1:
        dist.barrier()


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj``, in rank order (a one-element list outside distributed runs)."""
    if not is_dist() or get_world_size() == 1:
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a tensor (returned as a new tensor on every rank)."""
    if not is_dist() or get_world_size() == 1:
        return values.detach().clone()
    t = values.detach().clone()
    dist.all_reduce(t)
    return t / get_world_size()
