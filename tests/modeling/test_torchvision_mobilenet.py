"""torchvision's fasterrcnn_mobilenet_v3_large_fpn and ..._320_fpn state dicts give
torchvision's own detections and proposals.

With ``configs/torchvision/faster_rcnn_mobilenet_v3_large(_320)_FPN.yaml`` the weights of a
randomly initialised, then perturbed, torchvision model (``mobilenet_fixtures.perturb``)
are loaded through ``Predictor`` (``INPUT.RESIZE_BACKEND`` torchvision: the same resized
input), and both run on images of many sizes: up- and down-scaling, the long-side cap,
portrait and landscape, sides that are not multiples of 32. What these detectors do unlike
the R-50 one is checked on the way: two stride-32 pyramid levels and a stride-64 one, 15
anchors per cell, RoIs pooled from one level, the RPN's score threshold, 150 proposals for
the 320 variant.

The comparisons run in float64, where the two agree to ~1e-14 on the same resized image
(through ``Predictor``, whose data pipeline resizes in float32, to ~1e-3 px); a float32
check is kept on the top detections. The body is torchvision's own modules, so float32
differs only by the rounding of the input normalisation and of a few reductions.
"""
import copy

import cv2
import numpy as np
import pytest
import torch

import fewshot_det
from fewshot_det.checkpoint import load_weights
from fewshot_det.modeling import build_model
from mobilenet_fixtures import VARIANTS, torchvision_mobilenet
from torchvision_fixtures import to_float64

# 320 variant: short side 320, long side <= 640 (resized: 320 x 426, 160 x 640, 640 x 304,
# 320 x 420, 640 x 160, 320 x 432); the 800 one (slower) at 1333 x 633, the long-side cap.
SIZES = {"320": [(120, 160), (480, 640), (250, 1000), (701, 333), (191, 251), (1000, 250),
                 (57, 77)],
         "800": [(701, 333)]}
NUM_TENSORS = 284  # torchvision's state dict less the BN's num_batches_tracked


def photo(h, w, seed):
    """Smoothed noise: detailed enough that a different interpolation changes the output."""
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 1)


@pytest.fixture(scope="module", params=["320", "800"])
def variant(request, tmp_path_factory):
    """(name, eval-mode torchvision model, its weights file)."""
    path = tmp_path_factory.mktemp("tv") / f"mobilenet_{request.param}.pth"
    return request.param, torchvision_mobilenet(path, request.param), str(path)


def _cfg(name, weights):
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_file(VARIANTS[name][1])
    cfg.merge_from_list(["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu"])
    return cfg


def _torchvision(tv, rgb, dtype):
    with torch.no_grad():
        return tv([torch.from_numpy(rgb).permute(2, 0, 1).to(dtype) / 255])[0]


def test_every_tensor_loads_and_the_classes_are_cocos(variant):
    name, _, weights = variant
    model = build_model(_cfg(name, weights))
    report = load_weights(model, weights, strict=True)
    assert report.format == "torchvision_mobilenet_detection"
    assert report.missing == [] and report.unexpected == [] and report.skipped == {}
    assert len(report.loaded) == NUM_TENSORS
    predictor = fewshot_det.Predictor(_cfg(name, weights))  # no class_names given
    assert predictor.class_names[:3] == ["person", "bicycle", "car"]


def _close(got, expected, where, *, scores, boxes):
    assert torch.equal(got["labels"], expected["labels"]), where
    torch.testing.assert_close(got["scores"].double(), expected["scores"], atol=scores, rtol=0,
                               msg=f"scores {where}")
    torch.testing.assert_close(got["boxes"].double(), expected["boxes"], atol=boxes, rtol=0,
                               msg=f"boxes {where}")


def test_same_detections_at_every_size_float64(variant):
    name, tv, weights = variant
    predictor = fewshot_det.Predictor(_cfg(name, weights))
    ours = predictor.model = to_float64(predictor.model)
    tv64 = copy.deepcopy(tv).double()
    counts = []
    for i, (h, w) in enumerate(SIZES[name]):
        rgb = photo(h, w, seed=i)  # the config's INPUT.FORMAT is RGB
        expected = _torchvision(tv64, rgb, torch.float64)
        counts.append(len(expected["labels"]))
        assert len(expected["labels"].unique()) >= 5, (h, w)
        # The model on torchvision's resized image: the same computation. (torchvision
        # maps the boxes back to the original size by a float32 ratio, hence 1e-4 px.)
        image = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float64) / 255
        with torch.no_grad():
            resized = tv64.transform.resize(image)[0]
            got = ours([{"image": resized * 255, "height": h, "width": w}])[0]
        _close(got, expected, f"at {h} x {w}", scores=1e-10, boxes=1e-4)
        # Through Predictor, whose data pipeline resizes in float32.
        _close(predictor(rgb), expected, f"at {h} x {w} (Predictor)", scores=1e-4, boxes=2e-3)
    assert min(counts) >= 20, counts  # the comparisons are not vacuous


def test_same_top_detections_float32(variant):
    name, tv, weights = variant
    predictor = fewshot_det.Predictor(_cfg(name, weights))
    for i, (h, w) in enumerate(SIZES[name][:2]):
        rgb = photo(h, w, seed=i)
        expected, got = _torchvision(tv, rgb, torch.float32), predictor(rgb)
        assert torch.equal(got["labels"][:20], expected["labels"][:20]), (h, w)
        torch.testing.assert_close(got["scores"][:20], expected["scores"][:20], atol=1e-4,
                                   rtol=0)
        torch.testing.assert_close(got["boxes"][:20], expected["boxes"][:20], atol=1e-2,
                                   rtol=0)


def _proposals(tv, ours, rgb):
    """torchvision's and our proposals from the same (torchvision's) input and pyramid."""
    image = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float64) / 255
    with torch.no_grad():
        images = tv.transform([image])[0]
        features = tv.backbone(images.tensors)
        expected = tv.rpn(images, features)[0][0]
        got = ours.proposal_generator(images, dict(zip(["p4", "p5", "p6"],
                                                       features.values())))[0][0]
    return expected, got


def test_same_proposals_float64(variant):
    name, tv, weights = variant
    tv64 = copy.deepcopy(tv).double()
    ours = to_float64(build_model(_cfg(name, weights)))
    load_weights(ours, weights, strict=True)
    ours.eval()
    topk = ours.proposal_generator.post_nms_topk[1]
    for i, (h, w) in enumerate(SIZES[name]):
        expected, got = _proposals(tv64, ours, photo(h, w, seed=i))
        # the RPN's score threshold leaves fewer than the top-k (mobilenet_fixtures.perturb)
        assert 20 <= len(expected) < topk, (h, w)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0, msg=f"at {h} x {w}")
    # The guard: without the RPN's score threshold the proposals would differ.
    ours.proposal_generator.score_thresh_test = 0.0
    expected, got = _proposals(tv64, ours, photo(*SIZES[name][0], seed=0))
    assert len(got) == topk > len(expected)
