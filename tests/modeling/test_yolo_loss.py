"""The four YOLOv1 loss terms against hand-computed values; responsible-box choice.

The hand case: one 100 x 100 image, G = 2 (50-px cells), B = 2, K = 2. GT box
[7, 32, 43, 48], label 2: centre (25, 40) -> cell (row 0, col 0), offsets (0.5, 0.8),
size (0.36, 0.16) of the image, so sqrt(w), sqrt(h) = (0.6, 0.4).
"""
import pytest
import torch

from fewshot_det.modeling.yolo import (GridPredictions, encode_targets, find_responsible_boxes,
                                       get_class_prediction_loss, get_contain_conf_loss,
                                       get_no_object_loss, get_regression_loss,
                                       split_predictions, yolo_loss)

GT_BOX = [[7.0, 32.0, 43.0, 48.0]]
# Box 0 of cell (0, 0): every regressed quantity 0.1 off the GT's:
# x 0.4 (GT 0.5), y 0.9 (0.8), w 0.25 = 0.5^2 (sqrt 0.6), h 0.09 = 0.3^2 (sqrt 0.4).
BOX0 = [0.4, 0.9, 0.25, 0.09]
# Its IoU with the GT, by hand in image units: GT [0.07, 0.32, 0.43, 0.48] (area 0.0576),
# box 0 centre ((0 + 0.4) / 2, (0 + 0.9) / 2) = (0.2, 0.45) -> [0.075, 0.405, 0.325, 0.495]
# (area 0.0225); intersection 0.25 x 0.075 = 0.01875.
IOU0 = 0.01875 / (0.0576 + 0.0225 - 0.01875)
# Box 1: a tiny box in the cell's corner, IoU 0 with the GT.
BOX1 = [0.0, 0.0, 0.04, 0.04]


def hand_predictions(n=1):
    """Cell (0, 0): box 0 conf 0.6, box 1 conf 0.3, class probs (0.2, 0.7); every other
    box conf 0.2; other cells' boxes and class probs arbitrary (they carry no target)."""
    boxes = torch.full((n, 2, 2, 2, 4), 0.5)
    conf = torch.full((n, 2, 2, 2), 0.2)
    probs = torch.full((n, 2, 2, 2), 0.5)
    boxes[0, 0, 0, 0] = torch.tensor(BOX0)
    boxes[0, 0, 0, 1] = torch.tensor(BOX1)
    conf[0, 0, 0] = torch.tensor([0.6, 0.3])
    probs[0, 0, 0] = torch.tensor([0.2, 0.7])
    return GridPredictions(boxes, conf, probs)


def hand_targets(n=1):
    boxes = [torch.tensor(GT_BOX)] + [torch.zeros(0, 4)] * (n - 1)
    labels = [torch.tensor([2])] + [torch.zeros(0, dtype=torch.int64)] * (n - 1)
    return encode_targets(boxes, labels, image_size=100, grid_size=2, num_classes=2)


def test_responsible_box_is_the_highest_iou_one():
    preds, targets = hand_predictions(), hand_targets()
    responsible, ious = find_responsible_boxes(preds.boxes, targets)
    assert responsible[0].tolist() == [[[True, False], [False, False]],
                                       [[False, False], [False, False]]]
    assert ious[0, 0, 0].tolist() == pytest.approx([IOU0, 0.0], abs=1e-6)
    swapped = preds.boxes.clone()
    swapped[0, 0, 0] = swapped[0, 0, 0].flip(0)  # now box 1 is the good one
    responsible, _ = find_responsible_boxes(swapped, targets)
    assert responsible[0, 0, 0].tolist() == [False, True]


def test_class_prediction_loss_by_hand():
    preds, t = hand_predictions(), hand_targets()
    # (0.2 - 0)^2 + (0.7 - 1)^2 in the one object cell; empty cells do not count.
    loss = get_class_prediction_loss(preds.class_probs, t.classes, t.obj_mask)
    assert loss.item() == pytest.approx(0.04 + 0.09)


def test_no_object_loss_by_hand_includes_the_non_responsible_box():
    preds, t = hand_predictions(), hand_targets()
    responsible, _ = find_responsible_boxes(preds.boxes, t)
    # box 1 of the object cell (0.3^2) + 3 empty cells x 2 boxes x 0.2^2, times 0.5.
    expected = 0.5 * (0.09 + 6 * 0.04)
    assert get_no_object_loss(preds.conf, responsible, 0.5).item() == pytest.approx(expected)
    assert get_no_object_loss(preds.conf, responsible, 1.0).item() == pytest.approx(2 * expected)


