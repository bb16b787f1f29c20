#!/usr/bin/env python
"""Does training-free support matching of box-aligned finest-level features steer an RPN?

    python benchmarks/box_matching_rpn.py --weights output/fewshot_s7/tfa_base/model_final.pth \
        --split-dir output/fewshot_s7/splits --shots 10 --seeds 0 1 2 \
        --alphas 0 2 5 10 20 [--val output/fewshot_s7/shapes_val] [--dense 3]

Why: the attention RPN correlates anchor windows at the objects' natural FPN levels,
where the quick start's features carry almost no class identity (nearest prototype 0.16,
12 classes), and no scorer trained on them learned to pick the support's class
(BENCHMARKS.md, session 5). Box-aligned 4x4 features of the finest level (P3) do carry it
(nearest prototype 0.47 on GT boxes, without training). This script tests that signal in
the RPN itself, with nothing learned: every anchor among the plain RPN's pre-NMS top k of
its level is decoded to its box, the box's P3 features are RoIAligned to s x s, and the
anchor's score becomes ``prior logit + alpha * max_c cos(box feature, prototype_c)``,
prototypes being the mean (unit) P3 features of the K support crops of each conditioned
class. NMS then keeps the box of best prior in each cluster (quality-guided, as the
attention RPN) and ranks clusters by the new score. ``alpha = 0`` is the plain RPN.

Reported per alpha: novel-class AR@k of the proposals conditioned on the novel classes'
supports, and the control conditioned on the base classes' supports (a ranking that uses
the support must do better with the right one), on the test split and on g x g mosaics
(``--dense``, benchmarks/dense_scenes.py). ``--val`` runs on a validation folder instead
of shapes_test (to choose alpha without looking at the test split).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "quickstart", "fewshot_tfa_ft_shapes.yaml")
TOPKS = (10, 20, 100, 1000)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="plain base model (stage 1a)")
    p.add_argument("--split-dir", required=True, help="K-shot split files (FEWSHOT.SPLIT_DIR)")
    p.add_argument("--shots", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--alphas", type=float, nargs="+", default=[0, 5])
    p.add_argument("--bins", type=int, default=4, help="s: RoIAlign output side on P3")
    p.add_argument("--level", default="p3", help="MODEL.RPN.MATCH_FEATURE")
    p.add_argument("--val", default="", help="a synthetic folder to test on instead")
    p.add_argument("--dense", type=int, default=0, help="also on g x g mosaics (0: off)")
    p.add_argument("--output", default="", help="write the results json here")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    return p.parse_args(argv)


def class_prototypes(model, cfg, args, seed: int):
    """[12, L, E] prototypes (class id - 1 -> row) from the K-shot split of ``seed``."""
    import torch

    from fewshot_det.data.episodes import SupportCropper, build_support_set
    from fewshot_det.engine.fewshot import fewshot_training_set, seed_config
    from fewshot_det.modeling.fewshot import average_shots
    from fewshot_det.modeling.meta_arch.preprocess import normalize_and_pad

    records, metadata = fewshot_training_set(seed_config(cfg, args.shots, seed))
    supports = build_support_set(records, SupportCropper.from_config(cfg),
                                 min_box_size=cfg.FEWSHOT.SUPPORT.MIN_BOX_SIZE)
    images = normalize_and_pad(list(supports["images"]), model.pixel_mean, model.pixel_std,
                               model.backbone.size_divisibility)
    features = model.backbone(images.tensors)
    vectors = model.proposal_generator.support_features(
        features, [b[None].float() for b in supports["boxes"]])
    ids = torch.arange(1, len(metadata.thing_classes) + 1)
    return average_shots(vectors, supports["labels"], ids), metadata


def evaluate(model, cfg, dataset: str, args, conditions, novel_ids):
    """{(condition, alpha): {"AR@k", "R50@k"}} of the novel classes on ``dataset``."""
    import torch
    from torchvision.ops import box_iou

    from fewshot_det.data.build import build_test_loader_from_config
    from fewshot_det.modeling.fewshot import Prototypes
    from fewshot_det.modeling.fewshot.recall import gt_boxes_of, proposal_limits, recall_at
    from fewshot_det.modeling.meta_arch.preprocess import normalize_and_pad

    loader, records, _ = build_test_loader_from_config(cfg, dataset)
    by_id = {str(r["image_id"]): r for r in records}
    rpn = model.proposal_generator
    max_iou = defaultdict(list)
    with proposal_limits(rpn, max(TOPKS)):
        for batch in loader:
            images = normalize_and_pad([item["image"] for item in batch], model.pixel_mean,
                                       model.pixel_std, model.backbone.size_divisibility)
            features = model.backbone(images.tensors)
            n = len(batch)
            for name, (protos, ids) in conditions.items():
                columns = Prototypes(rpn=protos[None].expand(n, -1, -1, -1),
                                     head=protos.new_zeros(n, len(ids), 1),
                                     class_ids=ids[None].expand(n, -1),
                                     valid=torch.ones(n, len(ids), dtype=torch.bool))
                for alpha in args.alphas:
                    rpn.match_weight = alpha
                    for item, props in zip(batch, rpn(images, features, columns)[0]):
                        gt = gt_boxes_of(by_id[str(item["image_id"])], novel_ids)
                        h, w = item["image"].shape[-2:]
                        props = props * props.new_tensor([item["width"] / w,
                                                          item["height"] / h] * 2)
                        for k in TOPKS:
                            top = props[:k]
                            max_iou[name, alpha, k].append(
                                box_iou(gt, top).max(dim=1).values if len(top) and len(gt)
                                else torch.zeros(len(gt)))
    out = {}
    for (name, alpha, k), parts in max_iou.items():
        ious = torch.cat(parts)
        row = out.setdefault((name, alpha), {})
        row[f"AR@{k}"] = recall_at(ious)
        row[f"R50@{k}"] = recall_at(ious, (0.5,))
    return out


def main(argv=None) -> None:
    import torch

    from dense_scenes import write_mosaics
    from fewshot_det.checkpoint import load_weights
    from fewshot_det.data.synthetic import ensure_synthetic_dataset
    from fewshot_det.engine.defaults import load_config
    from fewshot_det.engine.fewshot import aggregate
    from fewshot_det.modeling import build_model

    args = parse_args(argv)
    torch.set_grad_enabled(False)
    cfg = load_config(CONFIG, ["FEWSHOT.SPLIT_DIR", os.path.abspath(args.split_dir),
                               "MODEL.WEIGHTS", "", "MODEL.RPN.NAME", "SupportMatchingRPN",
                               "MODEL.RPN.MATCH_FEATURE", args.level,
                               "MODEL.RPN.MATCH_BINS", str(args.bins)] + list(args.opts))
    model = build_model(cfg)
    load_weights(model, args.weights)
    model.eval()
    test_sets = {}
    if args.val:
        root = ensure_synthetic_dataset(os.path.abspath(args.val), num_train=1, num_test=300,
                                        seed=7)
        test_sets["val"] = (f"voc:{root}:test", root)
    else:
        from fewshot_det.data.catalog import DatasetCatalog

        fields = DatasetCatalog.load(cfg.DATASETS.TEST[0], check_images=False)[1]
        test_sets["test"] = (cfg.DATASETS.TEST[0], fields["dataset_root"])
    if args.dense:
        for name, (_, root) in list(test_sets.items()):
            g = args.dense
            dst = write_mosaics(root, os.path.join(os.path.dirname(os.path.abspath(
                args.split_dir)), f"{name}_dense_{g}x{g}"), g, "test")
            test_sets[f"{name} dense {g}x{g}"] = (f"voc:{dst}:test", dst)
    results = defaultdict(list)
    for seed in args.seeds:
        protos, metadata = class_prototypes(model, cfg, args, seed)
        names = list(metadata.thing_classes)
        novel = [names.index(n) + 1 for n in metadata.novel_classes]
        base = [i for i in range(1, len(names) + 1) if i not in novel]
        conditions = {name: (protos[torch.tensor(ids) - 1], torch.tensor(ids))
                      for name, ids in (("novel supports", novel),
                                        ("control: base supports", base))}
        for set_name, (dataset, _) in test_sets.items():
            test_cfg = cfg.clone()
            test_cfg.defrost()
            if "dense" in set_name:
                side = cfg.INPUT.MIN_SIZE_TEST * args.dense
                test_cfg.INPUT.MIN_SIZE_TEST = side
                test_cfg.INPUT.MAX_SIZE_TEST = side
            test_cfg.freeze()
            for key, row in evaluate(model, test_cfg, dataset, args, conditions,
                                     novel).items():
                results[(set_name,) + key].append(row)
                print(seed, set_name, key, {k: round(100 * v, 1) for k, v in row.items()
                                            if k in ("AR@10", "AR@100", "AR@1000", "R50@100")},
                      flush=True)
    print("\nmean ± 95 % CI over seeds", args.seeds, "(%)")
    table = {}
    for key, rows in sorted(results.items(), key=lambda kv: kv[0][:3]):
        stats = {k: aggregate([100 * r[k] for r in rows]) for k in rows[0]}
        table[" | ".join(map(str, key))] = stats
        print(" | ".join(map(str, key)), " ".join(
            f"{k} {stats[k]['mean']:.1f}" + (f" ± {stats[k]['ci95']:.1f}"
                                             if stats[k]["ci95"] is not None else "")
            for k in ("AR@10", "AR@20", "AR@100", "AR@1000", "R50@100")))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
