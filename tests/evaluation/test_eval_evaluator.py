"""evaluate(): keys, precision/recall by hand, base/novel, empty predictions, plots, table."""
import warnings

import pytest

from fewshot_det.evaluation import (SUMMARY_KEYS, EmptyPredictionsWarning, evaluate,
                                    format_table, instances_to_results)


def _records():
    def ann(box, label, difficult=0, iscrowd=0):
        return {"bbox": [float(v) for v in box], "category_id": label, "iscrowd": iscrowd,
                "difficult": difficult}

    return [
        {"file_name": "/x/1.jpg", "image_id": 1, "height": 100, "width": 100,
         "annotations": [ann([0, 0, 10, 10], 1), ann([20, 20, 30, 30], 1),
                         ann([0, 0, 10, 10], 2, difficult=1)]},
        {"file_name": "/x/2.jpg", "image_id": 2, "height": 200, "width": 200,
         "annotations": [ann([50, 50, 70, 70], 2)]},
        {"file_name": "/x/3.jpg", "image_id": 3, "height": 50, "width": 50, "annotations": []},
    ]


META = {"thing_classes": ["A", "B", "C"], "thing_dataset_id_to_contiguous_id": {1: 1, 2: 2, 3: 3}}


def _det(image_id, cat, box, score):
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


RESULTS = [
    _det(1, 1, [0, 0, 10, 10], 0.9),      # A: TP
    _det(1, 1, [0, 0, 10, 10], 0.8),      # A: FP (duplicate of a matched box)
    _det(1, 1, [20, 20, 10, 10], 0.3),    # A: TP, but below the 0.5 score threshold
    _det(1, 2, [0, 0, 10, 10], 0.95),     # B: on a difficult box -> neither TP nor FP
    _det(2, 2, [100, 100, 10, 10], 0.6),  # B: FP
    _det(2, 2, [50, 50, 20, 20], 0.4),    # B: TP below the threshold
]


def test_precision_recall_by_hand():
    m = evaluate(_records(), META, RESULTS)
    a, b, c = (m["per_class"][k] for k in "ABC")
    assert (a["tp"], a["fp"], a["fn"]) == (1, 1, 1)
    assert (a["precision"], a["recall"]) == (0.5, 0.5)
    assert (b["tp"], b["fp"], b["fn"], b["num_gt"]) == (0, 1, 1, 1)  # difficult not counted
    assert (b["precision"], b["recall"]) == (0.0, 0.0)
    assert (c["precision"], c["recall"], c["AP"], c["VOC_AP50"]) == (-1, -1, -1, -1)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 3)
    low = evaluate(_records(), META, RESULTS, score_thresh=0.0)
    assert (low["per_class"]["A"]["precision"], low["per_class"]["A"]["recall"]) == \
        pytest.approx((2 / 3, 1.0))
    assert (low["precision"], low["recall"]) == pytest.approx((0.6, 1.0))


def test_iou_threshold_of_precision_recall():
    results = [_det(2, 2, [50, 50, 20, 22], 0.9)]  # devkit IoU 441/483 = 0.913
    at = lambda t: evaluate(_records(), META, results, iou_thresh=t)["per_class"]["B"]  # noqa
    assert (at(0.9)["recall"], at(0.9)["precision"]) == (1.0, 1.0)
    assert (at(0.95)["recall"], at(0.95)["precision"]) == (0.0, 0.0)
    assert at(0.95)["VOC_AP50"] == at(0.9)["VOC_AP50"] == 1.0  # AP50 stays at 0.5


def test_top_level_keys_are_exactly_the_contract():
    m = evaluate(_records(), META, RESULTS)
    assert set(m) == set(SUMMARY_KEYS) | {"per_class"}
    assert list(m["per_class"]) == ["A", "B", "C"]
    for key in SUMMARY_KEYS:
        assert isinstance(m[key], float) and (m[key] == -1 or 0 <= m[key] <= 1), key


