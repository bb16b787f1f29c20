#!/usr/bin/env python
"""Sliced inference on large images with small objects: the same model with and without it.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/large_images.py --output output/large_images \\
        --config configs/quickstart/fewshot_tfa_base_shapes.yaml \\
        --weights output/quickstart_fewshot/tfa_base/model_final.pth

The scenes (``fewshot_det.data.synthetic_large``): --num 2048 x 1536 images with 20-40
shapes of 12-48 px each, drawn from the classes the model was trained on (its
checkpoint's class list without the synthetic novel classes). A quick-start model sees
them at its test size (288 px short side): a 24-px shape becomes 4.5 px. Rows: the whole
image resized as usual; then sliced inference (``TEST.SLICE.*``) for each --tiles size
(each tile resized to the test size, so a 144-px tile is enlarged 2x), with the whole-image
pass, and the best tile size without it. Each row: AP50, APs, APm, APl (COCO areas: small
below 32 x 32 px, large above 96 x 96), seconds per image; all measured in this one run,
one process.

--dataset SPEC scores the model on a labelled set of real photos instead (any voc:, coco:
or yolo: spec), with the same rows.
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

from machine import cpu_name  # noqa: E402 (benchmarks/machine.py)

COLUMNS = ("AP50", "APs", "APm", "APl")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="output/large_images")
    p.add_argument("--config", required=True, help="the model's config")
    p.add_argument("--weights", required=True, help="its checkpoint (trained on the shapes)")
    p.add_argument("--num", type=int, default=20, help="scenes")
    p.add_argument("--dataset", default="", help="a labelled set (voc:/coco:/yolo: spec) "
                                                 "instead of the synthetic scenes")
    p.add_argument("--tiles", type=int, nargs="+", default=[144, 192, 288])
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    return p.parse_args(argv)


def scenes(out: str, weights: str, num: int) -> str:
    from fewshot_det.checkpoint.class_names import checkpoint_class_names
    from fewshot_det.data.fewshot.class_splits import SYNTHETIC_NOVEL_CLASSES
    from fewshot_det.data.synthetic_large import generate_large_scenes

    root = os.path.join(out, "scenes")
    spec = f"voc:{root}:test"
    if os.path.isfile(os.path.join(root, "ImageSets", "Main", "test.txt")):
        return spec
    names = checkpoint_class_names(weights)
    if not names:
        raise SystemExit(f"{weights} does not name its classes (a fewshot_det checkpoint does)")
    drawn = [n for n in names if n not in SYNTHETIC_NOVEL_CLASSES]
    return generate_large_scenes(root, num, classes=drawn, class_list=names)


def num_scenes(spec: str) -> int:
    from fewshot_det.data.build import get_detection_dataset

    return len(get_detection_dataset([spec])[0])


def evaluate(args, spec: str, name: str, slice_opts) -> dict:
    from fewshot_det.checkpoint import load_weights
    from fewshot_det.engine.defaults import load_config, resolve_device
    from fewshot_det.engine.train_loop import evaluate_model
    from fewshot_det.modeling import build_model

    out = os.path.join(os.path.abspath(args.output), name)
    cfg = load_config(args.config, list(args.opts) + [
        "MODEL.WEIGHTS", args.weights, "DATASETS.TEST", f"('{spec}',)", "OUTPUT_DIR", out,
        "DATALOADER.NUM_WORKERS", "0"] + slice_opts)
    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    load_weights(model, args.weights)
    images = num_scenes(spec)
    start = time.perf_counter()
    metrics = evaluate_model(cfg, model)[spec]
    seconds = (time.perf_counter() - start) / images
    return {**{k: metrics[k] for k in COLUMNS}, "s_per_image": seconds}


def main(argv=None) -> dict:
    from fewshot_det.engine.defaults import setup_logging

    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    setup_logging(args.output)
    spec = args.dataset or scenes(os.path.abspath(args.output), args.weights, args.num)
    rows = {"whole image": evaluate(args, spec, "whole", [])}
    for size in args.tiles:
        rows[f"tiles {size}, overlap {args.overlap:g}, + whole image"] = evaluate(
            args, spec, f"tiles{size}", ["TEST.SLICE.ENABLED", "True", "TEST.SLICE.SIZE",
                                         str(size), "TEST.SLICE.OVERLAP", str(args.overlap)])
    best = max(args.tiles, key=lambda s: rows[f"tiles {s}, overlap {args.overlap:g}, + whole "
                                              f"image"]["APs"])
    rows[f"tiles {best}, overlap {args.overlap:g}, tiles only"] = evaluate(
        args, spec, f"tiles{best}_only", ["TEST.SLICE.ENABLED", "True", "TEST.SLICE.SIZE",
                                          str(best), "TEST.SLICE.OVERLAP", str(args.overlap),
                                          "TEST.SLICE.WHOLE_IMAGE", "False"])
    what = spec if args.dataset else "scenes of 2048 x 1536, shapes of 12-48 px"
    lines = [f"{num_scenes(spec)} images, {what}; {args.weights} ({cpu_name()})", "", "| inference | " + " | ".join(COLUMNS) + " | s / image |",
             "|---|" + "---|" * (len(COLUMNS) + 1)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in COLUMNS)
                     + f" | {r['s_per_image']:.2f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.output, "large_images.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.output, "large_images.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(text)
    return rows


if __name__ == "__main__":
    main()
