"""Renaming and re-ordering of foreign detector weights (torchvision, detectron2)."""
import torch

from fewshot_det.checkpoint import convert, detect_format


def test_torchvision_detector_names_and_background_deltas():
    k = 3
    weights = {
        "backbone.body.layer1.0.conv1.weight": torch.zeros(1),
        "backbone.fpn.inner_blocks.0.weight": torch.zeros(1),  # torchvision < 0.13 FPN
        "rpn.head.conv.0.0.weight": torch.zeros(1),
        "rpn.head.cls_logits.bias": torch.zeros(1),
        "roi_heads.box_head.fc6.weight": torch.zeros(1),
        "roi_heads.box_head.fc7.bias": torch.zeros(1),
        "roi_heads.box_predictor.bbox_pred.weight": torch.arange((k + 1) * 4.0)[:, None],
    }
    fmt, converted = convert(weights)
    assert fmt == "torchvision_detection"
    names = {src: new for src, new, _ in converted}
    assert names["backbone.fpn.inner_blocks.0.weight"] == "backbone.fpn.inner_blocks.0.0.weight"
    assert names["rpn.head.conv.0.0.weight"] == "proposal_generator.head.conv.weight"
    assert names["rpn.head.cls_logits.bias"] == "proposal_generator.head.cls_logits.bias"
    assert names["roi_heads.box_head.fc6.weight"] == "roi_heads.box_head.fc1.weight"
    assert names["roi_heads.box_head.fc7.bias"] == "roi_heads.box_head.fc2.bias"
    deltas = dict((n, v) for _, n, v in converted)["roi_heads.box_predictor.bbox_pred.weight"]
    assert deltas[:, 0].tolist() == list(range(4, 16))  # background's 4 rows dropped


def test_detectron2_detector_names_and_background_last_to_first():
    weights = {
        "backbone.bottom_up.stem.conv1.norm.running_var": torch.zeros(1),
        "backbone.bottom_up.res5.2.conv3.weight": torch.zeros(1),
        "backbone.bottom_up.res3.0.shortcut.norm.bias": torch.zeros(1),
        "backbone.fpn_lateral3.weight": torch.zeros(1),
        "backbone.fpn_output5.bias": torch.zeros(1),
        "proposal_generator.rpn_head.objectness_logits.weight": torch.zeros(1),
        "proposal_generator.rpn_head.anchor_deltas.bias": torch.zeros(1),
        "proposal_generator.rpn_head.conv.weight": torch.zeros(1),
        "roi_heads.box_head.fc1.weight": torch.zeros(1),
        "roi_heads.box_predictor.cls_score.bias": torch.tensor([1.0, 2.0, 3.0, 0.0]),  # bg last
    }
    fmt, converted = convert(weights)
    assert fmt == "detectron2"
    names = {src: new for src, new, _ in converted}
    assert (names["backbone.bottom_up.stem.conv1.norm.running_var"]
            == "backbone.body.bn1.running_var")
    assert names["backbone.bottom_up.res5.2.conv3.weight"] == "backbone.body.layer4.2.conv3.weight"
    assert (names["backbone.bottom_up.res3.0.shortcut.norm.bias"]
            == "backbone.body.layer2.0.downsample.1.bias")
    # lateral indices count from the first FPN input (res3 here)
    assert names["backbone.fpn_lateral3.weight"] == "backbone.fpn.inner_blocks.0.0.weight"
    assert names["backbone.fpn_output5.bias"] == "backbone.fpn.layer_blocks.2.0.bias"
    assert (names["proposal_generator.rpn_head.objectness_logits.weight"]
            == "proposal_generator.head.cls_logits.weight")
    assert (names["proposal_generator.rpn_head.anchor_deltas.bias"]
            == "proposal_generator.head.bbox_pred.bias")
    assert names["proposal_generator.rpn_head.conv.weight"] == "proposal_generator.head.conv.weight"
    scores = dict((n, v) for _, n, v in converted)["roi_heads.box_predictor.cls_score.bias"]
    assert scores.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_detect_format():
    cases = {
        "torchvision_resnet": ["conv1.weight", "layer1.0.conv1.weight", "fc.weight"],
        "detectron2": ["res2.0.conv1.weight", "stem.conv1.weight"],
        "detectron2_c2": ["res2_0_branch2a_w", "conv1_w"],
        "fewshot_det": ["backbone.body.conv1.weight", "roi_heads.box_head.fc1.weight"],
        "torchvision_detection": ["backbone.body.conv1.weight", "rpn.head.conv.0.0.weight"],
        "torchvision_mobilenet_detection": ["backbone.body.0.0.weight",
                                            "backbone.body.13.block.0.0.weight",
                                            "rpn.head.conv.0.0.weight"],
        "torchvision_mobilenet": ["features.0.0.weight", "features.1.block.0.0.weight",
                                  "classifier.0.weight"],
    }
    for fmt, names in cases.items():
        assert detect_format(names) == fmt
