#!/usr/bin/env python
"""Small and large objects in one large photo: whole-image, tile and mixed training, each
evaluated on the whole image and sliced.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/large_mixed.py --output output/large_mixed \\
        [--weights output/quickstart_frcnn/model_final.pth] [--iters 300]

The scenes (``fewshot_det.data.synthetic_large``, generated once under OUTPUT/scenes and
reused): --train-scenes (60) and --test-scenes (10) images of 2048 x 1536, each with 20-40
shapes of 12-48 px and 1-3 large objects of 300-1200 px, half of them shapes of the same
classes (--classes: circle, square, triangle, cross), half chains (an insulator-like string
of links, class "chain", one box around the string). Training scenes use seed 0, test
scenes seed 1.

The detector is the quick start's Faster R-CNN R-18-FPN
(configs/quickstart/faster_rcnn_R18_FPN_shapes.yaml). The quick start trains at 192-256 px
on 256-px images; here every recipe trains and tests at a 512-px short side (--size; long
side at most 1.5x), so a tile of 512 px (--tile) keeps its objects at full resolution and a
whole scene is shrunk 3x (a 24-px shape becomes 8 px, a 900-px chain 300 px). The RPN keeps
up to 1000 candidates per level and 300 proposals at test time (the config's 300 / 150
suit its 1-5 objects per image, not 20-40). Recipes, trained for --iters iterations each
from the same start, then evaluated:

    whole   whole scenes, resized                (INPUT.TILE_CROP.ENABLED False)
    tile    512-px tiles at full resolution      (INPUT.TILE_CROP.ENABLED True, SIZE 512,
                                                  WHOLE_IMAGE_PROB 0.0)
    mixed   half tiles, half whole scenes        (the same with WHOLE_IMAGE_PROB 0.5)

The start (OUTPUT/start/model_start.pth): --weights after class surgery (the rows of the
classes it knows kept, the others, e.g. "chain", initialised), or else the config's crop
warm-up (PRETRAIN, 300 iterations on crops of the training boxes) from random
initialisation with SEED 0; made once, so the recipes start from the same weights.

Each model is evaluated on the test scenes resized whole, and sliced (TEST.SLICE.ENABLED
True, SIZE --tile, WHOLE_IMAGE True: 20 tiles per scene plus the whole-image pass). Rows:
AP50, APs, APm, APl (COCO areas: small below 32 x 32 px, large above 96 x 96 px; a thin
chain may count as medium), seconds per test image, and the mean time of the logged
training iterations (every SOLVER.LOG_PERIOD-th); OUTPUT/large_mixed.md and .json.

A training resumes from its last checkpoint when interrupted and is skipped when its
model_final.pth exists; an evaluation is skipped when its result exists. So an OUTPUT
holds one set of parameters (OUTPUT/params.json; only --recipes may change): another
--output for others. Trailing KEY VALUE overrides apply to every stage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "quickstart", "faster_rcnn_R18_FPN_shapes.yaml")
COLUMNS = ("AP50", "APs", "APm", "APl")
RECIPES = {"whole": "whole images", "tile": "tiles", "mixed": "tiles + whole images (0.5)"}
MODES = {"whole": "whole image", "sliced": "sliced + whole image"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="output/large_mixed")
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--weights", default="", help="start from this checkpoint (class surgery)")
    p.add_argument("--iters", type=int, default=300, help="training iterations per recipe")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--classes", nargs="+", default=["circle", "square", "triangle", "cross"])
    p.add_argument("--train-scenes", type=int, default=60)
    p.add_argument("--test-scenes", type=int, default=10)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--height", type=int, default=1536)
    p.add_argument("--large-px", type=int, nargs=2, default=[300, 1200])
    p.add_argument("--tile", type=int, default=512, help="training crop and slice size")
    p.add_argument("--size", type=int, default=512, help="train/test short side")
    from bench_args import parse_with_overrides  # benchmarks/bench_args.py

    return parse_with_overrides(p, argv)


def check_params(args) -> None:
    """Refuse an OUTPUT holding a run of other parameters (its scenes, models and results
    would be reused); else record them in OUTPUT/params.json. Only --recipes may differ."""
    params = {k: v for k, v in sorted(vars(args).items()) if k not in ("output", "recipes")}
    params["weights"] = os.path.abspath(args.weights) if args.weights else ""
    params["config"] = os.path.abspath(args.config)
    path = os.path.join(args.output, "params.json")
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        changed = {k: (saved.get(k), v) for k, v in params.items() if saved.get(k) != v}
        if changed:
            raise SystemExit(f"{args.output} holds a run of other parameters (old, new): "
                             f"{changed}; choose another --output")
        return
    with open(path, "w") as f:
        json.dump(params, f, indent=1)


def scenes(args) -> tuple:
    """(train spec, test spec) under OUTPUT/scenes: generated, or reused when the test
    split (written last) exists."""
    from fewshot_det.data.synthetic_large import CHAIN, generate_large_scenes

    root = os.path.join(os.path.abspath(args.output), "scenes")
    specs = (f"voc:{root}/train:train", f"voc:{root}/test:test")
    if os.path.isfile(os.path.join(root, "test", "ImageSets", "Main", "test.txt")):
        return specs
    kwargs = dict(width=args.width, height=args.height, classes=args.classes,
                  class_list=list(args.classes) + [CHAIN], large_objects=(1, 3),
                  large_px=tuple(args.large_px))
    generate_large_scenes(f"{root}/train", args.train_scenes, seed=0, split="train", **kwargs)
    generate_large_scenes(f"{root}/test", args.test_scenes, seed=1, split="test", **kwargs)
    return specs


def common_opts(args, train_spec: str) -> list:
    """The overrides of every stage: data, input sizes, test proposals, schedule."""
    iters = args.iters
    return ["DATASETS.TRAIN", f"('{train_spec}',)", "DATASETS.TEST", "()",
            "INPUT.MIN_SIZE_TRAIN", f"({args.size},)",
            "INPUT.MAX_SIZE_TRAIN", str(args.size * 3 // 2),
            "INPUT.MIN_SIZE_TEST", str(args.size), "INPUT.MAX_SIZE_TEST", str(args.size * 3 // 2),
            "MODEL.RPN.PRE_NMS_TOPK_TEST", "1000", "MODEL.RPN.POST_NMS_TOPK_TEST", "300",
            "SOLVER.MAX_ITER", str(iters), "SOLVER.WARMUP_ITERS", str(min(50, iters // 4)),
            "SOLVER.CHECKPOINT_PERIOD", str(max(1, iters // 5)), "TEST.EVAL_PERIOD", "0"]


def recipe_opts(args, recipe: str) -> list:
    if recipe == "whole":
        return ["INPUT.TILE_CROP.ENABLED", "False"]
    return ["INPUT.TILE_CROP.ENABLED", "True", "INPUT.TILE_CROP.SIZE", str(args.tile),
            "INPUT.TILE_CROP.WHOLE_IMAGE_PROB", "0.5" if recipe == "mixed" else "0.0"]


def start_weights(args, opts: list) -> str:
    """OUTPUT/start/model_start.pth, the weights every recipe starts from (module doc)."""
    from fewshot_det.data import get_dataset
    from fewshot_det.engine.checkpoint import save_atomic
    from fewshot_det.engine.crop_pretrain import pretrain_backbone_on_crops
    from fewshot_det.engine.defaults import load_config, resolve_device, seed_all
    from fewshot_det.engine.fewshot import load_with_surgery
    from fewshot_det.modeling import build_model

    out = os.path.join(os.path.abspath(args.output), "start")
    path = os.path.join(out, "model_start.pth")
    if os.path.isfile(path):
        return path
    cfg = load_config(args.config, opts + list(args.opts) + ["OUTPUT_DIR", out])
    seed_all(cfg.SEED)
    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    records, metadata = get_dataset(cfg.DATASETS.TRAIN[0])
    if args.weights:
        load_with_surgery(cfg, metadata, model, args.weights)
    else:
        pretrain_backbone_on_crops(cfg, model, records)
    os.makedirs(out, exist_ok=True)
    save_atomic({"model": model.state_dict(), "iteration": 0,
                 "extra": {"thing_classes": list(metadata.thing_classes)}}, path)
    return path


def train_recipe(args, recipe: str, opts: list, start: str) -> str:
    """Train one recipe from ``start`` (resumed when interrupted, skipped when finished);
    its model_final.pth."""
    from fewshot_det.engine.defaults import load_config, resolve_device, seed_all
    from fewshot_det.engine.train_loop import train
    from fewshot_det.modeling import build_model

    out = os.path.join(os.path.abspath(args.output), recipe)
    final = os.path.join(out, "model_final.pth")
    if not os.path.isfile(final):
        # the start holds the crop warm-up already: every recipe starts from it as it is
        cfg = load_config(args.config, opts + recipe_opts(args, recipe) + list(args.opts) + [
            "MODEL.WEIGHTS", start, "PRETRAIN.ITERS", "0", "OUTPUT_DIR", out])
        seed_all(cfg.SEED)
        model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
        os.makedirs(out, exist_ok=True)
        train(cfg, model, resume=True)
    return final


def seconds_per_iter(out: str) -> float:
    """The mean time of the logged training iterations (``metrics.jsonl``)."""
    times = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "time" in row:
                times.append(row["time"])
    return sum(times) / len(times) if times else float("nan")


def evaluate(args, recipe: str, mode: str, opts: list, weights: str, test_spec: str) -> dict:
    """AP columns and seconds per image of one model, whole or sliced (cached in
    OUTPUT/<recipe>/eval_<mode>.json)."""
    from fewshot_det.checkpoint import load_weights
    from fewshot_det.engine.defaults import load_config, resolve_device
    from fewshot_det.engine.train_loop import evaluate_model
    from fewshot_det.modeling import build_model

    out = os.path.join(os.path.abspath(args.output), recipe, f"eval_{mode}")
    path = out + ".json"
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    slicing = ["TEST.SLICE.ENABLED", "True", "TEST.SLICE.SIZE", str(args.tile),
               "TEST.SLICE.WHOLE_IMAGE", "True"] if mode == "sliced" else []
    cfg = load_config(args.config, opts + recipe_opts(args, recipe) + list(args.opts) + [
        "MODEL.WEIGHTS", weights, "DATASETS.TEST", f"('{test_spec}',)", "OUTPUT_DIR", out,
        "DATALOADER.NUM_WORKERS", "0"] + slicing)
    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    load_weights(model, weights, strict=True)
    start = time.perf_counter()
    metrics = evaluate_model(cfg, model)[test_spec]
    result = {**{k: metrics[k] for k in COLUMNS},
              "s_per_image": (time.perf_counter() - start) / args.test_scenes}
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def table(args, rows: dict, cpu: str) -> str:
    """The markdown report: what was run, then a row per (recipe, inference); "-" for a
    size class without test objects (the evaluator's -1)."""
    start = f"{args.weights} after class surgery" if args.weights else \
        "random initialisation + crop warm-up"
    lines = [f"Scenes of {args.width} x {args.height} ({args.train_scenes} for training, "
             f"{args.test_scenes} for testing): {', '.join(args.classes)} at 12-48 px, 1-3 "
             f"large objects of {args.large_px[0]}-{args.large_px[1]} px (those shapes, or "
             f"chains); {args.iters} iterations per recipe from {start}; {args.size}-px short "
             f"side, {args.tile}-px tiles ({cpu})", "",
             "| training | inference | " + " | ".join(COLUMNS) + " | s / image | train s / it |",
             "|---|---|" + "---|" * (len(COLUMNS) + 2)]
    for (recipe, mode), r in rows.items():
        lines.append(f"| {RECIPES[recipe]} | {MODES[mode]} | "
                     + " | ".join(f"{r[k]:.3f}" if r[k] >= 0 else "-" for k in COLUMNS)
                     + f" | {r['s_per_image']:.2f} | {r['s_per_iter']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from machine import cpu_name  # benchmarks/machine.py
    from fewshot_det.engine.defaults import setup_logging

    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    setup_logging(args.output)
    check_params(args)
    train_spec, test_spec = scenes(args)
    opts = common_opts(args, train_spec)
    start = start_weights(args, opts)
    rows = {}
    for recipe in args.recipes:
        final = train_recipe(args, recipe, opts, start)
        per_iter = seconds_per_iter(os.path.dirname(final))
        for mode in MODES:
            rows[recipe, mode] = {**evaluate(args, recipe, mode, opts, final, test_spec),
                                  "s_per_iter": per_iter}
    text = table(args, rows, cpu_name())
    with open(os.path.join(args.output, "large_mixed.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.output, "large_mixed.json"), "w") as f:
        json.dump({f"{recipe}/{mode}": r for (recipe, mode), r in rows.items()}, f, indent=1)
    print(text)
    return rows


if __name__ == "__main__":
    main()
