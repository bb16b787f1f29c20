import pytest
import torch

from fewshot_fixtures import query, supports, tiny_cfg, tiny_model


def _episode_batch(ways=4):
    ids = list(range(1, ways + 1))
    return [
        {**query(boxes=[[10, 12, 60, 70], [50, 30, 120, 90]], labels=[1, 3]),
         "supports": supports(ids[::-1], shots=2)},
        {**query(seed=1, boxes=[[20, 20, 70, 80]], labels=[5], image_id=1),  # class 5 not in
         "supports": supports(ids, shots=2, seed=1)},                          # the episode
        {**query(seed=2, image_id=2), "supports": supports(ids, shots=2, seed=2)},  # no object
    ]


def test_four_way_training_step_reaches_every_parameter():
    model = tiny_model(num_classes=5).train()
    losses = model(_episode_batch(ways=4))
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert model.prototype_bank.count.tolist() == [1, 1, 1, 1, 0]


def test_images_without_episode_objects_have_zero_box_losses():
    model = tiny_model(num_classes=5).train()
    batch = _episode_batch()[1:]  # class 5 is not in the episode; the last image is empty
    losses = model(batch)
    assert losses["loss_box_reg"].item() == 0  # no RoI of an episode class
    assert losses["loss_cls"].item() > 0 and losses["loss_rpn_cls"].item() > 0
    # the class-5 object still teaches the class-agnostic RPN terms
    assert losses["loss_rpn_loc"].item() > 0
    only_empty = model(batch[1:])
    assert only_empty["loss_rpn_loc"].item() == 0 and only_empty["loss_box_reg"].item() == 0


def test_column_labels_of_sampled_rois():
    from fewshot_det.modeling.fewshot.siamese_heads import to_column_labels

    labels = torch.tensor([0, 4, 2, 7, 2, 0])
    cols = to_column_labels(labels, [4, 2], torch.tensor([[2, 4], [7, 2]]))
    assert cols.tolist() == [0, 2, 1, 0, 2, 0]


def test_training_without_supports_is_a_clear_error():
    model = tiny_model().train()
    with pytest.raises(ValueError, match="FEWSHOT.EPISODE.ENABLED"):
        model([query(boxes=[[1, 1, 20, 20]], labels=[1])])


def test_wrong_components_are_rejected():
    from fewshot_det.modeling import build_model

    cfg = tiny_cfg("MODEL.ROI_HEADS.NAME", "StandardROIHeads",
                   "MODEL.ROI_BOX_HEAD.PREDICTOR", "FastRCNNOutputLayers")
    with pytest.raises(ValueError, match="support-conditioned ROI heads"):
        build_model(cfg)
    with pytest.raises(ValueError, match="PROPOSAL_CANDIDATES"):
        build_model(tiny_cfg("MODEL.SIAMESE.PROPOSAL_CANDIDATES", "-1"))
    cfg = tiny_cfg("MODEL.ROI_BOX_HEAD.PREDICTOR", "FastRCNNOutputLayers")
    with pytest.raises(ValueError, match="PrototypeCosineOutputLayers"):
        build_model(cfg)


def test_frozen_detector_trains_only_the_conditioning():
    model = tiny_model("MODEL.SIAMESE.FREEZE_DETECTOR", "True", num_classes=5).train()
    assert not model.backbone.training and not model.roi_heads.box_head.training
    assert model.roi_heads.box_predictor.training
    bn = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    sum(model(_episode_batch()).values()).backward()
    trained = sorted({n.split(".")[0] + "." + n.split(".")[1]
                      for n, p in model.named_parameters() if p.grad is not None})
    assert trained == ["roi_heads.box_predictor"]  # the RPN is the plain detector's
    assert torch.equal(bn.running_mean, stats)  # batch norm in eval mode: not updated


