#!/usr/bin/env python
"""Write TFA-style K-shot split files for any registered or spec'd dataset.

    python tools/prepare_fewshot_splits.py --dataset voc:datasets/BCCD:trainval \
        --shots 1 2 3 5 10 --seeds 0 1 2 --output datasets/bccd_splits

writes ``OUTPUT/seed{s}/box_{K}shot_{class}_train.txt`` (VOC-style datasets) or
``full_box_{K}shot_{class}_trainval.json`` (COCO-style), one per class, K and seed.
Classes that cannot get K shots are warned about while sampling and listed at the end.
"""
import argparse
import logging
import sys
from collections import defaultdict

from fewshot_det.engine.defaults import add_debug_argument, run_tool


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True,
                   help="registered name or spec: voc:PATH:SPLIT, coco:JSON[:IMAGE_ROOT], "
                        "yolo:PATH:SPLIT")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 2, 3, 5, 10], help="values of K")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="split seeds")
    p.add_argument("--output", required=True, help="split folder (FEWSHOT.SPLIT_DIR)")
    p.add_argument("--format", choices=("auto", "voc", "coco"), default="auto",
                   help="file style; auto = COCO json for COCO datasets, else VOC txt")
    p.add_argument("--classes", nargs="+", default=None, help="only these classes (default: all)")
    p.add_argument("--no-check-images", action="store_true", help="skip opening every image")
    add_debug_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tool(run, args, debug=args.debug)


def run(args: argparse.Namespace) -> int:
    """Sample and write the split files of ``args``; print the short classes."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from fewshot_det.data import get_dataset
    from fewshot_det.data.fewshot import prepare_fewshot_splits
    from fewshot_det.data.synthetic import register_synthetic

    register_synthetic()  # "shapes_*" names; leaves names already registered alone
    if any(k < 1 for k in args.shots):
        raise ValueError(f"--shots must all be >= 1, got {args.shots}")
    records, metadata = get_dataset(args.dataset, check_images=not args.no_check_images)
    rows = prepare_fewshot_splits(records, metadata, args.shots, args.seeds, args.output,
                                  fmt=args.format, classes=args.classes)
    short = defaultdict(list)
    for r in rows:
        if r["instances"] < r["shots"]:
            short[(r["seed"], r["shots"])].append(f"{r['class']} ({r['instances']})")
    print(f"wrote {len(rows)} split files for {len(records)} images of {args.dataset!r} "
          f"under {args.output}")
    for (seed, k), names in sorted(short.items()):
        print(f"  seed {seed}, {k} shots: fewer than {k} instances for {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
