"""Example detections marked TP / FP / FN, from the evaluator's own matching."""
import cv2
import numpy as np

from fewshot_det.data.readers.voc import load_voc
from fewshot_det.evaluation.matching import Matching
from fewshot_det.evaluation.pictures import FN_COLOR, FP_COLOR, save_example_grid
from tiny_datasets import make_voc


def _known_errors(tmp_path):
    images = {"a": (120, 100, [("cat", [10, 10, 60, 60], 0), ("dog", [70, 20, 110, 90], 0)]),
              "b": (120, 100, [("cat", [20, 20, 80, 80], 0)])}
    root = make_voc(str(tmp_path / "voc"), images, split="test", classes=["cat", "dog"])
    records, classes = load_voc(root, "test")
    metadata = {"thing_classes": classes}
    results = [  # a: cat found, dog missed, one FP; b: cat found
        {"image_id": "a", "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9},
        {"image_id": "a", "category_id": 2, "bbox": [0, 60, 30, 30], "score": 0.8},
        {"image_id": "b", "category_id": 1, "bbox": [20, 20, 60, 60], "score": 0.7}]
    return records, metadata, results


def test_matching_counts_what_the_evaluator_counts(tmp_path):
    records, metadata, results = _known_errors(tmp_path)
    m = Matching(records, metadata, results)
    assert list(m.kind) == ["tp", "fp", "tp"]
    counts = m.per_record(0.5, None)
    by_stem = {r["image_id"]: i for i, r in enumerate(records)}
    a, b = by_stem["a"], by_stem["b"]
    assert (counts["tp"][a], counts["fp"][a], counts["fn"][a]) == (1, 1, 1)
    assert (counts["tp"][b], counts["fp"][b], counts["fn"][b]) == (1, 0, 0)


def test_the_grid_marks_false_positives_and_misses(tmp_path):
    records, metadata, results = _known_errors(tmp_path)
    path = save_example_grid(records, metadata, results, str(tmp_path / "examples.png"))
    grid = cv2.imread(path)
    assert grid is not None and grid.shape[1] > grid.shape[0]  # two images side by side

    def has(color):
        return bool(np.any(np.all(np.abs(grid.astype(int) - color) < 30, axis=-1)))

    assert has(FP_COLOR) and has(FN_COLOR)
