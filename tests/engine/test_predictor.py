import os
import re

import numpy as np
import pytest
import torch

import fewshot_det
from fewshot_det.config import load_cfg
from fewshot_det.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
YOLO_CFG = os.path.join(REPO, "configs", "quickstart", "yolo_R18_shapes.yaml")


def _yolo_checkpoint(tmp_path, classes):
    cfg = load_cfg(YOLO_CFG, ["MODEL.YOLO.NUM_CLASSES", str(len(classes)), "MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    path = str(tmp_path / "yolo.pth")
    torch.save({"model": build_model(cfg).state_dict(), "extra": {"thing_classes": classes}}, path)
    return path


def test_yolo_predictor_takes_its_class_count_from_the_checkpoint(tmp_path):
    path = _yolo_checkpoint(tmp_path, ["insulator", "bird_nest", "damper"])
    cfg = load_cfg(YOLO_CFG, ["MODEL.WEIGHTS", path, "MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.YOLO.NUM_CLASSES == -1
    predictor = fewshot_det.Predictor(cfg)
    assert predictor.cfg.MODEL.YOLO.NUM_CLASSES == 3
    assert predictor.cfg.MODEL.ROI_HEADS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES
    out = predictor(np.zeros((120, 150, 3), np.uint8))
    assert set(out["class_names"]) <= {"insulator", "bird_nest", "damper"}


def test_predictor_without_class_names_names_the_key_of_its_model(tmp_path):
    cfg = load_cfg(YOLO_CFG, ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "()",
                              "DATASETS.TEST", "()"])
    with pytest.raises(ValueError, match=r"MODEL\.YOLO\.NUM_CLASSES is -1"):
        fewshot_det.Predictor(cfg)


@pytest.mark.parametrize("shape", [(0, 150, 3), (120, 0, 3)])
def test_predictor_refuses_an_empty_image_naming_its_shape(tmp_path, shape):
    path = _yolo_checkpoint(tmp_path, ["insulator"])
    predictor = fewshot_det.Predictor(load_cfg(YOLO_CFG, ["MODEL.WEIGHTS", path,
                                                          "MODEL.DEVICE", "cpu"]))
    with pytest.raises(ValueError, match="empty image of shape " + re.escape(str(shape))):
        predictor(np.zeros(shape, np.uint8))
