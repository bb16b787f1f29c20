"""ONNX export of torchvision's MobileNetV3 detector (fasterrcnn_mobilenet_v3_large_320_fpn,
perturbed random weights) matches PyTorch on images of other sizes than the traced one:
its two stride-32 levels, 15 anchors per cell and the RPN's score threshold included.
Small images (short side 160) keep it to seconds; smoothed noise, as the weights were
calibrated on (uniform noise saturates their scores: ties, whose order is arbitrary)."""
import pytest
import torch

import fewshot_det
from fewshot_det.checkpoint import load_weights
from fewshot_det.export import ExportedModel, export_model
from fewshot_det.export.check import compare
from fewshot_det.modeling import build_model
from mobilenet_fixtures import VARIANTS, smooth_noise, torchvision_mobilenet

pytest.importorskip("onnxruntime")

# resized model inputs (not multiples of 32 but one), and the original sizes they map to
SIZES = [(160, 213), (213, 160), (160, 160), (170, 300)]


def test_onnx_export_of_the_mobilenet_detector_matches_pytorch(tmp_path):
    weights = str(tmp_path / "fasterrcnn_mobilenet_v3_large_320_fpn.pth")
    torchvision_mobilenet(weights, "320")
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_file(VARIANTS["320"][1])
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "160",
                         "INPUT.MAX_SIZE_TEST", "320"])
    model = build_model(cfg)
    load_weights(model, weights, strict=True)
    model.eval()
    path = str(tmp_path / "model.onnx")
    export_model(model, cfg, path, "onnx")
    batch = [{"image": smooth_noise(h, w, seed=i) * 255, "height": h * 2 + 1, "width": w * 3 - 5}
             for i, (h, w) in enumerate(SIZES)]
    with torch.no_grad():  # one image at a time: a batch pads every image to the largest
        reference = [model([item])[0] for item in batch]
    exported = ExportedModel(path)(batch)
    results = [compare(r, e, tuple(item["image"].shape[1:]))
               for r, e, item in zip(reference, exported, batch)]
    assert all(r.ok for r in results), results
    assert all(r.reference >= 20 for r in results), results  # the check is not vacuous
