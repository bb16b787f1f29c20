#!/usr/bin/env python
"""Train (or, with --eval-only, evaluate) any fewshot_det model from a config.

    python tools/train_net.py --config configs/quickstart/faster_rcnn_R18_FPN_shapes.yaml
    python tools/train_net.py --config CFG --resume            # continue an interrupted run
    python tools/train_net.py --config CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config CFG --num-gpus 4        # DDP on one machine
    torchrun --nnodes 2 --nproc-per-node 8 ... tools/train_net.py --config CFG   # many machines

Outputs in OUTPUT_DIR: config.yaml, log.txt, metrics.jsonl, model_XXXXXXX.pth (full
training state, for --resume), last_checkpoint, model_final.pth (weights, class names and
config: the file to ship), inference/<dataset>/{metrics.json, predictions.json}.
"""
import logging
import os
import sys

# Before torch starts OpenMP: spinning worker threads slow a step 10-20x whenever another
# process (a data-loader worker, anything else) wants the same cores. Users may override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fewshot_det.engine.defaults import (default_argument_parser, default_setup, load_config,
                                         resolve_device, run_tool)
from fewshot_det.engine.launch import launch

logger = logging.getLogger("fewshot_det.train_net")


def main(args):
    from fewshot_det.checkpoint import load_weights
    from fewshot_det.data import check_dataset_names
    from fewshot_det.engine.train_loop import evaluate_model, train
    from fewshot_det.modeling import build_model

    cfg = default_setup(load_config(args.config, args.opts), args)
    # Test sets are loaded only after training: refuse a mistyped one before it starts.
    check_dataset_names(cfg.DATASETS.TEST, "DATASETS.TEST")
    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    if args.eval_only:
        if not cfg.MODEL.WEIGHTS:
            raise SystemExit("--eval-only needs MODEL.WEIGHTS (a checkpoint to evaluate)")
        load_weights(model, cfg.MODEL.WEIGHTS, strict=True)  # never a random head
        return evaluate_model(cfg, model, plots=True, weights=cfg.MODEL.WEIGHTS)
    return train(cfg, model, resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    args = default_argument_parser(__doc__).parse_args()
    sys.exit(run_tool(launch, main, args.num_gpus, (args,), debug=args.debug))
