"""The COCO protocol against pycocotools on random cases full of its traps."""
import json

import numpy as np
import pytest

from eval_cases import pycocotools_class_ap, random_coco_case, run_pycocotools
from fewshot_det.evaluation import evaluate
from fewshot_det.evaluation.coco_protocol import STAT_KEYS, coco_evaluate, coco_iou
from fewshot_det.evaluation.ground_truth import GroundTruth, load_ground_truth
from fewshot_det.evaluation.results_io import parse_results

pytest.importorskip("pycocotools")


def _ours(tmp_path, gt, results):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    records, fields = load_ground_truth(str(path))
    return records, fields


@pytest.mark.parametrize("seed", range(40))
def test_matches_pycocotools_on_random_cases(tmp_path, seed):
    gt, results = random_coco_case(seed, id_zero=seed % 10 == 9)
    ev = run_pycocotools(gt, results)
    records, fields = _ours(tmp_path, gt, results)
    metrics = evaluate(records, fields, results)
    stats = np.array([metrics[k] for k in STAT_KEYS])
    assert np.abs(stats - ev.stats).max() <= 1e-9, (stats, ev.stats)
    # The full precision / recall arrays, not only their means.
    g = GroundTruth(records, len(fields["thing_classes"]))
    precision, recall = coco_evaluate(g, parse_results(results, g.image_index, fields))
    np.testing.assert_allclose(precision, ev.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(recall, ev.eval["recall"], rtol=0, atol=1e-12)
    for k, name in enumerate(fields["thing_classes"]):
        assert abs(metrics["per_class"][name]["AP"] - pycocotools_class_ap(ev, k)) <= 1e-9


def test_random_cases_cover_the_traps():
    """The generator really produces what the comparison above claims to test."""
    gt, results = random_coco_case(3)
    anns = gt["annotations"]
    assert any(a["iscrowd"] for a in anns)
    assert any(a["area"] != a["bbox"][2] * a["bbox"][3] for a in anns)
    assert any(a["area"] == 1024.0 for a in anns)
    gt_images = {a["image_id"] for a in anns}
    det_images = {r["image_id"] for r in results}
    all_images = {i["id"] for i in gt["images"]}
    assert all_images - gt_images and gt_images - det_images  # empty images; no detections
    assert len({a["category_id"] for a in anns}) < len(gt["categories"])  # class without GT
    scores = [r["score"] for r in results]
    assert len(set(scores)) < len(scores) / 5  # many ties
    per_image_cat = {}
    for r in results:
        key = (r["image_id"], r["category_id"])
        per_image_cat[key] = per_image_cat.get(key, 0) + 1
    assert max(per_image_cat.values()) > 100  # maxDets cap matters


def test_base_novel_equal_pycocotools_on_category_subsets(tmp_path):
    gt, results = random_coco_case(5, num_classes=6)
    records, fields = _ours(tmp_path, gt, results)
    names = fields["thing_classes"]
    fields.update(base_classes=names[:4], novel_classes=names[4:])
    metrics = evaluate(records, fields, results)
    ids = [c["id"] for c in gt["categories"]]
    for prefix, subset in (("b", ids[:4]), ("n", ids[4:])):
        ev = run_pycocotools(gt, results, cat_ids=subset)
        ours = np.array([metrics[prefix + k] for k in STAT_KEYS])
        assert np.abs(ours - ev.stats).max() <= 1e-9


def test_iou_matches_pycocotools_mask_iou():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    det = np.round(rng.uniform(0, 50, (200, 4)), 2)
    gt_xywh = np.round(rng.uniform(0, 50, (200, 4)), 1)
    gt_xyxy = np.concatenate([gt_xywh[:, :2], gt_xywh[:, :2] + gt_xywh[:, 2:]], axis=1)
    crowd = rng.random(200) < 0.3
    ref = np.array([mask_utils.iou([d.tolist()], [g.tolist()], [int(c)])[0, 0]
                    for d, g, c in zip(det, gt_xywh, crowd)])
    np.testing.assert_allclose(coco_iou(det, gt_xyxy, crowd), ref, rtol=0, atol=1e-15)


def test_category_name_and_sparse_ids(tmp_path):
    gt, results = random_coco_case(7)
    records, fields = _ours(tmp_path, gt, results)
    by_name = [dict(r, category_name=f"cat{r['category_id']}") for r in results]
    for r in by_name:
        del r["category_id"]
    a = evaluate(records, fields, results)
    b = evaluate(records, fields, by_name)
    assert a == b


def test_unknown_ids_and_names_are_rejected(tmp_path):
    gt, results = random_coco_case(8)
    records, fields = _ours(tmp_path, gt, results)
    with pytest.raises(ValueError, match="category_id 999"):
        evaluate(records, fields, results + [dict(results[0], category_id=999)])
    with pytest.raises(ValueError, match="category_name 'zebra'"):
        evaluate(records, fields, [{"image_id": results[0]["image_id"],
                                    "category_name": "zebra", "bbox": [1, 2, 3, 4],
                                    "score": 0.5}])
    with pytest.raises(ValueError, match="image id.*123456789"):
        evaluate(records, fields, [dict(results[0], image_id=123456789)])
    with pytest.raises(ValueError, match="entry 1 has no 'score'"):
        evaluate(records, fields, [results[0], {"image_id": 1, "bbox": [0, 0, 1, 1],
                                                "category_id": 1}])
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(records, fields, [dict(results[0], score=float("nan"))])