def test_prototype_weights_score_a_class_without_a_row():
    """A class id beyond NUM_CLASSES (added at inference) is scored by g(prototype) alone;
    a class whose row is zero (after surgery) gets exactly the same weight."""
    model = tiny_model(num_classes=2).eval()
    predictor = model.roi_heads.box_predictor
    x, protos = torch.rand(6, 32), torch.rand(2, 32)
    logits, deltas = predictor(x, protos, torch.tensor([2, 3]), torch.tensor([True, True]))
    assert logits.shape == (6, 3) and deltas.shape == (6, 8)
    expected = 20 * torch.nn.functional.cosine_similarity(x, predictor.generator(protos[1])[None])
    torch.testing.assert_close(logits[:, 2], expected, rtol=1e-4, atol=1e-4)
    # class 2's row is zero at initialisation: same prototype, same logit
    same, _ = predictor(x, protos[[1, 1]], torch.tensor([2, 3]), torch.tensor([True, True]))
    torch.testing.assert_close(same[:, 1], same[:, 2])
    # with a zero row the weight is the unit-length g(prototype): a residual row learned in
    # fine-tuning moves it on that scale
    w = predictor.class_weights(protos, torch.tensor([2, 3]))
    torch.testing.assert_close(w.norm(dim=1), torch.ones(2))
    # deltas of the unknown class are the mean of the class rows
    rows = predictor.bbox_pred(x).view(6, 2, 4)
    torch.testing.assert_close(deltas[:, 4:], rows.mean(dim=1))
    torch.testing.assert_close(deltas[:, :4], rows[:, 1])


def test_invalid_columns_get_no_score():
    model = tiny_model().eval()
    predictor = model.roi_heads.box_predictor
    x = torch.rand(5, 32)
    logits, deltas = predictor(x, torch.rand(3, 32), torch.tensor([1, 2, 3]),
                               torch.tensor([True, False, True]))
    assert logits.shape == (5, 4) and deltas.shape == (5, 12)
    assert torch.isinf(logits[:, 2]).all() and torch.isfinite(logits[:, [0, 1, 3]]).all()


def test_bank_columns_extend_every_episode_to_all_known_classes():
    from fewshot_det.modeling.fewshot import PrototypeBank, Prototypes
    from fewshot_det.modeling.meta_arch.siamese_rcnn import with_bank_columns

    bank = PrototypeBank(num_classes=5, head_dim=3)
    bank.assign(torch.tensor([1, 2, 4]), torch.arange(9.0).view(3, 3))
    ids = torch.tensor([[4, 1], [2, 4]])
    p = Prototypes(head=torch.zeros(2, 2, 3, requires_grad=True), class_ids=ids,
                   valid=torch.ones(2, 2, dtype=torch.bool))
    out = with_bank_columns(p, bank)
    assert out.class_ids.tolist() == [[4, 1, 2], [2, 4, 1]]
    assert out.head[0, 2].tolist() == [3.0, 4.0, 5.0] and out.head[1, 2].tolist() == [0, 1, 2]
    assert out.head.requires_grad and out.valid.all()  # the episode part keeps its gradient


def test_bank_training_prototypes_score_every_known_class_from_the_bank():
    model = tiny_model("MODEL.SIAMESE.TRAIN_PROTOTYPES", "bank", num_classes=5).train()
    s = supports([5], shots=1, seed=3)
    model.set_supports(s["images"], s["boxes"], s["labels"])  # class 5 known beforehand
    seen = {}
    original = model.roi_heads.predict

    def spy(x, proposals, prototypes):
        seen["ids"], seen["head"] = prototypes.class_ids, prototypes.head
        return original(x, proposals, prototypes)

    model.roi_heads.predict = spy
    losses = model(_episode_batch(ways=4))
    assert torch.isfinite(sum(losses.values()))
    assert seen["ids"].tolist() == [[1, 2, 3, 4, 5]] * 3  # all known classes, every image
    torch.testing.assert_close(seen["head"][0], model.prototype_bank.head)  # bank rows
    with pytest.raises(ValueError, match="TRAIN_PROTOTYPES"):
        tiny_model("MODEL.SIAMESE.TRAIN_PROTOTYPES", "mean")



