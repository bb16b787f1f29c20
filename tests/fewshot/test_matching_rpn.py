import torch
from torchvision.models.detection.image_list import ImageList

from fewshot_det.modeling.fewshot import Prototypes, SupportMatchingRPN, box_vectors
from fewshot_fixtures import query, supports, tiny_cfg, tiny_model

MATCHING = ("MODEL.RPN.NAME", "SupportMatchingRPN")


def _columns(vectors, n=1):
    """Prototypes of K columns from unit vectors [K, E] (every level alike)."""
    k = len(vectors)
    return Prototypes(rpn=vectors[None, :, None].expand(n, k, 4, -1).clone(),
                      head=torch.zeros(n, k, 1), class_ids=torch.arange(1, k + 1)[None].repeat(n, 1),
                      valid=torch.ones(n, k, dtype=torch.bool))


def _features(h=12, w=16):
    torch.manual_seed(0)
    return {f"p{i}": torch.randn(1, 16, max(h >> (i - 3), 1), max(w >> (i - 3), 1))
            for i in range(3, 7)}


def test_box_vectors_are_unit_and_equal_for_the_same_box():
    feature = torch.randn(1, 16, 10, 10)
    boxes = torch.tensor([[8.0, 8.0, 40.0, 48.0], [8.0, 8.0, 40.0, 48.0], [0.0, 0.0, 30, 20]])
    v = box_vectors(feature, boxes, stride=8, bins=4)
    assert v.shape == (3, 16 * 16)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(3))
    assert torch.equal(v[0], v[1]) and not torch.allclose(v[0], v[2])


def test_zero_match_weight_gives_the_plain_rpn_proposals():
    plain = tiny_model(siamese=False).proposal_generator.eval()
    matching = tiny_model(*MATCHING, "MODEL.RPN.MATCH_WEIGHT", "0").proposal_generator.eval()
    assert isinstance(matching, SupportMatchingRPN)
    matching.head.load_state_dict(plain.head.state_dict())
    features = _features()
    images = ImageList(torch.zeros(1, 3, 96, 128), [(96, 128)])
    columns = _columns(torch.nn.functional.normalize(torch.randn(2, matching.prototype_dim),
                                                     dim=1))
    expected = plain(images, features)[0][0]
    got = matching(images, features, columns)[0][0]
    assert len(got) == len(expected) > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_the_support_decides_which_object_is_proposed_first():
    """Two objects of different texture, a prior that cannot tell them apart: the first
    proposal lies on the object whose features match the support."""
    rpn = tiny_model(*MATCHING, "MODEL.RPN.MATCH_WEIGHT", "20").proposal_generator.eval()
    for p in rpn.head.parameters():  # prior 0 everywhere, boxes = anchors
        torch.nn.init.zeros_(p)
    feature = torch.zeros(1, 16, 12, 16)
    feature[0, :8, 2:6, 2:6] = 1.0  # object A: channels 0-7, cells (2..5, 2..5)
    feature[0, 8:, 2:6, 10:14] = 1.0  # object B: channels 8-15, cells (2..5, 10..13)
    features = {**_features(), "p3": feature}
    images = ImageList(torch.zeros(1, 3, 96, 128), [(96, 128)])
    box_a, box_b = torch.tensor([[16.0, 16.0, 48.0, 48.0]]), torch.tensor([[80.0, 16, 112, 48]])
    for target, other in ((box_a, box_b), (box_b, box_a)):
        proto = box_vectors(feature, target, stride=8, bins=rpn.match_bins)
        first = rpn(images, features, _columns(proto))[0][0][0]
        centre = (first[:2] + first[2:]) / 2
        assert ((centre - (target[0, :2] + target[0, 2:]) / 2).abs() <= 16).all()
        assert ((centre - (other[0, :2] + other[0, 2:]) / 2).abs() > 16).any()


def test_support_features_are_one_unit_vector_per_crop_for_every_level():
    model = tiny_model(*MATCHING).eval()
    rpn, head = model.encode_supports(supports([1, 2], shots=2)["images"],
                                      supports([1, 2], shots=2)["boxes"])
    assert rpn.shape == (4, 4, model.proposal_generator.prototype_dim)
    assert torch.equal(rpn[:, 0], rpn[:, 3])
    torch.testing.assert_close(rpn[:, 0].norm(dim=1), torch.ones(4))


def test_siamese_rcnn_trains_and_detects_with_the_matching_rpn():
    model = tiny_model(*MATCHING).train()
    batch = [{**query(boxes=[[10, 12, 60, 70]], labels=[1]), "supports": supports([1, 2])}]
    losses = model(batch)
    assert {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    s = supports([1, 2, 3])
    model.set_supports(s["images"], s["boxes"], s["labels"])
    out = model([query()])
    assert set(out[0]) >= {"boxes", "scores", "labels"}
    proposals = model.propose([query()], [2], rescore=False)
    assert proposals[0].shape[1] == 4 and len(proposals[0]) > 0


def test_matching_feature_must_be_a_backbone_output():
    import pytest

    with pytest.raises(ValueError, match="MODEL.RPN.MATCH_FEATURE 'p9'"):
        tiny_model(*MATCHING, "MODEL.RPN.MATCH_FEATURE", "p9")
    assert tiny_cfg(*MATCHING).MODEL.RPN.MATCH_BINS == 4
