"""The base model labels its own classes in K-shot images before fine-tuning
(``engine.base_labels``, FEWSHOT.FINETUNE.BASE_LABEL_SCORE)."""
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from fewshot_det.config import validate_cfg
from fewshot_det.data.build import training_records
from fewshot_det.data.mapper import read_image
from fewshot_det.engine import base_labels
from fewshot_det.engine.defaults import load_config
from fewshot_det.engine.fewshot import run_fewshot, seed_config
from test_fewshot import BASE_CLASSES, TFA, edp, write_config  # noqa: F401 (fixture)

IDS = {"pole": 1}  # the K-shot classes the base model knows (insulator, bird_nest are new)


def _detections(boxes, scores, names):
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.array(scores),
            "class_names": names}


def test_confident_base_detections_away_from_labelled_boxes_are_added():
    labelled = np.array([[0, 0, 20, 20]], np.float32)
    dets = _detections([[40, 40, 60, 60],    # pole, confident, free: added
                        [70, 70, 90, 90],    # pole below the score: not added
                        [2, 2, 21, 21],      # pole on the labelled box: not added
                        [40, 0, 60, 20]],    # a class the K-shot set lacks: not added
                       [0.9, 0.4, 0.95, 0.99], ["pole", "pole", "pole", "tower"])
    added = base_labels.added_labels(dets, labelled, IDS, score=0.5)
    assert [(a["bbox"], a["category_id"]) for a in added] == [([40, 40, 60, 60], 1)]
    assert added[0]["pseudo_label"] and not added[0]["iscrowd"]
    assert base_labels.added_labels(dets, np.zeros((0, 4), np.float32), IDS, 0.5)[1]["bbox"] \
        == [2, 2, 21, 21]  # nothing labelled: every confident pole
    assert base_labels.added_labels(_detections([], [], []), labelled, IDS, 0.5) == []


def test_the_base_predictor_keeps_the_checkpoints_own_classes(edp, tmp_path):  # noqa: F811
    config, _ = write_config(tmp_path, edp, TFA, "predictor")
    cfg = seed_config(load_config(config, []), 2, 0)
    predictor = base_labels.base_predictor(cfg, cfg.MODEL.WEIGHTS)
    assert predictor.class_names == BASE_CLASSES  # not the 3 classes of the K-shot set
    records, _ = training_records(cfg)
    out = predictor(read_image(records[0]["file_name"], cfg.INPUT.FORMAT))
    assert set(out["class_names"]) <= set(BASE_CLASSES)


def test_finetune_trains_on_the_base_models_labels(edp, tmp_path, monkeypatch,  # noqa: F811
                                                   caplog):
    from fewshot_det.engine import roi_cache

    class FixedPredictor:  # a pole at the top left of every image, a tower, a weak pole
        class_names = BASE_CLASSES

        def __call__(self, image):
            return _detections([[0, 0, 6, 6], [0, 0, 6, 6], [10, 10, 20, 20]],
                               [0.9, 0.9, 0.1], ["pole", "tower", "pole"])

    monkeypatch.setattr(base_labels, "base_predictor", lambda cfg, weights: FixedPredictor())
    trained = []
    source = roi_cache.CachedTrainingSource
    monkeypatch.setattr(roi_cache, "CachedTrainingSource",
                        lambda cfg, model, records, classes: trained.append(records)
                        or source(cfg, model, records, classes))
    config, _ = write_config(tmp_path, edp, TFA, "labels")
    cfg = load_config(config, ["SOLVER.MAX_ITER", "1"])
    kshot = training_records(seed_config(cfg, 2, 0))[0]
    with caplog.at_level("INFO"):
        run_fewshot(load_config(config, ["SOLVER.MAX_ITER", "1",
                                         "FEWSHOT.FINETUNE.BASE_LABEL_SCORE", "0.5"]), 2, [0])
    assert "base-model labels added to the" in caplog.text
    (records,) = trained
    assert [r["file_name"] for r in records] == [r["file_name"] for r in kshot]
    for before, after in zip(kshot, records):
        added = after["annotations"][len(before["annotations"]):]
        assert after["annotations"][:len(before["annotations"])] == before["annotations"]
        labelled = torch.tensor([a["bbox"] for a in before["annotations"]]).reshape(-1, 4)
        near = bool((box_iou(torch.tensor([[0.0, 0, 6, 6]]), labelled) >= 0.3).any())
        assert [(a["bbox"], a["category_id"]) for a in added] == \
            ([] if near else [([0, 0, 6, 6], 1)])
    assert any(len(a["annotations"]) > len(b["annotations"]) for a, b in zip(records, kshot))
    # off (the default): the K-shot records as they are
    trained.clear()
    run_fewshot(load_config(config, ["SOLVER.MAX_ITER", "1", "OUTPUT_DIR",
                                     str(tmp_path / "off")]), 2, [0])
    assert [r["annotations"] for r in trained[0]] == [r["annotations"] for r in kshot]


def test_a_score_outside_0_1_is_refused(edp, tmp_path):  # noqa: F811
    config, _ = write_config(tmp_path, edp, TFA, "bad")
    with pytest.raises(ValueError, match="FEWSHOT.FINETUNE.BASE_LABEL_SCORE must be in"):
        validate_cfg(load_config(config, ["FEWSHOT.FINETUNE.BASE_LABEL_SCORE", "1.5"]))
