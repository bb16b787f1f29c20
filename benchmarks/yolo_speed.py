#!/usr/bin/env python
"""Inference speed: YOLOGrid R50 at 448 against our Faster R-CNN R50-FPN at 800.

    python benchmarks/yolo_speed.py                      # CPU (cuda when available)
    python benchmarks/yolo_speed.py --runs 10 --device cpu --json yolo_speed.json

Both models come from ``fewshot_det.modeling.build_model`` with 20 classes (VOC) and random
weights (speed does not depend on the values, except through the number of detections that
reach NMS; see below):
  - YOLOGrid: ``configs/yolo/yolo_R50_voc07.yaml`` (R-50, 448 x 448, S = 14, B = 2);
  - Faster R-CNN: ``configs/Base-RCNN-FPN.yaml`` with ResNet-50 (shortest edge 800).
The input is one VOC-sized image (500 x 375, random pixels) resized as each model's data
pipeline resizes it: 448 x 448 for YOLOGrid, 800 x 1067 for the R-CNN. Timed: the model
call in eval mode, batch 1, under ``torch.inference_mode()`` (normalisation, backbone,
head, decoding / proposals + ROI heads, NMS, mapping back to the original image); the
resize itself is not timed. Each model runs in its own subprocess, one warm-up call, then
the median of ``--runs`` calls. With random weights every one of YOLOGrid's 14*14*2*20
(box, class) pairs passes its 0.01 score threshold, so its NMS runs on the worst case.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "yolo_grid_R50_448": (os.path.join(ROOT, "configs", "yolo", "yolo_R50_voc07.yaml"), []),
    "faster_rcnn_R50_FPN_800": (os.path.join(ROOT, "configs", "Base-RCNN-FPN.yaml"),
                                ["MODEL.RESNETS.DEPTH", "50", "INPUT.MIN_SIZE_TEST", "800"]),
}
ORIGINAL_HW = (375, 500)
NUM_CLASSES = 20


def build(name: str, device: str):
    """(model in eval mode on ``device``, its config)."""
    import torch

    import fewshot_det
    import fewshot_det.modeling.meta_arch.yolo_grid  # noqa: F401 (registers YOLOGrid)
    from fewshot_det.modeling import build_model

    path, opts = CONFIGS[name]
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(opts + ["MODEL.YOLO.NUM_CLASSES", str(NUM_CLASSES),
                                "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"])
    torch.manual_seed(0)
    return build_model(cfg).to(device).eval(), cfg


def make_batch(cfg, device: str):
    """One image resized by the model's own test pipeline (as the data loader does)."""
    import numpy as np

    from fewshot_det.data.mapper import image_to_tensor
    from fewshot_det.data.transforms import apply_transforms, transforms_from_config

    transforms = transforms_from_config(cfg, is_train=False)
    h, w = ORIGINAL_HW
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    resized, _ = apply_transforms(transforms, image, np.zeros((0, 4), np.float32),
                                  np.random.default_rng(0))
    return [{"image": image_to_tensor(resized).to(device), "height": h, "width": w,
             "image_id": 0}]


def worker(name: str, runs: int, device: str) -> None:
    """Time one model in this process; print one JSON line."""
    import torch

    model, cfg = build(name, device)
    batch = make_batch(cfg, device)
    times, num_dets = [], 0
    for i in range(runs + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model(batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # the first call warms up allocators and kernels
            times.append(time.perf_counter() - t)
        num_dets = len(out[0]["boxes"])
    print(json.dumps({"model": name, "device": device,
                      "input_hw": list(batch[0]["image"].shape[-2:]),
                      "median_s": statistics.median(times), "times_s": times,
                      "detections": num_dets, "threads": torch.get_num_threads()}))


def run_job(name: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--runs",
           str(args.runs), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed calls per model (median)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda if present)")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        return worker(args.worker, args.runs, args.device)
    results = {}
    for name in CONFIGS:
        r = results[name] = run_job(name, args)
        print(f"{name:26s} {tuple(r['input_hw'])!s:12s} {r['median_s'] * 1000:9.1f} ms/image  "
              f"({r['detections']} detections, {r['threads']} threads, runs "
              f"{['%.3f' % t for t in r['times_s']]})", flush=True)
    yolo, rcnn = results["yolo_grid_R50_448"], results["faster_rcnn_R50_FPN_800"]
    ratio = rcnn["median_s"] / yolo["median_s"]
    print(f"\nYOLOGrid R50@448 is {ratio:.2f}x faster than Faster R-CNN R50-FPN@800 "
          f"per image on {args.device} (target >= 4x: {'ok' if ratio >= 4 else 'MISSED'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": list(results.values()), "speedup": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
