#!/usr/bin/env python
"""Where a detector loses the objects of a class group: at the proposals or at the classifier.

    python benchmarks/fewshot_diagnosis.py RUN_DIR [RUN_DIR ...] [--iou 0.5]

RUN_DIR is a finished run: its ``config.yaml`` and ``model_final.pth`` (a base training, or
a seed folder of ``tools/finetune_fewshot.py``, fine-tuned or ``--support-only``). On the
run's first test set, for the base and the novel classes (FEWSHOT.NOVEL_CLASSES) apart:

    proposal recall   share of GT boxes that one of the test-time proposals (the RPN's
                      POST_NMS_TOPK_TEST) covers at IoU >= --iou: no classifier can find
                      more;
    matched RoIs      the proposals at IoU >= --iou with a GT box of class c, split by the
                      classifier's arg-max: c itself, background, another class of the same
                      group, a class of the other group; and the mean softmax probability of c.

A novel class with a high proposal recall but its RoIs called background (or a base class)
is lost at the classifier; one with a low proposal recall is lost at the RPN, which base
training taught to treat the novel objects as background.
"""
from __future__ import annotations

import argparse
import os
from collections import defaultdict

import torch
from torchvision.ops import box_iou

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTCOMES = ("right", "background", "same group", "other group")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--iou", type=float, default=0.5)
    return p.parse_args(argv)


def load_run(run: str):
    """(cfg, model in eval mode) of a finished run folder."""
    from fewshot_det.checkpoint import load_weights
    from fewshot_det.engine.defaults import load_config, resolve_device
    from fewshot_det.modeling import build_model

    cfg = load_config(os.path.join(run, "config.yaml"), [])
    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    load_weights(model, os.path.join(run, "model_final.pth"), strict=True)
    return cfg, model.eval()


def test_batches(cfg):
    """(batches with their GT in the resized frame, class names) of the first test set."""
    from fewshot_det.data.build import build_test_loader_from_config
    from fewshot_det.data.mapper import DatasetMapper

    mapper = DatasetMapper.from_config(cfg, is_train=False)
    mapper.keep_annotations = True
    loader, _, metadata = build_test_loader_from_config(cfg, cfg.DATASETS.TEST[0], mapper)
    return loader, list(metadata.thing_classes)


@torch.no_grad()
def diagnose(cfg, model, iou_thresh: float) -> dict:
    """Per group ("base", "novel"): proposal recall, matched-RoI outcome shares, mean p(c)."""
    from fewshot_det.modeling.preprocess import prepare_targets

    loader, names = test_batches(cfg)
    novel = {i + 1 for i, n in enumerate(names) if n in set(cfg.FEWSHOT.NOVEL_CLASSES)}
    group = lambda c: "novel" if c in novel else "base"  # noqa: E731
    counts = defaultdict(lambda: defaultdict(float))
    for batch in loader:
        images = model.preprocess(batch)
        features = model.features(images)
        proposals, _ = model.proposals(images, features)
        probs = model.predict_boxes(model.box_features(features, proposals))[0].softmax(-1)
        targets = prepare_targets(batch, model.num_classes, model.device)
        for props, p, t in zip(proposals, probs.split([len(x) for x in proposals]), targets):
            _count_image(counts, props, p, t, group, iou_thresh)
    return {g: _shares(c) for g, c in counts.items()}


def _count_image(counts, props, probs, target, group, iou_thresh) -> None:
    if not len(target["gt_boxes"]) or not len(props):
        return
    iou = box_iou(target["gt_boxes"], props)  # [M, P]
    for m, c in enumerate(target["gt_labels"].tolist()):
        g = counts[group(c)]
        g["gt"] += 1
        matched = iou[m] >= iou_thresh
        g["covered"] += bool(matched.any())
        for row in probs[matched]:
            top = int(row.argmax())
            outcome = ("right" if top == c else "background" if top == 0
                       else "same group" if group(top) == group(c) else "other group")
            g[outcome] += 1
            g["rois"] += 1
            g["p_right"] += float(row[c])


def _shares(c: dict) -> dict:
    rois = max(c["rois"], 1)
    return {"gt": int(c["gt"]), "proposal_recall": c["covered"] / max(c["gt"], 1),
            "rois": int(c["rois"]), **{o: c[o] / rois for o in OUTCOMES},
            "mean_p_right": c["p_right"] / rois}


def main(argv=None) -> None:
    args = parse_args(argv)
    header = ("| run | classes | GT | proposal recall | matched RoIs | right | background | "
              "same group | other group | mean p(right) |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for run in args.runs:
        cfg, model = load_run(run)
        for g, s in sorted(diagnose(cfg, model, args.iou).items()):
            print(f"| {os.path.relpath(run, ROOT)} | {g} | {s['gt']} | "
                  f"{s['proposal_recall']:.3f} | {s['rois']} | "
                  + " | ".join(f"{s[o]:.3f}" for o in OUTCOMES) + f" | {s['mean_p_right']:.3f} |")


if __name__ == "__main__":
    main()
