"""YOLOGrid end to end on a tiny R-18: losses, gradients, eval contract, weights, surgery."""
import math

import pytest
import torch
import torchvision

import fewshot_det
from fewshot_det.checkpoint import load_weights
from fewshot_det.engine.ema import ModelEMA
from fewshot_det.modeling import build_model
from fewshot_det.modeling.meta_arch.yolo_grid import YOLOGrid
from fewshot_det.modeling.fewshot import class_surgery
from fewshot_det.modeling.yolo import split_predictions

LOSS_KEYS = {"loss_class", "loss_no_object", "loss_contain_conf", "loss_regression"}
SIZE = 64


def tiny_cfg(*opts):
    """R-18 (trainable, BN), 64-px input, 2x2 grid, 16-wide head, 3 classes."""
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "YOLOGrid", "MODEL.BACKBONE.NAME", "build_resnet_backbone",
        "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "0",
        "INPUT.RESIZE_MODE", "fixed_square", "INPUT.FIXED_SIZE", str(SIZE),
        "MODEL.YOLO.GRID_SIZE", "2", "MODEL.YOLO.HEAD_CONV_DIM", "16",
        "MODEL.YOLO.NUM_CLASSES", "3", *opts])
    return cfg


def tiny_model(*opts, seed=0):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(*opts))


