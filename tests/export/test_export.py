"""ONNX and TorchScript export of the three model families, checked against PyTorch on
images of several sizes (tiny random models: the graphs, not the weights, are tested)."""
import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import fewshot_fixtures as ff
from fewshot_det.engine.predictor import Predictor
from fewshot_det.export import ExportedModel, ExportedPredictor, export_model
from fewshot_det.export.check import compare, compare_predictors
from fewshot_det.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
YOLO = ["MODEL.META_ARCHITECTURE", "YOLOGrid", "MODEL.BACKBONE.NAME", "build_resnet_backbone",
        "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "0",
        "INPUT.RESIZE_MODE", "fixed_square", "INPUT.FIXED_SIZE", "64",
        "MODEL.YOLO.GRID_SIZE", "2", "MODEL.YOLO.HEAD_CONV_DIM", "16",
        "MODEL.YOLO.NUM_CLASSES", "3"]
SMALL_TEST = ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160"]
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts"}

pytest.importorskip("onnxruntime")


def family_cfg(family):
    if family == "yolo":
        cfg = ff.fewshot_det.get_cfg()
        cfg.merge_from_list(YOLO)
        return cfg
    return ff.tiny_cfg(*SMALL_TEST, siamese=family == "siamese")


def family_model(family, seed=0):
    torch.manual_seed(seed)
    model = build_model(family_cfg(family)).eval()
    if family == "siamese":
        s = ff.supports([1, 3], seed=seed)
        model.set_supports(s["images"], s["boxes"], s["labels"])  # class 2: no prototype
    return model


def queries(family):
    """Resized model inputs of several sizes (one per aspect), their original sizes
    different again, so the mapping back is checked too."""
    sizes = [(64, 64)] * 2 if family == "yolo" else [(96, 128), (160, 96), (64, 64), (96, 100)]
    out = []
    for i, (h, w) in enumerate(sizes):
        g = torch.Generator().manual_seed(i)
        out.append({"image": torch.rand(3, h, w, generator=g) * 255,
                    "height": h * 3 + 1, "width": w * 2 + 5})
    return out


def parity(model, exported, batch):
    with torch.no_grad():  # one image at a time: a batch pads every image to the largest
        reference = [model([item])[0] for item in batch]
    return [compare(r, e, tuple(item["image"].shape[1:]))
            for r, e, item in zip(reference, exported(batch), batch)]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("family", ["rcnn", "siamese", "yolo"])
def test_export_matches_pytorch_on_every_size(family, fmt, tmp_path):
    model = family_model(family)
    path = str(tmp_path / f"model{SUFFIX[fmt]}")
    export_model(model, family_cfg(family), path, fmt)
    results = parity(model, ExportedModel(path), queries(family))
    assert all(r.ok for r in results), results
    assert all(r.reference > 0 for r in results), "no detections: the check would be empty"
    if family == "siamese":  # only the classes given as supports are detected
        exported = ExportedModel(path)(queries(family)[:1])[0]
        assert set(exported["labels"].tolist()) <= {1, 3}


@pytest.mark.parametrize("family", ["rcnn", "siamese", "yolo"])
def test_export_of_an_image_without_detections(family, tmp_path):
    model = family_model(family)
    with torch.no_grad():  # every object score far below the test threshold
        if family == "yolo":
            model.head.box_pred.bias[4::5] = -30.0
        elif family == "siamese":  # cosine logits: no bias to move; nothing scores > 1
            model.roi_heads.score_thresh = 1.0
        else:
            model.roi_heads.box_predictor.cls_score.bias[0] = 30.0
    path = str(tmp_path / "model.onnx")
    export_model(model, family_cfg(family), path, "onnx")
    results = parity(model, ExportedModel(path), queries(family)[:2])
    assert [r.reference for r in results] == [0, 0]
    assert all(r.ok for r in results), results


def _save_checkpoint(model, path, classes):
    torch.save({"model": model.state_dict(), "extra": {"thing_classes": classes}}, path)


def test_exported_predictor_equals_predictor_on_photos(tmp_path):
    """Predictor's interface on uint8 images of other sizes: resized, run, mapped back;
    with sliced inference too."""
    cfg = family_cfg("rcnn")
    weights = str(tmp_path / "model.pth")
    _save_checkpoint(family_model("rcnn"), weights, ["a", "b", "c"])
    cfg.MODEL.WEIGHTS = weights
    predictor = Predictor(cfg)
    path = str(tmp_path / "model.onnx")
    export_model(predictor.model, predictor.cfg, path, "onnx", predictor.class_names)
    exported = ExportedPredictor(path)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(120, 200), (300, 90)]]
    report = compare_predictors(predictor, exported, images)
    assert report.ok, report.summary()
    assert exported(images[0])["class_names"] == predictor(images[0])["class_names"]
    from fewshot_det.engine.slicing import image_detector

    for p in (predictor, exported):  # the detector is chosen at construction: rebuild it
        p.cfg.defrost()
        p.cfg.merge_from_list(["TEST.SLICE.ENABLED", True, "TEST.SLICE.SIZE", 128])
        p.detect = image_detector(p.cfg, p.model)
    sliced = compare_predictors(predictor, exported, [images[1]])
    assert sliced.ok and sliced.images[0].reference > 0, sliced.summary()
    with pytest.raises(ValueError, match="export it again"):
        exported.set_supports({"a": [(images[0], [0, 0, 10, 10])]})


def test_runner_refuses_files_it_did_not_write(tmp_path):
    path = tmp_path / "other.ts"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(path))
    with pytest.raises(ValueError, match="no fewshot_det description"):
        ExportedModel(str(path))


def test_siamese_export_needs_prototypes(tmp_path):
    model = build_model(family_cfg("siamese")).eval()
    with pytest.raises(ValueError, match="no class prototypes"):
        export_model(model, family_cfg("siamese"), str(tmp_path / "m.onnx"), "onnx")


def test_onnx_yolo_grid_must_divide_the_feature_map(tmp_path):
    cfg = family_cfg("yolo")
    cfg.merge_from_list(["MODEL.YOLO.GRID_SIZE", "4"])  # 64 px -> a 2 x 2 res5 map
    model = build_model(cfg)
    with pytest.raises(ValueError, match="MODEL.YOLO.GRID_SIZE 4 does not divide"):
        export_model(model, cfg, str(tmp_path / "m.onnx"), "onnx")
    export_model(model, cfg, str(tmp_path / "m.ts"), "torchscript")  # no such limit


def test_core_install_does_not_pull_onnxruntime():
    requires = importlib.metadata.requires("fewshot_det") or []
    core = [r for r in requires if "extra ==" not in r]
    assert core and not [r for r in core if r.lower().startswith(("onnx", "onnxruntime"))]
    assert any(r.startswith("onnxruntime") and 'extra == "export"' in r for r in requires)


def test_export_tool_writes_and_checks(tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    cfg = family_cfg("rcnn")
    cfg_path.write_text(cfg.dump())
    weights = tmp_path / "model.pth"
    _save_checkpoint(family_model("rcnn"), str(weights), ["a", "b", "c"])
    out = tmp_path / "model.ts"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(
        [sys.executable, "tools/export_model.py", "--config", str(cfg_path), "--weights",
         str(weights), "--format", "torchscript", "--output", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "the export matches PyTorch on 3 image(s)" in proc.stdout
    assert out.is_file()
    proc = subprocess.run(
        [sys.executable, "tools/export_model.py", "--config", str(cfg_path), "--weights",
         str(weights), "--format", "onnx", "--output", str(tmp_path / "s.onnx"),
         "--supports", "no_such_dataset"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --supports: ")
