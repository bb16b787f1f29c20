#!/usr/bin/env python
"""Draw a model's detections on images.

    python tools/demo.py --config CFG --weights output/model_final.pth \
        --input photo.jpg|folder/ --output vis/ [--score-thresh 0.5] [KEY VALUE ...]
"""
import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tools/train_net.py

import cv2
import numpy as np

from fewshot_det.engine.defaults import add_debug_argument, run_tool

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(path):
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise SystemExit(f"no images in {path}")
        return files
    if not os.path.isfile(path):
        raise SystemExit(f"input not found: {path}")
    return [path]


def class_color(name):
    """A stable BGR colour per class name (same colour in every image and run)."""
    hue = sum(map(ord, name)) * 37 % 180
    return tuple(int(c) for c in cv2.cvtColor(np.uint8([[[hue, 200, 255]]]), cv2.COLOR_HSV2BGR)[0, 0])


def draw(image_bgr, out, score_thresh):
    """Boxes, class names and scores on a copy of the BGR image."""
    vis = image_bgr.copy()
    names = out["class_names"] or [str(int(label)) for label in out["labels"]]
    for box, score, name in zip(out["boxes"].tolist(), out["scores"].tolist(), names):
        if score < score_thresh:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        color = class_color(name)
        cv2.rectangle(vis, (x1, y1), (x2, y2), color, 2)
        label = f"{name} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        cv2.rectangle(vis, (x1, max(0, y1 - th - 4)), (x1 + tw + 2, max(th + 4, y1)), color, -1)
        cv2.putText(vis, label, (x1 + 1, max(th + 1, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return vis


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--weights", required=True, metavar="CKPT")
    p.add_argument("--input", required=True, help="an image or a folder of images")
    p.add_argument("--output", required=True, help="folder for the drawn images")
    p.add_argument("--score-thresh", type=float, default=0.5)
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    args = p.parse_args(argv)
    return run_tool(run, args, debug=args.debug)


def run(args) -> None:
    """Detections drawn on every image of ``args.input``."""
    from fewshot_det.engine.defaults import load_config, setup_logging
    from fewshot_det.engine.predictor import Predictor

    setup_logging(None)
    cfg = load_config(args.config, args.opts + ["MODEL.WEIGHTS", args.weights])
    predictor = Predictor(cfg)
    os.makedirs(args.output, exist_ok=True)
    for path in list_images(args.input):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print(f"skipping unreadable image {path}", file=sys.stderr)
            continue
        rgb = cfg.INPUT.FORMAT == "RGB"
        out = predictor(image[:, :, ::-1].copy() if rgb else image)
        target = os.path.join(args.output, os.path.basename(path))
        cv2.imwrite(target, draw(image, out, args.score_thresh))
        kept = int((out["scores"] >= args.score_thresh).sum())
        print(f"{path}: {kept} detection(s) -> {target}")


if __name__ == "__main__":
    sys.exit(main())