def test_contain_conf_loss_by_hand_iou_and_one_targets():
    preds, t = hand_predictions(), hand_targets()
    responsible, ious = find_responsible_boxes(preds.boxes, t)
    iou = get_contain_conf_loss(preds.conf, responsible, ious, "iou")
    assert iou.item() == pytest.approx((0.6 - IOU0) ** 2, abs=1e-6)
    one = get_contain_conf_loss(preds.conf, responsible, ious, "one")
    assert one.item() == pytest.approx((0.6 - 1.0) ** 2)
    with pytest.raises(ValueError, match="MODEL.YOLO.CONF_TARGET"):
        get_contain_conf_loss(preds.conf, responsible, ious, "half")


def test_regression_loss_by_hand():
    preds, t = hand_predictions(), hand_targets()
    responsible, _ = find_responsible_boxes(preds.boxes, t)
    # 4 squared errors of 0.1 (x, y, sqrt w, sqrt h) on the responsible box, times 5.
    loss = get_regression_loss(preds.boxes, t.boxes, responsible, 5.0)
    assert loss.item() == pytest.approx(5 * 4 * 0.01, abs=1e-6)


def test_terms_are_divided_by_the_batch_size():
    # Image 2 has no object: only its 8 boxes' no-object term (8 x 0.04 x 0.5) is added.
    one = yolo_loss(hand_predictions(1), hand_targets(1))
    two = yolo_loss(hand_predictions(2), hand_targets(2))
    for key in ("loss_class", "loss_contain_conf", "loss_regression"):
        assert two[key].item() == pytest.approx(one[key].item() / 2)
    assert two["loss_no_object"].item() == pytest.approx(
        (one["loss_no_object"].item() + 0.5 * 8 * 0.04) / 2)


def test_empty_images_only_have_a_no_object_loss():
    preds = hand_predictions(2)
    preds = GridPredictions(*(p.clone().requires_grad_() for p in preds))
    targets = encode_targets([torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.int64)] * 2,
                             image_size=100, grid_size=2, num_classes=2)
    losses = yolo_loss(preds, targets)
    assert losses["loss_class"].item() == 0.0
    assert losses["loss_contain_conf"].item() == 0.0
    assert losses["loss_regression"].item() == 0.0
    conf_sq = (preds.conf.detach() ** 2).sum().item()
    assert losses["loss_no_object"].item() == pytest.approx(0.5 * conf_sq / 2)
    sum(losses.values()).backward()
    assert preds.boxes.grad.abs().sum() == 0 and preds.class_probs.grad.abs().sum() == 0
    assert preds.conf.grad.abs().sum() > 0


def test_several_objects_in_one_cell_count_once():
    # Two GT centres in cell (0, 0): the larger (label 1) owns it, the small one is ignored,
    # so the loss equals that of the large object alone.
    preds = hand_predictions()
    both = encode_targets([torch.tensor([[5.0, 5.0, 45.0, 45.0], [20.0, 20.0, 30.0, 30.0]])],
                          [torch.tensor([1, 2])], image_size=100, grid_size=2, num_classes=2)
    alone = encode_targets([torch.tensor([[5.0, 5.0, 45.0, 45.0]])], [torch.tensor([1])],
                           image_size=100, grid_size=2, num_classes=2)
    assert int(both.obj_mask.sum()) == 1
    got, want = yolo_loss(preds, both), yolo_loss(preds, alone)
    for key in want:
        assert got[key].item() == pytest.approx(want[key].item()), key
    # class term by hand: probs (0.2, 0.7) against one-hot (1, 0).
    assert got["loss_class"].item() == pytest.approx(0.8 ** 2 + 0.7 ** 2)


def test_split_predictions_layout():
    g, b, k = 3, 2, 4
    pred = torch.arange(g * g * (b * 5 + k), dtype=torch.float32).view(1, g, g, b * 5 + k)
    parts = split_predictions(pred, b)
    assert parts.boxes.shape == (1, g, g, b, 4) and parts.conf.shape == (1, g, g, b)
    assert parts.class_probs.shape == (1, g, g, k)
    assert parts.boxes[0, 0, 0, 1].tolist() == [5.0, 6.0, 7.0, 8.0]
    assert parts.conf[0, 0, 0].tolist() == [4.0, 9.0]
    assert parts.class_probs[0, 0, 0].tolist() == [10.0, 11.0, 12.0, 13.0]
    with pytest.raises(ValueError, match="no class channels"):
        split_predictions(pred[..., :10], b)
