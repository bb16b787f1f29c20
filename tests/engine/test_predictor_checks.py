"""Predictor refuses what the tools refuse: the config's checks (``validate_cfg``), and a
checkpoint that does not fill the configured model (strict loading)."""
import pytest
import torch

import fewshot_det
from fewshot_det.config import load_cfg
from fewshot_fixtures import tiny_cfg, tiny_model
from test_predictor import YOLO_CFG


@pytest.mark.parametrize("key, value, message", [
    ("TEST.SLICE.OVERLAP", "-0.1", r"TEST.SLICE.OVERLAP must be in \[0, 1\), got -0.1"),
    ("TEST.SLICE.OVERLAP", "1.0", r"TEST.SLICE.OVERLAP must be in \[0, 1\), got 1.0"),
    ("TEST.SLICE.SIZE", "0", "TEST.SLICE.SIZE must be >= 16 pixels, got 0"),
    ("TEST.SLICE.BATCH", "0", "TEST.SLICE.BATCH must be >= 1, got 0"),
    ("INPUT.MIN_SIZE_TEST", "0", "INPUT.MIN_SIZE_TEST must be > 0 pixels, got 0"),
])
def test_predictor_runs_the_config_checks_of_the_tools(key, value, message):
    cfg = tiny_cfg("TEST.SLICE.ENABLED", "True", key, value, siamese=False)
    with pytest.raises(ValueError, match=message):
        fewshot_det.Predictor(cfg)


def _checkpoint(tmp_path, model, classes):
    path = str(tmp_path / "x.pth")
    torch.save({"model": model.state_dict(), "extra": {"thing_classes": classes}}, path)
    return path


def test_a_checkpoint_of_another_class_count_is_an_error(tmp_path):
    classes = [f"c{i}" for i in range(12)]
    path = _checkpoint(tmp_path, tiny_model(num_classes=12, siamese=False), classes)
    cfg = tiny_cfg("MODEL.WEIGHTS", path, siamese=False)  # MODEL.ROI_HEADS.NUM_CLASSES 3
    with pytest.raises(ValueError, match=r"its classifier has 13 rows \(12 classes\) but the "
                                         r"config builds 3 classes \(MODEL.ROI_HEADS."
                                         r"NUM_CLASSES 3\)"):
        fewshot_det.Predictor(cfg)
    # -1 takes the count from the checkpoint's class names: it then fits
    cfg = tiny_cfg("MODEL.WEIGHTS", path, "MODEL.ROI_HEADS.NUM_CLASSES", "-1", siamese=False)
    assert fewshot_det.Predictor(cfg).class_names == classes


def test_a_faster_rcnn_checkpoint_with_the_yolo_config_is_an_error(tmp_path):
    path = _checkpoint(tmp_path, tiny_model(siamese=False), ["a", "b", "c"])
    cfg = load_cfg(YOLO_CFG, ["MODEL.WEIGHTS", path, "MODEL.DEVICE", "cpu"])
    with pytest.raises(ValueError, match=r"fits \d+ of \d+ model tensors; missing: .*"
                                         r"head\.cls_pred.*it is not a checkpoint of this "
                                         r"config's model \(MODEL.META_ARCHITECTURE YOLOGrid\)"):
        fewshot_det.Predictor(cfg)


def test_class_names_must_match_the_class_count(tmp_path):
    path = _checkpoint(tmp_path, tiny_model(siamese=False), ["a", "b", "c"])
    cfg = tiny_cfg("MODEL.WEIGHTS", path, siamese=False)
    with pytest.raises(ValueError, match=r"2 class names \(from class_names=\) for a model of "
                                         r"3 classes"):
        fewshot_det.Predictor(cfg, class_names=["a", "b"])


def test_an_exported_model_as_weights_is_named_before_anything_else(tmp_path):
    path = tmp_path / "model.onnx"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(path))
    # YOLO's class count is -1: without the early check the error would be "no class names"
    cfg = load_cfg(YOLO_CFG, ["MODEL.WEIGHTS", str(path), "MODEL.DEVICE", "cpu"])
    with pytest.raises(ValueError, match="is a TorchScript model, not a checkpoint"):
        fewshot_det.Predictor(cfg)
