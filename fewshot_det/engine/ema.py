"""Exponential moving average of model weights, with the warm-up of YOLOv5-style EMA."""
from __future__ import annotations

import copy
import math

import torch


class ModelEMA:
    """``ema = d * ema + (1 - d) * weights`` after each step, d = decay * (1 - e^(-n/warmup)).

    The warm-up keeps early, random weights from dominating the average. Integer buffers
    (e.g. BatchNorm's counters) are copied rather than averaged.
    """

    def __init__(self, model: torch.nn.Module, *, decay: float = 0.9999, warmup: int = 2000):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / max(self.warmup, 1)))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        src = model.state_dict()
        for name, ema_v in self.module.state_dict().items():
            v = src[name].detach()
            if ema_v.dtype.is_floating_point:
                ema_v.mul_(d).add_(v.to(ema_v.dtype), alpha=1 - d)
            else:
                ema_v.copy_(v)

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