# ------------------------------------------------------------- support-conditioned proposals
def _two_class_model():
    """A tiny siamese model whose bank knows classes 1-3 from random supports."""
    model = tiny_model(num_classes=3).eval()
    s = supports([1, 2, 3], shots=1, seed=4)
    model.set_supports(s["images"], s["boxes"], s["labels"])
    return model


def test_support_score_is_highest_on_the_support_box_itself():
    """A query that IS a support crop: its support box is the best match of that class."""
    model = _two_class_model()
    s = supports([2], shots=1, seed=4)
    model.set_supports(s["images"], s["boxes"], s["labels"])
    item = {"image": s["images"][0], "height": 64, "width": 64, "image_id": 0}
    from fewshot_det.modeling.preprocess import normalize_and_pad

    images = normalize_and_pad([item["image"]], model.pixel_mean, model.pixel_std,
                               model.backbone.size_divisibility)
    features = model.backbone(images.tensors)
    boxes = torch.cat([s["boxes"], torch.tensor([[0.0, 0.0, 20.0, 20.0],
                                                 [40.0, 40.0, 63.0, 63.0]])])
    protos = model.prototype_bank.prototypes(1, [2])
    scores = model.roi_heads.support_scores(features, [boxes], protos)[0]
    assert scores.argmax().item() == 0


def test_ranked_proposals_are_candidates_by_decreasing_support_score():
    model = _two_class_model()
    item = query(h=96, w=128, seed=5)
    plain = model.propose([item], [2], keep=1000, ranked=False)[0]
    ranked = model.propose([item], [2], keep=1000)[0]
    assert len(plain) > 10
    # the same candidate boxes, in another order (original pixels = model input here)
    assert sorted(map(tuple, plain.tolist())) == sorted(map(tuple, ranked.tolist()))
    assert not torch.equal(plain, ranked)
    from fewshot_det.modeling.preprocess import normalize_and_pad

    images = normalize_and_pad([item["image"]], model.pixel_mean, model.pixel_std,
                               model.backbone.size_divisibility)
    scores = model.roi_heads.support_scores(model.backbone(images.tensors), [ranked],
                                            model.prototype_bank.prototypes(1, [2]))[0]
    assert (scores[:-1] >= scores[1:]).all()


def test_the_box_head_gets_the_best_candidates_by_support_score():
    """PROPOSAL_CANDIDATES: the head's P proposals are the best of C candidates by support
    score, not the RPN's top P; with 0 they are the RPN's top P."""
    model = _two_class_model()
    item = query(h=96, w=128, seed=6)
    keep = model.proposal_generator.post_nms_topk[1]
    candidates = model.propose([item], [2], keep=model.proposal_candidates, ranked=False)[0]
    ranked = model.propose([item], [2], keep=model.proposal_candidates)[0]
    head_gets = model.propose([item], [2])[0]
    assert len(candidates) > keep
    torch.testing.assert_close(head_gets, ranked[:keep])
    assert not torch.equal(head_gets, candidates[:keep])
    model.proposal_candidates = 0
    torch.testing.assert_close(model.propose([item], [2])[0], candidates[:keep])


def test_proposals_are_conditioned_on_the_given_classes_only():
    model = _two_class_model()
    item = query(h=96, w=128, seed=7)
    every = model.propose([item])[0]
    assert torch.equal(model.propose([item], [1, 2, 3])[0], every)
    assert not torch.equal(model.propose([item], [2])[0], every)
    with pytest.raises(IndexError):
        model.propose([item], [7])  # no such class in the bank


def test_proposals_are_in_original_image_pixels():
    model = _two_class_model()
    item = {**query(h=96, w=128, seed=8), "height": 192, "width": 256}  # shown at half size
    small = dict(item, height=96, width=128)
    torch.testing.assert_close(model.propose([item], [2])[0],
                               model.propose([small], [2])[0] * 2)
