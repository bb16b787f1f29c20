"""One evaluator for every model: COCO and VOC protocols, precision/recall, base/novel.

numpy only: this package never imports torch (``tools/eval.py`` on a results file runs
without it). Entry points:

* ``evaluate(records, metadata, results)`` -> metrics dict (keys: ``SUMMARY_KEYS``,
  ``per_class``, and ``b*`` / ``n*`` for base / novel classes);
* ``format_table(metrics)`` -> printable text;
* ``evaluate_files(gt, predictions)`` -> the same from a COCO json / VOC root and a COCO
  results file;
* ``instances_to_results(image_id, boxes, scores, labels, metadata)`` -> COCO results
  entries from one image's model output (labels 1..K back to dataset category ids);
"""
from .cli import evaluate_files
from .evaluator import SUMMARY_KEYS, EmptyPredictionsWarning, evaluate
from .results_io import instances_to_results
from .table import format_table

__all__ = ["evaluate", "evaluate_files", "format_table", "instances_to_results",
           "SUMMARY_KEYS", "EmptyPredictionsWarning"]
