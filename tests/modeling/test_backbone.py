"""ResNet + FPN backbone: declared shapes, FREEZE_AT, norms, the fused frozen-BN conv."""
import pytest
import torch
from rcnn_fixtures import image_item, tiny_cfg, tiny_model
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from fewshot_det.modeling.backbone import FPN, ResNet, conv_norm


@pytest.mark.parametrize("depth,channels", [(18, [64, 128, 256, 512]),
                                            (50, [256, 512, 1024, 2048])])
def test_resnet_fpn_outputs_match_declared_shapes(depth, channels):
    torch.manual_seed(0)
    body = ResNet(depth=depth)
    assert [s.channels for s in body.output_shape().values()] == channels
    fpn = FPN(bottom_up=body, in_features=["res2", "res3", "res4", "res5"], out_channels=8)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = fpn(x)
    shapes = fpn.output_shape()
    assert list(out) == list(shapes) == ["p2", "p3", "p4", "p5", "p6"]
    for name, feature in out.items():
        c, stride = shapes[name]
        assert feature.shape == (1, c, -(-64 // stride), -(-96 // stride)), name


def test_fpn_without_p2_names_levels_by_stage():
    fpn = FPN(bottom_up=ResNet(depth=18, out_features=["res3", "res4", "res5"]),
              in_features=["res3", "res4", "res5"], out_channels=8)
    assert {k: v.stride for k, v in fpn.output_shape().items()} == {
        "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def _requires_grad_by_stage(model: ResNet):
    groups = {"stem": [model.conv1, model.bn1]}
    groups.update({f"res{i + 2}": [s] for i, s in enumerate(model.stages())})
    return {name: any(p.requires_grad for m in mods for p in m.parameters())
            for name, mods in groups.items()}


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 4, 5])
def test_freeze_at_has_detectron2_meaning(freeze_at):
    model = ResNet(depth=18, norm="BN", freeze_at=freeze_at)
    names = ["stem", "res2", "res3", "res4", "res5"]
    expected = {n: i >= freeze_at for i, n in enumerate(names)}
    assert _requires_grad_by_stage(model) == expected
    stage_modules = [[model.bn1]] + [[s] for s in model.stages()]
    for i, mods in enumerate(stage_modules):
        norms = [m for mod in mods for m in mod.modules()
                 if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
        frozen = all(isinstance(m, FrozenBatchNorm2d) for m in norms)
        assert frozen == (i < freeze_at), names[i]


def test_frozen_stages_stay_bit_identical_after_sgd_steps():
    model = tiny_model("MODEL.BACKBONE.FREEZE_AT", 3, "MODEL.RESNETS.NORM", "BN")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02,
                          momentum=0.9, weight_decay=1e-4)
    item = image_item(boxes=[[10, 12, 60, 70]], labels=[2])
    for _ in range(3):
        opt.zero_grad()
        sum(model([item]).values()).backward()
        opt.step()
    after = model.state_dict()
    frozen = ("backbone.body.conv1.", "backbone.body.bn1.", "backbone.body.layer1.",
              "backbone.body.layer2.")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not [k for k in changed if k.startswith(frozen)]
    for trained in ("backbone.body.layer3.0.conv1.weight", "backbone.body.layer3.0.bn1.weight",
                    "backbone.body.layer4.1.bn2.running_mean",
                    "backbone.fpn.inner_blocks.0.0.weight",
                    "roi_heads.box_predictor.cls_score.weight"):
        assert trained in changed, trained


def test_fused_frozen_bn_conv_equals_conv_then_bn():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True)
    bn = FrozenBatchNorm2d(6)
    bn.weight.uniform_(0.5, 2)
    bn.bias.uniform_(-1, 1)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.1, 3)
    x = torch.randn(2, 4, 9, 11)
    torch.testing.assert_close(conv_norm(x, conv, bn), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_stride_in_1x1_moves_the_stride():
    tv_style = ResNet(depth=50, out_features=["res3"])
    msra = ResNet(depth=50, out_features=["res3"], stride_in_1x1=True)
    assert tv_style.layer2[0].conv1.stride == (1, 1) and tv_style.layer2[0].conv2.stride == (2, 2)
    assert msra.layer2[0].conv1.stride == (2, 2) and msra.layer2[0].conv2.stride == (1, 1)
    assert "layer3" not in dict(msra.named_children())  # stages after res3 are not built


def test_group_norm_options_train():
    model = tiny_model("MODEL.RESNETS.NORM", "GN", "MODEL.FPN.NORM", "GN",
                       "MODEL.FPN.OUT_CHANNELS", 32)  # GroupNorm uses 32 groups
    assert isinstance(model.backbone.body.layer1[0].bn1, nn.GroupNorm)
    assert isinstance(model.backbone.fpn.inner_blocks[0][1], nn.GroupNorm)
    losses = model([image_item(boxes=[[10, 12, 60, 70]], labels=[1])])
    assert all(torch.isfinite(v) for v in losses.values())


def test_batch_norm_in_fpn_trains():
    model = tiny_model("MODEL.RESNETS.NORM", "BN", "MODEL.FPN.NORM", "BN")
    inner = model.backbone.fpn.inner_blocks[0]
    assert isinstance(inner[1], nn.BatchNorm2d) and inner[0].bias is None  # norm replaces bias
    losses = model([image_item(boxes=[[10, 12, 60, 70]], labels=[1])])
    sum(losses.values()).backward()
    assert inner[1].weight.grad is not None and torch.isfinite(inner[1].weight.grad).all()


def test_bad_backbone_config_values_raise():
    with pytest.raises(ValueError, match="MODEL.RESNETS.NORM"):
        ResNet(depth=18, norm="LayerNorm")
    with pytest.raises(ValueError, match="MODEL.FPN.IN_FEATURES"):
        FPN(bottom_up=ResNet(depth=18, out_features=["res4", "res5"]),
            in_features=["res3", "res4"], out_channels=8)
    with pytest.raises(ValueError, match="MODEL.FPN.NORM"):
        FPN(bottom_up=ResNet(depth=18), in_features=["res4"], out_channels=8, norm="LN")
    with pytest.raises(ValueError, match="MODEL.BACKBONE.NAME = 'nope'"):
        tiny_model("MODEL.BACKBONE.NAME", "nope")
    assert tiny_cfg().MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"


def test_channels_last_gives_the_same_features():
    torch.manual_seed(0)
    fpn = FPN(bottom_up=ResNet(depth=18), in_features=["res2", "res3", "res4", "res5"],
              out_channels=8)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        plain = fpn(x)
        fpn.body.channels_last = True
        fast = fpn(x)
    assert fast["p2"].is_contiguous(memory_format=torch.channels_last)
    for name in plain:
        torch.testing.assert_close(fast[name], plain[name], atol=1e-4, rtol=1e-4)
    assert tiny_model().backbone.body.channels_last  # MODEL.BACKBONE.CHANNELS_LAST default
