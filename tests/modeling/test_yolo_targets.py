"""Target encoding on the grid: cell choice, offsets, sizes, one-hot, conflicts; geometry."""
import pytest
import torch

from fewshot_det.modeling.yolo import cell_boxes_to_xyxy, elementwise_iou, encode_targets


def encode(boxes, labels, size=100, g=4, k=3):
    return encode_targets([torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)],
                          [torch.tensor(labels, dtype=torch.int64)], image_size=size,
                          grid_size=g, num_classes=k)


def test_one_object_cell_offsets_sizes_and_class():
    # 25-px cells; centre (60, 30) -> column 2, row 1; offsets (60 - 50) / 25, (30 - 25) / 25.
    t = encode([[40, 20, 80, 40]], [3])
    assert t.obj_mask.sum() == 1 and bool(t.obj_mask[0, 1, 2])
    assert t.boxes[0, 1, 2].tolist() == pytest.approx([0.4, 0.2, 0.4, 0.2])
    assert t.classes[0, 1, 2].tolist() == [0.0, 0.0, 1.0]
    assert t.boxes[0].abs().sum() == pytest.approx(1.2) and t.classes[0].sum() == 1


def test_round_trip_to_image_boxes():
    boxes = torch.tensor([[3.0, 5.0, 30.0, 90.0], [51.0, 60.0, 99.0, 99.0]])
    t = encode(boxes.tolist(), [1, 2])
    back = cell_boxes_to_xyxy(t.boxes)[t.obj_mask] * 100
    assert sorted(back.tolist()) == [pytest.approx(b, abs=1e-4) for b in sorted(boxes.tolist())]


def test_centre_on_the_far_edge_goes_to_the_last_cell():
    t = encode([[80, 80, 100, 100]], [1], g=4)  # centre (90, 90): the last cell, not out
    assert bool(t.obj_mask[0, 3, 3])


def test_several_objects_in_one_cell_largest_wins_ties_go_to_the_last():
    # All three centres in cell (0, 0) of a 4x4 grid on 100 px.
    small, large, medium = [10, 10, 14, 14], [0, 0, 24, 24], [6, 6, 18, 18]
    for order in ([small, large, medium], [large, medium, small], [medium, small, large]):
        labels = [1 + [small, large, medium].index(b) for b in order]
        t = encode(order, labels)
        assert t.obj_mask.sum() == 1
        assert t.classes[0, 0, 0].tolist() == [0.0, 1.0, 0.0]  # the large box's label 2
        assert t.boxes[0, 0, 0, 2].item() == pytest.approx(0.24)
    tie = encode([[0, 0, 20, 20], [2, 2, 22, 22]], [1, 3])  # equal areas: the later wins
    assert tie.classes[0, 0, 0].tolist() == [0.0, 0.0, 1.0]


def test_objects_in_different_cells_all_kept():
    t = encode([[0, 0, 20, 20], [30, 0, 45, 20], [0, 80, 20, 100]], [1, 2, 3])
    assert t.obj_mask[0].nonzero().tolist() == [[0, 0], [0, 1], [3, 0]]


def test_empty_images_and_batch():
    t = encode_targets([torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 50.0, 50.0]])],
                       [torch.zeros(0, dtype=torch.int64), torch.tensor([1])],
                       image_size=100, grid_size=2, num_classes=2)
    assert t.obj_mask.shape == (2, 2, 2) and t.boxes.shape == (2, 2, 2, 4)
    assert t.obj_mask[0].sum() == 0 and t.boxes[0].abs().sum() == 0
    assert t.obj_mask[1].sum() == 1


def test_elementwise_iou_values_and_empty_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 3.0, 3.0]])
    assert elementwise_iou(a, b).tolist() == pytest.approx([1 / 7, 0.0, 0.0])
