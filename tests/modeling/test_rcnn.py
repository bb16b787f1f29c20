"""GeneralizedRCNN end to end on a tiny R-18 FPN: losses, guards, gradients, eval contract."""
import math

import pytest
import torch
from rcnn_fixtures import NUM_CLASSES, image_item, tiny_model, two_object_item

LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}


def test_image_without_boxes_gives_zero_box_losses_and_finite_cls_losses():
    model = tiny_model()
    losses = model([image_item(image_id="empty")])
    assert set(losses) == LOSS_KEYS
    assert losses["loss_rpn_loc"].item() == 0.0
    assert losses["loss_box_reg"].item() == 0.0
    assert math.isfinite(losses["loss_rpn_cls"].item()) and losses["loss_rpn_cls"].item() > 0
    assert math.isfinite(losses["loss_cls"].item()) and losses["loss_cls"].item() > 0
    sum(losses.values()).backward()  # gradients of an all-background batch are finite too
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_degenerate_boxes_are_dropped_without_nan():
    model = tiny_model()
    degenerate = [[30, 30, 30, 70], [10, 40, 50, 40], [60, 60, 20, 20]]  # zero w, zero h, flipped
    only_bad = model([image_item(boxes=degenerate, labels=[1, 2, 3])])
    assert only_bad["loss_rpn_loc"].item() == 0.0 and only_bad["loss_box_reg"].item() == 0.0
    mixed = model([image_item(boxes=degenerate + [[10, 12, 60, 70]], labels=[1, 2, 3, 2])])
    assert all(math.isfinite(v.item()) for v in mixed.values())
    assert mixed["loss_rpn_loc"].item() > 0 and mixed["loss_box_reg"].item() > 0


def test_bad_targets_raise_naming_the_image():
    model = tiny_model()
    with pytest.raises(ValueError, match="image img7: gt_labels must be in 1..3"):
        model([image_item(boxes=[[1, 1, 20, 20]], labels=[0], image_id="img7")])
    with pytest.raises(ValueError, match="image 4: non-finite"):
        model([image_item(boxes=[[1, 1, float("nan"), 20]], labels=[1], image_id=4)])
    item = image_item(image_id="x")
    del item["instances"]
    with pytest.raises(ValueError, match="image x: training needs 'instances'"):
        model([item])


def test_every_trainable_parameter_gets_a_nonzero_gradient():
    model = tiny_model()
    batch = [two_object_item(seed=1), image_item(h=64, w=96, boxes=[[5, 5, 40, 50]], labels=[2],
                                                 seed=2)]
    sum(model(batch).values()).backward()
    params = dict(model.named_parameters())
    assert len(params) == 20 + 16 + 6 + 4 + 4  # R-18 convs, FPN, RPN, 2 FC, predictor
    no_grad = [n for n, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_cosine_predictor_and_agnostic_regression_train():
    model = tiny_model("MODEL.ROI_BOX_HEAD.PREDICTOR", "CosineSimOutputLayers",
                       "MODEL.ROI_BOX_HEAD.COSINE_SCALE", -1.0,
                       "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True)
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 4
    losses = model([two_object_item()])
    sum(losses.values()).backward()
    assert model.roi_heads.box_predictor.scale.grad.abs().item() > 0


def test_eval_returns_boxes_in_original_image_coordinates():
    model = tiny_model("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0).eval()
    item = two_object_item()  # a 96 x 128 input
    with torch.no_grad():
        same = model([item])[0]
        item_scaled = dict(item, height=192, width=320)  # the original was 2x / 2.5x larger
        scaled = model([item_scaled])[0]
    assert set(same) == {"boxes", "scores", "labels"}
    assert len(same["boxes"]) == len(scaled["boxes"]) == 100  # DETECTIONS_PER_IMAGE
    assert same["labels"].dtype == torch.int64
    assert same["labels"].min() >= 1 and same["labels"].max() <= NUM_CLASSES
    assert (same["scores"][:-1] >= same["scores"][1:]).all()
    assert same["boxes"][:, 0::2].max() <= 128 and same["boxes"][:, 1::2].max() <= 96
    expected = same["boxes"] * torch.tensor([2.5, 2.0, 2.5, 2.0])
    torch.testing.assert_close(scaled["boxes"], expected)
    torch.testing.assert_close(scaled["scores"], same["scores"])


def test_batching_does_not_mix_images():
    model = tiny_model().eval()
    a, b = two_object_item(seed=3), image_item(h=64, w=72, seed=4)
    with torch.no_grad():
        together = model([a, b])[0]
        alone = model([a])[0]  # a sets the padded size, so its features are the same
    torch.testing.assert_close(together["scores"], alone["scores"])
    torch.testing.assert_close(together["boxes"], alone["boxes"])


def test_bfloat16_autocast_keeps_losses_and_boxes_in_float32():
    model = tiny_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model([two_object_item(), image_item(seed=3)])
    assert all(v.dtype == torch.float32 and math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model([two_object_item()])[0]
    assert out["boxes"].dtype == torch.float32 and len(out["boxes"]) > 0


def test_tiny_model_learns_to_detect_two_shapes():
    """Each object found with its class at the detection criterion (IoU >= 0.5, score > 0.5).

    150 steps with a 10x LR drop for the last third: over init seeds 0-5, on AVX-512 and on
    the AVX2 dispatch, the worst best-IoU per object was 0.65, so the IoU 0.5 criterion
    holds with a margin that other kernels' rounding does not eat (at 60 steps without the
    drop, the same criterion failed for some seeds).
    """
    from torchvision.ops import box_iou

    model = tiny_model("MODEL.RESNETS.NORM", "GN", "MODEL.FPN.OUT_CHANNELS", 32,
                       "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
                       "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 64)
    image = torch.full((3, 128, 128), 40.0)
    image[:, 30:80, 20:60] = 220.0
    image[0, 90:120, 80:120] = 250.0
    gt_boxes = torch.tensor([[20.0, 30, 60, 80], [80, 90, 120, 120]])
    gt_labels = torch.tensor([2, 3])
    item = {"image": image, "height": 128, "width": 128, "image_id": 0,
            "instances": {"gt_boxes": gt_boxes, "gt_labels": gt_labels}}
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[100], gamma=0.1)
    for _ in range(150):
        loss = sum(model([item]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        scheduler.step()
    model.eval()
    with torch.no_grad():
        out = model([item])[0]
    confident = out["scores"] > 0.5
    iou = box_iou(gt_boxes, out["boxes"][confident])  # 2, D
    same_class = gt_labels[:, None] == out["labels"][confident][None]
    assert ((iou * same_class).max(1).values >= 0.5).all()
    top_iou = box_iou(out["boxes"][:1], gt_boxes)[0]  # the highest-scoring detection
    assert top_iou.max() >= 0.5 and out["labels"][0] == gt_labels[top_iou.argmax()]
