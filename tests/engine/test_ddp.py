"""DDP wrapping (fewshot_det/engine/ddp.py): no needless graph walk, no stride-mismatch copies."""
import torch
from torch import nn

import ddp_worker
from fewshot_det.engine.ddp import match_grad_strides
from fewshot_det.engine.launch import launch

DDP_WARNINGS = ("find_unused_parameters=True was specified",
                "Grad strides do not match bucket view strides")


def test_gradients_take_the_weights_strides_with_the_same_values():
    def grads(hooked):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 1, stride=2))
        handles = match_grad_strides(model) if hooked else []
        x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
        model(x).square().mean().backward()
        for h in handles:
            h.remove()
        return [p.grad for p in model.parameters()], list(model.parameters())

    plain, _ = grads(False)
    hooked, params = grads(True)
    for g, ref, p in zip(hooked, plain, params):
        assert torch.equal(g, ref)
        assert g.stride() == p.stride()


def test_two_processes_agree_without_ddp_warnings(tmp_path, capfd):
    launch(ddp_worker.strided_1x1_steps, 2, args=(str(tmp_path / "state.pt"),))
    err = capfd.readouterr().err
    assert not [w for w in DDP_WARNINGS if w in err], err[-3000:]
    ranks = [torch.load(tmp_path / f"state.pt.{r}", weights_only=True) for r in (0, 1)]
    for k, v in ranks[0].items():
        assert torch.equal(ranks[1][k], v), k  # the gradients were averaged
