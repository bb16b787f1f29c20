"""Every YAML file under configs/ loads with ``load_cfg`` (``_BASE_``, no renamed or misspelt
key, no wrong type), passes ``validate_cfg``, builds its model, and runs one inference
forward in eval mode on CPU.

Their datasets are not here: nothing reads data, and a class count left to the data (-1) is
set to 3. Configs whose model is the same (MODEL, without the weights path and the device,
plus the input mode and support size) share one build and one forward, which keeps the file
fast (about a third as many models as files; an R-50 builds in about 0.4 s). Each model
gets one random image (64 x 64 for the R-CNN models; INPUT.FIXED_SIZE square for YOLO-grid,
which takes no other size) and, for the siamese detector, one support crop per class first.
"""
import functools
import glob
import os
from typing import Dict, List

import pytest
import torch

from fewshot_det.config import load_cfg, num_classes, set_num_classes
from fewshot_det.modeling import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True))
META_ARCHITECTURES = {"GeneralizedRCNN", "SiameseRCNN", "YOLOGrid"}
UNSET_CLASSES = 3


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def offline_cfg(path: str):
    """The validated config on CPU, no initial weights, a class count."""
    cfg = load_cfg(path, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    if num_classes(cfg) == -1:
        set_num_classes(cfg, UNSET_CLASSES)
    return cfg


def model_groups() -> Dict[str, List[str]]:
    """Model description -> the configs that build that model."""
    groups: Dict[str, List[str]] = {}
    for path in CONFIGS:
        cfg = offline_cfg(path)
        i = cfg.INPUT
        key = cfg.MODEL.dump() + repr((i.RESIZE_MODE, i.FIXED_SIZE, cfg.FEWSHOT.SUPPORT.SIZE))
        groups.setdefault(key, []).append(path)
    return groups


GROUPS = sorted(model_groups().values())


def test_configs_are_found():
    assert len(CONFIGS) > 20
    assert {offline_cfg(p).MODEL.META_ARCHITECTURE for p in CONFIGS} == META_ARCHITECTURES


@pytest.mark.parametrize("path", CONFIGS, ids=rel)
def test_shipped_config_loads_and_validates(path):
    cfg = offline_cfg(path)
    assert cfg.MODEL.META_ARCHITECTURE in META_ARCHITECTURES
    assert num_classes(cfg) >= 1


def _image(size: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(3, size, size, generator=g) * 255, "height": size,
            "width": size, "image_id": seed}


def _set_supports(model, cfg) -> None:
    """One support crop per class (a box around its middle half)."""
    k, side = num_classes(cfg), cfg.FEWSHOT.SUPPORT.SIZE
    g = torch.Generator().manual_seed(1)
    images = torch.rand(k, 3, side, side, generator=g) * 255
    boxes = torch.tensor([[side / 4, side / 4, 3 * side / 4, 3 * side / 4]]).repeat(k, 1)
    model.set_supports(images, boxes, torch.arange(1, k + 1))


@pytest.mark.parametrize("paths", GROUPS, ids=lambda ps: f"{rel(ps[0])}+{len(ps) - 1}")
def test_shipped_model_builds_and_runs_inference(paths):
    cfg = offline_cfg(paths[0])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    size = cfg.INPUT.FIXED_SIZE if cfg.INPUT.RESIZE_MODE == "fixed_square" else 64
    with torch.no_grad():
        if cfg.MODEL.META_ARCHITECTURE == "SiameseRCNN":
            _set_supports(model, cfg)
        (out,) = model([_image(size, seed=0)])
    d = len(out["scores"])
    assert out["boxes"].shape == (d, 4) and out["labels"].shape == (d,)
    assert d <= cfg.TEST.DETECTIONS_PER_IMAGE
    assert torch.isfinite(out["boxes"]).all() and torch.isfinite(out["scores"]).all()
    if d:
        assert 1 <= int(out["labels"].min()) and int(out["labels"].max()) <= num_classes(cfg)
        assert float(out["boxes"].min()) >= 0 and float(out["boxes"].max()) <= size


# The few-shot benchmark (BENCHMARKS.md, sections 5 and 6) and BCCD were measured with these
# solvers and scales:
# a change of the quick starts they inherit from must not change them silently.
MEASURED_SOLVERS = {
    "configs/quickstart/fewshot_tfa_base_shapes.yaml":
        {"SOLVER.OPTIMIZER": "SGD", "SOLVER.BASE_LR": 0.02, "SOLVER.WEIGHT_DECAY": 1e-4,
         "SOLVER.MAX_ITER": 2700, "PRETRAIN.ITERS": 0, "INPUT.MIN_SIZE_TRAIN": (224, 256, 288),
         "INPUT.MIN_SIZE_TEST": 288, "TEST.EVAL_PERIOD": 375},
    "configs/quickstart/fewshot_siamese_base_shapes.yaml":
        {"SOLVER.OPTIMIZER": "SGD", "SOLVER.BASE_LR": 0.02, "SOLVER.WEIGHT_DECAY": 1e-4,
         "SOLVER.MAX_ITER": 1000, "PRETRAIN.ITERS": 0, "INPUT.MIN_SIZE_TRAIN": (224, 256, 288),
         "INPUT.MIN_SIZE_TEST": 288, "TEST.EVAL_PERIOD": 375},
    "configs/BCCD/faster_rcnn_R18_FPN_bccd.yaml":
        {"SOLVER.MAX_ITER": 1500, "PRETRAIN.ITERS": 400, "PRETRAIN.HEADS": False,
         "INPUT.MIN_SIZE_TRAIN": (288, 320, 352), "TEST.EVAL_PERIOD": 375},
    "configs/quickstart/yolo_fewshot_base_shapes.yaml":
        {"SOLVER.OPTIMIZER": "SGD", "SOLVER.BASE_LR": 0.02, "SOLVER.WEIGHT_DECAY": 1e-4,
         "SOLVER.MAX_ITER": 2700, "PRETRAIN.ITERS": 400, "PRETRAIN.OPTIMIZER": "SGD",
         "PRETRAIN.SIZE": 64, "PRETRAIN.BASE_LR": 0.05, "SOLVER.EMA.DECAY": 0.998},
}


@pytest.mark.parametrize("path", sorted(MEASURED_SOLVERS))
def test_fewshot_base_configs_keep_the_measured_solver(path):
    cfg = offline_cfg(os.path.join(ROOT, path))
    for key, value in MEASURED_SOLVERS[path].items():
        got = functools.reduce(getattr, key.split("."), cfg)
        exact = isinstance(value, (str, bool, tuple))
        assert got == (value if exact else pytest.approx(value)), key
