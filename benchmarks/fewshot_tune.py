#!/usr/bin/env python
"""Choose a fine-tuning schedule per K on a VALIDATION set, not on shapes_test.

    python benchmarks/fewshot_tune.py --method siamese --shots 1 5 10 --iters 25 50 100 200 \
        --output output/fewshot_tune --base output/fewshot_bench [-- KEY VALUE ...]

The validation set is drawn by the synthetic generator with another seed (independent
images of the same distribution, 300 by default); the K-shot splits are drawn from
shapes_train with split seeds (default 10, 11) that the benchmark does not use (it uses 0,
1, 2). For every (K, iterations) the table gives val nAP50 and bAP50 (mean over the split
seeds), for the siamese method next to the support-only reference (no training, base rows
untouched), so the choice can weigh novel gain against base loss. Resumable: finished runs
are read back.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fewshot_synthetic import schedule_overrides  # noqa: E402  (the benchmark's rule)

CONFIGS = {"siamese": "fewshot_siamese_ft_shapes.yaml", "tfa": "fewshot_tfa_ft_shapes.yaml"}
BASES = {"siamese": "siamese_base", "tfa": "tfa_base"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=sorted(CONFIGS), default="siamese")
    p.add_argument("--base", required=True, help="the benchmark's output folder (base models)")
    p.add_argument("--output", default="output/fewshot_tune")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    p.add_argument("--iters", type=int, nargs="+", default=[25, 50, 100, 200])
    p.add_argument("--seeds", type=int, nargs="+", default=[10, 11])
    p.add_argument("--val-images", type=int, default=300)
    p.add_argument("--val-seed", type=int, default=7)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    return p.parse_args(argv)


def finetune(args, val: str, shots: int, out: str, iters: int = 0) -> dict:
    """One tools/finetune_fewshot.py call (skipped when its summary exists)."""
    summary = os.path.join(out, "summary.json")
    if not os.path.isfile(summary):
        cmd = [sys.executable, os.path.join(ROOT, "tools", "finetune_fewshot.py"),
               "--config", os.path.join(ROOT, "configs", "quickstart", CONFIGS[args.method]),
               "--shots", str(shots), "--seeds", *map(str, args.seeds)]
        if not iters:
            cmd.append("--support-only")
        cmd += ["MODEL.WEIGHTS", os.path.join(args.base, BASES[args.method], "model_final.pth"),
                "DATASETS.TEST", f"('voc:{val}:test',)",
                "FEWSHOT.SPLIT_DIR", os.path.join(args.output, "splits"), "OUTPUT_DIR", out]
        if iters:
            cmd += schedule_overrides(iters)
        subprocess.run(cmd + args.opts, check=True, stdout=subprocess.DEVNULL)
    with open(summary) as f:
        metrics = json.load(f)["metrics"]
    return {k: metrics[k]["mean"] for k in ("nAP50", "bAP50")}


def main(argv=None) -> None:
    args = parse_args(argv)
    # "--iters 50 100 -- KEY VALUE": the separator ends the list of iterations
    args.opts = [o for o in args.opts if o != "--"]
    from fewshot_det.data.synthetic import ensure_synthetic_dataset

    val = ensure_synthetic_dataset(os.path.join(args.output, "shapes_val"), num_train=1,
                                   num_test=args.val_images, seed=args.val_seed)
    rows = []
    for shots in args.shots:
        if args.method == "siamese":
            ref = finetune(args, val, shots, os.path.join(args.output, f"support_{shots}shot"))
            rows.append((shots, "support only", ref))
        for iters in args.iters:
            out = os.path.join(args.output, f"{args.method}_{shots}shot_{iters}it")
            rows.append((shots, iters, finetune(args, val, shots, out, iters)))
            print(shots, iters, rows[-1][2], flush=True)
    lines = [f"{args.method}, validation ({args.val_images} images, generator seed "
             f"{args.val_seed}), split seeds {args.seeds}", "",
             "| K | iterations | val nAP50 | val bAP50 |", "|---|---|---|---|"]
    lines += [f"| {k} | {it} | {100 * m['nAP50']:.1f} | {100 * m['bAP50']:.1f} |"
              for k, it, m in rows]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.output, f"{args.method}.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
