"""The size-following operations (``modeling.traceable``): eagerly the plain torchvision
calls, traced a graph whose sizes follow its input."""
import warnings

import torch
from torchvision.ops import boxes as box_ops

from fewshot_det.modeling import traceable


def _trace(fn, *example):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer warns at every shape it reads
        return torch.jit.trace(fn, example, check_trace=False)


def test_top_k_takes_at_most_what_there_is_eagerly_and_traced():
    def best3(scores):
        return traceable.top_k(scores, 3)

    scores = torch.tensor([[0.5, 2.0, -1.0, 1.0, 0.0]])
    values, idx = best3(scores)
    assert idx.tolist() == [[1, 3, 0]] and values.tolist() == [[2.0, 1.0, 0.5]]
    assert best3(scores[:, :2])[1].tolist() == [[1, 0]]  # fewer than k: all of them
    traced = _trace(best3, scores)
    assert traced(scores)[1].tolist() == [[1, 3, 0]]
    assert traced(scores[:, :2])[1].tolist() == [[1, 0]]  # the traced k follows the input
    assert traced(torch.arange(8.0)[None])[1].tolist() == [[7, 6, 5]]


def test_batched_nms_traced_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=g) * 20], dim=1)
    scores = torch.rand(60, generator=g)
    groups = torch.randint(0, 3, (60,), generator=g)

    def nms(b, s, k):
        return traceable.batched_nms(b, s, k, 3, 0.5)

    expected = box_ops.batched_nms(boxes, scores, groups, 0.5)
    assert torch.equal(nms(boxes, scores, groups), expected)
    traced = _trace(nms, boxes[:20], scores[:20], groups[:20])
    assert torch.equal(traced(boxes, scores, groups), expected)


def test_clip_boxes_takes_a_size_tensor():
    boxes = torch.tensor([[-5.0, 2, 120, 40], [10, -3, 20, 90]])
    expected = box_ops.clip_boxes_to_image(boxes, (80, 100))
    assert torch.equal(traceable.clip_boxes(boxes, (80, 100)), expected)
    assert torch.equal(traceable.clip_boxes(boxes, torch.tensor([80.0, 100.0])), expected)


def test_descending_order_keeps_ties_in_index_order():
    scores = torch.tensor([0.2, 0.9, 0.2, 0.9, 0.5])
    assert traceable.descending_order(scores).tolist() == [1, 3, 4, 0, 2]


def test_anchors_follow_the_traced_input_size():
    from fewshot_det.modeling.proposal_generator import AnchorGenerator

    gen = AnchorGenerator(sizes=[[16], [32]], aspect_ratios=[[0.5, 1.0]], strides=[8, 16],
                          stride_from_shape=True)

    def anchors(image, f1, f2):
        return torch.cat(gen([f1, f2], image))

    def example(h, w):
        return (torch.zeros(1, 3, h, w), torch.zeros(1, 1, h // 8, w // 8),
                torch.zeros(1, 1, h // 16, w // 16))

    traced = _trace(anchors, *example(64, 96))
    for h, w in ((64, 96), (128, 48)):
        assert torch.equal(traced(*example(h, w)), anchors(*example(h, w)))