def test_base_novel_keys():
    meta = dict(META, base_classes=["A", "C"], novel_classes=["B"])
    m = evaluate(_records(), meta, RESULTS)
    assert set(m) == set(SUMMARY_KEYS) | {"per_class"} | \
        {p + k for p in "bn" for k in SUMMARY_KEYS}
    for key in ("AP", "AP50", "VOC_AP50", "VOC07_AP50"):
        assert m["b" + key] == pytest.approx(m["per_class"]["A"][key])  # C has no GT
        assert m["n" + key] == pytest.approx(m["per_class"]["B"][key])
    assert (m["bprecision"], m["brecall"]) == (0.5, 0.5)
    assert (m["nprecision"], m["nrecall"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="novel_classes.*'Z'"):
        evaluate(_records(), dict(META, novel_classes=["Z"]), RESULTS)


def test_empty_predictions_give_zeros_and_a_warning():
    with pytest.warns(EmptyPredictionsWarning):
        m = evaluate(_records(), dict(META, novel_classes=["B"]), [])
    for key in SUMMARY_KEYS:
        # All GT boxes are small: the medium / large ranges have none, hence -1 there.
        assert m[key] == (-1.0 if key in ("APm", "APl", "ARm", "ARl") else 0.0), key
    assert m["per_class"]["C"]["AP"] == -1  # no GT: undefined, not 0
    assert m["nAP"] == 0.0


def test_no_warning_with_predictions():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(_records(), META, RESULTS)


def test_plots_written(tmp_path):
    evaluate(_records(), META, RESULTS, plots_dir=str(tmp_path / "pr"))
    files = sorted(p.name for p in (tmp_path / "pr").iterdir())
    assert files == ["pr_A.png", "pr_B.png"]  # C has no GT: no curve
    assert (tmp_path / "pr" / "pr_A.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_lists_classes_and_groups():
    m = evaluate(_records(), dict(META, base_classes=["A", "C"], novel_classes=["B"]), RESULTS)
    table = format_table(m)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "GT", "AP", "AP50", "AP75", "VOC07", "VOC", "P", "R"]
    assert any(line.split()[:2] == ["A", "2"] for line in lines)
    assert any(line.split()[0] == "C" and line.split()[2] == "-" for line in lines)
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "all", "base", "novel"]
    assert any(line.split() == ["precision", "0.333", "0.500", "0.000"] for line in lines)


def test_crowd_box_in_records_is_ignored():
    records = [{"file_name": "/x/1.jpg", "image_id": "a", "height": 100, "width": 100,
                "annotations": [{"bbox": [0.0, 0.0, 50.0, 50.0], "category_id": 1,
                                 "iscrowd": 1, "difficult": 0},
                                {"bbox": [60.0, 60.0, 90.0, 90.0], "category_id": 1,
                                 "iscrowd": 0, "difficult": 0}]}]
    results = [_det("a", 1, [0, 0, 10, 10], 0.9), _det("a", 1, [5, 5, 10, 10], 0.8),
               _det("a", 1, [60, 60, 30, 30], 0.7)]
    m = evaluate(records, {"thing_classes": ["A"]}, results)
    assert m["AP"] == pytest.approx(1.0)  # both detections in the crowd region are ignored
    assert (m["precision"], m["recall"]) == (1.0, 1.0)
    assert m["per_class"]["A"]["num_gt"] == 1
    assert m["VOC_AP50"] == 1.0


def test_bad_ground_truth_records_are_rejected():
    bad_label = _records()
    bad_label[0]["annotations"][0]["category_id"] = 4
    with pytest.raises(ValueError, match="image 1: category_id 4"):
        evaluate(bad_label, META, RESULTS)
    duplicate = _records() + [_records()[0]]
    with pytest.raises(ValueError, match=r"image_id\(s\) \[1\]"):
        evaluate(duplicate, META, RESULTS)
    with pytest.raises(ValueError, match="iou_thresh"):
        evaluate(_records(), META, RESULTS, iou_thresh=1.0)


def test_instances_to_results_round_trip():
    meta = {"thing_classes": ["A", "B", "C"],
            "thing_dataset_id_to_contiguous_id": {7: 1, 9: 2, 40: 3}}
    out = instances_to_results(2, [[50.0, 50.0, 70.0, 70.0], [1.0, 2.0, 4.0, 8.0]],
                               [0.9, 0.1], [2, 3], meta)
    assert out == [{"image_id": 2, "category_id": 9, "bbox": [50.0, 50.0, 20.0, 20.0],
                    "score": 0.9},
                   {"image_id": 2, "category_id": 40, "bbox": [1.0, 2.0, 3.0, 6.0],
                    "score": 0.1}]
    assert evaluate(_records(), meta, out)["per_class"]["B"]["recall"] == 1.0
    with pytest.raises(ValueError, match=r"labels \[5\]"):
        instances_to_results(2, [[0, 0, 1, 1]], [0.5], [5], meta)
