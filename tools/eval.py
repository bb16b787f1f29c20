#!/usr/bin/env python
"""Evaluate detections: precision, recall, COCO AP/AR, VOC07/VOC2010+ AP50, base/novel.

    python tools/eval.py --gt datasets/coco/annotations/instances_val2017.json \\
        --predictions results.json --output metrics.json
    python tools/eval.py --gt datasets/VOC2007 --split test --predictions results.json \\
        --plots pr_curves/
    python tools/eval.py --config CFG --weights output/model_final.pth [KEY VALUE ...]

GT is a COCO json or a VOC root; RESULTS.json a COCO results list (``image_id``,
``category_id`` or ``category_name``, ``bbox`` [x, y, w, h], ``score``). For a VOC root the
image id is the file stem and ``category_id`` the 1-based position in the class list
(``classes.txt``, else the sorted names in Annotations/). The results-file mode never
imports torch. The checkpoint mode runs the model on every DATASETS.TEST (progress bar) and
writes OUTPUT_DIR/inference/<dataset>/{metrics.json, predictions.json}.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fewshot_det.evaluation.cli import add_results_arguments, run_results_mode  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    add_results_arguments(parser)
    parser.add_argument("--config", metavar="FILE", help="checkpoint mode: the model's config")
    parser.add_argument("--weights", metavar="CKPT", help="checkpoint mode: weights to evaluate")
    parser.add_argument("--supports", metavar="FILE",
                        help="checkpoint mode: a support file (JSON) whose classes, named as "
                             "the test set's, are given by example boxes before evaluating")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="checkpoint mode: config overrides")
    return parser


def run_checkpoint_mode(args) -> None:
    """Inference on DATASETS.TEST with the given weights (and support file), then the
    evaluator."""
    from fewshot_det.engine.defaults import load_config, setup_logging
    from fewshot_det.engine.predictor import Predictor
    from fewshot_det.engine.train_loop import evaluate_model

    cfg = load_config(args.config, args.opts + ["MODEL.WEIGHTS", args.weights])
    setup_logging(cfg.OUTPUT_DIR)
    if not cfg.DATASETS.TEST:
        raise ValueError(f"{args.config}: DATASETS.TEST is empty; nothing to evaluate")
    # Predictor: strict loading (never a random head) and the support file's classes
    predictor = Predictor(cfg)
    if args.supports:
        from fewshot_det.engine.predictor import supports_from_file

        supports = supports_from_file(args.supports, predictor.cfg.INPUT.FORMAT)
        unknown = [n for n in supports if n not in (predictor.class_names or [])]
        if unknown:
            raise ValueError(f"--supports {args.supports}: classes {unknown} are not classes "
                             f"of the model {predictor.class_names}; evaluation scores the "
                             f"test set's classes: name the examples as they are named there")
        predictor.set_supports(supports)
    evaluate_model(predictor.cfg, predictor.model, plots=True)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        if not args.weights:
            parser.error("--config needs --weights CKPT")
        run_checkpoint_mode(args)
        return 0
    if args.predictions:
        # Results-file mode. (A model-checkpoint mode, --config/--weights, is a separate
        # branch here: it imports torch lazily and writes predictions.json first.)
        if not args.gt:
            parser.error("--predictions needs --gt (a COCO json or a VOC root)")
        try:
            run_results_mode(args)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    parser.error("give --gt GT --predictions RESULTS.json, or --config FILE --weights CKPT")
    return 2


if __name__ == "__main__":
    from fewshot_det.engine.defaults import run_tool  # noqa: E402

    sys.exit(run_tool(main))
