"""A user's COCO detector (torchvision's) to their own classes: shared classes keep their rows."""
import os

import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

import fewshot_det
from fewshot_det.data.catalog import Metadata
from fewshot_det.engine.fewshot import load_with_surgery
from fewshot_det.modeling import build_model

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "torchvision",
                      "faster_rcnn_R_50_FPN.yaml")


def test_person_keeps_its_coco_rows_and_the_new_class_is_initialised(tmp_path):
    torch.manual_seed(0)
    tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    path = str(tmp_path / "fasterrcnn_resnet50_fpn_coco.pth")
    torch.save(tv, path)
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    model = build_model(cfg)
    metadata = Metadata("mine", thing_classes=["insulator", "person"])
    load, surgery = load_with_surgery(cfg, metadata, model, path)
    assert surgery.copied == ["person"] and surgery.initialised == ["insulator"]
    assert "kept the checkpoint's rows of ['person'], new rows for ['insulator']" in str(surgery)
    assert load.missing == [] and load.skipped == {}
    p = model.roi_heads.box_predictor
    person = 1  # torchvision's label of COCO category 1; ours is 2 (the dataset's order)
    assert torch.equal(p.cls_score.weight[2], tv["roi_heads.box_predictor.cls_score.weight"][person])
    assert torch.equal(p.cls_score.bias[2], tv["roi_heads.box_predictor.cls_score.bias"][person])
    assert torch.equal(p.cls_score.weight[0], tv["roi_heads.box_predictor.cls_score.weight"][0])
    # class-specific deltas: torchvision's 4 rows per class incl. background; ours drop it
    assert torch.equal(p.bbox_pred.weight[4:8],
                       tv["roi_heads.box_predictor.bbox_pred.weight"][4 * person:4 * person + 4])
    assert not any(torch.equal(p.cls_score.weight[1], row)
                   for row in tv["roi_heads.box_predictor.cls_score.weight"])
