"""Decoding: score = conf x class prob, threshold, per-class NMS, top-k, image frame."""
import pytest
import torch

from fewshot_det.modeling.yolo import GridPredictions, decode_detections


def predictions(g=2, b=2, k=2):
    """All confidences 0 (no detection) unless a test sets them."""
    return GridPredictions(torch.full((1, g, g, b, 4), 0.5), torch.zeros(1, g, g, b),
                           torch.zeros(1, g, g, k))


def test_box_position_score_and_label():
    p = predictions()
    # cell (row 1, col 0), box 1: centre ((0 + 0.5) / 2, (1 + 0.25) / 2) = (0.25, 0.625),
    # size (0.2, 0.5) -> XYXY (0.15, 0.375, 0.35, 0.875) x 100 px.
    p.boxes[0, 1, 0, 1] = torch.tensor([0.5, 0.25, 0.2, 0.5])
    p.conf[0, 1, 0, 1] = 0.9
    p.class_probs[0, 1, 0] = torch.tensor([0.05, 0.8])
    out = decode_detections(p, image_size=100, score_thresh=0.1)[0]
    assert out["labels"].tolist() == [2]  # 0.9 x 0.05 = 0.045 is under the threshold
    assert out["scores"].tolist() == pytest.approx([0.72])
    assert out["boxes"].tolist() == [pytest.approx([15.0, 37.5, 35.0, 87.5])]
    both = decode_detections(p, image_size=100, score_thresh=0.01)[0]
    assert both["labels"].tolist() == [2, 1]  # one box, two classes, best first
    assert both["scores"].tolist() == pytest.approx([0.72, 0.045])


def test_nms_is_per_class_and_top_k_keeps_the_best():
    p = predictions(k=2)
    p.boxes[0, 0, 0] = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.55, 0.5, 0.4, 0.4]])  # IoU ~0.8
    p.conf[0, 0, 0] = torch.tensor([0.9, 0.8])
    p.class_probs[0, 0, 0] = torch.tensor([1.0, 0.0])
    p.boxes[0, 1, 1, 0] = torch.tensor([0.5, 0.5, 0.4, 0.4])
    p.conf[0, 1, 1, 0] = 0.7
    p.class_probs[0, 1, 1] = torch.tensor([0.0, 1.0])
    out = decode_detections(p, image_size=100, score_thresh=0.1, nms_thresh=0.5)[0]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7])  # 0.8 suppressed by 0.9
    assert out["labels"].tolist() == [1, 2]
    loose = decode_detections(p, image_size=100, score_thresh=0.1, nms_thresh=0.95)[0]
    assert loose["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7])
    top = decode_detections(p, image_size=100, score_thresh=0.1, nms_thresh=0.95,
                            max_detections=2)[0]
    assert top["scores"].tolist() == pytest.approx([0.9, 0.8])


def test_boxes_are_clipped_to_the_input_and_nothing_when_all_low():
    p = predictions()
    p.boxes[0, 0, 0, 0] = torch.tensor([0.1, 0.1, 0.9, 0.9])  # spills over the top-left
    p.conf[0, 0, 0, 0] = 1.0
    p.class_probs[0, 0, 0, 0] = 1.0
    out = decode_detections(p, image_size=64)[0]
    far = 0.1 * 32 + 0.45 * 64  # centre 0.1 cell (32 px) in, half-size 0.45 of 64 px
    assert out["boxes"].tolist() == [pytest.approx([0.0, 0.0, far, far])]
    empty = decode_detections(predictions(), image_size=64)[0]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].dtype == torch.int64
