import pytest
import torch

import fewshot_det
from fewshot_det.engine.optim import build_optimizer


class TwoPart(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.GroupNorm(1, 2))
        self.head = torch.nn.Linear(2, 1)


def _cfg(*opts):
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", "0.1", "SOLVER.WEIGHT_DECAY_NORM", "0.5",
                         *opts])
    return cfg


def test_lr_factors_scale_the_matching_parameters_only():
    model = TwoPart()
    opt = build_optimizer(_cfg("SOLVER.LR_FACTORS", '[["^backbone\\\\.", 0.1]]'), model)
    lr = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    assert lr[id(model.backbone[0].weight)] == pytest.approx((0.01, 1e-4))
    assert lr[id(model.backbone[1].weight)] == pytest.approx((0.01, 0.5))  # norm: its decay
    assert lr[id(model.head.weight)] == pytest.approx((0.1, 1e-4))
    assert len(lr) == len(list(model.parameters()))


def test_no_factors_is_one_learning_rate_and_bad_factors_are_errors():
    opt = build_optimizer(_cfg(), TwoPart())
    assert {g["lr"] for g in opt.param_groups} == {0.1}
    with pytest.raises(ValueError, match="SOLVER.LR_FACTORS"):
        build_optimizer(_cfg("SOLVER.LR_FACTORS", '[["^backbone", "fast"]]'), TwoPart())


def test_adamw_takes_momentum_as_beta1_and_the_config_wins_on_resume():
    from fewshot_det.engine.optim import (apply_hyperparameters, build_lr_scheduler,
                                          config_hyperparameters)

    cfg = _cfg("SOLVER.OPTIMIZER", "AdamW", "SOLVER.MOMENTUM", "0.8", "SOLVER.MAX_ITER", "10",
               "SOLVER.STEPS", "(5,)", "SOLVER.WARMUP_ITERS", "0")
    opt = build_optimizer(cfg, TwoPart())
    assert isinstance(opt, torch.optim.AdamW)
    assert {g["betas"] for g in opt.param_groups} == {(0.8, 0.999)}
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [1e-4, 0.5]
    sched = build_lr_scheduler(cfg, opt)
    wanted = config_hyperparameters(opt, sched)
    assert "momentum" not in wanted[0] and wanted[0]["betas"] == (0.8, 0.999)
    for g in opt.param_groups:  # as a state saved with other values would leave them
        g.update(betas=(0.5, 0.9), weight_decay=3.0, lr=7.0)
    apply_hyperparameters(opt, sched, wanted)
    assert {g["betas"] for g in opt.param_groups} == {(0.8, 0.999)}
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [1e-4, 0.5]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.1])


def test_an_unknown_optimizer_is_a_config_error():
    from fewshot_det.config.validate import validate_cfg

    cfg = _cfg("SOLVER.OPTIMIZER", "Adam")
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER must be SGD or AdamW, got 'Adam'"):
        validate_cfg(cfg)
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER"):
        build_optimizer(cfg, TwoPart())