def item(boxes=(), labels=(), image_id=0, seed=0, height=SIZE, width=SIZE):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(3, SIZE, SIZE, generator=g) * 255, "height": height,
            "width": width, "image_id": image_id,
            "instances": {"gt_boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                          "gt_labels": torch.tensor(labels, dtype=torch.int64)}}


def test_registered_and_built_from_config():
    model = tiny_model()
    assert isinstance(model, YOLOGrid)
    assert model.head.grid_size == 2 and model.head.num_boxes == 2 and model.num_classes == 3
    assert model.head.cls_pred.out_channels == 3 and model.head.box_pred.out_channels == 10


def test_train_step_finite_losses_and_every_parameter_gets_a_gradient():
    model = tiny_model()
    batch = [item([[4, 6, 30, 40], [33, 35, 60, 62]], [1, 3], seed=1),
             item([[10, 10, 50, 30]], [2], seed=2)]
    losses = model(batch)
    assert set(losses) == LOSS_KEYS
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    params = dict(model.named_parameters())
    assert len(params) == 60 + 6 + 4  # R-18 convs and BNs, 2 head conv + BN, 2 predictors
    no_grad = [n for n, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    assert all(torch.isfinite(p.grad).all() for p in params.values())


def test_empty_image_only_no_object_loss():
    losses = tiny_model()([item(image_id="empty"), item(seed=3)])
    assert losses["loss_class"].item() == 0.0
    assert losses["loss_contain_conf"].item() == 0.0
    assert losses["loss_regression"].item() == 0.0
    assert losses["loss_no_object"].item() > 0


def test_degenerate_boxes_dropped_and_bad_labels_named():
    model = tiny_model()
    only_bad = model([item([[30, 30, 30, 50], [10, 40, 50, 40]], [1, 2])])
    assert only_bad["loss_regression"].item() == 0.0
    with pytest.raises(ValueError, match="image im7: gt_labels must be in 1..3"):
        model([item([[1, 1, 20, 20]], [4], image_id="im7")])


def test_wrong_input_size_and_config_errors_are_named():
    model = tiny_model()
    bad = item(image_id="big")
    bad["image"] = torch.zeros(3, SIZE, SIZE + 8)
    with pytest.raises(ValueError, match="image big: YOLOGrid expects 64 x 64"):
        model([bad])
    with pytest.raises(ValueError, match="INPUT.RESIZE_MODE 'fixed_square'"):
        build_model(tiny_cfg("INPUT.RESIZE_MODE", "shortest_edge"))
    with pytest.raises(ValueError, match="MODEL.YOLO.IN_FEATURE 'res5' is not produced"):
        build_model(tiny_cfg("MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone"))
    with pytest.raises(ValueError, match="MODEL.YOLO.CONF_TARGET"):
        build_model(tiny_cfg("MODEL.YOLO.CONF_TARGET", "max"))
    with pytest.raises(ValueError, match="MODEL.YOLO.HEAD_NORM"):
        build_model(tiny_cfg("MODEL.YOLO.HEAD_NORM", "LN"))


def test_eval_returns_detections_in_original_image_coordinates():
    model = tiny_model("MODEL.YOLO.SCORE_THRESH_TEST", "0.0").eval()
    batch = [item(height=50, width=200, seed=4)]
    with torch.no_grad():
        out = model(batch)[0]
        preds = split_predictions(model.head(model.backbone(model.preprocess(batch))), 2)
    assert set(out) == {"boxes", "scores", "labels"}
    assert len(out["boxes"]) == 2 * 2 * 2 * 3 or len(out["boxes"]) > 0  # NMS may merge
    assert out["labels"].dtype == torch.int64 and out["labels"].min() >= 1
    assert out["labels"].max() <= 3
    # The best detection is the best (conf x prob) pair, its box scaled by (200/64, 50/64).
    scores = preds.conf[..., None] * preds.class_probs[..., None, :]  # 1, G, G, B, K
    best = scores.flatten().argmax()
    assert out["scores"][0].item() == pytest.approx(scores.flatten()[best].item())
    cell = torch.unravel_index(best, scores.shape)[:4]
    x, y, w, h = preds.boxes[cell].tolist()
    row, col = int(cell[1]), int(cell[2])
    cx, cy = (col + x) / 2, (row + y) / 2
    expected = [max(cx - w / 2, 0) * 200, max(cy - h / 2, 0) * 50,
                min(cx + w / 2, 1) * 200, min(cy + h / 2, 1) * 50]
    assert out["boxes"][0].tolist() == pytest.approx(expected, abs=1e-3)
    assert (out["boxes"][:, 0::2] <= 200).all() and (out["boxes"][:, 1::2] <= 50).all()


def test_torchvision_resnet_and_own_checkpoint_load(tmp_path):
    model = tiny_model()
    tv = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(tv, tmp_path / "r18.pth")
    report = load_weights(model, str(tmp_path / "r18.pth"))
    assert report.format == "torchvision_resnet"
    assert torch.equal(model.backbone.body.layer3[1].conv2.weight, tv["layer3.1.conv2.weight"])
    assert all(n.startswith("head.") for n in report.missing)
    torch.save({"model": model.state_dict()}, tmp_path / "ours.pth")
    again = tiny_model(seed=1)
    assert load_weights(again, str(tmp_path / "ours.pth")).missing == []
    model.eval(), again.eval()
    with torch.no_grad():
        a, b = model([item(seed=5)])[0], again([item(seed=5)])[0]
    assert torch.equal(a["scores"], b["scores"]) and torch.equal(a["boxes"], b["boxes"])


def test_checkpoint_with_another_class_count_skips_only_the_class_layer(tmp_path):
    five = tiny_model("MODEL.YOLO.NUM_CLASSES", "5")
    torch.save({"model": five.state_dict()}, tmp_path / "five.pth")
    three = tiny_model(seed=1)  # 3 classes
    report = load_weights(three, str(tmp_path / "five.pth"))
    assert sorted(report.skipped) == ["head.cls_pred.bias", "head.cls_pred.weight"]
    assert "5 classes, the model 3" in report.skipped["head.cls_pred.weight"]
    assert torch.equal(three.head.box_pred.weight, five.head.box_pred.weight)
    assert torch.equal(three.backbone.body.layer2[0].conv1.weight,
                       five.backbone.body.layer2[0].conv1.weight)


def test_class_surgery_copies_base_rows_and_the_model_still_runs():
    state = tiny_model().state_dict()  # classes a, b, c
    w, b = "head.cls_pred.weight", "head.cls_pred.bias"
    before = {k: state[k].clone() for k in (w, b)}
    new, report = class_surgery(state, "YOLOGrid", ["a", "b", "c"], ["c", "a", "d", "e"],
                                ["d", "e"], seed=0)
    assert report.tensors == [w, b] and report.copied == ["c", "a"]
    assert all(torch.equal(state[k], before[k]) for k in (w, b))  # pure: input untouched
    assert torch.equal(new[w][0], state[w][2]) and torch.equal(new[b][0], state[b][2])
    assert torch.equal(new[w][1], state[w][0]) and torch.equal(new[b][1], state[b][0])
    assert new[b][2:].tolist() == pytest.approx([math.log(0.2 / 0.8)] * 2)  # sigmoid 1/(K+1)
    assert 0 < new[w][2:].std() < 0.05
    assert new["head.box_pred.weight"] is state["head.box_pred.weight"]  # class-free: shared
    model = tiny_model("MODEL.YOLO.NUM_CLASSES", "4")
    model.load_state_dict(new)
    assert model.num_classes == 4
    losses = model([item([[4, 6, 30, 40]], [4])])
    assert all(math.isfinite(v.item()) for v in losses.values())
    with pytest.raises(ValueError, match="has 3 class rows but the checkpoint names 2"):
        class_surgery(state, "YOLOGrid", ["a", "b"], ["a"], [])
    with pytest.raises(ValueError, match=r"target class list repeats \['a'\]"):
        class_surgery(state, "YOLOGrid", ["a", "b", "c"], ["a", "a"], [])


def test_class_rows_name_exactly_the_class_shaped_tensors():
    three = tiny_model().state_dict()
    five = tiny_model("MODEL.YOLO.NUM_CLASSES", "5").state_dict()
    rows = YOLOGrid.class_rows(three, 3)
    assert all(r.key in three and three[r.key].shape[0] == 3 for r in rows)
    assert {k for k in three if three[k].shape != five[k].shape} == {r.key for r in rows}


def test_engine_ema_averages_and_evaluates_the_model():
    model = tiny_model()
    ema = ModelEMA(model, decay=0.9, warmup=1)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for step in range(2):
        opt.zero_grad()
        sum(model([item([[4, 6, 30, 40]], [1], seed=step)]).values()).backward()
        opt.step()
        ema.update(model)
    name = "head.cls_pred.weight"
    assert not torch.equal(ema.module.state_dict()[name], model.state_dict()[name])
    with torch.no_grad():
        out = ema.module([item(seed=6)])
    assert not ema.module.training and set(out[0]) == {"boxes", "scores", "labels"}


def test_initial_outputs_start_at_the_priors():
    # conf 0.1 and class probabilities 1 / (K + 1): see yolo/head.py for why.
    model = tiny_model().eval()
    with torch.no_grad():
        preds = split_predictions(model.head(model.backbone(model.preprocess([item()]))), 2)
    assert preds.conf.mean().item() == pytest.approx(0.1, abs=0.02)
    assert preds.class_probs.mean().item() == pytest.approx(0.25, abs=0.03)
