"""Class surgery: the rows each meta-architecture's ``class_rows`` names, remapped by name."""
import pytest
import torch
from torch import nn

from fewshot_det.modeling import META_ARCH_REGISTRY
from fewshot_det.modeling.fewshot import (ClassRows, class_surgery, meta_arch_class_rows,
                                          remap_class_rows, source_rows)
from fewshot_det.modeling.meta_arch import GeneralizedRCNN, SiameseRCNN, YOLOGrid
from fewshot_fixtures import tiny_model

P = "roi_heads.box_predictor."


def test_source_rows_copy_base_and_never_novel():
    # the source has a row named "cat", but cat is novel: it must be re-initialised
    idx = source_rows(["dog", "cat", "car"], ["car", "dog", "cat", "bird"], ["cat", "bird"])
    assert idx == [2, 0, None, None]


def test_remap_rows_keeps_background_copies_base_initialises_novel():
    src = torch.arange(4 * 3, dtype=torch.float32).view(4, 3)  # background + 3 classes
    rows = ClassRows("w", leading_rows=1, std=0.01)
    g = torch.Generator().manual_seed(0)
    out = remap_class_rows(src, rows, [2, None, 0], generator=g)
    assert out.shape == (4, 3)
    assert out[0].tolist() == src[0].tolist()  # background row kept
    assert out[1].tolist() == src[3].tolist() and out[3].tolist() == src[1].tolist()
    assert out[2].abs().max() < 0.1 and out[2].abs().sum() > 0  # N(0, 0.01^2)
    assert src[0, 0] == 0 and src[3, 2] == 11  # pure: input untouched


def test_remap_class_specific_deltas_move_four_rows_per_class():
    src = torch.arange(2 * 4, dtype=torch.float32)[:, None]  # 2 classes x 4 deltas
    out = remap_class_rows(src, ClassRows("b", rows_per_class=4, init="zeros"), [None, 1, 0])
    assert out.flatten().tolist() == [0, 0, 0, 0, 4, 5, 6, 7, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="do not fit"):
        remap_class_rows(torch.zeros(7, 1), ClassRows("b", rows_per_class=4), [0])
    with pytest.raises(ValueError, match="out of range"):
        remap_class_rows(src, ClassRows("b", rows_per_class=4), [5])


def test_rcnn_surgery_changes_the_class_count_from_names():
    base = tiny_model(num_classes=2, siamese=False)  # classes pole, tower
    state = base.state_dict()
    new, report = class_surgery(state, "GeneralizedRCNN", ["pole", "tower"],
                                ["pole", "insulator", "bird_nest"], ["insulator", "bird_nest"])
    assert report.copied == ["pole"] and report.initialised == ["insulator", "bird_nest"]
    w, b = new[P + "cls_score.weight"], new[P + "cls_score.bias"]
    assert w.shape == (4, 32) and b.shape == (4,)
    assert torch.equal(w[:2], state[P + "cls_score.weight"][:2])  # background + pole
    assert torch.equal(b[2:], torch.zeros(2))
    d = new[P + "bbox_pred.weight"]
    assert d.shape == (12, 32) and torch.equal(d[:4], state[P + "bbox_pred.weight"][:4])
    assert new["backbone.body.conv1.weight"] is state["backbone.body.conv1.weight"]
    target = tiny_model(num_classes=3, siamese=False)
    target.load_state_dict(new)  # loads with no mismatch


def test_rcnn_surgery_with_class_agnostic_deltas_and_cosine_predictor():
    base = tiny_model("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", "True",
                      "MODEL.ROI_BOX_HEAD.PREDICTOR", "CosineSimOutputLayers", siamese=False)
    new, _ = class_surgery(base.state_dict(), "GeneralizedRCNN", ["a", "b", "c"],
                           ["a", "b", "c", "d"], ["d"])
    assert new[P + "cls_score.weight"].shape == (5, 32)
    assert new[P + "bbox_pred.weight"].shape == (4, 32)  # shared deltas: untouched
    assert P + "cls_score.bias" not in new


