#!/usr/bin/env python
"""Inference time per image: PyTorch against the exported model on onnxruntime (and on
TorchScript), side by side in one run, with the parity check of every image.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/export_speed.py [--images 6] [--models r18 r50 yolo]

Models (random weights, seeded: the graphs and kernels are timed, not the training):
  r18  configs/quickstart/faster_rcnn_R18_FPN_shapes.yaml (the quick start, 12 classes)
  r50  configs/torchvision/faster_rcnn_R_50_FPN.yaml (torchvision's R-50-FPN, 90 classes,
       800 px), random weights with batch norms and logits perturbed so that scores spread
       (tests/modeling/torchvision_fixtures.py): plain random init leaves a 50-layer
       network without normalisation, whose logits saturate at magnitudes where float32
       rounding alone moves scores by 1e-4
  yolo configs/quickstart/yolo_R18_shapes.yaml (YOLO-grid quick start)
Each image (a 4:3 noise photo of 1024 x 768) goes through ``Predictor`` and through
``ExportedPredictor`` on the .onnx and the TorchScript file: resize, network, mapping back.
The backends alternate image by image after one warm-up image each; the median is reported.
Threads: PyTorch's default and onnxruntime's default (both use every core).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "modeling"))  # torchvision_fixtures

from machine import cpu_name  # noqa: E402 (benchmarks/machine.py)

MODELS = {
    "r18": ("configs/quickstart/faster_rcnn_R18_FPN_shapes.yaml", 12),
    "r50": ("configs/torchvision/faster_rcnn_R_50_FPN.yaml", 90),
    "yolo": ("configs/quickstart/yolo_R18_shapes.yaml", 12),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=6, help="timed images per backend")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    return p.parse_args(argv)


def build_predictor(name: str, folder: str):
    import torch

    from fewshot_det.config import load_cfg, set_num_classes
    from fewshot_det.engine.predictor import Predictor
    from fewshot_det.modeling import build_model

    config, classes = MODELS[name]
    cfg = load_cfg(os.path.join(ROOT, config), ["MODEL.DEVICE", "cpu"])
    set_num_classes(cfg, classes)
    weights = os.path.join(folder, f"{name}.pth")
    if name == "r50":
        from torchvision_fixtures import torchvision_model

        torchvision_model(weights, min_size=cfg.INPUT.MIN_SIZE_TEST,
                          max_size=cfg.INPUT.MAX_SIZE_TEST)
    else:
        torch.manual_seed(0)
        names = [f"class{i}" for i in range(1, classes + 1)]
        torch.save({"model": build_model(cfg).state_dict(),
                    "extra": {"thing_classes": names}}, weights)
    cfg.MODEL.WEIGHTS = weights
    return Predictor(cfg)


def time_backends(predictors: dict, images) -> dict:
    """{backend: median seconds per image}; backends alternate image by image."""
    for p in predictors.values():
        p(images[0])  # warm-up: first-call allocations, onnxruntime's graph setup
    times = {k: [] for k in predictors}
    for image in images:
        for k, p in predictors.items():
            start = time.perf_counter()
            p(image)
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    import numpy as np
    import torch

    from fewshot_det.export import ExportedPredictor, export_model
    from fewshot_det.export.check import compare_predictors

    args = parse_args(argv)
    import onnxruntime

    print(f"# {cpu_name()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {onnxruntime.__version__}")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)
              for _ in range(args.images + 1)]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            predictor = build_predictor(name, folder)
            exported = {}
            for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".ts")):
                path = os.path.join(folder, name + suffix)
                start = time.perf_counter()
                export_model(predictor.model, predictor.cfg, path, fmt, predictor.class_names)
                export_s = time.perf_counter() - start
                exported[fmt] = ExportedPredictor(path)
                report = compare_predictors(predictor, exported[fmt], images[:2])
                print(f"{name} {fmt}: exported in {export_s:.1f} s; {report.summary()}")
            times = time_backends({"pytorch": predictor, **exported}, images)
            c = predictor.cfg.INPUT
            size = (f"{c.FIXED_SIZE} px square" if c.RESIZE_MODE == "fixed_square"
                    else f"short side {c.MIN_SIZE_TEST} px")
            rows.append((name, size, times))
    print("\n| model | input | PyTorch s/img | onnxruntime s/img | TorchScript s/img | "
          "PyTorch / onnxruntime |")
    print("|---|---|---:|---:|---:|---:|")
    for name, size, t in rows:
        print(f"| {name} | {size} | {t['pytorch']:.3f} | {t['onnx']:.3f} | "
              f"{t['torchscript']:.3f} | {t['pytorch'] / t['onnx']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
