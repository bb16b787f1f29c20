"""Entry points of the 2-process gloo tests (imported by spawned workers)."""
import torch
from torch import nn

from fewshot_det.engine import train_loop
from fewshot_det.engine.ddp import wrap_ddp
from toy_model import ToyDetector


def run(cfg, out_file):
    torch.manual_seed(0)
    model = ToyDetector(dropout=0.0)
    train_loop.train(cfg, model)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save({"rank": rank, "world": torch.distributed.get_world_size()
                if torch.distributed.is_initialized() else 1,
                "state": model.state_dict()}, f"{out_file}.{rank}")


def strided_1x1_steps(out_file):
    """Two SGD steps of a 3x3 conv and a stride-2 1x1 conv on channels-last maps (whose
    weight gradient differs from the weight in size-1 strides), through ``wrap_ddp``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 1, stride=2))
    trained = wrap_ddp(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    g = torch.Generator().manual_seed(rank)
    for _ in range(2):
        x = torch.randn(2, 3, 16, 16, generator=g).contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        trained(x).square().mean().backward()
        optimizer.step()
    torch.save(model.state_dict(), f"{out_file}.{rank}")
