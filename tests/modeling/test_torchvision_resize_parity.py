"""torchvision's detections at every image size, through ``Predictor`` and ``tools/eval.py``.

A real photo is almost always resized, so parity needs the same resized size, the same
interpolation on the same values and the same box mapping back as torchvision's
GeneralizedRCNNTransform (``INPUT.RESIZE_BACKEND torchvision`` in the torchvision config).
The sizes cover up- and down-scaling, the long-side cap, portrait and landscape, odd sizes.
The short side is 192 (long side 320), not 800, to keep the test quick: the code path is
the same. The checks run in float64: float32 differs by ~1e-3 px through the folded batch norms
(test_torchvision_equivalence.py), which can swap near-tied detections.
"""
import json
import os
import sys

import cv2
import numpy as np
import pytest
import torch

import fewshot_det
from tiny_datasets import make_voc
from torchvision_fixtures import CONFIG, to_float64, torchvision_model

MIN_SIZE, MAX_SIZE = 192, 320
SIZES = [(120, 160), (480, 640), (250, 1000), (701, 333), (191, 251), (1000, 250), (57, 77)]
CLASSES = [f"c{i}" for i in range(1, 91)]


def photo(h, w, seed):
    """Smoothed noise: detailed enough that a different interpolation changes the output."""
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 1)


@pytest.fixture(scope="module")
def tv_and_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "fasterrcnn_resnet50_fpn.pth"
    return torchvision_model(path, min_size=MIN_SIZE, max_size=MAX_SIZE), str(path)


def _cfg(weights, *opts):
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu",
                         "INPUT.MIN_SIZE_TEST", str(MIN_SIZE),
                         "INPUT.MAX_SIZE_TEST", str(MAX_SIZE), *opts])
    return cfg


def _torchvision(tv, rgb, dtype=torch.float32):
    with torch.no_grad():
        return tv([torch.from_numpy(rgb).permute(2, 0, 1).to(dtype) / 255])[0]


def test_predictor_gives_torchvisions_detections_at_every_size(tv_and_weights):
    tv, weights = tv_and_weights
    tv64 = tv.double()
    predictor = fewshot_det.Predictor(_cfg(weights), class_names=CLASSES)
    predictor.model = to_float64(predictor.model)
    counts = []
    try:
        for i, (h, w) in enumerate(SIZES):
            rgb = photo(h, w, seed=i)  # the config's INPUT.FORMAT is RGB
            expected, got = _torchvision(tv64, rgb, torch.float64), predictor(rgb)
            counts.append(len(expected["labels"]))
            assert torch.equal(got["labels"], expected["labels"]), (h, w)
            torch.testing.assert_close(got["scores"].double(), expected["scores"], atol=1e-3,
                                       rtol=0, msg=f"scores at {h} x {w}")
            torch.testing.assert_close(got["boxes"].double(), expected["boxes"], atol=1e-3,
                                       rtol=0, msg=f"boxes at {h} x {w}")
    finally:
        tv.float()
    assert sum(c > 0 for c in counts) >= 6, counts  # the comparisons are not vacuous


def test_the_opencv_resize_would_not_give_them(tv_and_weights):
    # The guard on the test above: with another resize the detections differ.
    tv, weights = tv_and_weights
    predictor = fewshot_det.Predictor(_cfg(weights, "INPUT.RESIZE_BACKEND", "opencv"),
                                      class_names=CLASSES)
    rgb = photo(*SIZES[1], seed=1)
    expected, got = _torchvision(tv, rgb), predictor(rgb)
    assert len(expected["boxes"]) and len(got["boxes"])
    assert (got["boxes"][:10] - expected["boxes"][:10]).abs().max() > 1


def test_eval_tool_gives_torchvisions_detections_at_every_size(tv_and_weights, tmp_path,
                                                              monkeypatch):
    import fewshot_det.modeling

    tv, weights = tv_and_weights
    root = make_voc(tmp_path / "voc", {f"im{i}": (w, h, [("c1", [1, 1, 20, 20], 0)])
                                       for i, (h, w) in enumerate(SIZES)},
                    split="test", classes=CLASSES)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
    import eval as eval_tool

    # the tool's own model, in float64 (see the module docstring)
    build = fewshot_det.modeling.build_model
    monkeypatch.setattr(fewshot_det.modeling, "build_model", lambda cfg: to_float64(build(cfg)))
    out = tmp_path / "out"
    assert eval_tool.main(["--config", CONFIG, "--weights", weights,
                           "DATASETS.TEST", f"('voc:{root}:test',)", "OUTPUT_DIR", str(out),
                           "INPUT.MIN_SIZE_TEST", str(MIN_SIZE),
                           "INPUT.MAX_SIZE_TEST", str(MAX_SIZE)]) == 0
    (folder,) = os.listdir(out / "inference")
    results = json.load(open(out / "inference" / folder / "predictions.json"))
    tv64 = tv.double()
    try:
        for i, (h, w) in enumerate(SIZES):
            bgr = cv2.imread(os.path.join(root, "JPEGImages", f"im{i}.jpg"))
            expected = _torchvision(tv64, np.ascontiguousarray(bgr[:, :, ::-1]), torch.float64)
            entries = [r for r in results if r["image_id"] == f"im{i}"]  # in the model's order
            assert [r["category_id"] for r in entries] == expected["labels"].tolist(), (h, w)
            boxes = torch.tensor([[x, y, x + bw, y + bh] for x, y, bw, bh in
                                  (r["bbox"] for r in entries)], dtype=torch.float64)
            scores = torch.tensor([r["score"] for r in entries], dtype=torch.float64)
            torch.testing.assert_close(boxes.reshape(-1, 4), expected["boxes"], atol=1e-3,
                                       rtol=0, msg=f"boxes at {h} x {w}")
            torch.testing.assert_close(scores, expected["scores"], atol=1e-3, rtol=0)
    finally:
        tv.float()


def test_predictor_names_coco_classes_of_a_torchvision_checkpoint(tv_and_weights):
    # no class_names given: torchvision's COCO layout (91 rows) names them
    predictor = fewshot_det.Predictor(_cfg(tv_and_weights[1]))
    assert predictor.class_names[:3] == ["person", "bicycle", "car"]
    out = predictor(photo(*SIZES[1], seed=1))
    assert len(out["labels"]) and out["class_names"] == [
        predictor.class_names[int(i) - 1] for i in out["labels"]]
