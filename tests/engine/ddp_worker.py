"""Entry point of the 2-process gloo test (imported by spawned workers)."""
import torch

from fewshot_det.engine import train_loop
from toy_model import ToyDetector


def run(cfg, out_file):
    torch.manual_seed(0)
    model = ToyDetector(dropout=0.0)
    train_loop.train(cfg, model)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save({"rank": rank, "world": torch.distributed.get_world_size()
                if torch.distributed.is_initialized() else 1,
                "state": model.state_dict()}, f"{out_file}.{rank}")
