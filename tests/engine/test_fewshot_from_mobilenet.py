"""torchvision's MobileNetV3 COCO detector (fasterrcnn_mobilenet_v3_large_320_fpn, random
weights here) to a user's classes: class surgery keeps the COCO rows of shared classes,
imprinting sets the new ones from their K shots, and the TFA fine-tune on cached RoI
features trains the box predictor only. Small images keep each run to seconds."""
import logging

import numpy as np
import pytest
import torch

import fewshot_det
from fewshot_det.data.build import training_records
from fewshot_det.data.catalog import Metadata
from fewshot_det.engine.defaults import load_config
from fewshot_det.engine.fewshot import load_with_surgery, run_fewshot, seed_config
from fewshot_det.modeling import build_model
from fewshot_fixtures import make_edp_tree
from mobilenet_fixtures import VARIANTS

CONFIG = VARIANTS["320"][1]
CLASSES = ["person", "insulator", "bird_nest"]  # person is a COCO class
PERSON = 1  # its COCO category id: torchvision's row
CLS = "roi_heads.box_predictor.cls_score.weight"
YAML = """
_BASE_: "{base}"
MODEL:
  DEVICE: "cpu"
  WEIGHTS: "{weights}"
  BACKBONE: {{FREEZE_AT: 6}}    # the whole MobileNetV3 frozen
  ROI_HEADS: {{NUM_CLASSES: -1, BATCH_SIZE_PER_IMAGE: 64}}
  ROI_BOX_HEAD: {{PREDICTOR: "CosineSimOutputLayers"}}
DATASETS:
  TRAIN: ("voc:{root}:trainval",)
  TEST: ("voc:{root}:test",)
DATALOADER: {{NUM_WORKERS: 0}}
INPUT: {{MIN_SIZE_TRAIN: [96], MAX_SIZE_TRAIN: 160, MIN_SIZE_TEST: 96, MAX_SIZE_TEST: 160}}
FEWSHOT:
  NOVEL_CLASSES: ["insulator", "bird_nest"]
  FINETUNE: {{TRAINABLE: ["^roi_heads\\\\.box_predictor\\\\."]}}
SOLVER: {{IMS_PER_BATCH: 2, BASE_LR: 0.01, MAX_ITER: 4, STEPS: [3], WARMUP_ITERS: 1,
         CHECKPOINT_PERIOD: 100}}
OUTPUT_DIR: "{out}"
"""


def _coco_file(path):
    torch.manual_seed(0)
    tv = VARIANTS["320"][0](weights=None, weights_backbone=None).state_dict()
    torch.save(tv, path)
    return tv


def test_person_keeps_its_coco_rows_and_the_new_class_is_initialised(tmp_path):
    path = str(tmp_path / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth")
    tv = _coco_file(path)
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    model = build_model(cfg)
    metadata = Metadata("mine", thing_classes=["insulator", "person"])
    load, surgery = load_with_surgery(cfg, metadata, model, path)
    assert load.format == "torchvision_mobilenet_detection"
    assert surgery.copied == ["person"] and surgery.initialised == ["insulator"]
    assert load.missing == [] and load.unexpected == [] and load.skipped == {}
    p = model.roi_heads.box_predictor
    assert torch.equal(p.cls_score.weight[2], tv[CLS][PERSON])  # ours: label 2
    assert torch.equal(p.cls_score.weight[0], tv[CLS][0])  # background
    assert torch.equal(p.bbox_pred.weight[4:8],  # torchvision's deltas start at background
                       tv["roi_heads.box_predictor.bbox_pred.weight"][4 * PERSON:4 * PERSON + 4])
    assert torch.equal(model.backbone.body.features[13].block[0][0].weight,
                       tv["backbone.body.13.block.0.0.weight"])


def _unit_mean(feats, centre=0.0):
    """The imprinted row's direction: the mean unit feature, minus the proposals' one."""
    unit = feats / (feats.norm(dim=1, keepdim=True) + 1e-5)
    mean = unit.mean(0) - centre
    return mean / mean.norm()


# random COCO weights detect nothing on these images: evaluation warns that AP is 0
@pytest.mark.filterwarnings("ignore::fewshot_det.evaluation.evaluator.EmptyPredictionsWarning",
                            "ignore::fewshot_det.data.fewshot.FewShotWarning")
def test_imprinting_then_cached_finetune_from_the_coco_file(tmp_path, caplog):
    from fewshot_det.data.mapper import DatasetMapper
    from fewshot_det.data.transforms import transforms_from_config
    from fewshot_det.modeling.fewshot.imprint import example_box_features, mean_direction

    root = make_edp_tree(str(tmp_path / "EDP"), classes=CLASSES, scale=2)
    weights = str(tmp_path / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth")
    tv = _coco_file(weights)
    config = tmp_path / "tfa_mobilenet.yaml"
    config.write_text(YAML.format(base=CONFIG, weights=weights, root=root,
                                  out=tmp_path / "imprint"))

    with caplog.at_level(logging.INFO):
        summary = run_fewshot(load_config(str(config), []), 2, [0], support_only=True)
    assert summary["mode"] == "support_only"
    assert "taken as COCO's classes (person, bicycle" in caplog.text
    saved = torch.load(tmp_path / "imprint" / "seed0" / "model_final.pth", weights_only=True)
    rows = saved["model"][CLS]
    assert torch.equal(rows[1], tv[CLS][PERSON])
    # the new rows are the direction of their K shots' box features
    scfg = seed_config(load_config(str(config), []), 2, 0)
    records, metadata = training_records(scfg)
    model = build_model(scfg)
    model.load_state_dict(saved["model"])
    mapper = DatasetMapper(transforms=transforms_from_config(scfg, is_train=False),
                           image_format=scfg.INPUT.FORMAT, keep_annotations=True)
    images = [r for r in records if any(a["category_id"] in (2, 3) for a in r["annotations"])]
    feats, proposals = example_box_features(
        model, [mapper(r, np.random.default_rng(0)) for r in images])
    centre = mean_direction(proposals)  # of the images that show the imprinted classes
    for k in (2, 3):  # insulator, bird_nest
        assert len(feats[k]) == 2  # 2 shots
        torch.testing.assert_close(rows[k] / rows[k].norm(), _unit_mean(feats[k], centre),
                                   atol=1e-5,
                                   rtol=0)

    caplog.clear()
    with caplog.at_level(logging.INFO):
        summary = run_fewshot(load_config(str(config), ["OUTPUT_DIR", str(tmp_path / "ft")]),
                              2, [0])
    assert "fine-tuning on cached RoI features" in caplog.text
    assert summary["mode"] == "finetune" and "nAP50" in summary["metrics"]
    tuned = torch.load(tmp_path / "ft" / "seed0" / "model_final.pth", weights_only=True)["model"]
    body = "backbone.body.features.16.0.weight"
    assert torch.equal(tuned[body], tv["backbone.body.16.0.weight"])  # only the predictor
    assert torch.equal(tuned["backbone.fpn.inner_blocks.0.0.weight"],
                       tv["backbone.fpn.inner_blocks.0.0.weight"])
    assert not torch.equal(tuned[CLS][1], tv[CLS][PERSON])  # the predictor trained
