"""Box predictor losses (smooth-L1 gated by u >= 1), predictors and test-time decoding."""
import torch
from torch.nn import functional as F
from torchvision.models.detection._utils import BoxCoder

from fewshot_det.modeling.losses import fast_rcnn_losses
from fewshot_det.modeling.roi_heads import (CosineSimOutputLayers, FastRCNNOutputLayers,
                                            fast_rcnn_inference)


def _loss_inputs():
    torch.manual_seed(0)
    logits = torch.randn(4, 3)  # K = 2
    deltas = torch.randn(4, 8)
    labels = torch.tensor([2, 0, 1, 0])
    gt = torch.randn(4, 4)
    return logits, deltas, labels, gt


def test_smooth_l1_ignores_background_proposals():
    logits, deltas, labels, gt = _loss_inputs()
    out = fast_rcnn_losses(logits, deltas, labels, gt, smooth_l1_beta=0.5)
    wild_deltas, wild_gt = deltas.clone(), gt.clone()
    wild_deltas[labels == 0] = 1e6
    wild_gt[labels == 0] = -1e6
    wild = fast_rcnn_losses(logits, wild_deltas, labels, wild_gt, smooth_l1_beta=0.5)
    assert wild["loss_box_reg"].item() == out["loss_box_reg"].item()
    # u = 2 reads columns 4..7, u = 1 columns 0..3; normalised by all 4 sampled RoIs
    pred = torch.stack([deltas[0, 4:], deltas[2, :4]])
    expected = F.smooth_l1_loss(pred, gt[[0, 2]], beta=0.5, reduction="sum") / 4
    torch.testing.assert_close(out["loss_box_reg"], expected)
    torch.testing.assert_close(out["loss_cls"], F.cross_entropy(logits, labels))


def test_box_loss_is_exactly_zero_without_foreground_and_l1_when_beta_is_zero():
    logits, deltas, _, gt = _loss_inputs()
    background = fast_rcnn_losses(logits, deltas, torch.zeros(4, dtype=torch.int64), gt,
                                  smooth_l1_beta=0.0)
    assert background["loss_box_reg"].item() == 0.0
    agnostic = fast_rcnn_losses(logits, deltas[:, :4], torch.tensor([1, 0, 2, 0]), gt,
                                smooth_l1_beta=0.0)
    expected = (deltas[[0, 2], :4] - gt[[0, 2]]).abs().sum() / 4
    torch.testing.assert_close(agnostic["loss_box_reg"], expected)


def test_predictors_shapes_and_cosine_scale():
    x = torch.randn(5, 16) * 100
    linear = FastRCNNOutputLayers(input_dim=16, num_classes=3)
    logits, deltas = linear(x)
    assert logits.shape == (5, 4) and deltas.shape == (5, 12)
    cosine = CosineSimOutputLayers(input_dim=16, num_classes=3, scale=20.0)
    logits, _ = cosine(x)
    assert logits.abs().max() <= 20.0 + 1e-4
    assert "cls_score.bias" not in dict(cosine.named_parameters())


def test_inference_thresholds_labels_nms_and_clipping():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals = [torch.tensor([[10.0, 10, 50, 50], [12, 10, 52, 50], [60, 0, 120, 40]])]
    logits = torch.log(torch.tensor([[0.1, 0.8, 0.1],     # class 1 (0.8)
                                     [0.1, 0.5, 0.4],     # overlaps RoI 0
                                     [0.98, 0.01, 0.01]]))  # background: below threshold
    deltas = torch.zeros(3, 8)
    out = fast_rcnn_inference(logits, deltas, proposals, [(100, 100)], box_coder=coder,
                              score_thresh=0.05, nms_thresh=0.5, topk_per_image=10)[0]
    # NMS is per class: RoI 1's class-2 box survives next to RoI 0's class-1 box (IoU 0.9),
    # while RoI 0's class-2 box (0.1) is suppressed by RoI 1's (0.4).
    assert out["labels"].tolist() == [1, 2]
    torch.testing.assert_close(out["scores"], torch.tensor([0.8, 0.4]))
    torch.testing.assert_close(out["boxes"], torch.tensor([[10.0, 10, 50, 50], [12, 10, 52, 50]]))
    top1 = fast_rcnn_inference(logits, deltas, proposals, [(100, 100)], box_coder=coder,
                               score_thresh=0.05, nms_thresh=0.5, topk_per_image=1)[0]
    assert top1["labels"].tolist() == [1]
    none = fast_rcnn_inference(logits, deltas, proposals, [(100, 100)], box_coder=coder,
                               score_thresh=0.9, nms_thresh=0.5, topk_per_image=10)[0]
    assert len(none["boxes"]) == 0 and none["boxes"].shape == (0, 4)


def test_inference_decodes_class_specific_deltas_and_clips():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals = [torch.tensor([[60.0, 0, 120, 40]])]
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    deltas = torch.tensor([[0.0, 0, 0, 0, 10.0, 0, 0, 0]])  # class 2 shifts right by one width
    out = fast_rcnn_inference(logits, deltas, proposals, [(100, 110)], box_coder=coder,
                              score_thresh=0.05, nms_thresh=0.5, topk_per_image=10)[0]
    boxes = dict(zip(out["labels"].tolist(), out["boxes"]))
    torch.testing.assert_close(boxes[1], torch.tensor([60.0, 0, 110, 40]))  # clipped at w
    assert 2 not in boxes  # shifted to x >= 110: zero width after clipping, removed
