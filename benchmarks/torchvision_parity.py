#!/usr/bin/env python
"""torchvision's fasterrcnn_resnet50_fpn through ``fewshot_det.Predictor``: the same
detections at every image size?

    OMP_WAIT_POLICY=PASSIVE python benchmarks/torchvision_parity.py [--min-size 800 --max-size 1333]
        [--model fasterrcnn_mobilenet_v3_large_fpn | fasterrcnn_mobilenet_v3_large_320_fpn]

A randomly initialised torchvision model (batch norms and logits perturbed so that scores
spread, as in tests/modeling/torchvision_fixtures.py) is saved, loaded through
``configs/torchvision/faster_rcnn_R_50_FPN.yaml`` and run beside torchvision on smoothed
noise images of many sizes (up- and down-scaling, the long-side cap, portrait, odd
sizes), with ``INPUT.RESIZE_BACKEND`` torchvision (the config's) and opencv (the default
elsewhere). Per size: torchvision's detection count, how many ours reproduces (same
label, IoU > 0.99, score within 1e-3), whether ours has the same labels,
and, matching each of torchvision's detections to ours of its label with the nearest box,
the largest box (px) and score differences; in float32 and float64.

``--model`` takes torchvision's MobileNetV3-Large detectors instead (perturbed as in
tests/mobilenet_fixtures.py, read through configs/torchvision/faster_rcnn_mobilenet_v3_large
_FPN.yaml or _320_FPN.yaml; sizes default to the model's own).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "modeling"))  # torchvision_fixtures
sys.path.insert(0, os.path.join(ROOT, "tests"))  # mobilenet_fixtures

from machine import cpu_name  # noqa: E402 (benchmarks/machine.py)

SIZES = [(120, 160), (480, 640), (250, 1000), (701, 333), (191, 251), (1000, 250),
         (57, 77), (800, 1064), (1080, 1920)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fasterrcnn_resnet50_fpn", choices=MODELS)
    p.add_argument("--min-size", type=int, default=None, help="default: the model's")
    p.add_argument("--max-size", type=int, default=None, help="default: the model's")
    p.add_argument("--output", default="output/torchvision_parity")
    return p.parse_args(argv)


# torchvision's model name -> the variant in tests/mobilenet_fixtures.py (None: the R-50)
MODELS = {"fasterrcnn_resnet50_fpn": None, "fasterrcnn_mobilenet_v3_large_fpn": "800",
          "fasterrcnn_mobilenet_v3_large_320_fpn": "320"}


def reference_model(name: str, weights: str, min_size, max_size):
    """(torchvision's model with perturbed random weights, written to ``weights``; our
    config of it; its min and max size)."""
    from torchvision_fixtures import CONFIG, torchvision_model

    variant = MODELS[name]
    if variant is None:
        min_size, max_size = min_size or 800, max_size or 1333
        return torchvision_model(weights, min_size=min_size, max_size=max_size), CONFIG, \
            min_size, max_size
    from mobilenet_fixtures import VARIANTS, torchvision_mobilenet

    sizes = {"800": (800, 1333), "320": (320, 640)}[variant]
    min_size, max_size = min_size or sizes[0], max_size or sizes[1]
    tv = torchvision_mobilenet(weights, variant, min_size=min_size, max_size=max_size)
    return tv, VARIANTS[variant][1], min_size, max_size


def matched(expected, got) -> int:
    """torchvision's detections that ours reproduces: same label, IoU > 0.99, score
    within 1e-3."""
    from torchvision.ops import box_iou

    if not len(expected["labels"]) or not len(got["labels"]):
        return 0
    iou = box_iou(expected["boxes"].double(), got["boxes"].double())
    same = expected["labels"][:, None] == got["labels"][None]
    close = (expected["scores"].double()[:, None] - got["scores"].double()[None]).abs() < 1e-3
    return int(((iou > 0.99) & same & close).any(1).sum())


def compare(expected, got) -> str:
    """Matched count, then each torchvision detection paired with ours of its label with
    the nearest box (near ties of score may swap two detections' order): the largest
    differences."""
    import torch

    n = len(expected["labels"])
    head = f"{n} | {matched(expected, got)}"
    if sorted(got["labels"].tolist()) != sorted(expected["labels"].tolist()):
        return f"{head} | no | - | -"
    if n == 0:
        return f"{head} | yes | - | -"
    free = torch.ones(n, dtype=torch.bool)
    worst_box = worst_score = 0.0
    for box, label, score in zip(expected["boxes"].double(), expected["labels"],
                                 expected["scores"].double()):
        cand = torch.nonzero(free & (got["labels"] == label)).squeeze(1)
        diff = (got["boxes"][cand].double() - box).abs().max(1).values
        j = cand[int(diff.argmin())]
        free[j] = False
        worst_box = max(worst_box, float(diff.min()))
        worst_score = max(worst_score, abs(float(got["scores"][j]) - float(score)))
    return f"{head} | yes | {worst_box:.1e} | {worst_score:.1e}"


def main(argv=None) -> str:
    import cv2
    import numpy as np
    import torch
    import fewshot_det
    from torchvision_fixtures import to_float64

    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    weights = os.path.join(args.output, f"{args.model}_random.pth")
    tv, config, min_size, max_size = reference_model(args.model, weights, args.min_size,
                                                     args.max_size)
    predictors = {}
    for backend in ("torchvision", "opencv"):
        cfg = fewshot_det.get_cfg()
        cfg.merge_from_file(config)
        cfg.merge_from_list(["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu",
                             "INPUT.MIN_SIZE_TEST", str(min_size),
                             "INPUT.MAX_SIZE_TEST", str(max_size),
                             "INPUT.RESIZE_BACKEND", backend])
        predictors[backend] = fewshot_det.Predictor(cfg)
    lines = [f"{args.model}: short side {min_size}, long side <= {max_size} ({cpu_name()})", "",
             "| image h x w | resize | dtype | torchvision detections | reproduced | "
             "same labels | max box diff (px) | max score diff |",
             "|---|---|---|---|---|---|---|---|"]
    # float64: torchvision's model and a float64 copy of ours behind the same Predictor
    tv64 = copy.deepcopy(tv).double()
    float32_model = predictors["torchvision"].model
    float64_model = to_float64(copy.deepcopy(float32_model))
    runs = [("torchvision", "float32", tv, float32_model, torch.float32),
            ("opencv", "float32", tv, predictors["opencv"].model, torch.float32),
            ("torchvision", "float64", tv64, float64_model, torch.float64)]
    for i, (h, w) in enumerate(SIZES):
        img = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        rgb = cv2.GaussianBlur(img, (0, 0), 1)
        x = torch.from_numpy(rgb).permute(2, 0, 1)
        for backend, name, reference, model, dtype in runs:
            with torch.no_grad():
                expected = reference([x.to(dtype) / 255])[0]
            predictor = predictors[backend]
            predictor.model, kept = model, predictor.model
            got = predictor(rgb)
            predictor.model = kept
            lines.append(f"| {h} x {w} | {backend} | {name} | {compare(expected, got)} |")
    text = "\n".join(lines) + "\n"
    name = "" if MODELS[args.model] is None else "_" + args.model
    with open(os.path.join(args.output, f"torchvision_parity{name}.md"), "w") as f:
        f.write(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
