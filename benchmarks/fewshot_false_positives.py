#!/usr/bin/env python
"""What outranks the true detections of the novel classes: a run's top false positives.

    python benchmarks/fewshot_false_positives.py RUN_DIR [RUN_DIR ...] [--top 2]

RUN_DIR is a finished run: its ``config.yaml`` and the ``inference/<test set>/
predictions.json`` its evaluation wrote (a seed folder of tools/finetune_fewshot.py, or a
training run). Nothing is run again. For every novel class c (FEWSHOT.NOVEL_CLASSES) with
N test objects, its ``--top`` x N highest-scoring detections are sorted into:

    true         IoU >= 0.5 with an object of c not matched yet (COCO's greedy matching)
    duplicate    IoU >= 0.5 with an object of c already matched
    mislocated   0.1 <= IoU < 0.5 with an object of c
    on base      IoU >= 0.3 with an object of a base class (e.g. a fish called a stingray)
    on novel     IoU >= 0.3 with an object of another novel class
    background   none of those

AP ranks each class's detections: false positives that score above the true ones cost AP
even when every object is found. ``found`` counts the objects of c matched at any score.
A class whose false positives sit on base objects lacks examples of "base object, not
c"; one whose sit on background lacks negatives altogether.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from proposal_recall import box_iou  # benchmarks/proposal_recall.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("true", "duplicate", "mislocated", "on base", "on novel", "background")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--top", type=float, default=2.0,
                   help="detections looked at per class, as a multiple of its test objects")
    return p.parse_args(argv)


def load_run(run: str):
    """(ground truth, detections, class names, novel class indices) of a finished run."""
    from fewshot_det.data import get_dataset
    from fewshot_det.engine.defaults import load_config
    from fewshot_det.engine.train_loop import dataset_dirname
    from fewshot_det.evaluation.ground_truth import GroundTruth
    from fewshot_det.evaluation.results_io import parse_results

    cfg = load_config(os.path.join(run, "config.yaml"), [])
    name = cfg.DATASETS.TEST[0]
    path = os.path.join(run, "inference", dataset_dirname(name), "predictions.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run}: no {os.path.relpath(path, run)} (is the run "
                                f"finished and evaluated on {name}?)")
    records, metadata = get_dataset(name, check_images=False)
    names = list(metadata.thing_classes)
    gt = GroundTruth(records, len(names))
    with open(path) as f:
        det = parse_results(json.load(f), gt.image_index, metadata)
    novel = [names.index(n) for n in cfg.FEWSHOT.NOVEL_CLASSES if n in names]
    return gt, det, names, novel


def sort_class(gt, det, c: int, novel, top: float) -> dict:
    """{kind: count among the top detections of class index c, "objects", "found"}."""
    objects = np.flatnonzero((gt.cat == c) & ~gt.crowd & ~gt.difficult)
    order = [i for i in np.argsort(-det.score, kind="stable") if det.cat[i] == c]
    boxes = det.xyxy()
    is_object = set(objects.tolist())
    matched, counts = set(), dict.fromkeys(KINDS, 0)
    limit = int(round(top * len(objects)))
    for rank, i in enumerate(order):
        same = gt.img == det.img[i]
        ious = box_iou(boxes[i], gt.boxes[same])[0]
        ids = np.flatnonzero(same)
        own = [(iou, g) for iou, g in zip(ious, ids) if g in is_object]
        free = [(iou, g) for iou, g in own if iou >= 0.5 and g not in matched]
        if free:
            matched.add(max(free)[1])
            kind = "true"
        elif any(iou >= 0.5 for iou, _ in own):
            kind = "duplicate"
        elif any(iou >= 0.1 for iou, _ in own):
            kind = "mislocated"
        else:
            others = [int(gt.cat[g]) for iou, g in zip(ious, ids) if iou >= 0.3 and gt.cat[g] != c]
            kind = ("background" if not others
                    else "on novel" if others[0] in novel else "on base")
        if rank < limit:
            counts[kind] += 1
    return {**counts, "objects": len(objects), "found": len(matched)}


def main(argv=None) -> None:
    args = parse_args(argv)
    header = ("| run | class | objects | found | " + " | ".join(KINDS)
              + f" |  (of the top {args.top:g} x objects)")
    print(header)
    print("|" + "---|" * (len(KINDS) + 4))
    totals = {}
    for run in args.runs:
        gt, det, names, novel = load_run(run)
        for c in novel:
            s = sort_class(gt, det, c, novel, args.top)
            t = totals.setdefault(names[c], dict.fromkeys(KINDS + ("objects", "found"), 0))
            for k in t:
                t[k] += s[k]
            print(f"| {os.path.relpath(run, ROOT)} | {names[c]} | {s['objects']} | {s['found']} | "
                  + " | ".join(str(s[k]) for k in KINDS) + " |")
    if len(args.runs) > 1:
        for name, t in totals.items():
            print(f"| sum of {len(args.runs)} runs | {name} | {t['objects']} | {t['found']} | "
                  + " | ".join(str(t[k]) for k in KINDS) + " |")


if __name__ == "__main__":
    main()
