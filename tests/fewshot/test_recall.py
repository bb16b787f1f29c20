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
