#!/usr/bin/env python
"""Can the attention RPN tell classes apart? A nearest-prototype probe of its features.

    python benchmarks/rpn_feature_probe.py \
        --config configs/quickstart/fewshot_siamese_base_shapes.yaml \
        MODEL.WEIGHTS output/fewshot_bench/siamese_base/model_final.pth

The attention RPN scores a query location by correlating its k x k feature patch with a
class's support kernel (``AttentionRPN.class_logits``). If the FPN features carry little
class identity at that granularity, no correlation scorer can single out the support's
class, and the attention RPN can at best match the plain RPN's recall. This probe measures
that ceiling on the first test set: for every GT object (centre patch at its natural FPN
level, the same normalisation as the RPN), the nearest class prototype by cosine, with
prototypes

* "query": mean kernels of the objects in the first half of the test images (scored on
  the second half), all classes;
* "bank": the model's cached support prototypes (the classes it has one for).

Prints the accuracies next to chance (1 / number of classes).
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def object_patches(model, loader, records):
    """(class id, support-style kernel [E], centre patch [E]) of every GT object."""
    import torch
    from torch.nn import functional as F
    from torchvision.ops import roi_align

    from fewshot_det.modeling.meta_arch.preprocess import normalize_and_pad

    rpn = model.proposal_generator
    by_id = {str(r["image_id"]): r for r in records}
    k = rpn.kernel_size
    out = []
    with torch.no_grad():
        for batch in loader:
            images = normalize_and_pad([it["image"] for it in batch], model.pixel_mean,
                                       model.pixel_std, model.backbone.size_divisibility)
            features = model.backbone(images.tensors)
            feats = [features[f] for f in rpn.in_features]
            for i, item in enumerate(batch):
                h, w = item["image"].shape[-2:]
                scale = torch.tensor([w / item["width"], h / item["height"]] * 2)
                for ann in by_id[str(item["image_id"])]["annotations"]:
                    box = torch.tensor(ann["bbox"], dtype=torch.float32) * scale
                    level = int(rpn.natural_level(box[None])[0])
                    stride = rpn.anchor_generator.strides[level]
                    t = feats[level][i:i + 1]
                    kernel = roi_align(t, torch.cat([torch.zeros(1), box])[None], (k, k),
                                       spatial_scale=1.0 / stride, sampling_ratio=2,
                                       aligned=True).flatten()
                    cx = min(int((box[0] + box[2]) / 2 / stride), t.shape[-1] - 1)
                    cy = min(int((box[1] + box[3]) / 2 / stride), t.shape[-2] - 1)
                    patch = F.unfold(t, k, padding=k // 2)[0][:, cy * t.shape[-1] + cx]
                    out.append((ann["category_id"], kernel, patch))
    return out


def accuracy(prototypes, class_ids, samples) -> float:
    import torch

    from fewshot_det.modeling.fewshot import rms_normalize

    protos = rms_normalize(prototypes)
    hits = [class_ids[int((protos * rms_normalize(p)).mean(-1).argmax())] == c
            for c, _, p in samples if c in class_ids]
    return float(torch.tensor(hits, dtype=torch.float32).mean()) if hits else float("nan")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    args = p.parse_args(argv)
    import torch

    from fewshot_det.checkpoint import load_weights
    from fewshot_det.data.build import build_test_loader_from_config
    from fewshot_det.engine.defaults import load_config
    from fewshot_det.modeling import build_model
    from fewshot_det.modeling.fewshot import rms_normalize

    cfg = load_config(args.config, args.opts)
    model = build_model(cfg)
    load_weights(model, cfg.MODEL.WEIGHTS)
    model.eval()
    loader, records, _ = build_test_loader_from_config(cfg, cfg.DATASETS.TEST[0])
    samples = object_patches(model, loader, records)
    half = len(samples) // 2
    classes = sorted({c for c, _, _ in samples})
    query = torch.stack([torch.stack([rms_normalize(kern) for c2, kern, _ in samples[:half]
                                      if c2 == c]).mean(0) for c in classes])
    print(f"{len(samples)} objects, {len(classes)} classes; chance {1 / len(classes):.3f}")
    print(f"nearest query prototype: {accuracy(query, classes, samples[half:]):.3f}")
    known = model.prototype_bank.known_classes().tolist()
    if known:
        bank = model.prototype_bank.rpn[[c - 1 for c in known], 0]
        print(f"nearest bank prototype ({len(known)} classes, chance {1 / len(known):.3f}): "
              f"{accuracy(bank, known, samples):.3f}")


if __name__ == "__main__":
    main()
