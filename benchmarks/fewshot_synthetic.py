#!/usr/bin/env python
"""The few-shot benchmark on the synthetic shapes, in one command.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/fewshot_synthetic.py --output output/fewshot_bench

Stages (each skipped when its outputs exist, so an interrupted run continues):

1. base training on the 9 base shapes (novel star, arrow, heart never seen): the plain
   Faster R-CNN (fewshot_tfa_base_shapes.yaml; the TFA baseline's base model), then the
   siamese detector's episodic stage from its weights
   (configs/quickstart/fewshot_siamese_base_shapes.yaml); their test bAP50 is "before";
2. for every K of --shots and seed of --seeds (one shared split folder):
   - siamese, support only: the novel K shots encoded as supports, no training;
   - siamese fine-tuned (fewshot_siamese_ft_shapes.yaml, FREEZE_AT 3);
   - TFA fine-tuned (fewshot_tfa_ft_shapes.yaml, cosine predictor only);
   - with --yolo, the YOLO-ft baseline too: YOLO-grid base training on the base classes
     (yolo_fewshot_base_shapes.yaml), then fine-tunes (yolo_fewshot_ft_shapes.yaml);
3. novel-class proposal recall (AR@10 / AR@20 / AR@100 on shapes_test) of the siamese
   detector's proposal stage: the RPN's candidates in objectness order, the same
   candidates ranked by support score for the novel classes' K-shot supports, and the
   control: ranked for the base classes' supports instead. The support is what helps
   only where the ranked recall is above both. Also (``--dense-grid``, default 3) on
   3 x 3 mosaics of the test images (benchmarks/dense_scenes.py), where 100 proposals no
   longer cover every object; and there, at the largest K, the support-only detector's
   nAP50 with the box head given the RPN's top 150, the best 150 of 1000 by support score
   (shipped), or all 1000;
4. OUTPUT/fewshot_synthetic.md (the tables, mean ± 95 % CI over seeds, and nAP50 minus
   TFA's paired by split seed) and .json. An interrupted fine-tuning stage resumes.

Duration on 2 quiet CPU cores (AVX-512) with the defaults: about 1.5 hours (plain / TFA
base ~14 min, the siamese episodic stage ~5 min, then ~4 min per (K, seed) for all methods,
and a few minutes per K of proposal recall); about twice that on an AVX2-only CPU.
Trailing KEY VALUE overrides apply to every stage (e.g. a smaller dataset for a smoke test).
"""
from __future__ import annotations

import argparse
import json
import logging
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs", "quickstart")
# Fine-tuning iterations per K, chosen on a validation set (300 images drawn with another
# generator seed; split seeds 10 and 11) at every K.
SIAMESE_ITERS = {1: 25, 2: 50, 3: 50, 5: 50, 10: 50}
TFA_ITERS = {1: 50, 2: 200, 3: 500, 5: 500, 10: 800}
YOLO_ITERS = {1: 150, 2: 200, 3: 200, 5: 250, 10: 300}
# method -> (base config, fine-tune config, iterations per K)
FINETUNED = {
    "siamese": ("fewshot_siamese_base_shapes.yaml", "fewshot_siamese_ft_shapes.yaml",
                SIAMESE_ITERS),
    "tfa": ("fewshot_tfa_base_shapes.yaml", "fewshot_tfa_ft_shapes.yaml", TFA_ITERS),
    "yolo": ("yolo_fewshot_base_shapes.yaml", "yolo_fewshot_ft_shapes.yaml", YOLO_ITERS),
}
# method -> fine-tuning overrides: the TFA row is TFA as published (random novel rows,
# trained image by image); imprinting and cached RoI features: benchmarks/tfa_cached_imprint.py
FINETUNE_OPTS = {"tfa": {"FEWSHOT__FINETUNE__NOVEL_INIT": "random",
                         "FEWSHOT__FINETUNE__CACHE_ROI_FEATURES": False}}
# method -> the method whose base model its base training starts from
BASE_INIT = {"siamese": "tfa"}
# proposal recall: k of AR@k (small k: where ranking the support's class first matters;
# on sparse images the RPN already covers 98 % of the novel objects at IoU 0.5 by 100)
RECALL_TOPKS = (10, 20, 100)
RECALL_COLUMNS = ("AR@10", "AR@20", "AR@100", "R50@10", "R50@100")
LABELS = {"siamese_support": "siamese, support only", "siamese": "siamese fine-tuned",
          "tfa": "TFA fine-tuned", "yolo": "YOLO-ft (YOLO-grid fine-tuned)"}
