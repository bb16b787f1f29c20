#!/usr/bin/env python
"""Faster R-CNN step and inference times: EfficientNet-Lite0-FPN against ResNet-18-FPN.

    python benchmarks/backbone_speed.py                  # CPU, AVX2 kernels
    python benchmarks/backbone_speed.py --runs 9 --freeze-at 3,0,2,4 --json out.json

Both detectors are ``configs/lite/faster_rcnn_lite0_FPN.yaml`` (64-channel FPN on res3-res5,
the same RPN and box head); the ResNet one swaps in MODEL.BACKBONE.NAME
build_resnet_fpn_backbone, MODEL.RESNETS.DEPTH 18. Lite0 carries its ImageNet weights when
the package is installed, the ResNet random ones (flush-to-zero is on for both, so random
weights cannot slow a run down with denormals). Measured:
  - train: one AdamW step (forward, backward, update), batch 2 of 512 x 683 images with 3
    boxes each, for each MODEL.BACKBONE.FREEZE_AT of ``--freeze-at`` (0 = all trainable);
  - inference: batch 1, one 512 x 683 image, under ``torch.inference_mode()``.
All of them are timed in one subprocess, in rounds that run each model once (one warm-up
round, then ``--runs``), so that other load on the machine hits every model alike; the
median and the minimum of each are reported (on shared cores the minimum is the closest to
the machine's own speed, the ratios between models are the robust numbers).
Subprocesses run with oneDNN / MKL / ATen limited to AVX2 (``--isa native`` lifts it), as on
most CPUs users have, and OMP_WAIT_POLICY=PASSIVE unless set. The load average is printed
before and after: other processes on the cores slow every job down, by up to several times
on 2 shared cores.
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
CONFIG = os.path.join(ROOT, "configs", "lite", "faster_rcnn_lite0_FPN.yaml")
H, W = 512, 683
BOXES = [[40.0, 60.0, 200.0, 220.0], [300.0, 100.0, 420.0, 380.0], [500.0, 300.0, 660.0, 480.0]]
BACKBONES = {
    "lite0": [],
    "R-18": ["MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone", "MODEL.RESNETS.DEPTH", "18",
             "MODEL.RESNETS.OUT_FEATURES", "['res3', 'res4', 'res5']"],
}
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def build(backbone: str, freeze_at: int):
    """The model on CPU, and the weights it got."""
    import torch

    from fewshot_det.config import load_cfg
    from fewshot_det.modeling import build_model

    opts = BACKBONES[backbone] + ["MODEL.BACKBONE.FREEZE_AT", str(freeze_at),
                                  "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", "7"]
    cfg = load_cfg(CONFIG, opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    weights = "random"
    if backbone == "lite0":
        from fewshot_det.checkpoint import load_weights
        try:
            load_weights(model, cfg.MODEL.WEIGHTS)
            weights = cfg.MODEL.WEIGHTS
        except FileNotFoundError:  # pretrained.WeightPackageMissing
            pass
    return model, weights


def batch(n: int):
    import torch

    g = torch.Generator().manual_seed(0)
    boxes, labels = torch.tensor(BOXES), torch.tensor([1, 4, 6])
    return [{"image": torch.rand(3, H, W, generator=g) * 255, "height": H, "width": W,
             "image_id": i, "instances": {"gt_boxes": boxes, "gt_labels": labels}}
            for i in range(n)]


def make_step(backbone: str, task: str, freeze_at: int):
    """A function running one train step / one inference of ``backbone``'s detector, and
    the model's description."""
    import torch

    model, weights = build(backbone, freeze_at)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = {"trainable_params": trainable, "weights": weights}
    if task == "inference":
        model.eval()
        images = batch(1)

        def infer():
            with torch.inference_mode():
                model(images)
        return infer, info
    model.train()
    images = batch(2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                            weight_decay=0.05)

    def train_step():
        losses = model(images)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
    return train_step, info


def configurations(freeze_ats):
    """(backbone, task, FREEZE_AT) of every timed model."""
    train = [(b, "train", f) for f in freeze_ats for b in BACKBONES]
    return train + [(b, "inference", freeze_ats[0]) for b in BACKBONES]


def worker(freeze_ats, runs: int) -> None:
    """Time every configuration in this process, in rounds that visit each once (order
    reversed every other round), so load drifts hit all of them alike; print one JSON line
    per configuration."""
    import torch

    torch.set_flush_denormal(True)
    jobs = configurations(freeze_ats)
    steps = {job: make_step(*job) for job in jobs}
    times = {job: [] for job in jobs}
    for i in range(runs + 1):
        for job in (jobs if i % 2 == 0 else jobs[::-1]):
            t = time.perf_counter()
            steps[job][0]()
            if i:  # the first round warms up allocators and kernels
                times[job].append(time.perf_counter() - t)
    for (backbone, task, freeze_at), t in times.items():
        print(json.dumps({"backbone": backbone, "task": task, "freeze_at": freeze_at,
                          "median_s": statistics.median(t), "min_s": min(t), "times_s": t,
                          "threads": torch.get_num_threads(),
                          **steps[(backbone, task, freeze_at)][1]}))


def run_worker(args) -> list:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--runs", str(args.runs),
           "--freeze-at", args.freeze_at]
    env = dict(os.environ, **(AVX2_ENV if args.isa == "avx2" else {}))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads collide on shared cores
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise SystemExit(f"the timing subprocess failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.strip().splitlines()
            if line.startswith("{")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed rounds")
    parser.add_argument("--freeze-at", default="3,0",
                        help="MODEL.BACKBONE.FREEZE_AT values of the train steps")
    parser.add_argument("--isa", choices=["avx2", "native"], default="avx2")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    freeze_ats = [int(f) for f in args.freeze_at.split(",")]
    if args.worker:
        return worker(freeze_ats, args.runs)

    from machine import cpu_name

    print(f"{cpu_name()}; kernels: {args.isa}; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    results = run_worker(args)
    for r in results:
        label = f"{r['task']} FREEZE_AT {r['freeze_at']}" if r["task"] == "train" \
            else "inference"
        runs = ", ".join(f"{t:.3f}" for t in r["times_s"])
        print(f"{r['backbone']:6s} {label:17s} median {r['median_s']:6.3f} s  min "
              f"{r['min_s']:6.3f} s  trainable {r['trainable_params'] / 1e6:5.2f} M  "
              f"({r['threads']} threads, weights {r['weights']}; runs [{runs}])")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
