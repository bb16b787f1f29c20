"""benchmarks/fewshot_false_positives.py: a novel class's top detections, sorted."""
from benchmark_scripts import load_benchmark

from fewshot_det.evaluation.ground_truth import GroundTruth
from fewshot_det.evaluation.results_io import parse_results

META = {"thing_classes": ["fish", "stingray"]}


def _ann(box, k):
    return {"bbox": box, "category_id": k, "iscrowd": 0, "difficult": 0}


def _det(box, score, k=2):
    x1, y1, x2, y2 = box
    return {"image_id": "a", "category_id": k, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score}


def test_each_top_detection_is_sorted_by_what_it_sits_on():
    bench = load_benchmark("fewshot_false_positives")
    records = [{"image_id": "a", "annotations": [
        _ann([0, 0, 10, 10], 2), _ann([50, 50, 60, 60], 2), _ann([20, 20, 40, 40], 1)]}]
    gt = GroundTruth(records, 2)
    det = parse_results([_det([20, 20, 40, 40], 0.9),   # the fish, called a stingray
                         _det([0, 0, 10, 10], 0.8),     # true
                         _det([0, 0, 10, 11], 0.7),     # the same stingray again
                         _det([3, 3, 16, 16], 0.6),     # IoU 0.22 with it
                         _det([80, 80, 90, 90], 0.5),   # nothing there
                         _det([50, 50, 60, 60], 0.4),   # true, below the top 2 x 2
                         _det([50, 50, 60, 60], 0.95, k=1)],  # a fish detection: ignored
                        gt.image_index, META)
    s = bench.sort_class(gt, det, 1, novel=[1], top=2)
    assert s == {"true": 1, "duplicate": 1, "mislocated": 1, "on base": 1, "on novel": 0,
                 "background": 0, "objects": 2, "found": 2}
    assert bench.sort_class(gt, det, 1, novel=[1], top=3)["background"] == 1