logger = logging.getLogger("fewshot_det.benchmark")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="output/fewshot_synthetic")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--yolo", action="store_true",
                   help="add the YOLO-ft baseline (YOLO-grid base training + fine-tunes)")
    p.add_argument("--base-iters", type=int, default=0, help="override both base schedules")
    p.add_argument("--ft-iters", type=int, default=0, help="override every fine-tune schedule")
    p.add_argument("--dense-grid", type=int, default=3,
                   help="also measure proposal recall on g x g mosaics of the test images "
                        "(benchmarks/dense_scenes.py; 0: off)")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    return p.parse_args(argv)


def schedule_overrides(iters: int) -> list:
    """KEY VALUE overrides of a fine-tuning run of ``iters`` iterations (20 warm-up at most)."""
    return ["SOLVER.MAX_ITER", str(iters), "SOLVER.WARMUP_ITERS", str(min(20, iters))]


def config(name: str, out: str, opts, iters: int = 0, **extra):
    from fewshot_det.engine.defaults import load_config

    more = [k_v for k, v in extra.items() for k_v in (k.replace("__", "."), str(v))]
    if iters:
        more += schedule_overrides(iters)
    return load_config(os.path.join(CONFIGS, name), list(opts) + more + ["OUTPUT_DIR", out])


def base_stage(cfg) -> dict:
    """Train (unless model_final.pth exists; an interrupted run resumes); the first test
    set's metrics."""
    from fewshot_det.engine.defaults import resolve_device, seed_all
    from fewshot_det.engine.train_loop import evaluate_model, train
    from fewshot_det.modeling import build_model

    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    seed_all(cfg.SEED)
    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    if os.path.isfile(final):
        from fewshot_det.checkpoint import load_weights

        load_weights(model, final)
        metrics = evaluate_model(cfg, model)
    else:
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        metrics = train(cfg, model, resume=True)  # an interrupted stage continues
    return metrics[cfg.DATASETS.TEST[0]]


