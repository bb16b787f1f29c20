#!/usr/bin/env python
"""Few-shot detection on real photos: aquarium and DeepPCB, ImageNet EfficientNet-Lite
features against the R-18 of the synthetic quick start.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/fewshot_real.py --output output/fewshot_real \
        [--datasets aquarium deeppcb] [--backbones lite0 r18_synthetic] [--shots 1 5 10] \
        [--seeds 0 1 2 3 4] [--r18-weights output/quickstart_frcnn/model_final.pth]

Class splits (stated here, the same for every backbone):

    aquarium (../shared/data/aquarium, YOLO layout; evaluated on "valid", 127 images)
        base  fish, jellyfish, penguin, puffin, shark
        novel starfish, stingray
    DeepPCB (../shared/data/DeepPCB, VOC layout; evaluated on "test", 500 images)
        base  open, short, mousebite, spur
        novel copper, pin-hole

Stages per (dataset, backbone), each skipped when its result exists, so an interrupted run
continues (an interrupted training resumes from its last checkpoint):

1. base training on the base classes only (novel boxes are background): the plain
   detector of configs/lite/fewshot_tfa_base_lite0.yaml (or the quick-start R-18 started
   from --r18-weights); its test bAP50 is "before";
2. the full-data reference: the same detector trained with every novel annotation too,
   whose nAP50 is what the data allows;
3. the siamese detector's episodic stage on the base model (frozen detector);
4. for every K of --shots and seed of --seeds (one split folder per K):
   TFA (cosine predictor fine-tuned on cached RoI features), imprinting only (no
   training), siamese support only (no training) and siamese fine-tuned; variants:
   tfa_fc (the box head's last layer trains too), tfa_labels (the base model labels its
   classes in the K-shot images first), tfa_cal / imprint_cal (the new classes' scores
   calibrated with ImageNet Lite0 prototypes, FEWSHOT.CALIBRATION);
5. OUTPUT/fewshot_real.md and .json: per row nAP50 and bAP50 mean ± 95 % CI over the
   seeds, the time per seed, and nAP50 as a share of the full-data reference.

Trailing KEY VALUE overrides apply to every stage (e.g. SOLVER.MAX_ITER for a smoke test);
--base-iters / --ft-iters override the schedules.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")
DATASETS = {
    "aquarium": {"train": "yolo:{data}/aquarium:train", "test": "yolo:{data}/aquarium:valid",
                 "base": ["fish", "jellyfish", "penguin", "puffin", "shark"],
                 "novel": ["starfish", "stingray"]},
    "deeppcb": {"train": "voc:{data}/DeepPCB:trainval", "test": "voc:{data}/DeepPCB:test",
                "base": ["open", "short", "mousebite", "spur"],
                "novel": ["copper", "pin-hole"]},
}
# backbone -> (plain base config, TFA fine-tune, siamese base, siamese fine-tune, extra
# overrides of every stage). The R-18 row is the quick-start network at the Lite input size.
LITE = os.path.join(ROOT, "configs", "lite")
BACKBONES = {
    name: tuple(os.path.join(LITE, f.format(v=name)) for f in (
        "fewshot_tfa_base_{v}.yaml", "fewshot_tfa_ft_{v}.yaml",
        "fewshot_siamese_base_{v}.yaml", "fewshot_siamese_ft_{v}.yaml")) + ([],)
    for name in ("lite0",)
}
BACKBONES["lite2"] = BACKBONES["lite0"][:4] + (
    ["MODEL.WEIGHTS", "imagenet:efficientnet-lite2", "MODEL.EFFICIENTNET.VARIANT", "lite2"],)
BACKBONES["r18_synthetic"] = BACKBONES["lite0"][:4] + (
    ["MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone", "MODEL.RESNETS.DEPTH", "18",
     "MODEL.RESNETS.NORM", "FrozenBN", "MODEL.BACKBONE.FREEZE_AT", "3",
     "INPUT.FORMAT", "BGR", "MODEL.PIXEL_MEAN", "[103.53, 116.28, 123.675]",
     "MODEL.PIXEL_STD", "[57.375, 57.12, 58.395]"],)
# TFA's "fc" variant: the box head's last layer trains with the predictor (still cached)
FC_TRAINABLE = ["FEWSHOT.FINETUNE.TRAINABLE",
                "['^roi_heads\\\\.box_predictor\\\\.', '^roi_heads\\\\.box_head\\\\.fc2\\\\.']"]
# The K-shot images' other objects labelled by the base model before fine-tuning
BASE_LABELS = ["FEWSHOT.FINETUNE.BASE_LABEL_SCORE", "0.5"]
# Prototype calibration of the new classes' scores with ImageNet Lite0 features (the TFA
# config's default); the other TFA and imprinting rows go without, as published
CALIBRATED = ["FEWSHOT.CALIBRATION.WEIGHTS", "imagenet:efficientnet-lite0"]
UNCALIBRATED = ["FEWSHOT.CALIBRATION.WEIGHTS", ""]
METHODS = {"tfa": "TFA (cached RoI features)", "tfa_fc": "TFA, box head's last layer too",
           "tfa_labels": "TFA, base classes labelled by the base model",
           "tfa_cal": "TFA + prototype calibration",
           "imprint": "imprinting only", "imprint_cal": "imprinting + prototype calibration",
           "siamese_support": "siamese, support only", "siamese": "siamese fine-tuned"}
logger = logging.getLogger("fewshot_det.benchmark")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="output/fewshot_real")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--backbones", nargs="+", default=["lite0"], choices=list(BACKBONES))
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--r18-weights", default="",
                   help="the synthetic quick start's model_final.pth (r18_synthetic rows)")
    p.add_argument("--base-iters", type=int, default=0, help="override the base schedules")
    p.add_argument("--ft-iters", type=int, default=0, help="override the fine-tune schedules")
    p.add_argument("--report-only", action="store_true",
                   help="write the table of the stages already finished; run nothing")
    from bench_args import parse_with_overrides  # benchmarks/bench_args.py

    return parse_with_overrides(p, argv)


def dataset_overrides(name: str) -> list:
    d = DATASETS[name]
    data = os.path.abspath(DATA)
    return ["DATASETS.TRAIN", f"('{d['train'].format(data=data)}',)",
            "DATASETS.TEST", f"('{d['test'].format(data=data)}',)",
            "FEWSHOT.BASE_CLASSES", str(d["base"]), "FEWSHOT.NOVEL_CLASSES", str(d["novel"])]


def config(path: str, out: str, opts: list, iters: int = 0):
    from fewshot_det.engine.defaults import load_config

    more = ["SOLVER.MAX_ITER", str(iters), "SOLVER.WARMUP_ITERS", str(min(50, iters // 4)),
            "TEST.EVAL_PERIOD", str(iters)] if iters else []
    return load_config(path, list(opts) + more + ["OUTPUT_DIR", out])


def finished(cfg, seeds=None):
    """The stage's stored result (over exactly ``seeds``, when given), or None."""
    path = os.path.join(cfg.OUTPUT_DIR, "stage.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        result = json.load(f)
    return result if seeds is None or sorted(result["seeds"]) == sorted(seeds) else None


def train_stage(cfg) -> dict:
    """Train (an interrupted run resumes; a finished one is evaluated again from its
    model_final.pth); the first test set's metrics and the training minutes."""
    from fewshot_det.checkpoint import load_weights
    from fewshot_det.engine.defaults import resolve_device, seed_all
    from fewshot_det.engine.train_loop import evaluate_model, train
    from fewshot_det.modeling import build_model

    path = os.path.join(cfg.OUTPUT_DIR, "stage.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    seed_all(cfg.SEED)
    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    start = time.perf_counter()
    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    if os.path.isfile(final):
        load_weights(model, final, strict=True)
        metrics = evaluate_model(cfg, model)
    else:
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        metrics = train(cfg, model, resume=True)
    result = {"metrics": metrics[cfg.DATASETS.TEST[0]],
              "minutes": (time.perf_counter() - start) / 60}
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def fewshot_stage(cfg, shots: int, seeds, support_only: bool = False) -> dict:
    """``run_fewshot`` over the seeds (resumed when interrupted; seeds finished by an
    earlier run are read back), with the time per seed: the mean over the seeds timed
    whole, by this run or by an earlier stage with fewer seeds."""
    from fewshot_det.engine.fewshot import run_fewshot

    path = os.path.join(cfg.OUTPUT_DIR, "stage.json")
    before = {"seeds": [], "minutes_per_seed": None}
    if os.path.isfile(path):
        with open(path) as f:
            before = json.load(f)
        if before["seeds"] == list(seeds):
            return before
    # seeds an interrupted run finished are read back, so this run's time is not theirs
    fresh = [s for s in seeds if not os.path.isfile(
        os.path.join(cfg.OUTPUT_DIR, f"seed{s}", "results.json"))]
    start = time.perf_counter()
    summary = run_fewshot(cfg, shots, seeds, support_only=support_only, resume=True)
    timed = [(len(fresh), (time.perf_counter() - start) / 60 if fresh else 0.0)]
    if before["minutes_per_seed"] is not None:
        timed.append((len(before["seeds"]), before["minutes_per_seed"] * len(before["seeds"])))
    count = sum(n for n, _ in timed)
    summary["minutes_per_seed"] = sum(m for _, m in timed) / count if count else None
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def run_backbone(args, dataset: str, backbone: str) -> dict:
    base_cfg, tfa_cfg, sia_base_cfg, sia_ft_cfg, extra = BACKBONES[backbone]
    out = os.path.join(args.output, dataset, backbone)
    opts = dataset_overrides(dataset) + extra + list(args.opts)
    init = []
    if backbone == "r18_synthetic":
        if not os.path.isfile(args.r18_weights):
            raise FileNotFoundError(f"--r18-weights {args.r18_weights!r}: the quick start's "
                                    f"model_final.pth is needed for the r18_synthetic rows")
        init = ["MODEL.WEIGHTS", os.path.abspath(args.r18_weights)]
    stage = (lambda cfg, *a, **k: finished(cfg)) if args.report_only else train_stage
    base = config(base_cfg, os.path.join(out, "base"), opts + init, args.base_iters)
    result = {"base": stage(base)}
    full = config(base_cfg, os.path.join(out, "full_data"),
                  opts + init + ["FEWSHOT.TRAIN_CLASSES", "all"], args.base_iters)
    result["full_data"] = stage(full)
    if result["base"] is None or result["full_data"] is None:
        return {}
    base_weights = ["MODEL.WEIGHTS", os.path.join(base.OUTPUT_DIR, "model_final.pth")]
    wants_siamese = {"siamese", "siamese_support"} & set(args.methods)
    if wants_siamese:
        sia = config(sia_base_cfg, os.path.join(out, "siamese_base"), opts + base_weights,
                     args.base_iters and max(1, args.base_iters // 3))
        result["siamese_base"] = stage(sia)
        sia_weights = ["MODEL.WEIGHTS", os.path.join(sia.OUTPUT_DIR, "model_final.pth")]
    for k in args.shots:
        splits = ["FEWSHOT.SPLIT_DIR", os.path.join(out, f"splits_{k}shot")]
        cached = base_weights + ["FEWSHOT.FINETUNE.CACHE_ROI_FEATURES", "True"]
        runs = {"tfa": (tfa_cfg, cached + UNCALIBRATED, False),
                "tfa_fc": (tfa_cfg, cached + UNCALIBRATED + FC_TRAINABLE, False),
                "tfa_labels": (tfa_cfg, cached + UNCALIBRATED + BASE_LABELS, False),
                "tfa_cal": (tfa_cfg, cached + CALIBRATED, False),
                "imprint": (tfa_cfg, base_weights + UNCALIBRATED, True),
                "imprint_cal": (tfa_cfg, base_weights + CALIBRATED, True)}
        if wants_siamese:
            runs.update({"siamese_support": (sia_ft_cfg, sia_weights, True),
                         "siamese": (sia_ft_cfg, sia_weights, False)})
        for method in args.methods:
            path, more, support_only = runs[method]
            cfg = config(path, os.path.join(out, f"{method}_{k}shot"), opts + splits + more,
                         0 if support_only else args.ft_iters)
            result[f"{method}_{k}shot"] = (finished(cfg, args.seeds) if args.report_only
                                           else fewshot_stage(cfg, k, args.seeds, support_only))
    return result


def _ci(stat: dict) -> str:
    """"mean ± ci95" (the CI is None for a single seed)."""
    ci = f" ± {stat['ci95']:.3f}" if stat.get("ci95") is not None else ""
    return f"{stat['mean']:.3f}{ci}"


def table(args, results: dict) -> str:
    """The markdown table of every (dataset, backbone)."""
    lines = []
    for dataset, per_backbone in results.items():
        d = DATASETS[dataset]
        lines += [f"### {dataset}: base {', '.join(d['base'])}; novel {', '.join(d['novel'])}",
                  "", "| backbone | method | K | nAP50 | bAP50 | share of full-data nAP50 "
                  "| min / seed |", "|---|---|---|---|---|---|---|"]
        for backbone, r in per_backbone.items():
            if not r:  # --report-only before the base stages finished
                continue
            ref = r["full_data"]["metrics"].get("nAP50", float("nan"))
            before = r["base"]["metrics"].get("bAP50", float("nan"))
            lines.append(f"| {backbone} | base training (bAP50 before) | - | - | {before:.3f} | "
                         f"- | {r['base']['minutes']:.0f} (training) |")
            lines.append(f"| {backbone} | full-data reference | all | {ref:.3f} | "
                         f"{r['full_data']['metrics'].get('bAP50', float('nan')):.3f} | 1.00 | "
                         f"{r['full_data']['minutes']:.0f} (training) |")
            for k in args.shots:
                for method in args.methods:
                    s = r.get(f"{method}_{k}shot")
                    if not s:
                        continue
                    n, b = s["metrics"]["nAP50"], s["metrics"]["bAP50"]
                    share = n["mean"] / ref if ref > 0 else float("nan")
                    minutes = s.get("minutes_per_seed")
                    lines.append(f"| {backbone} | {METHODS[method]} | {k} | {_ci(n)} | {_ci(b)} "
                                 f"| {share:.2f} | "
                                 f"{'-' if minutes is None else f'{minutes:.1f}'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from machine import cpu_name  # benchmarks/machine.py
    from fewshot_det.engine.defaults import setup_logging

    args = parse_args(argv)
    setup_logging(args.output)
    results = {d: {b: run_backbone(args, d, b) for b in args.backbones} for d in args.datasets}
    kernels = os.environ.get("ATEN_CPU_CAPABILITY", "default")
    text = (f"# Few-shot on real photos\n\n{cpu_name()}, {kernels} kernels\n\nseeds {args.seeds}; "
            f"mean ± 95 % CI over seeds\n\n{table(args, results)}")
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "fewshot_real.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.output, "fewshot_real.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
