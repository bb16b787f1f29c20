#!/usr/bin/env python
"""Our Faster R-CNN R50-FPN against torchvision's fasterrcnn_resnet50_fpn, on this machine.

    python benchmarks/rcnn_speed.py                  # CPU, all threads torch uses by default
    python benchmarks/rcnn_speed.py --runs 5 --json out.json

Equal settings: torchvision's model is built as ``fasterrcnn_resnet50_fpn`` builds it for
pretrained weights (frozen batch norm, 3 trainable stages), ours from
``configs/torchvision/faster_rcnn_R_50_FPN.yaml`` with the SAME (random) weights loaded
through ``load_weights``, so both compute the same detections. Measured, each in a fresh
subprocess (so ``ru_maxrss`` is that job's peak resident memory):
  - inference: batch 1, one 800 x 1333 image (already at torchvision's target size), under
    ``torch.inference_mode()`` for both;
  - training: one SGD step (forward, backward, update), batch 2 of 800 x 1333 images with
    3 boxes each.
Times are the median of ``--runs`` runs after one warm-up run. The load average is
printed before and after: on a shared machine, other processes competing for the cores
slow PyTorch's OpenMP threads down by up to 10-20x (spin-waiting); there, run it as
``OMP_WAIT_POLICY=PASSIVE python benchmarks/rcnn_speed.py`` (both models alike).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "torchvision", "faster_rcnn_R_50_FPN.yaml")
H, W = 800, 1333
BOXES = [[100.0, 120.0, 400.0, 500.0], [600.0, 50.0, 900.0, 300.0], [1000.0, 400.0, 1300.0, 780.0]]


def build_torchvision(device):
    import torch
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    return FasterRCNN(backbone, num_classes=91).to(device)


def build_ours(device, weights_path):
    import fewshot_det
    from fewshot_det.checkpoint import load_weights
    from fewshot_det.modeling import build_model

    cfg = fewshot_det.get_cfg()
    cfg.merge_from_file(CONFIG)
    model = build_model(cfg)
    load_weights(model, weights_path)
    return model.to(device)


def make_inputs(which, batch_size, device, train):
    import torch

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, H, W, generator=g).to(device) for _ in range(batch_size)]
    boxes = torch.tensor(BOXES, device=device)
    labels = torch.tensor([1, 5, 17], device=device)
    if which == "torchvision":
        targets = [{"boxes": boxes, "labels": labels} for _ in images] if train else None
        return lambda model: model(images, targets)
    batch = [{"image": img * 255, "height": H, "width": W, "image_id": i,
              "instances": {"gt_boxes": boxes, "gt_labels": labels}}
             for i, img in enumerate(images)]
    return lambda model: model(batch)


def worker(which, task, runs, weights_path, device):
    """Time one model on one task in this process; print a JSON line."""
    import torch

    model = build_torchvision(device) if which == "torchvision" else build_ours(device,
                                                                                weights_path)
    train = task == "train"
    call = make_inputs(which, 2 if train else 1, device, train)
    if train:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)

        def step():
            losses = call(model)
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                call(model)
    times = []
    for i in range(runs + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # the first run warms up allocators and kernels
            times.append(time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"model": which, "task": task, "median_s": statistics.median(times),
                      "times_s": times, "peak_rss_mb": peak_mb,
                      "threads": torch.get_num_threads()}))


def run_job(which, task, args, weights_path):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", which, "--task", task,
           "--runs", str(args.runs), "--device", args.device, "--weights", weights_path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{which} {task} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per job (median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", default="inference,train")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--task", default="", help=argparse.SUPPRESS)
    parser.add_argument("--weights", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    if args.worker:
        return worker(args.worker, args.task, args.runs, args.weights, args.device)

    import tempfile

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights_path = os.path.join(tmp, "fasterrcnn_resnet50_fpn.pth")
        torch.save(build_torchvision("cpu").state_dict(), weights_path)
        results = {}
        for task in args.tasks.split(","):
            for which in ("torchvision", "ours"):  # alternate, so load drifts hit both
                results[(which, task)] = run_job(which, task, args, weights_path)
                r = results[(which, task)]
                runs = ", ".join(f"{t:.3f}" for t in r["times_s"])
                print(f"{task:9s} {which:11s} {r['median_s']:7.3f} s  "
                      f"peak RSS {r['peak_rss_mb']:7.0f} MB  runs [{runs}]", flush=True)
    print(_summary(results, args.tasks.split(",")))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(v) for v in results.values()], f, indent=1)


def _summary(results, tasks):
    targets = {"inference": 0.8, "train": 1.0}
    lines = [f"\n{'task':10s}{'time ratio':>12s}{'target':>8s}{'memory ratio':>14s}"]
    for task in tasks:
        ours, tv = results[("ours", task)], results[("torchvision", task)]
        t = ours["median_s"] / tv["median_s"]
        m = ours["peak_rss_mb"] / tv["peak_rss_mb"]
        ok = "ok" if t <= targets[task] and m <= 1.0 else "MISSED"
        lines.append(f"{task:10s}{t:11.2f}x{'<=' + str(targets[task]):>8s}{m:13.2f}x  {ok}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
