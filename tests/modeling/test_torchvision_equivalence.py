"""A torchvision fasterrcnn_resnet50_fpn state dict gives torchvision's own detections.

With ``configs/torchvision/faster_rcnn_R_50_FPN.yaml`` the weights of a (randomly
initialised, then perturbed) torchvision model are loaded through ``load_weights``, and
both models run in eval mode on the same 320 x 400 image (torchvision: min_size 320, so it
does not resize; the padded size 320 x 416 makes torchvision's P6 anchor stride 59, not 64).

The comparison runs in float64, where the two implementations agree to ~1e-9: in float32
they agree to about 1e-3 px only, because we fold frozen batch norms into the convolutions
(a different rounding order, not a different computation); a float32 check is kept on the
top detections with a tolerance that reflects this.
"""
import copy

import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn
from torchvision.models.detection.image_list import ImageList

import fewshot_det
from fewshot_det.checkpoint import load_weights
from fewshot_det.modeling import build_model
from torchvision_fixtures import CONFIG, TV_MEAN, TV_STD, perturb

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=320,
                                 max_size=1333)
    perturb(tv)
    path = str(tmp_path_factory.mktemp("tv") / "fasterrcnn_resnet50_fpn.pth")
    torch.save(tv.state_dict(), path)
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_file(CONFIG)
    ours = build_model(cfg)
    report = load_weights(ours, path)
    return tv.eval(), ours.eval(), report


def _run(tv, ours, dtype):
    torch.manual_seed(1)
    image = torch.rand(3, 320, 400, dtype=dtype)
    with torch.no_grad():
        expected = tv([image])[0]
        got = ours([{"image": image * 255, "height": 320, "width": 400}])[0]
    return expected, got


def test_every_tensor_loads(models):
    _, _, report = models
    assert report.format == "torchvision_detection"
    assert report.missing == [] and report.unexpected == [] and report.skipped == {}
    assert len(report.loaded) == 295


def test_same_detections_float64(models):
    tv, ours = (copy.deepcopy(m).double() for m in models[:2])
    ours.pixel_mean = torch.tensor(TV_MEAN, dtype=torch.float64).view(3, 1, 1) * 255
    ours.pixel_std = torch.tensor(TV_STD, dtype=torch.float64).view(3, 1, 1) * 255
    expected, got = _run(tv, ours, torch.float64)
    assert len(expected["labels"]) == 100 and len(expected["labels"].unique()) >= 5
    assert expected["scores"].max() > 0.3 and expected["scores"].min() > 0.05
    assert torch.equal(got["labels"], expected["labels"])
    torch.testing.assert_close(got["scores"], expected["scores"], atol=1e-3, rtol=0)
    torch.testing.assert_close(got["boxes"], expected["boxes"], atol=1e-3, rtol=0)
    # the proposals too (they include P6's, placed with torchvision's stride of 59 px)
    x = (torch.rand(1, 3, 320, 416, dtype=torch.float64) - 0.5) * 4
    images = ImageList(x, [(320, 400)])
    with torch.no_grad():
        features = tv.backbone(x)
        expected_proposals = tv.rpn(images, features)[0][0]
        got_proposals = ours.proposal_generator(images, dict(zip(
            ["p2", "p3", "p4", "p5", "p6"], features.values())))[0][0]
    torch.testing.assert_close(got_proposals, expected_proposals, atol=1e-6, rtol=0)


def test_same_top_detections_float32(models):
    expected, got = _run(*models[:2], torch.float32)
    assert torch.equal(got["labels"][:20], expected["labels"][:20])
    torch.testing.assert_close(got["scores"][:20], expected["scores"][:20], atol=1e-4, rtol=0)
    torch.testing.assert_close(got["boxes"][:20], expected["boxes"][:20], atol=1e-2, rtol=0)
