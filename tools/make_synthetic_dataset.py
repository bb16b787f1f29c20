#!/usr/bin/env python
"""Generate the synthetic shapes-on-clutter detection dataset (VOC layout + COCO json).

    python tools/make_synthetic_dataset.py --output datasets/shapes

Deterministic: the same arguments give byte-identical files. Does nothing when OUTPUT
already holds the dataset for these arguments (``--force`` regenerates).
"""
import argparse
import sys
import time

from fewshot_det.engine.defaults import add_debug_argument, run_tool


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="dataset folder")
    p.add_argument("--num-train", type=int, default=2000, help="training images")
    p.add_argument("--num-test", type=int, default=200, help="test images")
    p.add_argument("--image-size", type=int, default=256, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--force", action="store_true", help="regenerate even if up to date")
    add_debug_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tool(run, args, debug=args.debug)


def run(args: argparse.Namespace) -> int:
    """Generate (or find up to date) the dataset of ``args``."""
    from fewshot_det.data.synthetic import ensure_synthetic_dataset

    start = time.perf_counter()
    root = ensure_synthetic_dataset(args.output, force=args.force, num_train=args.num_train,
                                    num_test=args.num_test, image_size=args.image_size,
                                    seed=args.seed)
    print(f"synthetic dataset ready at {root} ({time.perf_counter() - start:.1f} s); "
          f"use it as DATASETS.TRAIN ('voc:{root}:train',) and DATASETS.TEST "
          f"('voc:{root}:test',)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
