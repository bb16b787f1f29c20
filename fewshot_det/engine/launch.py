"""Start one process per device: ``--num-gpus N`` on one machine, or under ``torchrun``.

NCCL on GPUs, gloo on CPU (where "gpus" means worker processes; used by the tests).
Under torchrun (``WORLD_SIZE`` set) the process group comes from the environment
(``env://``), so the same script scales to many machines.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Callable, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

logger = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def _init(rank: int, world: int, init_method: str) -> None:
    if torch.cuda.is_available():
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(_backend(), init_method=init_method, rank=rank, world_size=world)


def _worker(rank: int, main: Callable, world: int, init_method: str, args: Tuple) -> None:
    _init(rank, world, init_method)
    try:
        main(*args)
    finally:
        dist.destroy_process_group()


def launch(main: Callable, num_gpus: int = 1, args: Tuple = ()) -> None:
    """Run ``main(*args)`` in ``num_gpus`` processes (or once, or per torchrun rank)."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        _init(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://")
        try:
            main(*args)
        finally:
            dist.destroy_process_group()
        return
    if num_gpus <= 1:
        main(*args)
        return
    if torch.cuda.is_available() and num_gpus > torch.cuda.device_count():
        raise ValueError(f"--num-gpus {num_gpus} but only {torch.cuda.device_count()} GPUs")
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    mp.start_processes(_worker, nprocs=num_gpus, args=(main, num_gpus, init_method, args),
                       start_method="spawn")