def test_siamese_surgery_copies_base_rows_zeroes_novel_rows_and_empties_novel_prototypes():
    base = tiny_model(num_classes=2)  # pole, tower
    base.prototype_bank.count.fill_(5)
    base.prototype_bank.head.fill_(1.0)
    with torch.no_grad():
        base.roi_heads.box_predictor.cls_score.weight.fill_(2.0)
        base.roi_heads.box_predictor.bbox_pred.weight.fill_(3.0)
    state = base.state_dict()
    new, _ = class_surgery(state, "SiameseRCNN", ["pole", "tower"],
                           ["pole", "insulator", "bird_nest"], ["insulator", "bird_nest"])
    assert new["prototype_bank.count"].tolist() == [5, 0, 0]
    assert new["prototype_bank.head"][1:].abs().sum() == 0
    w = new[P + "cls_score.weight"]
    # background row kept, pole copied, insulator / bird_nest zero: weight = g(prototype)
    assert w.shape == (4, 32) and (w[:2] == 2).all() and (w[2:] == 0).all()
    d = new[P + "bbox_pred.weight"]
    # novel box deltas start as the mean of the copied classes' rows (here: pole's)
    assert d.shape == (12, 32) and (d == 3).all()
    assert torch.equal(new[P + "generator.weight"], state[P + "generator.weight"])
    tiny_model(num_classes=3).load_state_dict(new)


def test_unnamed_checkpoint_and_unknown_model_type():
    state = tiny_model(num_classes=3, siamese=False).state_dict()
    same, _ = class_surgery(state, "GeneralizedRCNN", None, ["a", "b", "c"], [])
    assert torch.equal(same[P + "cls_score.weight"], state[P + "cls_score.weight"])
    other, report = class_surgery(state, "GeneralizedRCNN", None, ["a", "b"], [])
    assert report.copied == [] and report.missing_base == ["a", "b"]
    assert other[P + "cls_score.weight"].shape == (3, 32)
    with pytest.raises(ValueError, match="'MyDetector' is not registered in META_ARCH"):
        class_surgery(state, "MyDetector", None, ["a"], [])

    class NoRows(nn.Module):
        pass

    with pytest.raises(ValueError, match="no class surgery for NoRows: it defines no"):
        class_surgery(state, NoRows, None, ["a"], [])


def test_source_mean_initialises_new_rows_with_the_copied_rows_mean():
    t = torch.tensor([[0.0], [2.0], [4.0], [10.0]])  # 1 leading row, 3 classes
    out = remap_class_rows(t, ClassRows("w", leading_rows=1, init="source_mean"), [1, None, 0])
    assert out.flatten().tolist() == [0.0, 4.0, 3.0, 2.0]  # mean of classes 1 and 0
    none = remap_class_rows(t, ClassRows("w", leading_rows=1, init="source_mean"), [None])
    assert none.flatten().tolist() == [0.0, 0.0]


def test_every_registered_meta_architecture_names_its_class_rows():
    for name, arch in META_ARCH_REGISTRY:
        assert meta_arch_class_rows(name) == arch.class_rows, name
    assert meta_arch_class_rows(SiameseRCNN) == SiameseRCNN.class_rows


@pytest.mark.parametrize("arch", [GeneralizedRCNN, SiameseRCNN])
def test_class_rows_name_exactly_the_class_shaped_tensors(arch):
    # (YOLOGrid's: tests/modeling/test_yolo_grid.py)
    three = tiny_model(num_classes=3, siamese=arch is SiameseRCNN).state_dict()
    five = tiny_model(num_classes=5, siamese=arch is SiameseRCNN).state_dict()
    rows = arch.class_rows(three, 3)
    assert len({r.key for r in rows}) == len(rows)
    for r in rows:
        assert r.key in three, r.key
        assert three[r.key].shape[0] == r.leading_rows + 3 * r.rows_per_class, r.key
        assert five[r.key].shape[0] == r.leading_rows + 5 * r.rows_per_class, r.key
    assert {k for k in three if three[k].shape != five[k].shape} == {r.key for r in rows}


def test_rcnn_class_rows_leave_class_agnostic_deltas_alone():
    state = tiny_model("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", "True",
                       siamese=False).state_dict()
    assert [r.key for r in GeneralizedRCNN.class_rows(state, 3)] == [
        P + "cls_score.weight", P + "cls_score.bias"]


def test_surgery_by_class_equals_surgery_by_name():
    state = tiny_model(num_classes=2).state_dict()
    args = (["pole", "tower"], ["pole", "insulator"], ["insulator"])
    by_name, _ = class_surgery(state, "SiameseRCNN", *args, seed=4)
    by_class, _ = class_surgery(state, SiameseRCNN, *args, seed=4)
    assert by_name.keys() == by_class.keys()
    assert all(torch.equal(by_name[k], by_class[k]) for k in by_name)
