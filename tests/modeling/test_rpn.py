"""RPN: loss values, anchor labelling/sampling, the proposal recipe, config keys honoured."""
import torch
from rcnn_fixtures import image_item, tiny_cfg, tiny_model
from torch.nn import functional as F
from torchvision.models.detection.image_list import ImageList

from fewshot_det.modeling.losses import rpn_losses
from fewshot_det.modeling.proposal_generator import RPN, find_top_proposals


def test_rpn_losses_normalise_by_sampled_anchors_and_read_positives_only():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    deltas = torch.tensor([[[0.1, 0.0, 0.0, 0.0], [9.0, 9, 9, 9], [0.0, 0.5, 0.0, 0.0],
                            [7.0, 7, 7, 7]]])
    labels = torch.tensor([[1, 0, 1, -1]])
    gt = torch.zeros(1, 4, 4)
    gt[0, 1] = gt[0, 3] = -50.0  # rows that are not positives are never read
    out = rpn_losses(logits, deltas, labels, gt, smooth_l1_beta=0.0)
    expected_cls = F.binary_cross_entropy_with_logits(torch.tensor([2.0, -1.0, 0.5]),
                                                      torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(out["loss_rpn_cls"], expected_cls)
    torch.testing.assert_close(out["loss_rpn_loc"], torch.tensor((0.1 + 0.5) / 3))


def _rpn(*opts):
    torch.manual_seed(0)
    cfg = tiny_cfg(*opts)
    shapes = {f"p{i}": (16, 2 ** i) for i in range(2, 7)}
    from fewshot_det.modeling import ShapeSpec
    return RPN.from_config(cfg, {k: ShapeSpec(*v) for k, v in shapes.items()})


def test_anchor_labels_sample_256_with_at_most_half_positive():
    rpn = _rpn()
    anchors = torch.cat(rpn.anchor_generator.for_sizes([(24, 32), (12, 16)], (96, 128),
                                                       torch.device("cpu")))
    gt = {"gt_boxes": torch.tensor([[10.0, 12, 60, 70], [0, 0, 3, 3]]),
          "gt_labels": torch.tensor([1, 2])}
    empty = {"gt_boxes": torch.zeros(0, 4), "gt_labels": torch.zeros(0, dtype=torch.int64)}
    labels, deltas = rpn.label_and_sample_anchors(anchors, [gt, empty])
    assert labels.shape == (2, len(anchors))
    assert (labels >= 0).sum(1).tolist() == [256, 256]
    num_pos = (labels[0] == 1).sum().item()
    assert 2 <= num_pos <= 128  # each GT box's best anchor is positive, even the 3 px one
    assert (labels[1] == 1).sum() == 0
    assert (deltas[labels != 1] == 0).all() and deltas[labels == 1].abs().sum() > 0


def test_find_top_proposals_recipe():
    # level 0: two overlapping boxes + one tiny; level 1: the same box as level 0's best
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 11], [5, 5, 5.0001, 9], [-5, -5, 200, 10],
                           [0, 0, 10, 10], [50, 50, 60, 60]]])
    logits = torch.tensor([[5.0, 4.0, 6.0, 1.0, 3.0, 2.0]])
    out = find_top_proposals(boxes, logits, [4, 2], [(80, 100)], pre_nms_topk=3,
                             post_nms_topk=10, nms_thresh=0.7, min_size=1e-3)[0]
    # level 0 keeps its top 3 (5, 4, 6) -> box 3 (score 1) is not a candidate; the tiny box
    # is removed; NMS removes box 1 (IoU 0.91 with box 0) but not level 1's copy of box 0.
    expected = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]])
    torch.testing.assert_close(out, expected)
    top2 = find_top_proposals(boxes, logits, [4, 2], [(80, 100)], pre_nms_topk=3,
                              post_nms_topk=2, nms_thresh=0.7, min_size=1e-3)[0]
    torch.testing.assert_close(top2, expected[:2])
    clipped = find_top_proposals(boxes, logits, [4, 2], [(8, 100)], pre_nms_topk=4,
                                 post_nms_topk=10, nms_thresh=1.0, min_size=1e-3)[0]
    assert clipped[:, 3].max() <= 8 and clipped[:, 0].min() >= 0


def test_rpn_score_threshold_removes_low_objectness_proposals():
    # torchvision's rpn_score_thresh: proposals of probability sigmoid(logit) below it go
    boxes = torch.tensor([[[0.0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 30]]])
    logits = torch.logit(torch.tensor([[0.04, 0.06, 0.5]]))
    kwargs = dict(pre_nms_topk=3, post_nms_topk=10, nms_thresh=0.7, min_size=1e-3)
    out = find_top_proposals(boxes, logits, [3], [(80, 100)], score_thresh=0.05, **kwargs)[0]
    torch.testing.assert_close(out, boxes[0, [2, 1]])
    everything = find_top_proposals(boxes, logits, [3], [(80, 100)], **kwargs)[0]
    torch.testing.assert_close(everything, boxes[0, [2, 1, 0]])
    rpn = tiny_model("MODEL.RPN.SCORE_THRESH_TEST", 0.3).proposal_generator
    assert rpn.score_thresh_test == 0.3
    assert tiny_model().proposal_generator.score_thresh_test == 0.0  # the default: off


def test_rpn_config_keys_are_honoured():
    model = tiny_model("MODEL.RPN.POST_NMS_TOPK_TEST", 7, "MODEL.RPN.PRE_NMS_TOPK_TEST", 3).eval()
    rpn = model.proposal_generator
    images = ImageList(torch.zeros(1, 3, 96, 128), [(96, 128)])
    with torch.no_grad():
        features = model.backbone(images.tensors)
        proposals, losses = rpn(images, features)
    assert losses == {} and len(proposals[0]) <= 7
    assert rpn.pre_nms_topk == (200, 3) and rpn.post_nms_topk == (100, 7)

    item = image_item(boxes=[[10, 12, 60, 70]], labels=[1])
    base = tiny_model()([item])
    torch.manual_seed(0)
    weighted = tiny_model("MODEL.RPN.LOSS_WEIGHT", 2.0)([item])
    for key in ("loss_rpn_cls", "loss_rpn_loc"):
        torch.testing.assert_close(weighted[key], 2 * base[key])
    r = _rpn("MODEL.RPN.IOU_THRESHOLDS", [0.2, 0.6], "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 32,
             "MODEL.RPN.POSITIVE_FRACTION", 0.25, "MODEL.RPN.NMS_THRESH", 0.6,
             "MODEL.RPN.MIN_SIZE", 2.0, "MODEL.RPN.SMOOTH_L1_BETA", 0.5,
             "MODEL.RPN.BBOX_REG_WEIGHTS", [2.0, 2.0, 1.0, 1.0])
    assert (r.matcher.low_threshold, r.matcher.high_threshold) == (0.2, 0.6)
    assert (r.batch_size_per_image, r.positive_fraction, r.nms_thresh) == (32, 0.25, 0.6)
    assert (r.min_size, r.smooth_l1_beta, r.box_coder.weights) == (2.0, 0.5, (2.0, 2.0, 1.0, 1.0))
