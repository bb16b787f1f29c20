"""``--supports FILE`` (a support file, as the app saves it) in tools/demo.py and
tools/export_model.py: a cosine classifier takes the file's classes as imprinted rows, a
linear one is one error line naming the configs that can."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from fewshot_det.data.support_file import SupportExample, write_support_file
from fewshot_fixtures import tiny_cfg, tiny_model
from tool_fixtures import SMALL_TEST, load_tool, run_main, tiny_rcnn_files

COSINE = ["MODEL.ROI_BOX_HEAD.PREDICTOR", "CosineSimOutputLayers"]


def _cosine_files(folder):
    cfg_path = os.path.join(folder, "cosine.yaml")
    with open(cfg_path, "w") as f:
        f.write(tiny_cfg(*COSINE, *SMALL_TEST, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                         siamese=False).dump())
    weights = os.path.join(folder, "cosine.pth")
    torch.save({"model": tiny_model(*COSINE, siamese=False).state_dict(),
                "extra": {"thing_classes": ["a", "b", "c"]}}, weights)
    return cfg_path, weights


def _photos_and_supports(folder):
    photos = os.path.join(folder, "photos")
    os.makedirs(photos)
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(os.path.join(photos, f"im{i}.png"), rng.integers(0, 255, (80, 96, 3),
                                                                    np.uint8))
    supports = os.path.join(folder, "supports.json")
    write_support_file(supports, {"nest": [SupportExample(os.path.join(photos, "im0.png"),
                                                          (10.0, 10.0, 50.0, 60.0))]})
    return photos, supports


@pytest.fixture(autouse=True)
def no_log_files(monkeypatch):
    monkeypatch.setattr("fewshot_det.engine.defaults.setup_logging", lambda *a, **k: None)


def test_demo_draws_the_classes_of_a_support_file(tmp_path, capsys):
    cfg, weights = _cosine_files(str(tmp_path))
    photos, supports = _photos_and_supports(str(tmp_path))
    rc, out, errors, _ = run_main(load_tool("demo"), [
        "--config", cfg, "--weights", weights, "--input", photos, "--output",
        tmp_path / "vis", "--score-thresh", "0.0", "--supports", supports], capsys)
    assert rc in (0, None) and not errors
    assert sorted(os.listdir(tmp_path / "vis")) == ["im0.png", "im1.png"]


def test_a_linear_classifier_refuses_a_support_file_in_one_line(tmp_path, capsys):
    cfg, weights = tiny_rcnn_files(str(tmp_path))
    photos, supports = _photos_and_supports(str(tmp_path))
    rc, _, errors, _ = run_main(load_tool("demo"), [
        "--config", cfg, "--weights", weights, "--input", photos, "--output",
        tmp_path / "vis", "--supports", supports], capsys)
    assert rc == 2 and len(errors) == 1 and "takes no classes from examples" in errors[0]


def test_the_export_carries_the_support_files_classes(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    cfg, weights = _cosine_files(str(tmp_path))
    _, supports = _photos_and_supports(str(tmp_path))
    out = tmp_path / "model.ts"
    rc, _, errors, _ = run_main(load_tool("export_model"), [
        "--config", cfg, "--weights", weights, "--format", "torchscript", "--output", out,
        "--supports", supports], capsys)
    assert rc == 0 and not errors
    extra = {"fewshot_det.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["fewshot_det.json"])
    assert meta["class_names"] == ["a", "b", "c", "nest"] and meta["class_ids"] == [1, 2, 3, 4]
