#!/usr/bin/env python
"""Few-shot fine-tuning over split seeds, with the seeds' mean ± 95 % CI.

    python tools/finetune_fewshot.py --config configs/EDP/siamese_R50_10shot.yaml
    python tools/finetune_fewshot.py --config CFG --shots 5 --seeds 0 1 2 3 4 \\
        MODEL.WEIGHTS output/base/model_final.pth SOLVER.MAX_ITER 500
    python tools/finetune_fewshot.py --config CFG --shots 10 --support-only   # no training
    python tools/finetune_fewshot.py --config CFG --shots 10 --seeds 0 1 2 --resume
        # after an interruption: finished seeds are read back, the unfinished one continues
        # from its last checkpoint

For every seed: make (or read, e.g. TFA's files) the K-shot split in FEWSHOT.SPLIT_DIR
(default OUTPUT_DIR/splits), fine-tune from MODEL.WEIGHTS after class surgery (base rows
copied, novel rows initialised) with a fresh optimizer and schedule, evaluate on
DATASETS.TEST. Writes OUTPUT_DIR/seed{s}/ (a training run + results.json) and
OUTPUT_DIR/summary.json, and prints the table. Works for any meta-architecture that names
its class-shaped tensors in a ``class_rows`` classmethod (fewshot_det.modeling.fewshot.surgery).
"""
import logging
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

from fewshot_det.engine.defaults import (default_argument_parser, default_setup, load_config,
                                         run_tool)

logger = logging.getLogger("fewshot_det.finetune_fewshot")


def parse_args(argv=None):
    """Arguments; ``--seeds`` takes the integers that follow it, the rest are overrides."""
    argv = list(sys.argv[1:] if argv is None else argv)
    seeds = None
    if "--seeds" in argv:
        i = argv.index("--seeds")
        j = i + 1
        while j < len(argv) and argv[j].lstrip("-").isdigit():
            j += 1
        seeds = [int(s) for s in argv[i + 1:j]]
        if not seeds:
            raise SystemExit("--seeds needs at least one integer")
        argv = argv[:i] + argv[j:]
    parser = default_argument_parser(__doc__)
    parser.add_argument("--shots", type=int, default=None,
                        help="K shots per class (default: FEWSHOT.SHOTS of the config)")
    parser.add_argument("--support-only", action="store_true",
                        help="no fine-tuning: encode the K-shot novel instances as supports "
                             "and evaluate (support-conditioned models)")
    args = parser.parse_args(argv)
    args.seeds = seeds
    return args


def main(args) -> dict:
    from fewshot_det.data import check_dataset_names
    from fewshot_det.engine.fewshot import run_fewshot
    from fewshot_det.evaluation.seeds import format_summary

    cfg = default_setup(load_config(args.config, args.opts), args)
    check_dataset_names(cfg.DATASETS.TEST, "DATASETS.TEST")  # before any seed trains
    shots = args.shots if args.shots is not None else cfg.FEWSHOT.SHOTS
    seeds = args.seeds if args.seeds is not None else [cfg.FEWSHOT.SEED]
    summary = run_fewshot(cfg, shots, seeds, support_only=args.support_only,
                          resume=args.resume, overwrite=args.overwrite)
    print(format_summary(summary))
    return summary


if __name__ == "__main__":
    args = parse_args()
    sys.exit(run_tool(main, args, debug=args.debug))
