"""The MobileNetV3-Large backbone: torchvision's stages, strides, freezing and weights."""
import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.detection.backbone_utils import _mobilenet_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

import fewshot_det
from fewshot_det.checkpoint import load_state, load_weights
from fewshot_det.config import ConfigError, validate_cfg
from fewshot_det.modeling import build_model
from fewshot_det.modeling.backbone import FPN, MobileNetV3
from fewshot_det.modeling.backbone.mobilenet import STAGES
from mobilenet_fixtures import VARIANTS

CHANNELS = {"stage0": 16, "stage1": 24, "stage2": 40, "stage3": 80, "stage4": 160,
            "stage5": 960}
STRIDES = {"stage0": 2, "stage1": 4, "stage2": 8, "stage3": 16, "stage4": 32, "stage5": 32}


def test_outputs_match_declared_shapes():
    body = MobileNetV3(out_features=STAGES).eval()
    assert body.stage_blocks == [0, 2, 4, 7, 13, 16]
    assert {k: (s.channels, s.stride) for k, s in body.output_shape().items()} == {
        k: (CHANNELS[k], STRIDES[k]) for k in STAGES}
    with torch.no_grad():
        out = body(torch.randn(1, 3, 96, 160))
    for name, x in out.items():
        assert tuple(x.shape) == (1, CHANNELS[name], 96 // STRIDES[name], 160 // STRIDES[name])
    assert len(MobileNetV3(out_features=["stage3"]).features) == 8  # later blocks not built


def test_same_features_as_torchvisions_detection_body():
    torch.manual_seed(0)
    tv = _mobilenet_extractor(mobilenet_v3_large(norm_layer=FrozenBatchNorm2d), True, 3)
    for m in tv.modules():  # non-trivial frozen statistics
        if isinstance(m, FrozenBatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    fpn = FPN(bottom_up=MobileNetV3(freeze_at=3), in_features=["stage4", "stage5"],
              out_channels=256)
    state = {k.replace("body.", "body.features.", 1) if k.startswith("body.") else k: v
             for k, v in tv.state_dict().items()}
    assert fpn.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        expected, got = tv(x), fpn(x)
    assert list(got) == ["p4", "p5", "p6"]
    assert [(s.stride, s.channels) for s in fpn.output_shape().values()] == [
        (32, 256), (32, 256), (64, 256)]
    for a, b in zip(expected.values(), got.values()):
        torch.testing.assert_close(b, a, atol=0, rtol=0)


@pytest.mark.parametrize("freeze_at", range(7))
def test_freeze_at_is_torchvisions_trainable_layers(freeze_at):
    tv = _mobilenet_extractor(mobilenet_v3_large(norm_layer=nn.BatchNorm2d), True,
                              6 - freeze_at)
    expected = {k[len("body."):] for k, p in tv.named_parameters()
                if k.startswith("body.") and p.requires_grad}
    body = MobileNetV3(norm="BN", freeze_at=freeze_at)
    assert {k[len("features."):] for k, p in body.named_parameters() if p.requires_grad} == \
        expected
    # frozen blocks have frozen batch norms (their statistics do not drift in training)
    end = body.stage_blocks[freeze_at] if freeze_at < 6 else 17
    for i, block in enumerate(body.features):
        kinds = {type(m) for m in block.modules() if isinstance(m, (nn.BatchNorm2d,
                                                                    FrozenBatchNorm2d))}
        assert kinds == ({FrozenBatchNorm2d} if i < end else {nn.BatchNorm2d}), i


def test_channels_last_gives_the_same_features():
    torch.manual_seed(0)
    body = MobileNetV3().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        plain = body(x)
        body.channels_last = True
        fast = body(x)
    assert fast["stage5"].is_contiguous(memory_format=torch.channels_last)
    for name in plain:
        torch.testing.assert_close(fast[name], plain[name], atol=1e-5, rtol=1e-5)


def test_bad_values_raise_naming_the_key():
    with pytest.raises(ValueError, match="MODEL.MOBILENET_V3.NORM"):
        MobileNetV3(norm="GN")
    with pytest.raises(ValueError, match="MODEL.MOBILENET_V3.OUT_FEATURES"):
        MobileNetV3(out_features=["res4"])
    with pytest.raises(ValueError, match="MODEL.BACKBONE.FREEZE_AT must be in 0..6"):
        MobileNetV3(freeze_at=7)
    with pytest.raises(ValueError, match="clashing output names"):
        FPN(bottom_up=MobileNetV3(), in_features=["stage5", "stage5"], out_channels=8)


def _cfg(*opts):
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_file(VARIANTS["800"][1])
    cfg.merge_from_list(list(opts))
    return cfg


def test_config_checks_follow_the_backbone():
    validate_cfg(_cfg("MODEL.BACKBONE.FREEZE_AT", 6))  # 0..6 for MobileNetV3
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.FREEZE_AT must be in 0..6"):
        validate_cfg(_cfg("MODEL.BACKBONE.FREEZE_AT", 7))
    with pytest.raises(ConfigError, match=r"MODEL.FPN.IN_FEATURES \['stage3'\]"):
        validate_cfg(_cfg("MODEL.FPN.IN_FEATURES", "['stage3', 'stage4']"))
    with pytest.raises(ConfigError, match="MODEL.RESNETS.OUT_FEATURES"):  # ResNet: as before
        validate_cfg(_cfg("MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone"))


def test_imagenet_weights_load_into_the_body(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / "mobilenet_v3_large.pth")
    torch.save(mobilenet_v3_large().state_dict(), path)
    cfg = _cfg("MODEL.ROI_HEADS.NUM_CLASSES", 3)
    model = build_model(cfg)
    report = load_weights(model, path)
    assert report.format == "torchvision_mobilenet"
    assert {n.split(".")[0] for n in report.unexpected} == {"classifier"}
    body = {n for n in model.state_dict() if n.startswith("backbone.body.")}
    assert body <= set(report.loaded) and not report.hint
    assert all(not n.startswith("backbone.body.") for n in report.missing)
    report = load_state(model, dict(model.state_dict()), source="itself")
    assert report.missing == []  # our own checkpoint of the mobilenet detector: fewshot_det
