#!/usr/bin/env python
"""Can the attention RPN tell classes apart? A nearest-prototype probe of its features.

    python benchmarks/rpn_feature_probe.py \
        --config configs/quickstart/fewshot_siamese_base_shapes.yaml \
        MODEL.WEIGHTS output/fewshot_bench/siamese_base/model_final.pth

The attention RPN scores a query location by correlating its k x k feature patch with a
class's support kernel (``AttentionRPN.class_logits``). If the features carry little class
identity at that granularity, no correlation scorer can single out the support's class,
and the attention RPN can at best match the plain RPN's recall. This probe measures that
ceiling on the first test set. Every GT object gives the k x k patch at its centre, on its
natural level (``AttentionRPN.natural_level``), normalised as in the RPN; it is classified
by the nearest class prototype (cosine), with prototypes

* "query, all levels": mean kernels (``support_features``' RoIAlign) of the objects in the
  first half of the test images, scored on the second half;
* "query, per level": the same with one prototype per (class, level);
* "bank": the model's cached support prototypes (the classes it has one for);
* "linear probe": a linear classifier (softmax regression) trained on the first half's
  normalised patches, per level, scored on the second half: what any learned linear
  read-out of the patch, not only a nearest-prototype one, can get from it.

Features: the FPN levels the RPN correlates, and (per level only) the backbone stage
whose stride is nearest each level's (a candidate source with more class identity).
Prints the accuracies next to chance (1 / number of classes).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def object_patches(model, loader, records):
    """Per feature source ("fpn", "backbone"), a list of (class id, level, kernel [E],
    centre patch [E]) for every GT object."""
    import torch

    from fewshot_det.modeling.meta_arch.preprocess import normalize_and_pad

    rpn = model.proposal_generator
    by_id = {str(r["image_id"]): r for r in records}
    body_shapes = model.backbone.body.output_shape()
    out = defaultdict(list)
    with torch.no_grad():
        for batch in loader:
            images = normalize_and_pad([it["image"] for it in batch], model.pixel_mean,
                                       model.pixel_std, model.backbone.size_divisibility)
            body = model.backbone.body(images.tensors)
            features = model.backbone(images.tensors)
            sources = {"fpn": [(features[f], s) for f, s in
                               zip(rpn.in_features, rpn.anchor_generator.strides)]}
            sources["backbone"] = [
                min(((body[name], shape.stride) for name, shape in body_shapes.items()
                     if name in body), key=lambda b: abs(b[1] - stride))
                for _, stride in sources["fpn"]]
            for i, item in enumerate(batch):
                h, w = item["image"].shape[-2:]
                scale = torch.tensor([w / item["width"], h / item["height"]] * 2)
                for ann in by_id[str(item["image_id"])]["annotations"]:
                    box = torch.tensor(ann["bbox"], dtype=torch.float32) * scale
                    level = int(rpn.natural_level(box[None])[0])
                    for name, levels in sources.items():
                        t, stride = levels[level]
                        out[name].append((ann["category_id"], level,
                                          *kernel_and_patch(t[i:i + 1], box, stride,
                                                            rpn.kernel_size)))
    return out


def kernel_and_patch(t, box, stride: int, k: int):
    """The support-style k x k kernel of ``box`` and the k x k patch at its centre."""
    import torch
    from torch.nn import functional as F
    from torchvision.ops import roi_align

    kernel = roi_align(t, torch.cat([torch.zeros(1), box])[None], (k, k),
                       spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True).flatten()
    cx = min(int((box[0] + box[2]) / 2 / stride), t.shape[-1] - 1)
    cy = min(int((box[1] + box[3]) / 2 / stride), t.shape[-2] - 1)
    patch = F.unfold(t, k, padding=k // 2)[0][:, cy * t.shape[-1] + cx]
    return kernel, patch


def nearest_accuracy(train, test, per_level: bool) -> float:
    """Accuracy on ``test`` of the nearest class-mean kernel of ``train`` (same level only
    when ``per_level``); test objects of a class absent from ``train`` are skipped."""
    import torch

    from fewshot_det.modeling.fewshot import rms_normalize

    hits = []
    levels = sorted({lvl for _, lvl, _, _ in test}) if per_level else [None]
    for level in levels:
        pool = [x for x in train if level is None or x[1] == level]
        classes = sorted({c for c, _, _, _ in pool})
        if not classes:
            continue
        protos = rms_normalize(torch.stack([
            torch.stack([rms_normalize(kern) for c, _, kern, _ in pool if c == cls]).mean(0)
            for cls in classes]))
        for c, lvl, _, patch in test:
            if (level is None or lvl == level) and c in classes:
                scores = (protos * rms_normalize(patch)).mean(-1)
                hits.append(classes[int(scores.argmax())] == c)
    return sum(hits) / max(len(hits), 1)


def linear_probe_accuracy(train, test, steps: int = 300) -> float:
    """Accuracy on ``test`` of a softmax regression fitted on ``train`` (one per level;
    test objects of a class absent from that level's ``train`` are skipped)."""
    import torch
    from torch.nn import functional as F

    from fewshot_det.modeling.fewshot import rms_normalize

    torch.manual_seed(0)
    hits = []
    for level in sorted({lvl for _, lvl, _, _ in test}):
        pool = [x for x in train if x[1] == level]
        classes = sorted({c for c, _, _, _ in pool})
        rows = [x for x in test if x[1] == level and x[0] in classes]
        if len(classes) < 2 or not rows:
            continue
        x = rms_normalize(torch.stack([p for _, _, _, p in pool]))
        y = torch.tensor([classes.index(c) for c, _, _, _ in pool])
        linear = torch.nn.Linear(x.shape[1], len(classes))
        opt = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-3)
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(linear(x), y).backward()
            opt.step()
        with torch.no_grad():
            pred = linear(rms_normalize(torch.stack([p for _, _, _, p in rows]))).argmax(1)
        hits += [classes[int(i)] == c for i, (c, _, _, _) in zip(pred, rows)]
    return sum(hits) / max(len(hits), 1)


