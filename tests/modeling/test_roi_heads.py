"""ROI heads: multi-level pooling as torchvision's, proposal labelling and sampling."""
import torch
from rcnn_fixtures import tiny_model
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign

from fewshot_det.modeling.roi_heads import ROIPooler


def test_pooler_equals_torchvision_multiscale_roi_align():
    torch.manual_seed(0)
    feats = {f"p{i}": torch.randn(2, 4, 128 // 2 ** i, 160 // 2 ** i) for i in range(2, 6)}
    boxes = [torch.tensor([[0.0, 0, 20, 20], [5, 5, 120, 100], [10, 3, 90, 60]]),
             torch.tensor([[30.0, 40, 31, 44], [0, 0, 160, 128]])]
    tv = MultiScaleRoIAlign(list(feats), output_size=7, sampling_ratio=2)
    expected = tv(feats, boxes, [(128, 160), (128, 160)])
    ours = ROIPooler(output_size=7, strides=[4, 8, 16, 32], sampling_ratio=2, aligned=False)
    torch.testing.assert_close(ours(list(feats.values()), boxes), expected)
    aligned = ROIPooler(output_size=7, strides=[4, 8, 16, 32], sampling_ratio=0, aligned=True)
    assert aligned(list(feats.values()), boxes).shape == (5, 4, 7, 7)


def test_canonical_box_size_moves_boxes_between_levels():
    from fewshot_det.modeling.roi_heads.poolers import assign_levels

    boxes = torch.tensor([[0.0, 0, 30, 30], [0, 0, 60, 60], [0, 0, 100, 100], [0, 0, 230, 230]])
    # FPN default (224 -> P4): everything below 224 px lands on P3 (index 0 of P3-P5)
    assert assign_levels(boxes, 3, 5).tolist() == [0, 0, 0, 1]
    # scaled for ~256-px images: 36-72 px -> P3, 72-144 -> P4, larger -> P5
    assert assign_levels(boxes, 3, 5, canonical_box_size=72).tolist() == [0, 0, 1, 2]
    features = [torch.rand(1, 2, 64 // s, 64 // s) for s in (8, 16, 32)]
    small = ROIPooler(output_size=2, strides=[8, 16, 32], canonical_box_size=72)
    out = small(features, [boxes[2:3]])
    torch.testing.assert_close(out, small._align(features[1], torch.tensor([[0.0, 0, 0, 100, 100]]),
                                                 1 / 16))


def test_proposals_are_labelled_and_sampled_with_gt_appended():
    heads = tiny_model("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16).roi_heads
    gt = {"gt_boxes": torch.tensor([[10.0, 10, 50, 50], [60, 60, 90, 90]]),
          "gt_labels": torch.tensor([3, 1])}
    empty = {"gt_boxes": torch.zeros(0, 4), "gt_labels": torch.zeros(0, dtype=torch.int64)}
    proposals = [torch.tensor([[12.0, 10, 50, 52], [0, 0, 5, 5]] + [[70, 0, 80, 8]] * 30),
                 torch.tensor([[0.0, 0, 30, 30]] * 40)]
    torch.manual_seed(0)
    rois, labels, deltas = heads.label_and_sample_proposals(proposals, [gt, empty])
    assert [len(r) for r in rois] == [16, 16]
    first = labels[:16]
    # foreground: the matching proposal (class 3) + the two appended GT boxes; <= 25 % of 16
    assert sorted(first[first > 0].tolist()) == [1, 3, 3]
    assert (labels[16:] == 0).all()
    assert (deltas[labels == 0] == 0).all()
    gt_rows = (rois[0] == gt["gt_boxes"][0]).all(1) | (rois[0] == gt["gt_boxes"][1]).all(1)
    assert gt_rows.sum() == 2 and (deltas[:16][gt_rows] == 0).all()  # exact boxes: 0 deltas


def test_no_proposals_gives_no_detections_and_zero_losses():
    model = tiny_model()
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    empty = {"gt_boxes": torch.zeros(0, 4), "gt_labels": torch.zeros(0, dtype=torch.int64)}
    features = model.backbone(images.tensors)
    _, losses = model.roi_heads(images, features, [torch.zeros(0, 4)], [empty])
    assert losses["loss_cls"].item() == 0.0 and losses["loss_box_reg"].item() == 0.0
    model.eval()
    with torch.no_grad():
        detections, _ = model.roi_heads(images, features, [torch.zeros(0, 4)])
    assert detections[0]["boxes"].shape == (0, 4) and detections[0]["labels"].dtype == torch.int64
