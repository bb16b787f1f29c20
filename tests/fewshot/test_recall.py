import pytest
import torch

from fewshot_det.modeling.fewshot import model_proposals, proposal_limits, proposal_recall
from fewshot_det.modeling.fewshot.recall import gt_boxes_of, recall_at
from fewshot_fixtures import query, supports, tiny_model


def test_recall_at_averages_thresholds():
    ious = torch.tensor([0.55, 0.72, 0.96, 0.3])
    assert recall_at(ious, (0.5,)) == pytest.approx(0.75)
    # thresholds .5 .55 .6 .65 .7 .75 .8 .85 .9 .95: 3,3,2,2,2,1,1,1,1,1 of 4 covered
    assert recall_at(ious) == pytest.approx(17 / 40)
    assert recall_at(torch.zeros(0)) == -1.0


def test_gt_boxes_of_skips_other_classes_and_difficult():
    record = {"annotations": [{"bbox": [0, 0, 5, 5], "category_id": 2},
                              {"bbox": [1, 1, 6, 6], "category_id": 2, "difficult": 1},
                              {"bbox": [2, 2, 7, 7], "category_id": 3}]}
    assert gt_boxes_of(record, [2]).tolist() == [[0, 0, 5, 5]]
    assert gt_boxes_of(record, [4]).shape == (0, 4)


@pytest.mark.parametrize("siamese", [False, True])
def test_proposal_recall_of_both_proposal_generators(siamese):
    model = tiny_model(siamese=siamese).eval()
    if siamese:
        s = supports([1, 2, 3], shots=1)
        model.set_supports(s["images"], s["boxes"], s["labels"])
    rpn = model.proposal_generator
    with proposal_limits(rpn, 300):
        assert rpn.post_nms_topk[1] == 300 and rpn.pre_nms_topk[1] == 300
    assert rpn.post_nms_topk[1] == 50  # restored
    # an image resized from 192 x 256 to 96 x 128: proposals come back in original pixels
    item = {**query(), "height": 192, "width": 256, "image_id": "a"}
    props = model_proposals(model, [item])[0]
    assert props.shape[1] == 4 and props[:, 2].max() > 128
    records = [{"image_id": "a", "annotations": [
        {"bbox": [20.0, 20.0, 120.0, 140.0], "category_id": 2}]}]
    out = proposal_recall(model, [[item]], records, [2], topks=(1, 300))
    assert out["num_gt"] == 1 and 0 <= out["AR@1"] <= out["AR@300"] <= 1
    assert out["R50@300"] >= out["AR@300"]


def test_conditioned_proposals_use_only_the_given_classes_prototypes():
    model = tiny_model().eval()
    s = supports([1, 2, 3], shots=1)
    model.set_supports(s["images"], s["boxes"], s["labels"])
    item = query()
    every = model.propose([item])[0]
    assert torch.equal(model.propose([item], [1, 2, 3])[0], every)
    only_two = model.propose([item], [2])[0]
    # class 2's column alone: the merged objectness is that column's, not the max over 3
    assert not torch.equal(only_two, every)
    with pytest.raises(Exception):
        model.propose([item], [7])  # no such class in the bank


def test_recall_control_conditions_on_other_classes_supports():
    model = tiny_model().eval()
    s = supports([1, 2, 3], shots=1)
    model.set_supports(s["images"], s["boxes"], s["labels"])
    item = {**query(), "image_id": 0}
    records = [{"image_id": 0, "annotations": [
        {"bbox": [10.0, 10.0, 60.0, 70.0], "category_id": 2}]}]
    seen = []
    real = model.propose
    model.propose = lambda batch, ids=None: seen.append(ids) or real(batch, ids)
    proposal_recall(model, [[item]], records, [2], topks=(10,))
    proposal_recall(model, [[item]], records, [2], topks=(10,), support_ids=[1, 3])
    proposal_recall(model, [[item]], records, [2], topks=(10,), conditioned=False,
                    support_ids=[1, 3])
    assert seen == [[2], [1, 3], None]  # unconditioned: every class the model knows


def test_support_score_is_highest_on_the_support_box_itself():
    # cosine scale 1 and a zero background row: probability = sigmoid(cosine), which
    # does not saturate at 1.0 for every box as the default scale 20 does
    model = tiny_model("MODEL.ROI_BOX_HEAD.COSINE_SCALE", "1.0").eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight[0] = 0
    s = supports([1, 2, 3], shots=1)
    model.set_supports(s["images"], s["boxes"], s["labels"])
    # the query IS class 2's support crop: the RoI of its support box has exactly class 2's
    # prototype as its feature (cosine 1 with the imprinted weight), other boxes do not
    from fewshot_det.modeling.meta_arch.preprocess import normalize_and_pad
    images = normalize_and_pad([s["images"][1]], model.pixel_mean, model.pixel_std,
                               model.backbone.size_divisibility)
    with torch.no_grad():
        features = model.backbone(images.tensors)
        boxes = torch.cat([s["boxes"][1:2], torch.tensor(
            [[0.0, 0.0, 30.0, 30.0], [20.0, 20.0, 64.0, 64.0], [8.0, 10.0, 40.0, 40.0]])])
        scores = model.roi_heads.support_scores(
            features, [boxes], model.prototype_bank.prototypes(1, [2]))[0]
    assert scores.shape == (4,) and ((scores >= 0) & (scores <= 1)).all()
    assert float(scores[0]) == pytest.approx(float(torch.sigmoid(torch.tensor(1.0))), abs=1e-5)
    assert (scores[1:] < scores[0] - 1e-3).all()


def test_rescored_proposals_are_the_same_boxes_by_decreasing_support_score():
    model = tiny_model().eval()
    s = supports([1, 2, 3], shots=1)
    model.set_supports(s["images"], s["boxes"], s["labels"])
    item = query()
    plain = model.propose([item], [2])[0]
    rescored = model.propose([item], [2], rescore=True)[0]
    assert sorted(map(tuple, plain.tolist())) == sorted(map(tuple, rescored.tolist()))
    assert not torch.equal(plain, rescored)  # the ranking changed
    from fewshot_det.modeling.meta_arch.preprocess import normalize_and_pad
    images = normalize_and_pad([item["image"]], model.pixel_mean, model.pixel_std,
                               model.backbone.size_divisibility)
    with torch.no_grad():
        scores = model.roi_heads.support_scores(model.backbone(images.tensors), [rescored],
                                                model.prototype_bank.prototypes(1, [2]))[0]
    assert (scores[:-1] >= scores[1:]).all()
    # through proposal_recall: only support-conditioned models can be rescored
    records = [{"image_id": 0, "annotations": [
        {"bbox": [10.0, 10.0, 60.0, 70.0], "category_id": 2}]}]
    out = proposal_recall(model, [[{**item, "image_id": 0}]], records, [2], topks=(10,),
                          rescore=True)
    assert 0 <= out["AR@10"] <= 1
    with pytest.raises(ValueError, match="rescore"):
        proposal_recall(tiny_model(siamese=False), [[item]], records, [2], rescore=True)
