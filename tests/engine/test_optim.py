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
