"""Rank and world size of the running process (identical code paths for one process and many).

torch is imported on first call, not when this module loads, so torch-free code can
import it.
"""
from __future__ import annotations

from typing import Tuple

__all__ = ["is_dist", "dist_info", "get_rank", "get_world_size", "is_main_process"]


def is_dist() -> bool:
    """True inside an initialised ``torch.distributed`` process group."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def dist_info() -> Tuple[int, int]:
    """(rank, world_size); (0, 1) outside distributed runs."""
    if not is_dist():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def get_rank() -> int:
    return dist_info()[0]


def get_world_size() -> int:
    return dist_info()[1]


def is_main_process() -> bool:
    return get_rank() == 0
