"""Class names of checkpoints that do not save them: torchvision and detectron2 COCO models."""
import torch

from fewshot_det.checkpoint.class_names import (checkpoint_class_names, coco_80_names,
                                                coco_category_names, layout_class_names)

CLS = "roi_heads.box_predictor.cls_score.weight"


def test_coco_names_by_category_id():
    names = coco_category_names()
    assert len(names) == 90 and len(set(names)) == 90  # unique: surgery matches by name
    assert names[:3] == ["person", "bicycle", "car"] and names[11] == "N/A 12"
    assert names[89] == "toothbrush"
    eighty = coco_80_names()
    assert len(eighty) == 80 and eighty[:2] == ["person", "bicycle"]
    assert eighty[-1] == "toothbrush" and not any(n.startswith("N/A") for n in eighty)


def test_layout_decides_by_format_and_row_count():
    assert layout_class_names("torchvision_detection", {CLS: torch.zeros(91, 8)}) == \
        coco_category_names()
    assert layout_class_names("detectron2", {CLS: torch.zeros(81, 8)}) == coco_80_names()
    # another class count, or a backbone-only file: the names are unknown
    assert layout_class_names("torchvision_detection", {CLS: torch.zeros(3, 8)}) is None
    assert layout_class_names("detectron2", {"backbone.body.conv1.weight": torch.zeros(1)}) \
        is None
    assert layout_class_names("fewshot_det", {CLS: torch.zeros(91, 8)}) is None


def test_our_checkpoints_name_their_classes(tmp_path):
    path = tmp_path / "model_final.pth"
    torch.save({"model": {CLS: torch.zeros(3, 4)}, "extra": {"thing_classes": ["a", "b"]}},
               path)
    assert checkpoint_class_names(str(path)) == ["a", "b"]
    torch.save({CLS: torch.zeros(3, 4)}, tmp_path / "bare.pth")
    assert checkpoint_class_names(str(tmp_path / "bare.pth")) is None
    assert checkpoint_class_names(str(tmp_path / "missing.pth")) is None
