import numpy as np
import pytest

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(REPO, "benchmarks", "proposal_recall.py")
_spec = importlib.util.spec_from_file_location("proposal_recall", MODULE)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
box_iou, gt_boxes_of, recall_at = _module.box_iou, _module.gt_boxes_of, _module.recall_at
proposal_recall = _module.proposal_recall


def test_recall_at_averages_thresholds():
    ious = np.array([0.55, 0.72, 0.96, 0.3])
    assert recall_at(ious, (0.5,)) == pytest.approx(0.75)
    # thresholds .5 .55 .6 .65 .7 .75 .8 .85 .9 .95: 3,3,2,2,2,1,1,1,1,1 of 4 covered
    assert recall_at(ious) == pytest.approx(17 / 40)
    assert recall_at(np.zeros(0)) == -1.0


def test_box_iou_of_known_pairs():
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30],
                                     [0, 0, 0, 0]])
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0, 0.0]])


def test_gt_boxes_of_skips_other_classes_and_difficult():
    record = {"annotations": [{"bbox": [0, 0, 5, 5], "category_id": 2},
                              {"bbox": [1, 1, 6, 6], "category_id": 2, "difficult": 1},
                              {"bbox": [2, 2, 7, 7], "category_id": 3}]}
    assert gt_boxes_of(record, [2]).tolist() == [[0, 0, 5, 5]]
    assert gt_boxes_of(record, [4]).shape == (0, 4)


def test_recall_counts_only_the_top_k_and_the_chosen_classes():
    records = [{"image_id": 1, "annotations": [{"bbox": [0, 0, 10, 10], "category_id": 2},
                                               {"bbox": [20, 20, 40, 40], "category_id": 3}]},
               {"image_id": 2, "annotations": [{"bbox": [5, 5, 15, 15], "category_id": 2}]}]
    proposals = {"1": np.array([[20, 20, 40, 40], [0, 0, 10, 10]]),  # class 2 second
                 "2": np.zeros((0, 4))}  # nothing proposed
    out = proposal_recall(proposals, records, [2], topks=(1, 2))
    assert out["num_gt"] == 2 and out["num_images"] == 2
    assert out["AR@1"] == 0.0 and out["R50@1"] == 0.0
    assert out["AR@2"] == pytest.approx(0.5) and out["R50@2"] == pytest.approx(0.5)
    assert proposal_recall(proposals, records, [3], topks=(1,))["AR@1"] == 1.0
    assert proposal_recall(proposals, records, [9], topks=(1,))["AR@1"] == -1.0


def test_proposal_recall_needs_no_torch():
    import subprocess
    import sys

    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code, MODULE], check=True)
