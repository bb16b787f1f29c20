"""Optimizer and learning-rate schedule (warm-up, then multi-step or cosine)."""
from __future__ import annotations

import re
from typing import Dict, List, Sequence

import torch
from fvcore.common.param_scheduler import (CompositeParamScheduler, ConstantParamScheduler,
                                           CosineParamScheduler, LinearParamScheduler,
                                           MultiStepParamScheduler, ParamScheduler)

from ..config.validate import OPTIMIZERS

# Per optimizer, the group keys the config sets (a resumed run takes them from the config).
_CONFIG_KEYS = {torch.optim.SGD: ("weight_decay", "momentum"),
                torch.optim.AdamW: ("weight_decay", "betas")}

_NORM_TYPES = (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm,
               torch.nn.SyncBatchNorm)


def param_groups(model: torch.nn.Module, *, weight_decay: float, weight_decay_norm: float,
                 base_lr: float = 0.0, lr_factors: Sequence[Sequence] = ()) -> List[dict]:
    """Trainable parameters grouped by weight decay (norm layers get ``weight_decay_norm``)
    and learning rate: ``base_lr`` times the factor of the first ``(regex, factor)`` of
    ``lr_factors`` whose regex matches the parameter's name (1 when none does)."""
    factors = [(re.compile(str(pattern)), float(factor)) for pattern, factor in lr_factors]
    groups: Dict[tuple, List[torch.nn.Parameter]] = {}
    seen = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{name}" if module_name else name
            factor = next((f for pattern, f in factors if pattern.search(full)), 1.0)
            wd = weight_decay_norm if isinstance(module, _NORM_TYPES) else weight_decay
            groups.setdefault((wd, factor), []).append(p)
    return [{"params": params, "weight_decay": wd, "lr": base_lr * factor}
            for (wd, factor), params in groups.items()]


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    s = cfg.SOLVER
    try:
        factors = [(pattern, float(factor)) for pattern, factor in s.LR_FACTORS]
    except (TypeError, ValueError) as e:
        raise ValueError(f"SOLVER.LR_FACTORS must be a list of [regex, factor] pairs, got "
                         f"{s.LR_FACTORS!r}") from e
    groups = param_groups(model, weight_decay=s.WEIGHT_DECAY,
                          weight_decay_norm=s.WEIGHT_DECAY_NORM, base_lr=s.BASE_LR,
                          lr_factors=factors)
    return make_optimizer(s.OPTIMIZER, groups, lr=s.BASE_LR, momentum=s.MOMENTUM,
                          key="SOLVER.OPTIMIZER")


def make_optimizer(name: str, params, *, lr: float, momentum: float, weight_decay: float = 0.0,
                   key: str = "optimizer") -> torch.optim.Optimizer:
    """SGD with ``momentum``, or AdamW with betas (``momentum``, 0.999); ``weight_decay`` for
    groups that set none. ``key`` names the config key in the error for an unknown name."""
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "AdamW":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999),
                                 weight_decay=weight_decay)
    raise ValueError(f"{key} must be {' or '.join(OPTIMIZERS)}, got {name!r}")


def warmup_schedule(main: ParamScheduler, *, warmup_iters: int, warmup_factor: float,
                    warmup_method: str, max_iter: int) -> ParamScheduler:
    """``main`` preceded by a linear (or constant) ramp over the first warm-up iterations."""
    if warmup_iters <= 0:
        return main
    frac = warmup_iters / max_iter
    end = main(frac)
    ramp = (LinearParamScheduler(warmup_factor * main(0.0), end) if warmup_method == "linear"
            else ConstantParamScheduler(warmup_factor * main(0.0)))
    return CompositeParamScheduler([ramp, main], interval_scaling=["rescaled", "fixed"],
                                   lengths=[frac, 1 - frac])


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    """lr of every group = its base lr x ``multiplier(iteration / max_iter)``; step per iter."""

    def __init__(self, optimizer, multiplier: ParamScheduler, max_iter: int,
                 last_iter: int = -1):
        self._multiplier, self._max_iter = multiplier, max_iter
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self):
        # The multiplier is rebuilt from the config; only counters are state.
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def get_lr(self):
        m = self._multiplier(min(self.last_epoch / self._max_iter, 1.0 - 1e-12))
        return [base * m for base in self.base_lrs]


def config_hyperparameters(optimizer, scheduler: LRMultiplier) -> List[dict]:
    """Per group, the hyper-parameters the config gave it (``initial_lr``: base lr x its
    factor, ``weight_decay``, and ``momentum`` or AdamW's ``betas``); take them before
    loading a saved state."""
    keys = _CONFIG_KEYS.get(type(optimizer), ("weight_decay",))
    return [dict({"initial_lr": base}, **{k: g[k] for k in keys})
            for g, base in zip(optimizer.param_groups, scheduler.base_lrs)]


def apply_hyperparameters(optimizer, scheduler: LRMultiplier, groups: List[dict]) -> None:
    """Put ``groups`` (``config_hyperparameters``) back after a saved state was loaded.

    A loaded optimizer / scheduler state brings back the lr, weight decay and momentum it
    was saved with; this makes the config's values win, and sets each group's lr to the
    schedule's value at the restored iteration (unchanged values give the same floats).
    """
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(f"the optimizer has {len(optimizer.param_groups)} parameter groups, "
                         f"the config gives {len(groups)}")
    for group, values in zip(optimizer.param_groups, groups):
        group.update(values)
    scheduler.base_lrs = [g["initial_lr"] for g in groups]
    lrs = scheduler.get_lr()
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = list(lrs)


def build_lr_scheduler(cfg, optimizer) -> LRMultiplier:
    s = cfg.SOLVER
    if s.LR_SCHEDULER_NAME == "WarmupMultiStepLR":
        main = MultiStepParamScheduler(values=[s.GAMMA ** k for k in range(len(s.STEPS) + 1)],
                                       milestones=list(s.STEPS), num_updates=s.MAX_ITER)
    else:
        main = CosineParamScheduler(1.0, 0.0)
    sched = warmup_schedule(main, warmup_iters=s.WARMUP_ITERS, warmup_factor=s.WARMUP_FACTOR,
                            warmup_method=s.WARMUP_METHOD, max_iter=s.MAX_ITER)
    return LRMultiplier(optimizer, sched, s.MAX_ITER)
