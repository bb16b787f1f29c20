"""The VOC protocol against the devkit algorithm (``reference_voc_eval``) on XML trees."""
import numpy as np
import pytest

from eval_cases import random_voc_case, reference_voc_eval, write_voc_tree
from fewshot_det.evaluation import evaluate, evaluate_files
from fewshot_det.evaluation.ground_truth import load_ground_truth
from fewshot_det.evaluation.voc_protocol import voc_ap


def _reference(root, results, classes):
    """{class: (VOC07 AP, VOC2010+ AP)} of the devkit reference (None without positives)."""
    out = {}
    for name in classes:
        dets = [(r["image_id"], r["score"],
                 [r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2],
                  r["bbox"][1] + r["bbox"][3]]) for r in results if r["category_name"] == name]
        out[name] = (reference_voc_eval(root, "test", dets, name, use_07_metric=True)[2],
                     reference_voc_eval(root, "test", dets, name, use_07_metric=False)[2])
    return out


@pytest.mark.parametrize("seed", range(15))
def test_matches_devkit_reference_on_random_trees(tmp_path, seed):
    annotations, results = random_voc_case(seed)
    root = str(tmp_path / "voc")
    write_voc_tree(root, annotations)
    records, fields = load_ground_truth(root, "test")
    classes = fields["thing_classes"]
    metrics = evaluate(records, fields, results)
    ref = _reference(root, results, classes)
    for name in classes:
        r07, r10 = ref[name]
        got = metrics["per_class"][name]
        if r07 is None:
            assert got["VOC07_AP50"] == -1 and got["VOC_AP50"] == -1
        else:
            assert abs(got["VOC07_AP50"] - r07) <= 1e-12
            assert abs(got["VOC_AP50"] - r10) <= 1e-12
    defined = [v for v in ref.values() if v[0] is not None]
    assert abs(metrics["VOC07_AP50"] - np.mean([v[0] for v in defined])) <= 1e-12
    assert abs(metrics["VOC_AP50"] - np.mean([v[1] for v in defined])) <= 1e-12


def test_random_trees_have_difficult_objects_and_ties():
    annotations, results = random_voc_case(0)
    assert any(d for objs in annotations.values() for _, _, d in objs)
    scores = [r["score"] for r in results]
    assert len(set(scores)) < len(scores)


def test_devkit_rules_on_a_hand_made_tree(tmp_path):
    """+1 pixels, strict IoU > 0.5, difficult ignored, a GT matched once, stable ties."""
    root = str(tmp_path / "voc")
    write_voc_tree(root, {
        "a": [("dog", [1, 1, 10, 10], 0), ("dog", [21, 21, 30, 30], 1)],
        "b": [("dog", [1, 1, 20, 10], 0)],
    })

    def det(image_id, x1, y1, x2, y2, score):
        return {"image_id": image_id, "category_name": "dog",
                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}

    results = [
        det("a", 1, 1, 10, 10, 0.9),    # TP: equal to the GT box (bbox [1, 1, 9, 9])
        det("a", 1, 1, 10, 10, 0.9),    # FP: same box, tie -> later in the list, GT taken
        det("a", 21, 21, 30, 30, 0.8),  # difficult: neither TP nor FP
        det("b", 1, 1, 10, 10, 0.7),    # devkit IoU = 100/200 = 0.5 exactly: not > 0.5: FP
        det("b", 1, 1, 11, 10, 0.6),    # IoU = 110/200 = 0.55 -> TP
    ]
    records, fields = load_ground_truth(root, "test")
    assert records[0]["annotations"][0]["bbox"] == [1.0, 1.0, 10.0, 10.0]  # as in the XML
    m = evaluate(records, fields, results)["per_class"]["dog"]
    # Visiting order: TP, FP, (ignored), FP, TP with 2 positives.
    rec = np.array([0.5, 0.5, 0.5, 0.5, 1.0])
    prec = np.array([1.0, 0.5, 0.5, 1 / 3, 0.5])
    assert m["VOC_AP50"] == pytest.approx(voc_ap(rec, prec), abs=1e-15)
    assert m["VOC_AP50"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    # 11-point: recall >= 0..0.5 -> max precision 1.0 (6 points), 0.6..1.0 -> 0.5 (5 points).
    assert m["VOC07_AP50"] == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)
    assert (m["tp"], m["fp"], m["fn"], m["num_gt"]) == (2, 2, 0, 2)


def test_voc_root_with_classes_txt_and_category_ids(tmp_path):
    root = tmp_path / "voc"
    write_voc_tree(str(root), {"x1": [("zebra", [5, 5, 50, 50], 0)],
                               "x2": [("ant", [10, 10, 40, 40], 0)]})
    (root / "classes.txt").write_text("zebra\nant\n")
    results = [{"image_id": "x1", "category_id": 1, "bbox": [5, 5, 45, 45], "score": 0.9},
               {"image_id": "x2", "category_id": 2, "bbox": [10, 10, 30, 30], "score": 0.8}]
    m = evaluate_files(str(root), results, split="test")
    assert list(m["per_class"]) == ["zebra", "ant"]
    # pycocotools divides by tp + fp + eps, hence 1 - 1e-16 rather than 1.
    assert m["VOC_AP50"] == 1.0 and m["AP50"] == pytest.approx(1.0) and m["precision"] == 1.0


def test_voc_image_id_must_be_the_stem(tmp_path):
    root = str(tmp_path / "voc")
    write_voc_tree(root, {"000005": [("dog", [1, 1, 10, 10], 0)]})
    with pytest.raises(ValueError, match="file stem"):
        evaluate_files(root, [{"image_id": 5, "category_name": "dog", "bbox": [1, 1, 9, 9],
                               "score": 1.0}])