def fewshot_stage(cfg, shots, seeds, support_only=False) -> dict:
    from fewshot_det.engine.fewshot import run_fewshot

    path = os.path.join(cfg.OUTPUT_DIR, "summary.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return run_fewshot(cfg, shots, seeds, support_only=support_only, resume=True)


def novel_recall(cfg, weights: str, prototypes: str = "", *, wrong_supports: bool = False,
                 ranked: bool = True) -> dict:
    """AR of the novel classes on the first test set for the siamese model at ``weights``:
    its proposals ranked for the novel classes' prototypes, or (``wrong_supports``, the
    control) for the base classes' only; ``ranked`` False: the RPN's objectness order."""
    from fewshot_det.checkpoint import load_weights
    from fewshot_det.data.build import build_test_loader_from_config
    from fewshot_det.engine.defaults import resolve_device
    from proposal_recall import proposal_recall  # benchmarks/proposal_recall.py
    from fewshot_det.modeling import build_model

    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    load_weights(model, weights)
    if prototypes:
        model.load_prototypes(prototypes)
    loader, records, metadata = build_test_loader_from_config(cfg, cfg.DATASETS.TEST[0])
    ids = [list(metadata.thing_classes).index(n) + 1 for n in metadata.novel_classes]
    others = [i for i in range(1, len(metadata.thing_classes) + 1) if i not in ids]
    proposals = {}
    for batch in loader:
        boxes = model.propose(batch, others if wrong_supports else ids,
                              keep=max(RECALL_TOPKS), ranked=ranked)
        proposals.update({str(item["image_id"]): b.cpu().numpy()
                          for item, b in zip(batch, boxes)})
    return proposal_recall(proposals, records, ids, topks=RECALL_TOPKS)


# recall rows of the siamese models: label -> (fine-tuned model?, novel_recall keywords)
SIAMESE_RECALL = {
    "RPN candidates, objectness order": (False, {"ranked": False}),
    "support-ranked, novel supports (siamese base)": (False, {}),
    "control: support-ranked, base classes' supports only": (False, {"wrong_supports": True}),
    "support-ranked, novel prototypes (siamese fine-tuned)": (True, {}),
}
# the rows also measured on dense scenes (base models only)
DENSE_RECALL = [name for name, (tuned, _) in SIAMESE_RECALL.items() if not tuned]


def dense_overrides(cfg, out: str, grid: int) -> list:
    """KEY VALUE overrides that test on ``grid`` x ``grid`` mosaics of the first test set
    (benchmarks/dense_scenes.py, written under ``out``), at ``grid`` times the test size
    so every object keeps its size."""
    from dense_scenes import write_mosaics
    from fewshot_det.data.catalog import DatasetCatalog

    name = cfg.DATASETS.TEST[0]
    fields = DatasetCatalog.load(name, check_images=False)[1]
    if fields.get("evaluator_type") != "voc" or "dataset_root" not in fields:
        raise ValueError(f"--dense-grid needs a VOC-layout first test set, {name!r} is not")
    root = write_mosaics(fields["dataset_root"], os.path.join(out, f"dense_{grid}x{grid}"),
                         grid, fields.get("split", "test"))
    side = str(cfg.INPUT.MIN_SIZE_TEST * grid)
    return ["DATASETS.TEST", f"('voc:{root}:test',)", "INPUT.MIN_SIZE_TEST", side,
            "INPUT.MAX_SIZE_TEST", side]


def recall_rows(args, opts, out, shots, splits, names, prefix="") -> dict:
    """Per-seed novel recall of the siamese rows ``names``."""
    sia = config("fewshot_siamese_base_shapes.yaml", os.path.join(out, "siamese_base"), opts)
    ft = config("fewshot_siamese_ft_shapes.yaml", os.path.join(out, "tmp"), opts,
                FEWSHOT__SHOTS=shots, FEWSHOT__SPLIT_DIR=splits)
    rows = {}
    for name in names:
        tuned, kwargs = SIAMESE_RECALL[name]
        runs = []
        for seed in args.seeds:
            if tuned:
                weights = os.path.join(out, f"siamese_{shots}shot", f"seed{seed}",
                                       "model_final.pth")
                runs.append(novel_recall(ft, weights, **kwargs))
            else:
                protos = os.path.join(out, f"siamese_support_{shots}shot", f"seed{seed}",
                                      "prototypes.pth")
                runs.append(novel_recall(sia, os.path.join(sia.OUTPUT_DIR, "model_final.pth"),
                                         protos, **kwargs))
        rows[prefix + name] = runs
    return rows


def recall_stage(args, opts, out, shots, splits) -> dict:
    from fewshot_det.evaluation.seeds import aggregate

    path = os.path.join(out, "recall", f"{shots}shot.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    rows = recall_rows(args, opts, out, shots, splits, list(SIAMESE_RECALL))
    if args.dense_grid:
        g = args.dense_grid
        dense = dense_overrides(config("fewshot_tfa_base_shapes.yaml", out, opts), out, g)
        rows.update(recall_rows(args, list(opts) + dense, out, shots, splits, DENSE_RECALL,
                                prefix=f"dense {g}x{g}: "))
    result = {name: {k: aggregate([r[k] for r in runs]) for k in RECALL_COLUMNS}
              for name, runs in rows.items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result


# dense-scene detection rows, support only: label -> KEY VALUE overrides of the siamese model
DENSE_DETECTION = {
    "box head gets the RPN's top 150 (no support ranking)": [
        "MODEL.SIAMESE.PROPOSAL_CANDIDATES", "0"],
    "box head gets the best 150 of 1000 by support score (shipped)": [],
    "box head gets all 1000 candidates (reference, about the same cost)": [
        "MODEL.SIAMESE.PROPOSAL_CANDIDATES", "0", "MODEL.RPN.POST_NMS_TOPK_TEST", "1000",
        "MODEL.RPN.PRE_NMS_TOPK_TEST", "1000"],
}


def dense_detection_stage(args, opts, out, shots, splits) -> dict:
    """Support-only nAP50 of the siamese base model on the dense mosaics over the split
    seeds, for each row of ``DENSE_DETECTION``: the proposal stage at an equal budget."""
    g = args.dense_grid
    dense = dense_overrides(config("fewshot_tfa_base_shapes.yaml", out, opts), out, g)
    result = {}
    for i, (name, extra) in enumerate(DENSE_DETECTION.items()):
        cfg = config("fewshot_siamese_ft_shapes.yaml",
                     os.path.join(out, f"dense_detection_{shots}shot", f"row{i}"),
                     list(opts) + dense + extra, FEWSHOT__SPLIT_DIR=splits,
                     MODEL__WEIGHTS=os.path.join(out, "siamese_base", "model_final.pth"))
        summary = fewshot_stage(cfg, shots, args.seeds, support_only=True)
        result[f"dense {g}x{g}: {name}"] = {"nAP50": summary["metrics"]["nAP50"]}
    return result


def pm(agg) -> str:
    """'mean ± ci' in percent."""
    if not agg or agg.get("mean") is None:
        return "n/a"
    ci = agg.get("ci95")
    return f"{100 * agg['mean']:.1f} ± {100 * ci:.1f}" if ci is not None \
        else f"{100 * agg['mean']:.1f}"


def minus_tfa(run: dict, tfa: dict) -> str:
    """'+d ± ci (t)': nAP50 of ``run`` minus TFA's, paired by split seed."""
    from fewshot_det.evaluation.seeds import paired_difference, pm as pm_points

    if tfa is None or run is tfa:
        return "-"
    if any(len(r["metrics"]["nAP50"]["values"]) != len(r["seeds"]) for r in (run, tfa)):
        return "n/a"  # a seed without novel AP cannot be paired
    values = [{s: 100 * v for s, v in zip(r["seeds"], r["metrics"]["nAP50"]["values"])}
              for r in (run, tfa)]
    diff, t = paired_difference(*values)
    text = pm_points(diff, signed=True)
    return text if diff["ci95"] is None else f"{text} (t {t:.1f})"


def markdown(results: dict, args) -> str:
    lines = ["# Few-shot detection on the synthetic shapes (novel: star, arrow, heart)", "",
             f"Seeds {args.seeds}; mean ± 95 % CI over seeds (t-distribution), %.", "",
             "nAP50 - TFA: paired by split seed (same K shots), mean ± CI and t.", "",
             "| method | K | nAP50 | nAP50 - TFA | nAP | bAP50 | bAP50 - base | AP50 |",
             "|---|---|---|---|---|---|---|---|"]
    for name in results["base"]:
        m = results["base"][name]
        lines.append(f"| {name} base (before fine-tuning) | - | {100 * m.get('nAP50', 0):.1f} | "
                     f"- | {100 * m.get('nAP', 0):.1f} | {100 * m.get('bAP50', 0):.1f} | - | "
                     f"{100 * m.get('AP50', 0):.1f} |")
    for k in args.shots:
        runs = results["fewshot"][str(k)]
        for key, run in runs.items():
            label, m = LABELS[key], run["metrics"]
            base = results["base"][key.split("_")[0]].get("bAP50", 0)
            drop = f"{100 * (m['bAP50']['mean'] - base):+.1f}" if "bAP50" in m else "n/a"
            lines.append(f"| {label} | {k} | {pm(m.get('nAP50'))} | "
                         f"{minus_tfa(run, runs.get('tfa'))} | {pm(m.get('nAP'))} | "
                         f"{pm(m.get('bAP50'))} | {drop} | {pm(m.get('AP50'))} |")
    lines += ["", "Novel-class proposal recall on shapes_test (AR: IoU 0.5:0.95; R50: IoU 0.5).",
              "Support-ranked: the RPN's candidates ranked by the siamese head's support "
              "score (the shipped proposal stage); control: ranked for the base classes' "
              "supports.", "",
              "| proposals | K | " + " | ".join(RECALL_COLUMNS) + " |",
              "|---|---|" + "---|" * len(RECALL_COLUMNS)]
    for k in args.shots:
        for name, agg in results["recall"][str(k)].items():
            cells = " | ".join(pm(agg.get(c)) for c in RECALL_COLUMNS)  # older runs: n/a
            lines.append(f"| {name} | {k} | {cells} |")
    if results.get("dense_detection"):
        lines += ["", "Detection in dense scenes at an equal box-head budget (siamese base, "
                  "novel classes from their K-shot supports, no training).", "",
                  "| proposals | K | nAP50 |", "|---|---|---|"]
        for k, rows in results["dense_detection"].items():
            for name, agg in rows.items():
                lines.append(f"| {name} | {k} | {pm(agg['nAP50'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    from fewshot_det.engine.defaults import setup_logging

    args = parse_args(argv)
    out, opts = os.path.abspath(args.output), args.opts
    setup_logging(out)
    splits = os.path.join(out, "splits")
    results = {"base": {}, "fewshot": {}, "recall": {}, "dense_detection": {}}
    methods = ["tfa", "siamese"] + (["yolo"] if args.yolo else [])
    for name in methods:
        init = {"MODEL__WEIGHTS": os.path.join(out, f"{BASE_INIT[name]}_base",
                                               "model_final.pth")} if name in BASE_INIT else {}
        cfg = config(FINETUNED[name][0], os.path.join(out, f"{name}_base"), opts,
                     args.base_iters, **init)
        results["base"][name] = {k: v for k, v in base_stage(cfg).items()
                                 if isinstance(v, (int, float))}
    for k in args.shots:
        runs = {}
        stages = [("siamese_support", FINETUNED["siamese"][1], 0, True)] + [
            (name, FINETUNED[name][1], FINETUNED[name][2].get(k, 400), False)
            for name in methods]
        for key, cfg_name, iters, support in stages:
            base = key.split("_")[0] + "_base"
            cfg = config(cfg_name, os.path.join(out, f"{key}_{k}shot"), opts,
                         args.ft_iters or iters, FEWSHOT__SPLIT_DIR=splits,
                         MODEL__WEIGHTS=os.path.join(out, base, "model_final.pth"),
                         **FINETUNE_OPTS.get(key, {}))
            runs[key] = fewshot_stage(cfg, k, args.seeds, support_only=support)
        results["fewshot"][str(k)] = runs
        results["recall"][str(k)] = recall_stage(args, opts, out, k, splits)
        if args.dense_grid and k == max(args.shots):
            results["dense_detection"][str(k)] = dense_detection_stage(args, opts, out, k,
                                                                       splits)
    text = markdown(results, args)
    with open(os.path.join(out, "fewshot_synthetic.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "fewshot_synthetic.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(text)
    return results


if __name__ == "__main__":
    main()
