#!/usr/bin/env python
"""TFA without training (imprinting) and TFA fine-tuning from cached RoI features.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/tfa_cached_imprint.py --output output/tfa_bench \\
        --base output/quickstart_fewshot/tfa_base/model_final.pth
    OMP_WAIT_POLICY=PASSIVE python benchmarks/tfa_cached_imprint.py --output output/tfa_r50 --r50

Synthetic shapes (default): the quick-start TFA base model (``--base``, trained with
``tools/train_net.py --config configs/quickstart/fewshot_tfa_base_shapes.yaml``), then for
--shots K and every split seed (one shared split folder), with
``configs/quickstart/fewshot_tfa_ft_shapes.yaml``:

    imprint only        --support-only: the new rows imprinted, no training
    imprint + cached    NOVEL_INIT imprint, CACHE_ROI_FEATURES True
    random + cached     the shipped default: NOVEL_INIT random, cached RoI features
    random + images     NOVEL_INIT random, trained image by image (TFA as published)
    imprint all only / imprint all + cached    IMPRINT_CLASSES all: the base rows too

Each row: nAP50 / bAP50 / AP50 mean ± 95 % CI over the seeds and the mean wall-clock
seconds per seed (fine-tune + evaluation), all in this one run.

``--r50``: the R-50-FPN at 800 px (configs/EDP/tfa_torchvision_coco_10shot.yaml) on an
EDP-like set drawn here (960 x 800 images, person + insulator + bird_nest) from a randomly
initialised torchvision checkpoint written here (random weights time like real ones): one
10-shot seed fine-tuned on cached RoI features (the whole schedule: cache, training,
evaluation), and the image-by-image fine-tune's seconds per iteration over a few
iterations, side by side.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

from machine import cpu_name  # noqa: E402 (benchmarks/machine.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))  # fewshot_fixtures.make_edp_tree
FT_CONFIG = os.path.join(ROOT, "configs", "quickstart", "fewshot_tfa_ft_shapes.yaml")
R50_CONFIG = os.path.join(ROOT, "configs", "EDP", "tfa_torchvision_coco_10shot.yaml")
ROWS = {  # name -> (support only, overrides)
    "imprint only": (True, []),
    "imprint + cached": (False, ["FEWSHOT.FINETUNE.NOVEL_INIT", "imprint"]),
    "random + cached": (False, []),
    "random + images": (False, ["FEWSHOT.FINETUNE.NOVEL_INIT", "random",
                                "FEWSHOT.FINETUNE.CACHE_ROI_FEATURES", "False"]),
    "imprint all only": (True, ["FEWSHOT.FINETUNE.IMPRINT_CLASSES", "all"]),
    "imprint all + cached": (False, ["FEWSHOT.FINETUNE.NOVEL_INIT", "imprint",
                                     "FEWSHOT.FINETUNE.IMPRINT_CLASSES", "all"]),
}
METRICS = ("nAP50", "bAP50", "AP50")
logger = logging.getLogger("fewshot_det.benchmark")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="output/tfa_bench")
    p.add_argument("--base", help="the TFA base model_final.pth (synthetic shapes)")
    p.add_argument("--shots", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS),
                   metavar="ROW", help=f"rows to run (default all: {', '.join(ROWS)})")
    p.add_argument("--r50", action="store_true", help="the R-50-FPN 800 px timing instead")
    p.add_argument("--r50-image-iters", type=int, default=4,
                   help="iterations of the image-by-image fine-tune timed (--r50)")
    from bench_args import parse_with_overrides  # benchmarks/bench_args.py

    return parse_with_overrides(p, argv)


def run_row(config: str, out: str, shots: int, seeds, support_only: bool, opts) -> dict:
    from fewshot_det.engine.defaults import load_config
    from fewshot_det.engine.fewshot import run_fewshot

    cfg = load_config(config, list(opts) + ["OUTPUT_DIR", out])
    start = time.perf_counter()
    summary = run_fewshot(cfg, shots, seeds, support_only=support_only, resume=True)
    summary["seconds_per_seed"] = (time.perf_counter() - start) / len(seeds)
    return summary


def synthetic(args) -> dict:
    if not args.base or not os.path.isfile(args.base):
        raise SystemExit(f"--base: no TFA base model at {args.base!r}")
    out = os.path.abspath(args.output)
    common = list(args.opts) + ["MODEL.WEIGHTS", os.path.abspath(args.base),
                                "FEWSHOT.SPLIT_DIR", os.path.join(out, "splits")]
    rows = {}
    for name in args.rows:
        support_only, opts = ROWS[name]
        folder = os.path.join(out, name.replace(" + ", "_").replace(" ", "_"))
        rows[name] = run_row(FT_CONFIG, folder, args.shots, args.seeds, support_only,
                             common + opts)
    return rows


def synthetic_markdown(rows: dict, args) -> str:
    lines = [f"TFA on the synthetic shapes, {args.shots} shots, split seeds {args.seeds} "
             f"({cpu_name()}); mean ± 95 % CI over the seeds",
             "", "| TFA | " + " | ".join(METRICS) + " | s / seed |",
             "|---|" + "---|" * (len(METRICS) + 1)]
    for name, s in rows.items():
        cells = [f"{100 * s['metrics'][m]['mean']:.1f} ± {100 * s['metrics'][m]['ci95']:.1f}"
                 for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['seconds_per_seed']:.0f} |")
    return "\n".join(lines) + "\n"


def r50(args) -> dict:
    import torch
    from fewshot_fixtures import make_edp_tree
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    out = os.path.abspath(args.output)
    root = os.path.join(out, "datasets", "EDP")
    if not os.path.isdir(root):
        make_edp_tree(root, num_train=40, num_test=10,
                      classes=["person", "insulator", "bird_nest"], scale=10)
    weights = os.path.join(out, "fasterrcnn_resnet50_fpn_random.pth")
    if not os.path.isfile(weights):
        torch.manual_seed(0)
        torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(),
                   weights)
    common = list(args.opts) + ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu",
                                "DATASETS.TRAIN", f"('voc:{root}:trainval',)",
                                "DATASETS.TEST", f"('voc:{root}:test',)",
                                "FEWSHOT.SPLIT_DIR", os.path.join(out, "splits"),
                                "SOLVER.LOG_PERIOD", "1"]  # every step's time
    cached = run_row(R50_CONFIG, os.path.join(out, "cached"), 10, [0], False, common)
    n = args.r50_image_iters
    run_row(R50_CONFIG, os.path.join(out, "images"), 10, [0], False, common + [
        "FEWSHOT.FINETUNE.CACHE_ROI_FEATURES", "False", "SOLVER.MAX_ITER", str(n),
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()"])
    with open(os.path.join(out, "images", "seed0", "metrics.jsonl")) as f:
        steps = [json.loads(line)["time"] for line in f if '"time"' in line]
    with open(os.path.join(out, "cached", "seed0", "metrics.jsonl")) as f:
        cached_steps = [json.loads(line)["time"] for line in f if '"time"' in line]
    import yaml

    with open(os.path.join(out, "cached", "seed0", "config.yaml")) as f:
        used = yaml.safe_load(f)  # the values the cached run used
    solver = used["SOLVER"]
    return {"cpu": cpu_name(), "max_iter": solver["MAX_ITER"],
            "short_side": list(used["INPUT"]["MIN_SIZE_TRAIN"]),
            "ims_per_batch": solver["IMS_PER_BATCH"],
            "cached_seconds_per_seed": cached["seconds_per_seed"],
            "cached_seconds_per_iter": statistics.median(cached_steps[1:] or cached_steps),
            "images_seconds_per_iter": statistics.median(steps[1:] or steps),
            "images_iters_timed": len(steps), "cached_nAP50": cached["metrics"]["nAP50"]}


def r50_markdown(r: dict) -> str:
    full = r["images_seconds_per_iter"] * r["max_iter"]
    return (f"R-50-FPN, short side {r['short_side']} px, 10 shots, {r['max_iter']} iterations of "
            f"{r['ims_per_batch']} images ({r['cpu']})\n\n"
            "| TFA fine-tune | s / iteration | one seed |\n|---|---|---|\n"
            f"| on cached RoI features | {r['cached_seconds_per_iter']:.4f} | "
            f"{r['cached_seconds_per_seed'] / 60:.1f} min measured (cache, training, "
            f"evaluation) |\n"
            f"| image by image | {r['images_seconds_per_iter']:.1f} | "
            f"{full / 3600:.1f} h ({r['images_iters_timed']} iterations timed x "
            f"{r['max_iter']}) |\n")


def main(argv=None) -> dict:
    from fewshot_det.engine.defaults import setup_logging

    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    setup_logging(args.output)
    if args.r50:
        result = r50(args)
        text = r50_markdown(result)
    else:
        result = synthetic(args)
        text = synthetic_markdown(result, args)
    name = "tfa_r50" if args.r50 else "tfa_cached_imprint" + (
        "" if args.rows == list(ROWS) else "_" + "_".join(r.replace(" ", "")
                                                          for r in args.rows))
    with open(os.path.join(args.output, f"{name}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.output, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(text)
    return result


if __name__ == "__main__":
    main()