def bank_accuracy(model, samples) -> str:
    import torch

    from fewshot_det.modeling.fewshot import rms_normalize

    known = model.prototype_bank.known_classes().tolist()
    if not known:
        return "no cached prototypes"
    protos = rms_normalize(model.prototype_bank.rpn[[c - 1 for c in known], 0])
    hits = [known[int((protos * rms_normalize(p)).mean(-1).argmax())] == c
            for c, _, _, p in samples if c in known]
    acc = float(torch.tensor(hits, dtype=torch.float32).mean())
    return f"{acc:.3f} ({len(known)} classes, chance {1 / len(known):.3f})"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    args = p.parse_args(argv)

    from fewshot_det.checkpoint import load_weights
    from fewshot_det.data.build import build_test_loader_from_config
    from fewshot_det.engine.defaults import load_config
    from fewshot_det.modeling import build_model

    cfg = load_config(args.config, args.opts)
    model = build_model(cfg)
    load_weights(model, cfg.MODEL.WEIGHTS)
    model.eval()
    loader, records, _ = build_test_loader_from_config(cfg, cfg.DATASETS.TEST[0])
    samples = object_patches(model, loader, records)
    fpn = samples["fpn"]
    half = len(fpn) // 2
    num_classes = len({c for c, _, _, _ in fpn})
    print(f"{len(fpn)} objects, {num_classes} classes, chance {1 / num_classes:.3f}")
    print(f"FPN, query, all levels: {nearest_accuracy(fpn[:half], fpn[half:], False):.3f}")
    for name in ("fpn", "backbone"):
        label = "FPN" if name == "fpn" else "backbone stages"
        train, test = samples[name][:half], samples[name][half:]
        print(f"{label}, query, per level: {nearest_accuracy(train, test, True):.3f}")
        print(f"{label}, linear probe, per level: {linear_probe_accuracy(train, test):.3f}")
    print(f"FPN, support bank: {bank_accuracy(model, fpn)}")


if __name__ == "__main__":
    main()
