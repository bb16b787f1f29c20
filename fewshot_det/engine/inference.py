"""Run a model over a test set, turn its outputs into COCO results, evaluate, write files.

The engine never branches on the meta-architecture: every model returns, in eval mode, one
``{"boxes" [N,4] XYXY original pixels, "scores" [N], "labels" [N] in 1..K}`` per image.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict, List

import torch
from tqdm import tqdm

from ..data.catalog import Metadata
from .comm import all_gather_objects, is_main_process
from .checkpoint import atomic_write_bytes

logger = logging.getLogger(__name__)


def outputs_to_results(inputs: List[dict], outputs: List[dict], metadata: Metadata) -> List[dict]:
    """COCO results entries (XYWH boxes, dataset category ids) for one batch."""
    from ..evaluation import instances_to_results

    results = []
    for inp, out in zip(inputs, outputs):
        results += instances_to_results(inp["image_id"], out["boxes"].detach().float().cpu(),
                                        out["scores"].detach().float().cpu(),
                                        out["labels"].cpu(), metadata)
    return results


@torch.no_grad()
def inference_on_dataset(model: torch.nn.Module, loader, metadata: Metadata, *,
                         desc: str = "inference") -> List[dict]:
    """Results of every rank's share, gathered (complete on every rank)."""
    was_training = model.training
    model.eval()
    results: List[dict] = []
    start = time.perf_counter()
    try:
        for batch in tqdm(loader, desc=desc, disable=not (is_main_process() and sys.stderr.isatty()), mininterval=1.0,
                          dynamic_ncols=True):
            results.extend(outputs_to_results(batch, model(batch), metadata))
    finally:
        model.train(was_training)
    n = len(loader.dataset) if hasattr(loader, "dataset") else 0
    logger.info("%s: %d images in %.1f s", desc, n, time.perf_counter() - start)
    return [r for part in all_gather_objects(results) for r in part]


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, lambda f: f.write(json.dumps(obj).encode()))


def evaluate_and_save(records: List[dict], metadata: Metadata, results: List[dict],
                      out_dir: str, *, score_thresh: float = 0.5,
                      plots: bool = False, weights: str = "") -> Dict[str, float]:
    """Evaluate (main rank), write ``metrics.json`` + ``predictions.json`` in ``out_dir``;
    with ``plots`` also the per-class PR curves (``pr_curves/``) and example detections
    marked TP / FP / FN (``examples.png``). ``weights`` names the weights scored in the
    logged table's title (a run that also averages its weights logs two tables)."""
    from ..evaluation import evaluate, format_table

    plots = plots and is_main_process()
    metrics = evaluate(records, metadata, results, score_thresh=score_thresh,
                       plots_dir=os.path.join(out_dir, "pr_curves") if plots else None)
    if is_main_process():
        write_json(os.path.join(out_dir, "predictions.json"), results)
        write_json(os.path.join(out_dir, "metrics.json"), metrics)
        scored = f" with {weights}" if weights else ""
        logger.info("evaluation of %s%s:\n%s", metadata.name, scored, format_table(metrics))
    if plots:
        from ..evaluation.pictures import save_example_grid

        path = save_example_grid(records, metadata, results,
                                 os.path.join(out_dir, "examples.png"), score_thresh=score_thresh)
        logger.info("PR curves and example detections (TP / FP / FN) written to %s and %s",
                    os.path.join(out_dir, "pr_curves"), path)
    return metrics
