"""The GEMM path of trained convolutions on small maps gives F.conv2d's outputs and gradients."""
import pytest
import torch
from torch.nn import functional as F

from fewshot_det.modeling.backbone import ResNet
from fewshot_det.modeling.backbone.small_conv import conv2d, uses_gemm


def _pair(n, c, o, side, stride, bias, channels_last):
    g = torch.Generator().manual_seed(side * 10 + stride)
    x = torch.randn(n, c, side, side, generator=g)
    w = torch.randn(o, c, 3, 3, generator=g) * 0.1
    b = torch.randn(o, generator=g) if bias else None
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(), w.requires_grad_(), b


@pytest.mark.parametrize("side,stride,bias,channels_last", [
    (2, 1, False, True), (3, 2, True, True), (4, 2, True, False), (1, 1, False, True),
    (2, 1, True, False)])
def test_gemm_path_equals_conv2d_forward_and_backward(side, stride, bias, channels_last):
    x, w, b = _pair(5, 16, 24, side, stride, bias, channels_last)
    args = ((stride, stride), (1, 1), (1, 1), 1)
    assert uses_gemm(x, w, *args)
    ours = conv2d(x, w, b, *args)
    ref_x, ref_w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = F.conv2d(ref_x, ref_w, b, *args)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(ref)
    ours.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, ref_w.grad, rtol=1e-5, atol=1e-4)


def test_gemm_path_only_for_trained_small_maps():
    args = ((1, 1), (1, 1), (1, 1), 1)
    x, w, _ = _pair(2, 8, 8, 2, 1, False, False)
    assert uses_gemm(x, w, *args)
    assert not uses_gemm(x.detach(), w.detach(), *args)  # inference
    with torch.no_grad():
        assert not uses_gemm(x, w, *args)
    big, _, _ = _pair(2, 8, 8, 3, 1, False, False)  # 9 output positions
    assert not uses_gemm(big, w, *args)
    assert not uses_gemm(x, w, (1, 1), (1, 1), (1, 1), 2)  # grouped
    assert not uses_gemm(x, w, (1, 1), (1, 1), (2, 2), 1)  # dilated
    assert not uses_gemm(x, w[:, :, :1, :1], (1, 1), (0, 0), (1, 1), 1)  # 1x1: a GEMM already


@pytest.mark.parametrize("norm", ["BN", "FrozenBN"])
def test_resnet_on_crops_trains_as_with_conv2d(norm, monkeypatch):
    """A ResNet-18 on 48-px crops (res5 on 2 x 2 maps): same features and gradients with the
    GEMM path as with F.conv2d everywhere."""
    from fewshot_det.modeling.backbone import small_conv

    torch.manual_seed(0)
    net = ResNet(depth=18, norm=norm, channels_last=True)
    x = torch.randn(3, 3, 48, 48)

    def run():
        net.zero_grad()
        out = net(x)
        sum(v.square().mean() for v in out.values()).backward()
        return out["res5"].detach(), net.layer4[1].conv2.weight.grad.clone()

    feats, grad = run()
    monkeypatch.setattr(small_conv, "SMALL_MAP", 0)
    ref_feats, ref_grad = run()
    assert feats.shape[-2:] == (2, 2)
    torch.testing.assert_close(feats, ref_feats, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-3, atol=1e-6)
