#!/usr/bin/env python
"""The quick-start training step against the same network built from torchvision's
detection modules, and against the machine's matrix-multiply speed, in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/quickstart_speed.py [--steps 20]
    # an AVX-512 machine on its AVX2 kernels (close to an AVX2-only CPU):
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        OMP_WAIT_POLICY=PASSIVE python benchmarks/quickstart_speed.py

Ours: ``configs/quickstart/faster_rcnn_R18_FPN_shapes.yaml`` (R-18, BN, FPN of 64 channels
on res3-res5 + max-pool P6, RPN 600/300 proposals and 128 anchors per image, 64 RoIs per
image, a 256-wide box head, 12 classes). The peer: torchvision's FasterRCNN with the same
parts and numbers (BackboneWithFPN with BatchNorm FPN, AnchorGenerator, RPNHead,
MultiScaleRoIAlign, TwoMLPHead, FastRCNNPredictor). Both take the same 4 images of
288 x 288 with 3 boxes each (torchvision's own resize then leaves them as they are), and
do forward, backward and an SGD step; the two alternate, median over --steps each. The
step's FLOPs are counted with torch's FlopCounterMode (forward and backward), and set
against a float32 GEMM timed in the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "quickstart", "faster_rcnn_R18_FPN_shapes.yaml")

from machine import cpu_name  # noqa: E402 (benchmarks/machine.py)

SIZE, BATCH, CLASSES = 288, 4, 12


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps of each network")
    return p.parse_args(argv)


def batch(seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, SIZE, SIZE, generator=g) * 255 for _ in range(BATCH)]
    boxes = [torch.tensor([[20.0, 30, 90, 110], [150, 40, 230, 100], [60, 170, 200, 270]])
             for _ in range(BATCH)]
    labels = [torch.tensor([1, 5, 9]) for _ in range(BATCH)]
    return images, boxes, labels


def ours():
    import torch
    from fewshot_det.engine.defaults import load_config
    from fewshot_det.modeling import build_model

    cfg = load_config(CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES",
                               str(CLASSES), "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    images, boxes, labels = batch()
    items = [{"image": im, "height": SIZE, "width": SIZE, "image_id": i,
              "instances": {"gt_boxes": b, "gt_labels": lb}}
             for i, (im, b, lb) in enumerate(zip(images, boxes, labels))]
    return model, lambda: model(items)


def torchvision_equivalent():
    import torch
    from torch import nn
    from torchvision.models import resnet18
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    torch.manual_seed(0)
    body = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
    backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"},
                               [128, 256, 512], 64, extra_blocks=LastLevelMaxPool(),
                               norm_layer=nn.BatchNorm2d)
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
    model = FasterRCNN(
        backbone, min_size=SIZE, max_size=512, image_mean=[0.0] * 3, image_std=[1.0] * 3,
        rpn_anchor_generator=anchors, rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300, rpn_batch_size_per_image=128,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 7, 2),
        box_head=TwoMLPHead(64 * 49, 256), box_predictor=FastRCNNPredictor(256, CLASSES + 1),
        box_batch_size_per_image=64, box_positive_fraction=0.5).train()
    images, boxes, labels = batch()
    targets = [{"boxes": b, "labels": lb} for b, lb in zip(boxes, labels)]
    return model, lambda: model([im / 255 for im in images], targets)


def step_fn(model, forward):
    import torch

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                          momentum=0.9)

    def step():
        losses = forward()
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
    return step


def step_flops(step) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def gemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def main(argv=None) -> dict:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    steps = {"ours": step_fn(*ours()), "torchvision": step_fn(*torchvision_equivalent())}
    flops = {name: step_flops(step) for name, step in steps.items()}
    for step in steps.values():  # warm-up (allocator, oneDNN primitive caches)
        for _ in range(3):
            step()
    times = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    gemm = gemm_gflops()
    med = {name: statistics.median(t) for name, t in times.items()}
    isa = os.environ.get("ATEN_CPU_CAPABILITY", "default")
    lines = [f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
             f"ATEN_CPU_CAPABILITY {isa}; float32 GEMM 2048^3: {gemm:.0f} GFLOP/s", "",
             "| network | s / step (median of %d) | GFLOP / step | GFLOP/s | of the GEMM |"
             % args.steps, "|---|---|---|---|---|"]
    for name in steps:
        rate = flops[name] / med[name] / 1e9
        lines.append(f"| {name} | {med[name]:.3f} | {flops[name] / 1e9:.1f} | {rate:.0f} | "
                     f"{rate / gemm:.0%} |")
    lines.append("")
    lines.append(f"ours / torchvision: **{med['ours'] / med['torchvision']:.2f}x**")
    text = "\n".join(lines) + "\n"
    print(text)
    return {"median_s": med, "flops": flops, "gemm_gflops": gemm}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
