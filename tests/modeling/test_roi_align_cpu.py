"""The training RoIAlign (sampling points as taps) gives torchvision's values and gradients."""
import pytest
import torch
from torchvision.ops import roi_align as tv_roi_align

from fewshot_det.modeling.roi_heads import roi_align_cpu
from fewshot_det.modeling.roi_heads import poolers
from fewshot_det.modeling.roi_heads.poolers import ROIPooler


def _rois(n_images, count, extent, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(count, 2, generator=g) * (extent + 40) - 20  # some start outside
    wh = torch.rand(count, 2, generator=g) * extent * 0.6 + 0.2  # sub-pixel to large
    image = torch.randint(0, n_images, (count, 1), generator=g).float()
    return torch.cat([image, xy, xy + wh], 1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("scale,sampling,channels_last", [
    (1 / 8, 2, True), (1 / 4, 1, False), (1 / 16, 3, True), (1.0, 2, False)])
def test_values_and_gradients_equal_torchvision(aligned, scale, sampling, channels_last):
    g = torch.Generator().manual_seed(1)
    feature = torch.randn(3, 5, 13, 17, generator=g)
    if channels_last:
        feature = feature.contiguous(memory_format=torch.channels_last)
    rois = _rois(3, 60, 17 / scale, seed=2)
    ours_in = feature.clone().requires_grad_()
    ref_in = feature.clone().requires_grad_()
    ours = roi_align_cpu.roi_align(ours_in, rois, (7, 7), scale, sampling, aligned)
    ref = tv_roi_align(ref_in, rois, (7, 7), scale, sampling, aligned)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn(ref.shape, generator=g)
    ours.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-5, atol=1e-4)


def test_no_rois_and_the_dispatch():
    feature = torch.randn(1, 4, 8, 8, requires_grad=True)
    assert roi_align_cpu.roi_align(feature, torch.zeros(0, 5), (7, 7), 1.0, 2,
                                   True).shape == (0, 4, 7, 7)
    assert roi_align_cpu.use_fast_path(feature, 2)
    assert not roi_align_cpu.use_fast_path(feature, 0)  # adaptive sampling: torchvision
    assert not roi_align_cpu.use_fast_path(feature.detach(), 2)
    with torch.no_grad():
        assert not roi_align_cpu.use_fast_path(feature, 2)  # inference: torchvision, exactly


def test_pooler_trains_through_the_taps(monkeypatch):
    calls = []
    real = roi_align_cpu.roi_align
    monkeypatch.setattr(poolers, "cpu_roi_align", lambda *a: calls.append(1) or real(*a))
    pooler = ROIPooler(output_size=7, strides=(8, 16), sampling_ratio=2)
    features = [torch.randn(2, 4, 16, 16, requires_grad=True),
                torch.randn(2, 4, 8, 8, requires_grad=True)]
    boxes = [torch.tensor([[4.0, 4.0, 30.0, 40.0], [0.0, 0.0, 120.0, 110.0]]),
             torch.tensor([[10.0, 20.0, 60.0, 70.0]])]
    pooler(features, boxes).sum().backward()
    assert calls and features[0].grad is not None
    calls.clear()
    with torch.no_grad():
        pooler(features, boxes)
    pooler.eval()  # evaluation with gradients on: torchvision's op, exactly
    pooler(features, boxes)
    assert not calls
