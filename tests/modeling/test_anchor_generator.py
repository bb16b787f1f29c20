"""Anchors: torchvision's values and order, declared vs shape-derived strides."""
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from fewshot_det.modeling.proposal_generator import AnchorGenerator, cell_anchors


def test_cell_anchors_are_torchvisions():
    ours = cell_anchors([32], [0.5, 1.0, 2.0])
    expected = torch.tensor([[-23.0, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])
    torch.testing.assert_close(ours, expected)


def test_grid_anchors_equal_torchvision_with_shape_strides():
    # 320 x 416 padded input: P6 is 5 x 7 and torchvision's stride along x is 416 // 7 = 59.
    sizes = [(80, 104), (40, 52), (20, 26), (10, 13), (5, 7)]
    ours = AnchorGenerator(sizes=[[32], [64], [128], [256], [512]],
                           aspect_ratios=[[0.5, 1.0, 2.0]], strides=[4, 8, 16, 32, 64],
                           stride_from_shape=True)
    tv = TVAnchorGenerator(sizes=((32,), (64,), (128,), (256,), (512,)),
                           aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    feats = [torch.zeros(1, 1, h, w) for h, w in sizes]
    expected = tv(ImageList(torch.zeros(1, 3, 320, 416), [(320, 400)]), feats)[0]
    got = torch.cat(ours(feats, torch.zeros(1, 3, 320, 416)))
    torch.testing.assert_close(got, expected)


def test_declared_strides_and_order():
    gen = AnchorGenerator(sizes=[[8, 16]], aspect_ratios=[[1.0]], strides=[16, 32])
    assert gen.num_anchors == 2
    level0, level1 = gen.for_sizes([(2, 3), (1, 2)], (40, 45), torch.device("cpu"))
    assert level0.shape == (2 * 3 * 2, 4)
    # cell (y=1, x=2), anchor 1 (size 16) is row (1 * 3 + 2) * 2 + 1, centred at (32, 16)
    torch.testing.assert_close(level0[11], torch.tensor([24., 8., 40., 24.]))
    # level 1, cell (y=0, x=1), anchor 0 (size 8): centred at (32, 0) with the declared stride
    torch.testing.assert_close(level1[2], torch.tensor([28., -4., 36., 4.]))


def test_anchor_config_errors_name_the_key():
    with pytest.raises(ValueError, match="MODEL.ANCHOR_GENERATOR.SIZES has 2 lists"):
        AnchorGenerator(sizes=[[32], [64]], aspect_ratios=[[1.0]], strides=[4, 8, 16])
    with pytest.raises(ValueError, match="MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"):
        AnchorGenerator(sizes=[[32]], aspect_ratios=[[0.0]], strides=[4])
