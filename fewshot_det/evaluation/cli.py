"""The work behind ``tools/eval.py --gt GT --predictions RESULTS.json`` (no torch).

``add_results_arguments`` declares the flags, ``evaluate_files`` does the work, so the tool
stays a thin parser + dispatch and other tools can reuse both.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from .evaluator import evaluate
from .ground_truth import load_ground_truth
from .results_io import gc_paused, load_results_file
from .table import format_table


def add_results_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of the results-file mode (``--gt``, ``--predictions``, ...)."""
    parser.add_argument("--gt", help="ground truth: a COCO json file or a VOC root folder")
    parser.add_argument("--predictions", metavar="RESULTS.json",
                        help="COCO results list: image_id, category_id (the dataset's id; "
                             "or category_name), bbox [x, y, w, h], score")
    parser.add_argument("--split", default="test",
                        help="VOC split (ImageSets/Main/<split>.txt); default: test")
    parser.add_argument("--output", metavar="metrics.json", help="write the metrics here")
    parser.add_argument("--plots", metavar="DIR", help="write per-class PR curves (PNG) here")
    parser.add_argument("--score-thresh", type=float, default=0.5,
                        help="score threshold of precision/recall (default 0.5)")
    parser.add_argument("--iou-thresh", type=float, default=0.5,
                        help="IoU threshold of precision/recall and PR curves (default 0.5)")
    parser.add_argument("--class-split", default=None,
                        help="named base/novel split (voc1, voc2, voc3, coco, synthetic) for "
                             "the bAP/nAP keys")
    parser.add_argument("--base-classes", default=None, help="comma-separated base classes")
    parser.add_argument("--novel-classes", default=None, help="comma-separated novel classes")
    return parser


def _names(text: Optional[str]) -> List[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def evaluate_files(gt: str, predictions: Union[str, Sequence[dict]], *, split: str = "test",
                   output: Optional[str] = None, plots_dir: Optional[str] = None,
                   score_thresh: float = 0.5, iou_thresh: float = 0.5,
                   class_split: Optional[str] = None,
                   base_classes: Sequence[str] = (), novel_classes: Sequence[str] = ()
                   ) -> Dict[str, Any]:
    """Evaluate a results file (or list) against a COCO json or a VOC root.

    Args:
        gt: COCO json file or VOC root (``split`` selects ``ImageSets/Main/<split>.txt``).
        predictions: path of a COCO results json, or the list itself.
        output: if given, the metrics are written there as json.
        plots_dir, score_thresh, iou_thresh: see ``evaluate``.
        class_split / base_classes / novel_classes: base/novel classes for the b*/n* keys
            (``fewshot_det.data.fewshot.class_splits.resolve_class_split``); none by default.
    Returns:
        the metrics dict of ``evaluate``.
    """
    with gc_paused():
        records, fields = load_ground_truth(gt, split)
        results = load_results_file(predictions) if isinstance(predictions, str) \
            else predictions
    if class_split or base_classes or novel_classes:
        from fewshot_det.data.fewshot.class_splits import resolve_class_split

        base, novel = resolve_class_split(fields["thing_classes"], class_split,
                                          list(base_classes), list(novel_classes))
        fields.update(base_classes=base, novel_classes=novel)
    metrics = evaluate(records, fields, results, score_thresh=score_thresh,
                       iou_thresh=iou_thresh, plots_dir=plots_dir)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics


def run_results_mode(args: argparse.Namespace) -> Dict[str, Any]:
    """``tools/eval.py`` results-file mode: evaluate, print the table, write the json."""
    metrics = evaluate_files(args.gt, args.predictions, split=args.split, output=args.output,
                             plots_dir=args.plots, score_thresh=args.score_thresh,
                             iou_thresh=args.iou_thresh, class_split=args.class_split,
                             base_classes=_names(args.base_classes),
                             novel_classes=_names(args.novel_classes))
    print(format_table(metrics))
    if args.output:
        print(f"\nmetrics written to {args.output}")
    if args.plots:
        print(f"PR curves written to {args.plots}")
    return metrics
